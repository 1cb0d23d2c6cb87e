"""The figures of the reports, written atomically as PNG."""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from wiseale.storage import atomic_write_bytes  # noqa: E402


def save_figure(fig: plt.Figure, path: Path) -> None:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())


def plot_signal_reconstructions(x: np.ndarray, recons: dict[str, np.ndarray],
                                titles: list[str], path: Path) -> None:
    """001 Fig. 5a: one column per signal, one row per method; input dashed, output solid."""
    rows, cols = len(recons), len(x)
    fig, axes = plt.subplots(rows, cols, figsize=(2.2 * cols, 1.6 * rows), sharex=True,
                             sharey=True, squeeze=False)
    for r, (method, x_hat) in enumerate(recons.items()):
        for c in range(cols):
            ax = axes[r, c]
            ax.plot(x[c].ravel(), "k--", lw=0.8, label="input")
            ax.plot(x_hat[c].ravel(), "C3", lw=1.0, label="reconstruction")
            ax.set_xticks([])
            if r == 0:
                ax.set_title(titles[c], fontsize=8)
            if c == 0:
                ax.set_ylabel(method, fontsize=9)
    axes[0, 0].legend(fontsize=6, loc="lower left")
    save_figure(fig, path)


def plot_curves(histories: dict[str, list[dict]], keys: list[tuple[str, str]],
                path: Path) -> None:
    """001 Fig. 6: one panel per (metric key, label), one line per method, over epochs."""
    fig, axes = plt.subplots(1, len(keys), figsize=(4 * len(keys), 3), squeeze=False)
    for ax, (key, label) in zip(axes[0], keys, strict=True):
        for method, rows in histories.items():
            points = [(row["epoch"], row[key]) for row in rows if row.get(key) is not None]
            if points:
                ax.plot(*zip(*points, strict=True), marker=".", label=method)
        ax.set_xlabel("epoch")
        ax.set_title(label, fontsize=10)
    axes[0, 0].legend(fontsize=8)
    save_figure(fig, path)
