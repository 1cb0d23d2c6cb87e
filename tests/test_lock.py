"""One writer per run directory (issue 17, point 1): a second writer is refused in one line
naming the holder; the lock dies with its process, SIGKILL included."""

import dataclasses
import os
import signal
import subprocess
import sys
import time

import pytest

from wiseale.errors import WisealeError
from wiseale.lock import LOCK, exclusive
from wiseale.training import train

HOLD = ("import sys, time; from pathlib import Path; from wiseale.lock import exclusive\n"
        "with exclusive(Path(sys.argv[1])):\n    print('held', flush=True); time.sleep(60)")


def _holder(directory):
    """A process holding the lock of ``directory`` (started, and holding, on return)."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(directory)], stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_writer_is_refused_then_admitted_after_a_sigkill(tmp_path, tiny_sine):
    run = tmp_path / "run"
    run.mkdir()
    holder = _holder(run)
    try:
        with pytest.raises(WisealeError, match=f"is being written by another wiseale process "
                           f"\\(PID {holder.pid}\\); wait for it to end"):
            train(tiny_sine, run, progress=False)
        assert sorted(p.name for p in run.iterdir()) == [LOCK]  # the refused run wrote nothing
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
    train(dataclasses.replace(tiny_sine, epochs=1), run, progress=False)  # the lock died with it
    assert (run / "model.safetensors").is_file()


def test_the_lock_is_exclusive_within_a_process_and_released_on_exit(tmp_path):
    with exclusive(tmp_path):
        with pytest.raises(WisealeError, match=f"PID {os.getpid()}"), exclusive(tmp_path):
            pass
    with exclusive(tmp_path):  # released by the first block's end
        assert (tmp_path / LOCK).read_text() == f"{os.getpid()}\n"


def test_a_writer_killed_while_holding_leaves_nothing_to_clean(tmp_path):
    holder = _holder(tmp_path)
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    start = time.monotonic()
    with exclusive(tmp_path):
        assert time.monotonic() - start < 5


def test_a_second_reproduce_into_the_same_folder_is_refused(tmp_path, capsys):
    from wiseale.cli import main

    holder = _holder(tmp_path)
    try:
        code = main(["reproduce", "prior-constraint", "--quick", "--out", str(tmp_path)])
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
    err = capsys.readouterr().err
    assert code == 1 and f"(PID {holder.pid})" in err and len(err.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == [LOCK]


def test_a_sampler_fit_is_refused_while_another_writer_holds_the_run(tmp_path):
    import torch
    from torch import nn

    from wiseale.likelihoods import FixedGaussian
    from wiseale.model import Autoencoder
    from wiseale.noises import FixedNoise
    from wiseale.samplers import run_mixture

    model = Autoencoder(nn.Identity(), FixedNoise(3, 2, 0.3), nn.Linear(2, 3), FixedGaussian(),
                        [])
    holder = _holder(tmp_path)
    try:
        with pytest.raises(WisealeError, match=f"PID {holder.pid}"):
            run_mixture(tmp_path, model, torch.randn(64, 3), components=2)
        assert sorted(p.name for p in tmp_path.iterdir()) == [LOCK]
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
    run_mixture(tmp_path, model, torch.randn(64, 3), components=2)
    assert (tmp_path / "mixture.safetensors").is_file()


@pytest.mark.parametrize("kind", ["symlink", "hard link", "fifo"])
def test_a_planted_lock_file_is_refused_and_its_target_untouched(tmp_path, kind):
    """writer.lock replaced by a symbolic or hard link to the user's file, or by a FIFO: the
    writer is refused in one line, the file keeps its bytes and the directory is unchanged."""
    run, victim = tmp_path / "run", tmp_path / "precious.txt"
    run.mkdir()
    victim.write_text("keep me\n")
    lock = run / LOCK
    {"symlink": lambda: lock.symlink_to(victim), "hard link": lambda: os.link(victim, lock),
     "fifo": lambda: os.mkfifo(lock)}[kind]()
    with pytest.raises(WisealeError, match=f"{LOCK} is (a link|not a plain file of its own)"
                       ".*; remove it") as info:
        with exclusive(run):
            pass
    assert "\n" not in str(info.value)
    assert victim.read_text() == "keep me\n"
    assert [p.name for p in run.iterdir()] == [LOCK]


def test_a_symlinked_lock_stops_train_before_it_writes(tmp_path, tiny_sine):
    from wiseale.cli import main

    run, victim = tmp_path / "run", tmp_path / "precious.txt"
    run.mkdir()
    victim.write_text("keep me\n")
    (run / LOCK).symlink_to(victim)
    assert main(["train", "--method", "aevb", "--data", "sine", "--n-train", "64",
                 "--epochs", "1", "--out", str(run), "--no-progress"]) == 1
    assert victim.read_text() == "keep me\n"
    assert [p.name for p in run.iterdir()] == [LOCK]
