"""Callbacks for experiment trackers (TensorBoard here; wandb, MLflow and the like in a few
lines, docs/python.md), on the hooks of :class:`wiseale.hooks.Callback`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from wiseale.extras import require
from wiseale.hooks import Callback

if TYPE_CHECKING:
    from wiseale.config import RunConfig
    from wiseale.model import Autoencoder


class TensorBoard(Callback):
    """Writes a run to TensorBoard event files in ``log_dir``: every epoch's scalars (train/...
    and test/...), the loss every ``every`` steps, the first ``shown`` evaluation samples beside
    their reconstructions and as many prior samples (images, or curves for 1-D signals), and a
    histogram of each latent dimension's posterior means. Everything is logged against one
    axis, the optimiser steps done (an epoch's scalars at its last step, the final
    evaluation's at the run's), and images as one grid, inputs above their reconstructions,
    each pixel drawn 2 x 2 (``ZOOM``). ``log_dir`` None: the run directory's
    ``tensorboard/``."""

    ZOOM = 2

    def __init__(self, log_dir: str | Path | None = None, every: int = 50, shown: int = 8):
        require("tensorboard", "logging to TensorBoard")
        from torch.utils.tensorboard import SummaryWriter

        self.make_writer, self.log_dir = SummaryWriter, log_dir
        self.every, self.shown = every, shown
        self.steps_done = 0

    def on_train_start(self, config: RunConfig, out: Path, first_epoch: int) -> None:
        """Opens the event files in ``log_dir`` (default: the run's ``tensorboard/``)."""
        self.writer = self.make_writer(str(self.log_dir or out / "tensorboard"))
        self.writer.add_text("config", f"```\n{config.to_dict()}\n```", first_epoch)

    def on_step_end(self, step: int, parts: dict[str, torch.Tensor]) -> None:
        self.steps_done = step + 1
        if step % self.every == 0:
            self.writer.add_scalar("step/loss", float(parts["loss"]), self.steps_done)

    def on_epoch_end(self, epoch: int, row: dict[str, Any], model: Autoencoder,
                     x_eval: torch.Tensor) -> None:
        for key, value in row.items():
            if isinstance(value, (int, float)) and key != "epoch":
                tag = f"test/{key[5:]}" if key.startswith("test_") else f"train/{key}"
                self.writer.add_scalar(tag, value, self.steps_done)
        x = x_eval[:self.shown]
        with torch.no_grad():
            was_training = model.training
            model.eval()
            x_hat = model.reconstruct(x)
            prior = model.sample(len(x), torch.Generator().manual_seed(0))
            means = model.encode(x_eval, sample=False).mu
            model.train(was_training)
        self._samples("reconstructions", torch.cat([x, x_hat]).cpu(), len(x))
        self._samples("prior_samples", prior.cpu(), len(x))
        for dim in range(means.shape[1]):
            self.writer.add_histogram(f"latent/mu_{dim}", means[:, dim].cpu(), self.steps_done)
        self.writer.flush()

    def _samples(self, tag: str, x: torch.Tensor, columns: int) -> None:
        """Images (N x C x H x W in [0, 1]) as one grid of ``columns``; other samples as
        curves."""
        if x.dim() == 4 and x.shape[1] in (1, 3):
            from wiseale.plots import tile

            grid = torch.from_numpy(tile(x.clamp(0, 1).numpy(), columns)).permute(2, 0, 1)
            self.writer.add_image(tag, grid.repeat_interleave(self.ZOOM, 1)
                                  .repeat_interleave(self.ZOOM, 2), self.steps_done)
            return
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        figure, axis = plt.subplots(figsize=(6, 3))
        for row in x.flatten(1).numpy():
            axis.plot(row, linewidth=0.8)
        axis.set_xlabel("dimension")
        axis.set_ylabel("value")
        self.writer.add_figure(tag, figure, self.steps_done)  # closes the figure

    def on_train_end(self, model: Autoencoder, evaluation: dict[str, Any] | None) -> None:
        for split, metrics in (evaluation or {}).items():
            for key, value in metrics.items():
                if isinstance(value, (int, float)):
                    self.writer.add_scalar(f"final_{split}/{key}", value, self.steps_done)
        self.writer.close()
