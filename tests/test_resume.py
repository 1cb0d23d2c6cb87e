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
from wiseale.methods import METHODS
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
        assert proc.poll() is None, \
            f"the run ended before the point to kill it at: {proc.stderr.read()}"
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
    with pytest.raises(WisealeError, match="trained 1 epochs and part of the next; epochs "
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


def _method_args(method):
    """A tiny run of ``method`` from the CLI (the pixel-wise variance needs 28x28 images)."""
    data = (["--data", "fashion-mnist", "--net", "lv-mnist", "-o", "stage1_epochs=1"]
            if method == "lv-vae-pixel" else ["--data", "sine"])
    return ["train", "--method", method, *data, "--n-train", "64", "--n-test", "32",
            "--eval-size", "32", "--batch-size", "16", "--latent-dim", "3", "--no-progress"]


@pytest.mark.filterwarnings("ignore:.*ends within stage 1")
@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_method_is_interrupted_resumed_and_extended_from_the_cli(tmp_path, method,
                                                                       monkeypatch):
    """Stopped by SIGINT mid-epoch, resumed with --resume (settings from the run directory
    only) and extended by --resume --epochs 2: the weights of a straight 2-epoch run. A
    setting a method derives from the run (VCAE's v = d_z) is saved as its value, so the
    same value given again is the same run."""
    args = _method_args(method)
    assert main([*args, "--epochs", "2", "--out", str(tmp_path / "straight")]) == 0
    run = str(tmp_path / "run")
    real_forward = _signal_at(monkeypatch, 2, signal.SIGINT)  # epoch 1 of 4 batches
    with pytest.raises(SystemExit) as stopped:
        main([*args, "--epochs", "1", "--out", run])
    assert stopped.value.code == 128 + signal.SIGINT
    monkeypatch.setattr(Autoencoder, "forward", real_forward)
    assert main(["train", "--resume", "--out", run, "--no-progress"]) == 0
    again = ["-o", "v=3"] if "v" in METHODS[method].defaults else []
    assert main(["train", "--resume", "--out", run, "--epochs", "2", *again,
                 "--no-progress"]) == 0
    _same_run(tmp_path / "run", load_tensors(tmp_path / "straight/model.safetensors")[0], 2)


def test_a_run_saved_with_v_none_resumes_and_extends(tmp_path):
    """Runs saved before the derived defaults were resolved hold VCAE's v as null (meaning
    d_z): they resume and extend, and the same value given again is accepted."""
    from wiseale.storage import save_tensors

    args = _method_args("vcae")
    run = tmp_path / "run"
    assert main([*args, "--epochs", "1", "--out", str(run)]) == 0
    for name in ("checkpoint.safetensors", "model.safetensors"):
        tensors, meta = load_tensors(run / name)
        meta["config"]["options"]["v"] = None
        save_tensors(run / name, tensors, meta)
    config = json.loads((run / "config.json").read_text())
    config["options"]["v"] = None
    (run / "config.json").write_text(json.dumps(config))
    assert main(["train", "--resume", "--out", str(run), "--epochs", "2", "-o", "v=3",
                 "--no-progress"]) == 0
    assert json.loads((run / "config.json").read_text())["options"]["v"] == 3.0


# A run that SIGKILLs itself when it is about to commit its write number K (0-based): the
# temporary file of that write is left half written, as a kill before its rename leaves it.
KILL_AT_WRITE = """
import os, signal, sys
import wiseale.storage as storage
real, done, kill_at = storage.atomic_write_bytes, [], int(sys.argv[1])
def write(path, data):
    if len(done) == kill_at:
        (path.parent / f".{path.name}.killed{storage.TEMPORARY}").write_bytes(data[:9])
        os.kill(os.getpid(), signal.SIGKILL)
    real(path, data)
    done.append(path.name)
    print(path.name, file=sys.stderr, flush=True)
storage.atomic_write_bytes = write
from wiseale.cli import main
sys.exit(main(sys.argv[2:]))
"""
WRITES = ["metrics.jsonl", "checkpoint.safetensors", "config.json"] * 2 + [
    "model.safetensors", "evaluation.json"]  # two epochs, then the results


def test_a_kill_between_any_two_writes_leaves_a_run_that_resumes_or_restarts(tmp_path):
    """SIGKILL just before each write of a 2-epoch run commits: --resume continues it from
    the settings its checkpoint saved (config.json may be missing or older) or, before the
    first checkpoint, says to start again, which then works; every way ends as the
    uninterrupted run."""
    args = [*_method_args("vcae"), "--epochs", "2"]
    straight = tmp_path / "straight"
    proc = subprocess.run([sys.executable, "-c", KILL_AT_WRITE, "99", *args, "--out",
                           str(straight)], env=ENV, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.split() == WRITES, proc.stderr  # the writes this test kills between
    weights = load_tensors(straight / "model.safetensors")[0]
    for k in range(len(WRITES)):
        run = tmp_path / f"killed-{k}"
        proc = subprocess.run([sys.executable, "-c", KILL_AT_WRITE, str(k), *args, "--out",
                               str(run)], env=ENV, capture_output=True, text=True)
        assert proc.returncode == -signal.SIGKILL, proc.stderr
        resume = ["train", "--resume", "--out", str(run), "--no-progress"]
        if (run / "checkpoint.safetensors").exists():
            assert main([*args, "--out", str(run)]) == 1  # "already holds a run"
            assert main(resume) == 0, k
        else:
            assert k <= WRITES.index("checkpoint.safetensors"), k
            assert main(resume) == 1  # nothing to resume: start it again
            assert main([*args, "--out", str(run)]) == 0, k
        _same_run(run, weights, 2)


def test_a_reader_during_an_extension_sees_the_finished_run(tmp_path, tiny_sine):
    """load_run while a resume extends a finished run, after the extension's first checkpoint
    rewrote config.json: the old, complete model and its config (it was refused as a
    modified run directory)."""
    from wiseale.training import Callback, load_run

    run = tmp_path / "run"
    config = dataclasses.replace(tiny_sine, epochs=1)
    train(config, run, progress=False)
    finished = load_tensors(run / "model.safetensors")[0]
    seen = []

    class Reader(Callback):
        def on_step_end(self, step, parts):
            if step == 16:  # epoch 3, after epoch 2's checkpoint
                seen.append(load_run(run))

    train(dataclasses.replace(config, epochs=3), run, resume=True, progress=False,
          callbacks=[Reader()])
    (model, read), = seen
    assert read.epochs == 1
    assert all(torch.equal(model.state_dict()[k], v) for k, v in finished.items())


@pytest.fixture
def kernel_spy(monkeypatch):
    """The aggregate-KL kernel of every training step (evaluations, without gradients, are
    left out), with a compile that pays from 12 steps on and that works (no real compile: the
    eager kernel computes every step)."""
    import wiseale.functional as functional
    import wiseale.pairwise as pairwise
    import wiseale.pairwise_native as pairwise_native

    monkeypatch.delenv(pairwise.COMPILE_ENV, raising=False)
    monkeypatch.setattr(pairwise, "COMPILE_MIN_ELEMENTS", 1)
    monkeypatch.setattr(pairwise, "compile_pays", lambda m, d, calls, backward=True:
                        calls >= 12)
    monkeypatch.setattr(pairwise, "compiles", lambda *args: True)
    monkeypatch.setattr(pairwise_native, "available", lambda: False)  # compiled or eager
    real, used = functional.aggregate_kl_upper_bound, []

    def spy(mu, logvar, kernel="auto"):
        if mu.requires_grad:
            used.append(kernel)
        return real(mu, logvar, kernel="eager")

    monkeypatch.setattr(functional, "aggregate_kl_upper_bound", spy)
    return used


def test_a_resumed_run_keeps_the_kernel_it_started_with(tmp_path, tiny_sine, kernel_spy,
                                                        monkeypatch):
    """A 1-epoch run (8 steps: the compile does not pay) extended to 3 epochs (24 steps: it
    would) goes on with the eager kernel it started with; one that started compiled and is
    resumed where the compiler fails says so and goes on eager."""
    import wiseale.pairwise as pairwise

    run = tmp_path / "run"
    train(dataclasses.replace(tiny_sine, epochs=1), run, progress=False)
    train(dataclasses.replace(tiny_sine, epochs=3), run, resume=True, progress=False)
    assert kernel_spy == ["eager"] * 24
    assert load_tensors(run / "checkpoint.safetensors")[1]["kernels"] == {
        "train": "eager", "eval": "eager"}
    kernel_spy.clear()
    train(dataclasses.replace(tiny_sine, epochs=2), tmp_path / "long", progress=False)
    assert kernel_spy == ["compiled"] * 16
    monkeypatch.setattr(pairwise, "compiles", lambda *args: False)
    with pytest.warns(RuntimeWarning, match="used the compiled aggregate-KL kernel, which does "
                                            "not run here"):
        train(dataclasses.replace(tiny_sine, epochs=3), tmp_path / "long", resume=True,
              progress=False)
    assert kernel_spy[16:] == ["eager"] * 8


def test_a_run_started_native_and_resumed_without_it_goes_on_eager(tmp_path, tiny_sine,
                                                                   monkeypatch):
    """The native kernel is saved as the run's choice; resumed where it was not built (another
    install), the run says so and goes on with the eager kernel."""
    import wiseale.pairwise_native as pairwise_native

    run = tmp_path / "run"
    train(dataclasses.replace(tiny_sine, epochs=1), run, progress=False)
    assert load_tensors(run / "checkpoint.safetensors")[1]["kernels"] == {
        "train": "native", "eval": "native"}
    monkeypatch.setattr(pairwise_native, "available", lambda: False)
    with pytest.warns(RuntimeWarning, match="used the native aggregate-KL kernel, which does "
                                            "not run here"):
        model = train(dataclasses.replace(tiny_sine, epochs=2), run, resume=True,
                      progress=False)
    assert [term.pairwise_kernel for term in model.regularizers] == ["eager"]
