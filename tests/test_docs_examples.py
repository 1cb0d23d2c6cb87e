"""Every example of README.md and docs/*.md runs (issue 25, point 6).

Python blocks run as written, in a fresh process in an empty folder, with the sizes below made
small and the names a fragment leaves to the reader defined first; a block this file does not
know runs unchanged. Shell blocks are synopses (``[--seed S]``, ``DIR``, ``a | b``): each
command line is parsed by wiseale's own argument parser with every optional part included,
the first of each set of alternatives and a value for each placeholder, and the concrete
commands among them run with small sizes."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

# what a fragment leaves to the reader: data and networks of the right shapes
OWN_DATA = """
import numpy as np
from torch import nn
x_train = np.random.rand(256, 1, 32).astype(np.float32)
y_train = np.random.randint(0, 3, 256)
x_test = np.random.rand(64, 1, 32).astype(np.float32)
my_encoder = nn.Sequential(nn.Flatten(), nn.Linear(32, 16), nn.ReLU())
my_decoder = nn.Sequential(nn.Linear(8, 32), nn.Unflatten(1, (1, 32)))
"""
FAKE_WANDB = """
import sys, types
logged = []
sys.modules["wandb"] = types.SimpleNamespace(init=lambda **kw: None, finish=lambda: None,
                                             log=lambda row, step: logged.append(step))
"""
SMALL = [("n_train=20_000", "n_train=256"), ("epochs=5", "epochs=1"), ("epochs=10", "epochs=1"),
         ("5_000", "500"), ("1_000", "100")]
# (file, index of its Python block) -> (code run before, substitutions, code run after)
EXAMPLES = {
    ("README.md", 0): (OWN_DATA, SMALL, ""),
    ("methods.md", 0): ("", [], 'from wiseale import RunConfig, train\n'
                        'train(RunConfig(method="l2-ae", data="sine", n_train=64, epochs=1, '
                        'batch_size=32), "runs/l2", progress=False)\n'),
    ("python.md", 0): ("", SMALL, ""),
    ("python.md", 1): (FAKE_WANDB, SMALL, "assert logged == [1], logged\n"),
}


def _blocks() -> list[tuple[str, int, str]]:
    found = []
    for path in DOCS:
        blocks = re.findall(r"^```python\n(.*?)^```$", path.read_text(), re.M | re.S)
        found += [(path.name, i, code) for i, code in enumerate(blocks)]
    return found


@pytest.mark.parametrize("name,index,code", [pytest.param(*block, id=f"{block[0]}-{block[1]}")
                                             for block in _blocks()])
def test_the_example_runs(name: str, index: int, code: str, tmp_path: Path) -> None:
    before, substitutions, after = EXAMPLES.get((name, index), ("", [], ""))
    for old, new in substitutions:
        code = code.replace(old, new)
    script = before + code + after
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True,
                            text=True, env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin",
                                            "HOME": str(tmp_path)}, timeout=600)
    assert result.returncode == 0, f"{name} block {index}:\n{result.stderr[-3000:]}"


def test_every_example_with_substitutions_is_still_in_the_docs() -> None:
    """A renamed or removed block would leave its entry above unused."""
    assert set(EXAMPLES) <= {(name, index) for name, index, _ in _blocks()}


PLACEHOLDERS = {"DIR": "runs/dir", "PATH": "data", "N": "2", "S": "0", "K": "2", "NAME": "sine",
                "FILE": "run.toml", "DIR...": "runs/dir"}


def _command_lines() -> list[tuple[str, str]]:
    """(file, line) of every `wiseale` command of the shell blocks, continuations joined and
    comments dropped (torchrun lines keep their `-m wiseale` part)."""
    found = []
    for path in DOCS:
        for block in re.findall(r"^```(?:bash|sh)\n(.*?)^```$", path.read_text(), re.M | re.S):
            for line in block.replace("\\\n", " ").splitlines():
                line = line.split(" # ")[0].split("  #")[0].strip()
                if "-m wiseale " in line:
                    line = "wiseale " + line.split("-m wiseale ", 1)[1]
                if line.startswith("wiseale"):
                    found.append((path.name, line))
    return found


def _argv(line: str) -> list[str] | None:
    """The synopsis ``line`` as one concrete argv (None for a line with ``...`` in place of
    its flags): optional parts kept, the first alternative of each ``a | b`` or ``a|b``, a
    value for each placeholder."""
    tokens = shlex.split(line.replace("[", " ").replace("]", " "))[1:]
    if "..." in tokens:
        return None
    argv, skip = [], False
    for token in tokens:
        if token == "|":
            skip = True
            continue
        if skip:
            skip = False
            continue
        token = token.split("|")[0]
        argv.append(PLACEHOLDERS.get(token, token))
    return argv


@pytest.mark.parametrize("name,line", [pytest.param(n, line, id=f"{n}:{line[:40]}")
                                       for n, line in _command_lines()])
def test_every_documented_command_line_parses(name: str, line: str) -> None:
    from wiseale.cli import build_parser

    argv = _argv(line)
    if argv is None:  # `wiseale train ... --log tensorboard`: the flags after ... still parse
        argv = ["train", "--method", "aevb", "--data", "sine", "--out", "r",
                *line.split("...", 1)[1].split()]
    try:
        build_parser().parse_args(argv)
    except SystemExit as exc:
        assert exc.code == 0, f"{name}: {line!r} does not parse as {argv}"  # --version, -h


def test_the_documented_commands_run_with_small_sizes(tmp_path: Path) -> None:
    """A run of the README's kind (one epoch on 256 waves), then what the README does with a
    run: evaluate, sample, plot, resume for more epochs, and the listing commands."""
    small = ["--n-train", "256", "--n-test", "64", "--epochs", "1", "--eval-size", "64"]
    commands = [["train", "--method", "wise-ale", "--data", "sine", "--out", "runs/w",
                 "--batch-size", "64", "--lr", "5e-4", "--latent-dim", "4", *small],
                ["train", "--resume", "--out", "runs/w", "--epochs", "2"],
                ["evaluate", "runs/w"],
                ["sample", "runs/w", "--sampler", "prior", "--n", "4", "--out", "s.npy"],
                ["plot", "runs/w"], ["methods"], ["datasets"], ["experiments"], ["--version"]]
    for argv in commands:
        result = subprocess.run([sys.executable, "-m", "wiseale", *argv, *(
            ["--no-progress"] if argv[0] == "train" else [])], cwd=tmp_path,
            capture_output=True, text=True, env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin",
                                                 "HOME": str(tmp_path)}, timeout=600)
        assert result.returncode == 0, f"wiseale {' '.join(argv)}:\n{result.stderr[-2000:]}"
        documented = any(argv[0] in line.split() for _, line in _command_lines())
        assert documented, f"`wiseale {argv[0]}` is not in the docs any more"
    assert (tmp_path / "s.npy").exists()

