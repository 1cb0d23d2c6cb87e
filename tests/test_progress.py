"""Progress wherever the output goes (issue 25, point 2): in a log file, one line at least
every 30 s with the step, samples/s, the loss and the ETA; on a terminal, tqdm's bar."""

import io

import torch

from wiseale.training import progress as progress_module
from wiseale.training.progress import Progress


class Clock:
    """Ten seconds a step."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_a_log_file_gets_a_line_every_30_seconds_and_at_the_epochs_end():
    log, clock = io.StringIO(), Clock()
    shown = Progress("vae epoch 1/2", total=7, initial=0, samples_per_step=64, enabled=True,
                     stream=log, clock=clock)
    for step in range(1, 8):
        clock.now += 10.0
        shown.update(step, torch.tensor(2.0 * step))
    shown.close()
    assert log.getvalue().splitlines() == [
        "vae epoch 1/2: step 3/7, 6 samples/s, loss 6, ETA 0m40s",
        "vae epoch 1/2: step 6/7, 6 samples/s, loss 12, ETA 0m10s",
        "vae epoch 1/2: step 7/7, 6 samples/s, loss 14, ETA 0m00s"]


def test_a_resumed_epoch_counts_its_rate_from_where_it_resumed_and_disabled_is_silent():
    log, clock = io.StringIO(), Clock()
    shown = Progress("e", total=100, initial=40, samples_per_step=10, enabled=True, stream=log,
                     clock=clock, every=30.0)
    clock.now = 30.0
    shown.update(70, None)  # 30 steps in 30 s
    assert log.getvalue() == "e: step 70/100, 10 samples/s, loss n/a, ETA 0m30s\n"
    quiet = io.StringIO()
    silent = Progress("e", 5, 0, 1, enabled=False, stream=quiet, clock=clock, every=0.0)
    silent.update(5, None)
    assert quiet.getvalue() == ""


def test_training_with_its_output_in_a_file_logs_progress_lines(tmp_path, tiny_sine, capsys,
                                                                monkeypatch):
    """stderr captured (not a terminal), a line every step (interval 0): 8 steps an epoch."""
    from wiseale.training import train

    monkeypatch.setattr(progress_module, "LOG_EVERY_SECONDS", 0.0)
    train(tiny_sine, tmp_path / "run", progress=True)
    lines = [line for line in capsys.readouterr().err.splitlines() if ": step " in line]
    assert len(lines) == 16 and lines[0].startswith("wise-ale epoch 1/2: step 1/8, ")
    assert lines[-1].startswith("wise-ale epoch 2/2: step 8/8, ") and "loss " in lines[-1]


def test_the_runs_time_is_estimated_after_its_first_steps_with_a_warning_when_long():
    log, clock = io.StringIO(), Clock()
    shown = Progress("e", total=100, initial=0, samples_per_step=1, enabled=True, stream=log,
                     clock=clock, later_steps=900, on_cpu=True)
    for step in range(1, 7):
        clock.now += 4.0  # 4 s a step: 995 steps left take more than an hour
        shown.update(step, None)
    lines = log.getvalue().splitlines()
    assert lines == ["wiseale: about 1h06m20s left for this run (4 s a step, 995 steps); "
                     "warning: a long run on the CPU: --device cuda trains on a GPU, and a "
                     "smaller network (--net), fewer --epochs or a smaller --n-train shorten it"]
    short = io.StringIO()
    quick = Progress("e", total=10, initial=0, samples_per_step=1, enabled=True, stream=short,
                     clock=clock, later_steps=0, on_cpu=True)
    for step in range(1, 7):
        clock.now += 0.5
        quick.update(step, None)
    assert short.getvalue() == "wiseale: about 0m02s left for this run (0.5 s a step, 5 steps)\n"
