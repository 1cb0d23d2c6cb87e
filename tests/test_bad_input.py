"""Bad input everywhere (issue 7, part 5): each gets one line that names the problem and what to
do, a non-zero exit, no traceback (unless --debug) and no run directory left behind.

The table below is docs/reliability.md's "Bad input" table; keep the two in step."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from wiseale import cli
from wiseale.cli import main
from wiseale.config import RunConfig
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
    ("huge-data-size", [*TRAIN, "--data", "toy-shapes", "--n-train", "99999999"], 1,
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
    ("seed-out-of-range", [*SINE, "--seed", "-1"], 2, "must be an integer between 0 and 2^31 - 1"),
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


def _toml(name: str) -> list[str]:
    """``train --config {d}/NAME.toml`` (TOML_FILES), with no flag that would override it."""
    return ["train", "--config", "{d}/" + name + ".toml", "--out", "{d}/run", "--no-progress"]


SINE_TOML = 'method = "aevb"\ndata = "sine"\nn_train = 64\nn_test = 16\nbatch_size = 16\n'
TOML_FILES = {  # NAME.toml in the data folder: --config values get the flags' checks
    "data-number": 'method = "aevb"\ndata = 5\n',
    "lr-text": SINE_TOML + 'lr = "fast"\n',
    "lr-true": SINE_TOML + "lr = true\n",
    "lr-huge-int": SINE_TOML + "lr = 1" + "0" * 400 + "\n",
    "method-list": 'method = ["aevb"]\ndata = "sine"\n',
    "latent-dim-huge": SINE_TOML + "latent_dim = 100000000000000000000000000000\n",
    "epochs-true": SINE_TOML + "epochs = true\n",
    "seed-true": SINE_TOML + "seed = true\n",
    "milestones-negative": SINE_TOML + 'lr_schedule = "step"\nlr_milestones = [-5, 0]\n',
    "milestones-text": SINE_TOML + 'lr_schedule = "step"\nlr_milestones = "abc"\n',
    "milestones-empty": SINE_TOML + "lr_milestones = []\n",
    "gamma-text": SINE_TOML + 'lr_gamma = ["x"]\n',
    "schedule-number": SINE_TOML + "lr_schedule = 5\n",
    "nul-in-data": 'method = "aevb"\ndata = "a\\u0000.npy"\n',
    "nested-3000-deep": "a = " + "[" * 3000 + "]" * 3000 + "\n",
}
BAD_INPUTS += [
    ("toml-data-number", _toml("data-number"), 1, "data must be a string, got 5"),
    ("toml-lr-text", _toml("lr-text"), 1, "lr must be a finite positive number, got 'fast'"),
    ("toml-lr-true", _toml("lr-true"), 1, "lr must be a finite positive number, got True"),
    ("toml-lr-huge-int", _toml("lr-huge-int"), 1, "lr must be a finite positive number, got 1"),
    ("toml-method-list", _toml("method-list"), 1, "method must be a string, got ['aevb']"),
    ("toml-latent-dim-huge", _toml("latent-dim-huge"), 1,
     "latent-dim must be at most 2147483647, got 100000000000000000000000000000"),
    ("toml-epochs-true", _toml("epochs-true"), 1, "epochs must be a positive integer, got True"),
    ("toml-seed-true", _toml("seed-true"), 1,
     "seed must be an integer between 0 and 2^31 - 1, got True"),
    ("toml-milestones-negative", _toml("milestones-negative"), 1,
     "lr-milestones must be a positive integer, got -5"),
    ("toml-milestones-text", _toml("milestones-text"), 1,
     "lr-milestones must be a list, each a positive integer, got 'abc'"),
    ("toml-milestones-empty", _toml("milestones-empty"), 1,
     "lr-milestones must be a list, each a positive integer, got []"),
    ("toml-gamma-text", _toml("gamma-text"), 1,
     "lr-gamma must be a finite positive number, got 'x'"),
    ("toml-schedule-number", _toml("schedule-number"), 1,
     "unknown lr-schedule 5; use one of constant, cosine, step"),
    ("toml-nul-in-data", _toml("nul-in-data"), 1, "data must not hold a NUL character"),
    ("toml-nested-3000-deep", _toml("nested-3000-deep"), 1,
     "nests arrays or tables too deeply to read"),
    ("threads-huge", [*SINE, "--threads", "99999999999999999999"], 2,
     "argument --threads: must be at most 1024, got 99999999999999999999"),
    ("latent-dim-huge", [*SINE, "--latent-dim", "100000000000000000000000000000"], 2,
     "argument --latent-dim: must be at most 2147483647"),
    ("reproduce-threads-huge", ["reproduce", "sine", "--out", "{d}/run", "--threads",
                                "99999999999999999999"], 2, "--threads: must be at most 1024"),
    ("prepare-workers-huge", ["prepare", "celeba", "--data-dir", "{d}", "--out", "{d}/run",
                              "--workers", "100000"], 2, "--workers: must be at most 1024"),
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
    for name, text in TOML_FILES.items():
        (d / f"{name}.toml").write_text(text)
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


def _wrong_values(f: dataclasses.Field) -> list[str]:
    """TOML values of the wrong type for a RunConfig field (a bool is no integer)."""
    kind = f.metadata.get("kind")
    if f.name in ("options", "data_options"):
        return ["5", '"beta=1"']
    if "choices" in f.metadata:
        return ["5", '["constant"]']
    if kind in ("positive_int", "threads", "seed"):
        return ['"5"', "true", "1.5", "[5]" if f.name != "lr_milestones" else '["5"]']
    if kind == "positive_float":
        return ['"fast"', "true", "{ a = 1 }"]
    return ["5", "true", '["x"]', "1979-05-27"]  # strings and paths


FIELD_CASES = [(f.name, value) for f in dataclasses.fields(RunConfig)
               if f.name != "sample_shape" for value in _wrong_values(f)]


@pytest.mark.parametrize("name, value", FIELD_CASES,
                         ids=[f"{name}={value}" for name, value in FIELD_CASES])
def test_a_toml_setting_of_the_wrong_type_is_named(name: str, value: str, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """Every setting of a --config file, of every wrong type: exit 1 and one line that names
    the setting, before --out is made."""
    settings = {"method": '"aevb"', "data": '"sine"', "n_train": "64", "n_test": "16",
                "batch_size": "16", name: value}
    (tmp_path / "run.toml").write_text("".join(f"{k} = {v}\n" for k, v in settings.items()))
    code, err = _run(["train", "--config", str(tmp_path / "run.toml"), "--out",
                      str(tmp_path / "run"), "--no-progress"], capsys)
    assert code == 1, err
    named = name if name in ("options", "data_options") else name.replace("_", "-")
    assert err.startswith("wiseale: error: ") and named in err, err
    assert len(err.strip().splitlines()) == 1 and "unexpected" not in err, err
    assert not (tmp_path / "run").exists()


def test_flags_and_toml_get_the_same_check(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    """A value the flag refuses is refused from --config too, and one it takes is taken."""
    for flag, value, toml in [("--lr-milestones", "0", "lr_milestones = [0]"),
                              ("--threads", "2000", "threads = 2000"),
                              ("--seed", "2147483648", "seed = 2147483648"),
                              ("--sigma2", "inf", "sigma2 = inf")]:
        code, flag_err = _run([*[a.replace("{d}", str(tmp_path)) for a in SINE], flag, value],
                              capsys)
        assert code == 2, flag_err
        (tmp_path / "run.toml").write_text(toml + "\n")
        code, toml_err = _run([*[a.replace("{d}", str(tmp_path)) for a in SINE], "--config",
                               str(tmp_path / "run.toml")], capsys)
        assert code == 1, toml_err
        problem = flag_err.split(": ", 3)[-1].split(" (see")[0]  # "must be ..., got ..."
        assert problem.split(", got")[0] in toml_err, (flag_err, toml_err)
        assert not (tmp_path / "run").exists()


def test_a_hand_edited_config_json_is_refused_in_one_line(tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]
                                                          ) -> None:
    """evaluate reads config.json, --resume the config saved in the checkpoint, through the
    same checks as the flags; one line each, and the run is kept."""
    from wiseale.storage import load_tensors, save_tensors

    run = tmp_path / "run"
    code, err = _run([a.replace("{d}", str(tmp_path)) for a in SINE], capsys)
    assert code == 0, err
    good = (run / "config.json").read_text()
    tensors, meta = load_tensors(run / "checkpoint.safetensors")
    files = sorted(p.name for p in run.iterdir())
    for edit, message in [({"epochs": True}, "epochs must be a positive integer, got True"),
                          ({"lr": "fast"}, "lr must be a finite positive number, got 'fast'"),
                          ({"threads": 10**20}, "threads must be at most 1024")]:
        (run / "config.json").write_text(json.dumps({**json.loads(good), **edit}))
        save_tensors(run / "checkpoint.safetensors", tensors,
                     {**meta, "config": {**meta["config"], **edit}})
        for argv in (["train", "--resume", "--out", str(run)], ["evaluate", str(run)]):
            code, err = _run(argv, capsys)
            assert code == 1 and message in err, (argv, err)
            assert len(err.strip().splitlines()) == 1, err
        assert sorted(p.name for p in run.iterdir()) == files
    (run / "config.json").write_text("[" * 3000 + "]" * 3000)
    code, err = _run(["evaluate", str(run)], capsys)
    assert code == 1 and "is not valid JSON" in err and len(err.strip().splitlines()) == 1


def test_a_huge_thread_count_in_the_environment_is_refused(monkeypatch, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]
                                                           ) -> None:
    monkeypatch.setenv("WISEALE_THREADS", "99999999999999999999")
    code, err = _run([a.replace("{d}", str(tmp_path)) for a in SINE], capsys)
    assert code == 1 and "$WISEALE_THREADS='99999999999999999999' must be at most 1024" in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "run").exists()


def test_a_run_failing_before_its_first_checkpoint_takes_back_the_folders_it_made(
        data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A loss that overflows at the first batch is refused after --out was made: the folders
    the run made go (its parents too), a folder that was there before stays with its files."""
    np.save(tmp_path / "big.npy", np.full((40, 3), 1e30))  # finite in float32, x^2 is not
    argv = [*TRAIN, "--data", str(tmp_path / "big.npy"), "--batch-size", "4"]
    nested = tmp_path / "new" / "deeper" / "run"
    code, err = _run([a.replace("{d}/run", str(nested)) for a in argv], capsys)
    assert code == 1 and "non-finite loss at epoch 1, batch 0; nothing was saved" in err, err
    assert not (tmp_path / "new").exists()
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("the user's")
    code, err = _run([a.replace("{d}/run", str(mine)) for a in argv], capsys)
    assert code == 1 and "nothing was saved" in err, err
    assert (mine / "notes.txt").read_text() == "the user's"


def test_validate_refuses_a_bool_wherever_it_takes_an_integer() -> None:
    """True is an int to Python, never a count or a seed to wiseale (the Python API too)."""
    for name in ("epochs", "latent_dim", "batch_size", "eval_size", "n_train", "threads",
                 "seed"):
        with pytest.raises(WisealeError, match=f"{name.replace('_', '-')} must be .*got True"):
            RunConfig(method="aevb", data="sine", **{name: True}).validate()
    with pytest.raises(WisealeError, match="lr-milestones must be a positive integer, got True"):
        RunConfig(method="aevb", data="sine", lr_milestones=[True]).validate()
    with pytest.raises(WisealeError, match="sample-shape must be a list of positive integers"):
        RunConfig.from_dict({"method": "aevb", "data": "sine", "sample_shape": [True, 3]})
