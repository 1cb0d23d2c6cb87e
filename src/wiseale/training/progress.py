"""Progress of an epoch's steps wherever the output goes: tqdm's bar on a terminal; in a log
file or a batch job (stderr not a terminal), one line at least every ``every`` seconds with
the step, samples/s, the loss and the epoch's ETA."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

import torch
from tqdm import tqdm

LOG_EVERY_SECONDS = 30.0
ESTIMATE_AFTER_STEPS = 5  # steps timed before the run's estimate is written
LONG_CPU_RUN_SECONDS = 3600.0  # a CPU run estimated longer than this gets a warning


class Progress:
    """``update(step, loss)`` after each step (``step``: steps done of ``total``); the loss
    is read (a device sync) only when a line is written. ``enabled`` False: silent;
    ``every``: seconds between lines (default ``LOG_EVERY_SECONDS``). With ``later_steps``
    (the steps of the run after this epoch), the run's estimated time left is written once,
    after ``ESTIMATE_AFTER_STEPS`` steps, with a warning for a long run ``on_cpu``."""

    def __init__(self, desc: str, total: int, initial: int, samples_per_step: int,
                 enabled: bool, stream: TextIO | None = None,
                 every: float | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 later_steps: int | None = None, on_cpu: bool = False) -> None:
        self.desc, self.total, self.samples_per_step = desc, total, samples_per_step
        self.stream = stream or sys.stderr
        self.every = LOG_EVERY_SECONDS if every is None else every
        self.clock = clock
        self.bar = None
        self.logging = enabled and not self.stream.isatty()
        if enabled and not self.logging:
            self.bar = tqdm(total=total, initial=initial, desc=desc, leave=False,
                            mininterval=0.5, file=self.stream)
        self.started, self.first = clock(), initial
        self.last = self.started
        self.later_steps = later_steps if enabled else None
        self.on_cpu = on_cpu

    def update(self, step: int, loss: torch.Tensor | None) -> None:
        if self.later_steps is not None and step - self.first == ESTIMATE_AFTER_STEPS:
            self._estimate(step)
        if self.bar is not None:
            self.bar.update(1)
            return
        now = self.clock()
        if not self.logging or (now - self.last < self.every and step < self.total):
            return
        self.last = now
        rate = (step - self.first) / max(now - self.started, 1e-9)
        eta = (self.total - step) / rate if rate > 0 else float("inf")
        shown = "n/a" if loss is None else f"{float(loss):.4g}"
        self.stream.write(f"{self.desc}: step {step}/{self.total}, "
                          f"{rate * self.samples_per_step:.0f} samples/s, loss {shown}, "
                          f"ETA {_duration(eta)}\n")
        self.stream.flush()

    def _estimate(self, step: int) -> None:
        """One line with the run's estimated time left, from its first steps; on the CPU, a
        warning when that is more than an hour."""
        per_step = (self.clock() - self.started) / (step - self.first)
        left = per_step * (self.total - step + self.later_steps)
        line = (f"wiseale: about {_duration(left)} left for this run ({per_step:.3g} s a step, "
                f"{self.total - step + self.later_steps:,} steps)")
        if self.on_cpu and left > LONG_CPU_RUN_SECONDS:
            line += ("; warning: a long run on the CPU: --device cuda trains on a GPU, and a "
                     "smaller network (--net), fewer --epochs or a smaller --n-train shorten it")
        tqdm.write(line, file=self.stream)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _duration(seconds: float) -> str:
    if seconds == float("inf"):
        return "unknown"
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"
