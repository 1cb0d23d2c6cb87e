"""The figures of one run directory (``wiseale plot RUN_DIR``): its curves, reconstructions of
test samples and its latent space."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from wiseale.build import CUSTOM_NET, load_split
from wiseale.dataset_index import CLASS_NAMES
from wiseale.derived import RUN_FIGURES, WEIGHTS_DIGEST, run_weights, weights_digest
from wiseale.plots import (
    plot_latents,
    plot_run_history,
    plot_sample_grid,
    plot_signal_reconstructions,
    png_text,
)
from wiseale.storage import read_json
from wiseale.training.run import CONFIG

SHOWN, LATENT_N = 16, 2000  # samples reconstructed; test samples in the latent figure


def draw_run_figures(run_dir: Path, rows: list[dict]) -> list[Path]:
    """curves.png from the metrics ``rows``; once the run has finished (model.safetensors),
    reconstructions.png and latents.png from its model and test split. Each records the
    SHA-256 of the weights it was drawn from (none while the run trains) as PNG text, so
    that training removes the figures of former weights (derived.remove_stale)."""
    weights = run_weights(run_dir)  # read before the model: never newer than the figures
    drawn_from = {} if weights is None else {WEIGHTS_DIGEST: weights_digest(weights)}
    with png_text(drawn_from):
        return _draw(run_dir, rows, finished=weights is not None)


def _draw(run_dir: Path, rows: list[dict], finished: bool) -> list[Path]:
    from wiseale.training import load_run

    figures = [run_dir / RUN_FIGURES[0]]
    if not finished:
        plot_run_history(rows, figures[0], f"{run_dir.name} (running)")
        return figures
    model, config = load_run(run_dir) if _standard(run_dir) else (None, None)
    title = run_dir.name if config is None else f"{config.method} on {config.data}"
    plot_run_history(rows, figures[0], title)
    if model is None:  # your own networks: load the run from Python for these figures
        return figures
    test = load_split(config, "test")
    model.eval()
    with torch.no_grad():
        x = test.floats(slice(0, SHOWN))
        x_hat = model.reconstruct(x).numpy()
        codes = model.encode(test.floats(slice(0, LATENT_N)), sample=False).code.numpy()
    figures += [run_dir / name for name in RUN_FIGURES[1:]]
    if x.dim() == 4:
        pairs = np.stack([x.numpy(), x_hat], axis=1).reshape(-1, *x.shape[1:])
        plot_sample_grid(pairs, figures[1], f"{title}: test images (left) and their "
                         "reconstructions (right)", cols=8)
    else:
        plot_signal_reconstructions(x.numpy()[:8], {config.method: x_hat[:8]},
                                    [f"test {i}" for i in range(8)], figures[1])
    labels = None if test.y is None else test.y[:LATENT_N].numpy()
    plot_latents(codes, labels, figures[2], f"{title}: codes (posterior means) of {len(codes)} "
                 "test samples", CLASS_NAMES.get(config.data))
    return figures


def _standard(run_dir: Path) -> bool:
    """Whether the run used one of wiseale's networks (not your own)."""
    return read_json(run_dir / CONFIG).get("net") != CUSTOM_NET

