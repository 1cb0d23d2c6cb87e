"""Exact resume: killed (SIGKILL) or stopped (SIGINT / SIGTERM) runs, resumed with --resume,
end with the weights of an uninterrupted run and log every epoch once."""

import dataclasses
import functools
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from wiseale.cli import main
from wiseale.errors import WisealeError
from wiseale.model import Autoencoder
from wiseale.storage import load_tensors
from wiseale.training import train
from wiseale.training.distributed import World
from wiseale.training.interrupts import Interrupted, StopSignals

# 64 steps an epoch (about 0.3 s with one thread): the kills 0.1 s after a checkpoint land
# inside the next epoch, not after the run
ARGS = ["train", "--method", "wise-ale", "--data", "sine", "--n-train", "2048", "--n-test",
        "64", "--epochs", "5", "--batch-size", "32", "--no-progress"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """The weights of the uninterrupted CLI run (the same process settings as the others)."""
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("straight") / "run"
    assert main([*ARGS, "--out", str(out)]) == 0
    return load_tensors(out / "model.safetensors")[0]


def _same_run(run_dir, weights, epochs=5):
    final = load_tensors(run_dir / "model.safetensors")[0]
    assert final.keys() == weights.keys()
    assert all(torch.equal(final[k], weights[k]) for k in weights)
    rows = (run_dir / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(r)["epoch"] for r in rows] == list(range(1, epochs + 1))
    assert not list(run_dir.glob(".*"))  # no temporary file left behind


def _start(out, resume=False):
    return subprocess.Popen([sys.executable, "-m", "wiseale", *ARGS, "--out", str(out),
                             *(["--resume"] if resume else [])], env=ENV,
                            stderr=subprocess.PIPE, text=True)


def _wait_for(condition, proc, timeout=120.0):
    deadline = time.time() + timeout
    while not condition():
        assert proc.poll() is None, "the run ended before the point to kill it at"
        assert time.time() < deadline, "timed out"
        time.sleep(0.005)


def _epochs_logged(run_dir):
    path = run_dir / "metrics.jsonl"
    return len(path.read_text().splitlines()) if path.exists() else 0


def _interrupt(proc, sig=signal.SIGKILL):
    proc.send_signal(sig)
    return proc.wait()


def test_killed_and_stopped_runs_resume_exactly(tmp_path, straight):
    """One run killed with SIGKILL as its first checkpoint appears and between writing an
    epoch's metrics and its checkpoint, stopped with SIGTERM and killed again mid-epoch,
    each time resumed with --resume, ends as the uninterrupted run."""
    run_dir = tmp_path / "run"
    checkpoint = run_dir / "checkpoint.safetensors"
    points = [(lambda _: checkpoint.exists(), 0, signal.SIGKILL),
              (lambda _: _epochs_logged(run_dir) >= 2, 0, signal.SIGKILL),
              (lambda old: checkpoint.stat().st_ino != old, 0.1, signal.SIGTERM),
              (lambda old: checkpoint.stat().st_ino != old, 0.1, signal.SIGKILL)]
    for i, (point, delay, sig) in enumerate(points):
        old = checkpoint.stat().st_ino if i else None
        proc = _start(run_dir, resume=i > 0)
        _wait_for(functools.partial(point, old), proc)  # new checkpoint: the loop runs
        time.sleep(delay)  # into the next epoch
        code = _interrupt(proc, sig)
        load_tensors(run_dir / "checkpoint.safetensors")  # never torn
        if sig == signal.SIGTERM:
            assert code == 143
            err = proc.stderr.read().strip()
            assert err.startswith("wiseale: SIGTERM: stopped with the checkpoint") and \
                "\n" not in err and "--resume" in err
    proc = _start(run_dir, resume=True)
    assert proc.wait() == 0, proc.stderr.read()
    _same_run(run_dir, straight)


def _signal_at(monkeypatch, call, *signals):
    """Make the ``call``-th training forward pass send ``signals`` to this process."""
    real_forward, calls = Autoencoder.forward, {"n": 0}

    def forward(self, x, *args):
        calls["n"] += 1
        if calls["n"] == call:
            for sig in signals:
                os.kill(os.getpid(), sig)
        return real_forward(self, x, *args)

    monkeypatch.setattr(Autoencoder, "forward", forward)
    return real_forward


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_mid_epoch_saves_the_position_and_resumes_exactly(tmp_path, tiny_sine,
                                                                 monkeypatch, sig):
    config = dataclasses.replace(tiny_sine, epochs=3)
    train(config, tmp_path / "straight", progress=False)
    real_forward = _signal_at(monkeypatch, 11, sig)  # epoch 2 (8 batches each), batch 2
    before = signal.getsignal(sig)
    with pytest.raises(Interrupted, match="at epoch 2, batch 3") as info:
        train(config, tmp_path / "run", progress=False)
    assert info.value.signum == sig
    assert signal.getsignal(sig) is before  # the handler given back
    meta = load_tensors(tmp_path / "run/checkpoint.safetensors")[1]
    assert (meta["epoch"], meta["step"]) == (1, 3)
    monkeypatch.setattr(Autoencoder, "forward", real_forward)
    train(config, tmp_path / "run", resume=True, progress=False)
    _same_run(tmp_path / "run", load_tensors(tmp_path / "straight/model.safetensors")[0], 3)


def test_a_second_signal_interrupts_at_once(tmp_path, tiny_sine, monkeypatch):
    _signal_at(monkeypatch, 11, signal.SIGINT, signal.SIGINT)
    with pytest.raises(KeyboardInterrupt) as info:
        train(dataclasses.replace(tiny_sine, epochs=3), tmp_path / "run", progress=False)
    assert not isinstance(info.value, Interrupted)
    meta = load_tensors(tmp_path / "run/checkpoint.safetensors")[1]
    assert (meta["epoch"], meta["step"]) == (1, 0)  # the last epoch's checkpoint


def test_under_torchrun_a_repeated_signal_keeps_the_orderly_stop():
    """A scheduler may signal every process and torchrun pass the signal on again: under
    torchrun the second one must not skip the checkpoint (one process: it stops at once)."""
    try:
        with StopSignals(World(rank=1, size=2)) as signals:
            for sig in (signal.SIGTERM, signal.SIGTERM, signal.SIGINT):
                os.kill(os.getpid(), sig)
            time.sleep(0.05)  # the handlers run at the next bytecode
    except KeyboardInterrupt:
        pytest.fail("a repeated signal under torchrun stopped at once")
    assert signals.signum == signal.SIGTERM
    with pytest.raises(KeyboardInterrupt), StopSignals() as signals:
        for sig in (signal.SIGTERM, signal.SIGTERM):
            os.kill(os.getpid(), sig)
        time.sleep(0.05)


def test_mid_epoch_checkpoint_needs_enough_epochs(tmp_path, tiny_sine, monkeypatch):
    _signal_at(monkeypatch, 11, signal.SIGTERM)
    with pytest.raises(Interrupted):
        train(dataclasses.replace(tiny_sine, epochs=3), tmp_path / "run", progress=False)
    with pytest.raises(WisealeError, match="trained 1 epochs and part of the next; --epochs "
                       "must be at least 2"):
        train(dataclasses.replace(tiny_sine, epochs=1), tmp_path / "run", resume=True,
              progress=False)


def test_a_resume_with_another_learning_rate_is_refused(tmp_path, tiny_sine):
    """The learning rate is part of the run (its schedule, Adam's steps): a resume with another
    --lr would not give the uninterrupted run's weights, so it is refused before any epoch."""
    train(dataclasses.replace(tiny_sine, epochs=1), tmp_path / "run", progress=False)
    before = (tmp_path / "run/checkpoint.safetensors").read_bytes()
    with pytest.raises(WisealeError, match=r"other settings \(lr\)"):
        train(dataclasses.replace(tiny_sine, epochs=2, lr=2e-3), tmp_path / "run", resume=True,
              progress=False)
    assert (tmp_path / "run/checkpoint.safetensors").read_bytes() == before
    assert len((tmp_path / "run/metrics.jsonl").read_text().splitlines()) == 1


def test_chaos_kills_at_random_moments_then_resume_bit_for_bit(tmp_path, straight):
    """SIGKILL at seeded random moments inside epochs (after an epoch is logged, 0-0.3 s on:
    steps, the metrics write, the checkpoint write), then as model.safetensors appears (the
    final save, before evaluation.json); each time resumed; the run ends as the uninterrupted
    one, every epoch logged once, no temporary file, a complete evaluation.json."""
    import random

    rng = random.Random(17)
    run_dir = tmp_path / "run"
    logged = []  # epochs in metrics.jsonl at each kill
    for attempt in range(2):
        proc = _start(run_dir, resume=attempt > 0)
        before = _epochs_logged(run_dir)
        _wait_for(lambda: _epochs_logged(run_dir) > before, proc)  # noqa: B023
        time.sleep(rng.uniform(0.0, 0.3))
        _interrupt(proc)
        logged.append(_epochs_logged(run_dir))
    proc = _start(run_dir, resume=True)
    _wait_for((run_dir / "model.safetensors").exists, proc)
    _interrupt(proc)
    assert 0 < logged[0] <= logged[1] < 5, logged
    proc = _start(run_dir, resume=True)
    assert proc.wait() == 0, proc.stderr.read()
    _same_run(run_dir, straight)
    evaluation = json.loads((run_dir / "evaluation.json").read_text())
    assert set(evaluation) == {"train", "test"} and evaluation["test"]["recon_error"] > 0
