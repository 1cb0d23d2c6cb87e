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


def _mixture_density(grid: np.ndarray, mu: np.ndarray, var: np.ndarray) -> np.ndarray:
    """Density of 1/N sum_i N(mu_i, diag var_i) at points grid [G, 2]."""
    diff = grid[:, None, :] - mu[None]
    log_comp = -0.5 * (np.log(2 * np.pi * var)[None] + diff**2 / var[None]).sum(-1)
    return np.exp(log_comp).mean(1)


def plot_embeddings(panels: dict[str, tuple[np.ndarray, np.ndarray | None]],
                    labels: np.ndarray, path: Path, resolution: int = 200) -> None:
    """001 Fig. 1: per method, the 2-D posteriors of the same test images as 1- and 2-sigma
    ellipses coloured by class, over the density of their aggregate posterior (grey); a
    deterministic encoder (log-variances None) shows points. Same axes for every panel."""
    from matplotlib.colors import PowerNorm
    from matplotlib.patches import Ellipse

    extent = max(3.0, *(np.abs(mu).max() + (0 if lv is None else 2 * np.exp(0.5 * lv).max())
                        for mu, lv in panels.values()))
    extent = min(extent, 50.0)
    axis = np.linspace(-extent, extent, resolution)
    grid = np.stack(np.meshgrid(axis, axis), -1).reshape(-1, 2)
    fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels), 3.6), squeeze=False)
    colours = plt.get_cmap("tab10")
    for ax, (name, (mu, logvar)) in zip(axes[0], panels.items(), strict=True):
        if logvar is not None:
            density = _mixture_density(grid, mu, np.exp(logvar)).reshape(resolution, resolution)
            ax.imshow(density, extent=(-extent, extent, -extent, extent), origin="lower",
                      cmap="Greys", aspect="equal", norm=PowerNorm(0.4))
            for (x, y), lv, label in zip(mu, logvar, labels, strict=True):
                sd = np.exp(0.5 * lv)
                for k in (1, 2):
                    ax.add_patch(Ellipse((x, y), 2 * k * sd[0], 2 * k * sd[1], fill=False,
                                         lw=0.6, alpha=0.9 / k, color=colours(int(label) % 10)))
        ax.scatter(mu[:, 0], mu[:, 1], s=6, c=[colours(int(v) % 10) for v in labels])
        ax.set_xlim(-extent, extent)
        ax.set_ylim(-extent, extent)
        ax.set_aspect("equal")
        ax.set_title(name, fontsize=10)
    save_figure(fig, path)


def plot_feature_histograms(codes: dict[str, np.ndarray], path: Path, bins: int = 40) -> None:
    """003 Fig. 5, 10-12: one row per method, one histogram per latent dimension of its
    codes [N, d] (a Gaussian-constrained method shows bell shapes, VCAE the data's modes)."""
    n_rows, n_cols = len(codes), max(c.shape[1] for c in codes.values())
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(2 * n_cols + 1, 1.9 * n_rows),
                             squeeze=False)
    for r, (name, values) in enumerate(codes.items()):
        for dim in range(n_cols):
            ax = axes[r, dim]
            if dim < values.shape[1]:
                ax.hist(values[:, dim], bins=bins)
                ax.set_title(f"{name} z{dim}", fontsize=7)
            else:
                ax.axis("off")
            ax.set_yticks([])
    fig.tight_layout()
    save_figure(fig, path)


def plot_log_densities(rows: dict[str, dict[str, np.ndarray]], extent: float,
                       path: Path) -> None:
    """004 Table 1: one row per density kind (e.g. the aggregate posterior and its mixture),
    one column per model; each entry is a square grid of log-densities over
    [-extent, extent]^2 (row index = second coordinate), drawn with a shared colour scale
    per row."""
    models = list(next(iter(rows.values())))
    fig, axes = plt.subplots(len(rows), len(models), figsize=(2.6 * len(models),
                                                               2.6 * len(rows)), squeeze=False)
    for r, (kind, panels) in enumerate(rows.items()):
        values = np.concatenate([v.ravel() for v in panels.values()])
        top = values.max()
        for c, name in enumerate(models):
            ax = axes[r, c]
            ax.imshow(panels[name], extent=(-extent, extent, -extent, extent), origin="lower",
                      vmin=top - 20.0, vmax=top, cmap="viridis")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(name if r == 0 else "", fontsize=8)
        axes[r, 0].set_ylabel(kind, fontsize=8)
    save_figure(fig, path)


def scale_per_image(values: np.ndarray) -> np.ndarray:
    """Each image [C, H, W] of ``values`` divided by its own maximum, for drawing variance
    maps (004 Fig. 3-4) beside images in [0, 1]."""
    top = values.reshape(len(values), -1).max(1).reshape(-1, *[1] * (values.ndim - 1))
    return values / np.maximum(top, 1e-12)


def plot_image_grid(rows: dict[str, np.ndarray], path: Path) -> None:
    """001 Fig. 5b: one row of images [N, C, H, W] in [0, 1] per entry (input first)."""
    n_rows, n_cols = len(rows), len(next(iter(rows.values())))
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(1.1 * n_cols, 1.2 * n_rows),
                             squeeze=False)
    for r, (name, images) in enumerate(rows.items()):
        for c in range(n_cols):
            image = np.clip(images[c].transpose(1, 2, 0), 0, 1)
            axes[r, c].imshow(image.squeeze(-1) if image.shape[-1] == 1 else image,
                              cmap="gray", vmin=0, vmax=1)
            axes[r, c].set_xticks([])
            axes[r, c].set_yticks([])
        axes[r, 0].set_ylabel(name, fontsize=8)
    save_figure(fig, path)


def plot_run_history(rows: list[dict], path: Path) -> None:
    """A run's metrics.jsonl: every numeric column (the loss, its parts, test metrics) over
    epochs, one panel each."""
    skip = {"epoch", "lr", "samples_per_s"}
    keys = [k for k in rows[0] if k not in skip and isinstance(rows[0][k], (int, float))]
    cols = 4
    fig, axes = plt.subplots((len(keys) + cols - 1) // cols, cols,
                             figsize=(3.2 * cols, 2.4 * ((len(keys) + cols - 1) // cols)),
                             squeeze=False)
    for ax, key in zip(axes.flat, keys, strict=False):
        ax.plot([r["epoch"] for r in rows], [r[key] for r in rows], marker=".")
        ax.set_title(key, fontsize=9)
    for ax in list(axes.flat)[len(keys):]:
        ax.axis("off")
    fig.tight_layout()
    save_figure(fig, path)
