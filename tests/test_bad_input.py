"""Bad input everywhere (issue 7, part 5): each gets one line that names the problem and what to
do, a non-zero exit, no traceback (unless --debug) and no run directory left behind.

The table below is docs/reliability.md's "Bad input" table; keep the two in step."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from wiseale import cli
from wiseale.cli import main
from wiseale.errors import WisealeError

TRAIN = ["train", "--method", "aevb", "--out", "{d}/run", "--epochs", "1", "--no-progress"]
SINE = [*TRAIN, "--data", "sine", "--n-train", "64", "--n-test", "16", "--batch-size", "16"]


def _file(name: str) -> list[str]:
    return [*TRAIN, "--data", "{d}/" + name, "--batch-size", "4"]


# id, argv ({d}: the folder of the files below), exit code, what the one line must say
BAD_INPUTS = [
    ("nan-values", _file("nan.npy"), 1, "has NaN or Inf values (first in sample "),
    ("inf-values", _file("inf.npy"), 1, "has NaN or Inf values"),
    ("beyond-float32", _file("huge.npy"), 1, "float32 overflows beyond 3.4e38"),
    ("rank-1", _file("rank1.npy"), 1, "has shape (40,); use N x D vectors"),
    ("rank-5", _file("rank5.npy"), 1, "has shape (40, 1, 1, 1, 1); use N x D"),
    ("text-dtype", _file("text.npy"), 1, "has dtype <U1; store real numbers"),
    ("complex-dtype", _file("complex.npy"), 1, "has dtype complex128; store real numbers"),
    ("object-dtype", _file("object.npy"), 1, "without object arrays"),
    ("float-labels", _file("float_labels.npz"), 1, "must hold 40 integer labels"),
    ("negative-labels", _file("negative_labels.npz"), 1,
     "labels must be class indices in [0, 100000), got values from -1 to 2"),
    ("huge-labels", _file("huge_labels.npz"), 1, "got values from 0 to 4398046511104"),
    ("fifo-as-data", _file("fifo.npy"), 1, "is not a regular file; give a .npy or .npz file"),
    ("directory-as-data", _file("history.npy"), 1, "is not a regular file"),
    ("empty-data-set", _file("empty.npy"), 1, "is empty; give it at least one sample"),
    ("empty-test-split", _file("empty_test.npz"), 1, "x_test is empty"),
    ("zero-features", _file("zero_features.npy"), 1, "has samples of size 0"),
    ("one-sample", _file("one.npy"), 1, "too few to hold out a test split"),
    ("empty-file", _file("empty_file.npy"), 1, "it is empty; save your array"),
    ("garbage-file", _file("garbage.npy"), 1, "not a .npy file (wrong magic bytes)"),
    ("truncated-file", _file("truncated.npy"), 1, "file seems not fully written"),
    ("missing-file", _file("missing.npy"), 1, "does not exist; check the path"),
    ("not-npy", _file("notes.txt"), 1, "is not a .npy or .npz file"),
    ("empty-data-name", [*TRAIN, "--data", ""], 1, "no data set given; use one of sine"),
    ("unknown-method", [*SINE, "--method", "nope"], 1, "unknown method 'nope'; use one of"),
    ("unknown-data-set", [*TRAIN, "--data", "mnist-ish"], 1, "unknown data set 'mnist-ish'"),
    ("unknown-experiment", ["reproduce", "table9", "--out", "{d}/exp"], 2,
     "argument EXPERIMENT: invalid choice: 'table9'"),
    ("unknown-command", ["fly"], 2, "invalid choice: 'fly'"),
    ("unknown-flag", [*SINE, "--frobnicate"], 2, "unrecognized arguments: --frobnicate"),
    ("unknown-method-option", [*SINE, "-o", "gamma=2"], 1, "has no option 'gamma'; its options"),
    ("bad-method-option", [*SINE, "-o", "beta=abc"], 1, "option beta of aevb must be a number"),
    ("non-finite-method-option", [*SINE, "-o", "beta=NaN"], 1, "must be finite and >= 0"),
    ("zero-fixed-noise", [*SINE, "--method", "cwae", "-o", "sigma_eps=0"], 1,
     "sigma_eps must be positive; the deterministic variant is its own method (dvcae, wae)"),
    ("option-without-value", [*SINE, "-o", "beta"], 2, "options are KEY=VALUE"),
    ("unknown-data-option", [*SINE, "--data-option", "colour=red"], 1,
     "data set sine does not take these options: colour; its options: n_train, n_test"),
    ("split-as-data-option", [*SINE, "--data-option", "split=test"], 2,
     "split is not a data-set option"),
    ("bad-data-option", [*SINE, "--data-option", "noise_std=abc"], 1,
     "option noise_std must be a finite number, got 'abc'"),
    ("non-finite-data-option", [*SINE, "--data-option", "noise_std=NaN"], 1,
     "option noise_std must be a finite number, got nan"),
    ("negative-data-seed", [*SINE, "--data-option", "seed=-1"], 1,
     "option seed must be a non-negative integer"),
    ("huge-data-size", [*TRAIN, "--data", "toy-shapes", "--n-train", "99999999999"], 1,
     "option n_train must be a positive integer (at most 10,000,000)"),
    ("zero-epochs", [*SINE, "--epochs", "0"], 2, "--epochs: must be a positive integer, got 0"),
    ("negative-batch-size", [*SINE, "--batch-size", "-3"], 2, "must be a positive integer"),
    ("zero-n-train", [*SINE, "--n-train", "0"], 2, "--n-train: must be a positive integer"),
    ("zero-micro-batch", [*SINE, "--micro-batch", "0"], 2, "must be a positive integer"),
    ("zero-sample-count", ["sample", "{d}", "--n", "0", "--out", "{d}/s.npy"], 2,
     "--n: must be a positive integer, got 0"),
    ("zero-components", ["sample", "{d}", "--components", "0", "--out", "{d}/s.npy"], 2,
     "--components: must be a positive integer"),
    ("non-integer-size", [*SINE, "--epochs", "2.5"], 2, "'2.5' is not an integer"),
    ("latent-dim-0", [*SINE, "--latent-dim", "0"], 2, "--latent-dim: must be a positive integer"),
    ("lr-nan", [*SINE, "--lr", "nan"], 2, "--lr: must be a finite positive number, got nan"),
    ("lr-inf", [*SINE, "--lr", "inf"], 2, "--lr: must be a finite positive number, got inf"),
    ("lr-negative", [*SINE, "--lr=-1e-3"], 2, "must be a finite positive number"),
    ("lr-text", [*SINE, "--lr", "fast"], 2, "'fast' is not a number"),
    ("sigma2-nan", [*SINE, "--sigma2", "nan"], 2, "--sigma2: must be a finite positive"),
    ("lr-gamma-inf", [*SINE, "--lr-gamma", "inf"], 2, "--lr-gamma: must be a finite positive"),
    ("seed-out-of-range", [*SINE, "--seed", "-1"], 2, "must be between 0 and 2^31 - 1"),
    ("batch-larger-than-data", [*SINE, "--batch-size", "100"], 1,
     "batch-size 100 is larger than the 64 training samples; lower --batch-size"),
    ("n-train-beyond-data", _file("tiny.npy") + ["--n-train", "1000"], 1,
     "--n-train 1000 is more than the 36 train samples"),
    ("bernoulli-on-real-data", [*SINE, "--likelihood", "bernoulli"], 1,
     "the Bernoulli likelihood needs data in [0, 1]"),
    ("cuda-without-gpu", [*SINE, "--device", "cuda"], 1, "no CUDA GPU is visible; use cpu"),
    ("path-too-long", [*TRAIN, "--data", "x" * 300 + ".npy"], 1,
     "File name too long; check the path"),
    ("unwritable-out", [*SINE, "--out", "{d}/notes.txt/run"], 1, "cannot create"),
    ("evaluate-no-run", ["evaluate", "{d}/missing"], 1, "is not a directory; give a run"),
    ("plot-damaged-history", ["plot", "{d}/history"], 1,
     "line 2 is not a metrics row like the others"),
    ("plot-not-a-run", ["plot", "{d}"], 1, "has neither results.json nor metrics.jsonl"),
    ("plot-results-without-methods", ["plot", "{d}/results"], 1,
     "results.json lacks what the sine figures need (KeyError: 'methods'); run `wiseale "
     "reproduce sine` again"),
    ("sample-not-a-run", ["sample", "{d}/history", "--out", "{d}/s.npy"], 1,
     "has no model.safetensors: not a finished wiseale run"),
    ("option-overflows-a-float", [*SINE, "-o", "beta=1" + "0" * 400], 1,
     "option beta of aevb must be a number"),
]
BAD_INPUTS += [  # refused while the networks are built, still before --out is made
    ("net-does-not-fit", [*SINE, "--net", "lv-mnist"], 1,
     "the lv-mnist network needs samples of shape (1, 28, 28)"),
    ("pixel-variance-without-branch", [*SINE, "--likelihood", "pixel"], 1,
     "needs a network with a variance branch"),
]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bad (and a few good) data files the table refers to."""
    d = tmp_path_factory.mktemp("bad-input")
    rng = np.random.default_rng(0)
    good = rng.normal(size=(40, 3))
    arrays = {"tiny": good, "nan": np.where(np.arange(40)[:, None] == 3, np.nan, good),
              "inf": np.full((40, 3), np.inf), "huge": np.full((40, 3), 1e300),
              "rank1": np.zeros(40), "rank5": np.zeros((40, 1, 1, 1, 1)),
              "text": np.full((40, 3), "a"), "complex": good.astype(complex),
              "empty": np.zeros((0, 3)), "zero_features": np.zeros((40, 0)),
              "one": np.zeros((1, 3))}
    for name, array in arrays.items():
        np.save(d / f"{name}.npy", array)
    np.save(d / "object.npy", np.array([[1, None]] * 40, dtype=object), allow_pickle=True)
    np.savez(d / "float_labels.npz", x=good, y=np.zeros(40))
    np.savez(d / "negative_labels.npz", x=good, y=np.arange(40) % 4 - 1)
    np.savez(d / "huge_labels.npz", x=good, y=np.where(np.arange(40) == 7, 2**42, 0))
    os.mkfifo(d / "fifo.npy")  # opening it for reading would block until a writer comes
    (d / "history.npy").mkdir()
    np.savez(d / "empty_test.npz", x=good, x_test=np.zeros((0, 3)))
    (d / "empty_file.npy").write_bytes(b"")
    (d / "garbage.npy").write_bytes(b"garbage " * 20)
    (d / "truncated.npy").write_bytes((d / "tiny.npy").read_bytes()[:-10])
    (d / "notes.txt").write_text("not data")
    (d / "history").mkdir()
    (d / "history/metrics.jsonl").write_text('{"epoch": 1, "loss": 2.0}\n{"loss": 1.0}\n')
    (d / "results").mkdir()
    (d / "results/results.json").write_text('{"experiment": "sine"}\n')
    return d


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse errors
        code = exc.code
    return code, capsys.readouterr().err


