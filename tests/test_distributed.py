"""Data-parallel training (issue 6): 2 gloo processes on CPU give the loss and gradients of
one process on the concatenated batch, and torchrun runs `wiseale train`."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from wiseale.lock import exclusive
from wiseale.storage import load_tensors

HELPERS = Path(__file__).parent / "helpers"
sys.path.insert(0, str(HELPERS))

from ddp_setup import global_batch, model_and_noise  # noqa: E402


def _torchrun(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                           "--nproc-per-node", "2", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_two_processes_match_one_process_on_the_concatenated_batch(tmp_path):
    done = _torchrun(str(HELPERS / "ddp_step.py"), str(tmp_path), cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    ranks = [load_tensors(tmp_path / f"rank{r}.safetensors")[0] for r in (0, 1)]
    for rank in ranks:  # matched by name although rank 1 held its keys in the other order
        assert (float(rank.pop("mean_a")), float(rank.pop("mean_b"))) == (2.0, 20.0)
    real_randn_like = torch.randn_like
    try:
        x, eps = global_batch()
        model = model_and_noise(eps)
        output = model(x)
        output.loss.backward()
    finally:
        torch.randn_like = real_randn_like
    # the mean of the ranks' losses (local reconstruction + global regulariser) is the loss
    single = output.loss.item()
    assert (ranks[0]["loss"] + ranks[1]["loss"]).item() / 2 == pytest.approx(single, rel=1e-6)
    for name, p in model.named_parameters():
        for rank in ranks:  # DDP leaves the same averaged gradient on every rank
            assert torch.allclose(rank[name], p.grad, rtol=1e-4, atol=1e-6), name
    assert any(p.grad.abs().sum() > 0 for p in model.noise.parameters())


def test_torchrun_trains_wise_ale_into_one_run_directory(tmp_path):
    done = _torchrun("-m", "wiseale", "train", "--method", "wise-ale", "--data", "sine",
                     "--n-train", "256", "--n-test", "64", "--epochs", "2", "--batch-size",
                     "32", "--out", str(tmp_path / "run"), "--no-progress", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = [json.loads(r) for r in (tmp_path / "run/metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]
    assert (tmp_path / "run/model.safetensors").exists()
    assert (tmp_path / "run/evaluation.json").exists()


def test_a_failure_on_rank_0_stops_every_process_with_its_message(tmp_path):
    """Rank 0 alone prepares the run directory: when another writer holds it, every process
    stops with rank 0's message instead of waiting for rank 0 at the next collective."""
    run = tmp_path / "run"
    run.mkdir()
    with exclusive(run):
        done = _torchrun("-m", "wiseale", "train", "--method", "aevb", "--data", "sine",
                         "--n-train", "256", "--n-test", "64", "--epochs", "1", "--out",
                         str(run), "--no-progress", cwd=tmp_path)
    assert done.returncode != 0
    held = f"is being written by another wiseale process (PID {os.getpid()})"
    assert done.stderr.count(held) == 2, done.stderr[-3000:]
    assert "wiseale: error: rank 0 stopped: " in done.stderr


def test_discriminator_methods_are_refused_under_torchrun(tmp_path):
    done = _torchrun("-m", "wiseale", "train", "--method", "factorvae", "--data", "sine",
                     "--n-train", "256", "--n-test", "64", "--epochs", "1", "--out",
                     str(tmp_path / "run"), "--no-progress", cwd=tmp_path)
    assert done.returncode != 0 and "train in one process only" in done.stderr


def test_torchrun_stopped_mid_epoch_resumes_every_rank_exactly(tmp_path):
    """SIGTERM to torchrun in the middle of epoch 2 (and a second one to rank 0, as from a
    scheduler that signals every process): both processes stop at the same batch,
    rank 0 saves each rank's random state and partial sums, a resume without torchrun is
    refused, and `torchrun ... --resume` ends with the weights and the metrics of the
    uninterrupted 2-process run (issue 17)."""
    args = ["train", "--method", "wise-ale", "--data", "sine", "--n-train", "4096",
            "--n-test", "64", "--epochs", "3", "--batch-size", "32", "--no-progress"]
    straight = _torchrun("-m", "wiseale", *args, "--out", str(tmp_path / "straight"),
                         cwd=tmp_path)
    assert straight.returncode == 0, straight.stderr[-2000:]
    run = tmp_path / "run"
    os.environ["SIGNAL_AT_STEP"] = "20"  # of 64 batches an epoch: stops after batch 21
    try:
        stopped = _torchrun(str(HELPERS / "ddp_signal_parent.py"), *args, "--out", str(run),
                            cwd=tmp_path)
    finally:
        del os.environ["SIGNAL_AT_STEP"]
    assert stopped.returncode != 0
    assert stopped.stderr.count("wiseale: SIGTERM: stopped with the checkpoint at epoch 2, "
                                "batch ") == 2, stopped.stderr[-3000:]  # one a process
    meta = load_tensors(run / "checkpoint.safetensors")[1]
    assert (meta["epoch"], meta["step"], meta["ranks"]) == (1, 21, 2), meta
    alone = subprocess.run([sys.executable, "-m", "wiseale", *args, "--out", str(run),
                            "--resume"], capture_output=True, text=True, timeout=300,
                           env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert alone.returncode == 1 and "resume it with torchrun --nproc-per-node 2" in \
        alone.stderr, alone.stderr
    resumed = _torchrun("-m", "wiseale", *args, "--out", str(run), "--resume", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    for name in ("model.safetensors",):
        ours, theirs = (load_tensors(d / name)[0] for d in (run, tmp_path / "straight"))
        assert all(torch.equal(ours[k], theirs[k]) for k in theirs)
    rows = [[{k: v for k, v in json.loads(line).items() if k != "samples_per_s"}
             for line in (d / "metrics.jsonl").read_text().splitlines()]
            for d in (run, tmp_path / "straight")]
    assert rows[0] == rows[1] and [r["epoch"] for r in rows[0]] == [1, 2, 3]
