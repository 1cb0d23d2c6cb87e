"""The hooks of a training run, one protocol for a user's callbacks and for the parts of a
model that need the loop.

``train(..., callbacks=[...])`` calls a user's callbacks on the main process: at the start
(``setup``, then ``on_train_start``), after every optimiser step, at the end of every epoch
(with the row written to metrics.jsonl) and at the end (with evaluation.json's contents). A
model's parts that are callbacks have their ``setup``, ``on_step_end`` and ``on_epoch_end``
called first, on every process: the aggregate KL chooses the kernel of the run's steps
(compiled where the compile pays, kept on resume); the TC discriminator takes its own
optimiser step after each of the autoencoder's and logs its loss in the step's parts; a
likelihood that learns or sets its variance (004's two-stage pixel-wise model among them)
adds its values to the epoch's row (the learned sigma^2, the stage of 004 Alg. 1) before it
is written.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from wiseale.config import RunConfig
    from wiseale.model import Autoencoder
    from wiseale.training.run import Run

__all__ = ["Callback"]


class Callback:
    """The hooks of a run; each does nothing unless overridden."""

    def setup(self, run: Run) -> None:
        """Before ``on_train_start``, with the run being trained
        (wiseale.training.run.Run: its config, device, processes, optimiser steps and the
        choices it keeps across resumes, ``Run.keep``): the aggregate KL chooses its kernel
        here."""

    def on_train_start(self, config: RunConfig, out: Path, first_epoch: int) -> None:
        """Before the first step (``first_epoch`` > 0 when the run resumes)."""

    def on_step_end(self, step: int, parts: dict[str, torch.Tensor]) -> None:
        """After optimiser step ``step`` (counted over the whole run, from 0); ``parts`` are the
        loss and its named parts, detached tensors (read them sparingly: a read waits for
        the device)."""

    def on_epoch_end(self, epoch: int, row: dict[str, Any], model: Autoencoder,
                     x_eval: torch.Tensor) -> None:
        """After epoch ``epoch`` (from 1): its metrics.jsonl ``row``, the model and the
        evaluation samples."""

    def on_train_end(self, model: Autoencoder, evaluation: dict[str, Any] | None) -> None:
        """After evaluation.json is written (its contents; None with final_eval="none")."""
