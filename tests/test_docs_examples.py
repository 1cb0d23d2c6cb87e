"""Every Python example of README.md and docs/*.md runs as written (issue 25, point 6), in a
fresh process in an empty folder, with the sizes below made small and the names a fragment
leaves to the reader defined first; a block this file does not know runs unchanged."""

from __future__ import annotations

import re
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
