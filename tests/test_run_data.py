"""A run knows its data (issue 23, point 4): the digest of each split is saved with the
weights and the checkpoint; evaluate, FID, sampler fits and resume refuse other data in one
line, evaluate and sample take --allow-changed-data."""

import json

import numpy as np
import pytest

from wiseale.cli import main
from wiseale.data.arrays import load_array_file


def _images(seed, n=320):
    return np.random.default_rng(seed).random((n, 1, 8, 8), dtype=np.float32)


@pytest.fixture(params=["memory", "mmap"])
def trained(request, tmp_path):
    """A run trained for one epoch on DATA.npy (in memory or memory-mapped), then DATA.npy
    replaced by other data of the same shape."""
    data, run = tmp_path / "data.npy", tmp_path / "run"
    np.save(data, _images(0))
    assert main(["train", "--method", "vae", "--data", str(data), "--epochs",
                 "1", "--batch-size", "32", "--net", "mlp", "--storage", request.param,
                 "--out", str(run), "--no-progress"]) == 0
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    np.save(data, _images(1))
    return run, before


def test_changed_data_is_refused_and_nothing_changes(trained, capsys):
    run, before = trained
    capsys.readouterr()
    for command in (["evaluate", str(run)], ["evaluate", str(run), "--split", "train"],
                    ["sample", str(run), "--sampler", "mixture", "--components", "2", "--out",
                     str(run.parent / "s.npy")],
                    ["train", "--resume", "--out", str(run), "--epochs", "2",
                     "--no-progress"]):
        assert main(command) == 1, command
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and "data" in err and ("--allow-changed-data" in err
                                                      or "resume with the data" in err), err
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before
    assert not (run.parent / "s.npy").exists()


def test_allow_changed_data_uses_the_data_as_it_is(trained, capsys):
    run, _ = trained
    evaluation = json.loads((run / "evaluation.json").read_text())["test"]
    capsys.readouterr()
    assert main(["evaluate", str(run), "--allow-changed-data"]) == 0
    now = json.loads(capsys.readouterr().out)
    assert now["recon_error"] != evaluation["recon_error"]  # measured on the new data
    assert main(["sample", str(run), "--sampler", "mixture", "--components", "2",
                 "--allow-changed-data", "--out", str(run.parent / "s.npy")]) == 0


def test_the_same_data_passes(tmp_path, capsys):
    """A file rewritten with the same samples is the same data: evaluate reproduces the run's
    evaluation.json."""
    data, run = tmp_path / "data.npy", tmp_path / "run"
    np.save(data, _images(0))
    assert main(["train", "--method", "vae", "--data", str(data), "--epochs",
                 "1", "--batch-size", "32", "--net", "mlp", "--out", str(run),
                 "--no-progress"]) == 0
    np.save(data, _images(0))
    capsys.readouterr()
    assert main(["evaluate", str(run)]) == 0
    assert json.loads(capsys.readouterr().out) == \
        json.loads((run / "evaluation.json").read_text())["test"]


def test_a_memory_mapped_digest_samples_the_file_and_says_so(tmp_path):
    """In memory: every sample counts; memory-mapped: evenly spaced samples, the first and
    last of the split among them (so a change there is caught)."""
    path, x = tmp_path / "data.npy", _images(0, n=1000)

    def digest(values, storage):
        np.save(path, values)
        return load_array_file(path, storage=storage).digest()

    def changed(row):
        values = x.copy()
        values[row, 0, 0, 0] += 1
        return values

    np.save(path, x)
    rows = load_array_file(path, storage="mmap").rows  # the training split's file rows
    for storage, kind in (("memory", "sha256:"), ("mmap", "sampled-sha256:")):
        original = digest(x, storage)
        assert original.startswith(kind)
        assert digest(changed(rows[0]), storage) != original
        assert digest(changed(rows[-1]), storage) != original
        # between two sampled rows (900 rows, 256 read): only the full digest sees it
        assert (digest(changed(rows[1]), storage) != original) == (storage == "memory")