def _check(data_dir: Path, argv: list[str], code: int, message: str,
           capsys: pytest.CaptureFixture[str]) -> Path:
    """Runs ``argv``; asserts the exit code and one error line naming the problem."""
    argv = [a.replace("{d}", str(data_dir)) for a in argv]
    got, err = _run(argv, capsys)
    assert got == code, (argv, err)
    assert message in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    return data_dir / "run"


@pytest.mark.parametrize("argv, code, message", [row[1:] for row in BAD_INPUTS],
                         ids=[row[0] for row in BAD_INPUTS])
def test_bad_input_is_one_line_and_leaves_no_run(data_dir: Path, argv: list[str], code: int,
                                                 message: str,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    run = _check(data_dir, argv, code, message, capsys)
    assert not run.exists(), sorted(run.iterdir())


def test_debug_shows_the_traceback(data_dir: Path) -> None:
    """--debug re-raises in process, and the real command then prints the traceback and
    exits 1 (without --debug: the table above)."""
    with pytest.raises(WisealeError, match="NaN or Inf"):
        main(["--debug", *[a.replace("{d}", str(data_dir)) for a in _file("nan.npy")]])
    debug = subprocess.run([sys.executable, "-m", "wiseale", "--debug", "train", "--method",
                            "nope", "--data", "sine", "--out", str(data_dir / "run")],
                           capture_output=True, text=True)
    assert debug.returncode == 1 and "Traceback (most recent call last)" in debug.stderr
    assert "WisealeError: unknown method 'nope'" in debug.stderr
    assert not (data_dir / "run").exists()


@pytest.mark.parametrize("error", [
    MemoryError(),
    RuntimeError("[enforce fail at alloc_cpu.cpp:127] DefaultCPUAllocator: can't allocate "
                 "memory: you tried to allocate 137438953408 bytes."),
    torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB"),
])
def test_running_out_of_memory_says_what_to_lower(error: Exception, monkeypatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """A size too large to allocate (e.g. --latent-dim 2147483647) is one line naming the
    sizes to lower, not an 'unexpected' error (raised here in place of the allocation, which
    an overcommitting machine would grant and then kill)."""
    def allocate(args):
        raise error

    monkeypatch.setattr(cli, "_train", allocate)
    code, err = _run(["train", "--method", "aevb", "--data", "sine", "--out", "x"], capsys)
    assert code == 1 and len(err.strip().splitlines()) == 1
    assert err.startswith("wiseale: error: out of memory (") and "lower --batch-size" in err
