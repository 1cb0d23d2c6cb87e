"""Non-finite guards (docs/reliability.md, "Numerical bounds"): a non-finite loss stops the
run or skips its batch (``--on-nonfinite``); non-finite weights are never checkpointed."""

from __future__ import annotations

import math

import torch

from wiseale.errors import WisealeError
from wiseale.training.distributed import World, reduce_min
from wiseale.training.run import Run


class FiniteWatch:
    """Watches the step losses of an epoch for a non-finite value. On the CPU each step is
    checked at once (one read of the loss, which waits for nothing there; a bad step is not
    applied); on a GPU the first bad step's index is kept on the device and read once at the
    end of the epoch, so that no step waits for the host (``lazy``; that epoch's weights are
    then not saved). Across processes the verdict is shared, so all stop (or skip)
    together."""

    def __init__(self, device: torch.device, world: World, lazy: bool | None = None) -> None:
        self.lazy = device.type == "cuda" if lazy is None else lazy
        self.world = world
        self.bad = torch.full((), -1, dtype=torch.long, device=device)  # lazy: on the device
        self.seen: int | None = None  # not lazy: the first bad step, read at once

    def update(self, loss: torch.Tensor, step: int) -> None:
        if self.lazy:
            finite = torch.isfinite(loss.detach())
            self.bad = torch.where((self.bad < 0) & ~finite, step, self.bad)
        elif self.seen is None and not math.isfinite(loss.item()):
            self.seen = step

    def clear(self) -> None:
        """Forget the bad step seen (after it was skipped)."""
        self.bad, self.seen = torch.full_like(self.bad, -1), None

    def first_bad(self) -> int | None:
        if not self.lazy and not self.world.distributed:
            return self.seen
        bad = self.bad if self.lazy else torch.full_like(self.bad, -1 if self.seen is None
                                                         else self.seen)
        if self.world.distributed:
            bad = torch.where(bad < 0, torch.iinfo(torch.long).max, bad)
            reduce_min(bad)
            bad = torch.where(bad == torch.iinfo(torch.long).max, -1, bad)
        value = int(bad)
        return None if value < 0 else value


def check_watch(run: Run, watch: FiniteWatch, epoch: int) -> None:
    bad = watch.first_bad()
    if bad is not None:
        stop_non_finite(run, epoch, bad)


def stop_non_finite(run: Run, epoch: int, step: int) -> None:
    raise WisealeError(f"non-finite loss at epoch {epoch + 1}, batch {step}; {run.kept()}; "
                       "lower --lr, check the data or add --on-nonfinite skip")


def check_finite_weights(run: Run, where: str) -> None:
    """Refuse to save non-finite weights (a finite loss can still have an infinite
    gradient) before the checkpoint ``where``: the previous one stays the last good one."""
    params = dict(run.model.named_parameters())
    if bool(torch.stack([torch.isfinite(p).all() for p in params.values()]).all()):
        return
    name = next(k for k, p in params.items() if not bool(torch.isfinite(p).all()))
    raise WisealeError(f"non-finite weights ({name}) before the checkpoint {where}; "
                       f"{run.kept()}; lower --lr or check the data")
