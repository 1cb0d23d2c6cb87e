"""The figures of the reports, written atomically as PNG."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator, Sequence
from contextvars import ContextVar
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from wiseale.storage import atomic_write_bytes  # noqa: E402

_PNG_TEXT: ContextVar[dict[str, str] | None] = ContextVar("png_text", default=None)


@contextlib.contextmanager
def png_text(entries: dict[str, str]) -> Iterator[None]:
    """Every figure saved in the ``with`` block records ``entries`` as PNG text chunks."""
    token = _PNG_TEXT.set({**(_PNG_TEXT.get() or {}), **entries})
    try:
        yield
    finally:
        _PNG_TEXT.reset(token)


def save_figure(fig: plt.Figure, path: Path) -> None:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight", metadata=_PNG_TEXT.get())
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
                path: Path, note: str = "") -> None:
    """001 Fig. 6: one panel per (metric key, label), one line per method, over integer
    epochs; ``note`` (e.g. which methods are left out) under the panels."""
    fig, axes = plt.subplots(1, len(keys), figsize=(4 * len(keys), 3.2), squeeze=False)
    epochs = [row["epoch"] for rows in histories.values() for row in rows]
    for ax, (key, label) in zip(axes[0], keys, strict=True):
        for method, rows in histories.items():
            points = [(row["epoch"], row[key]) for row in rows if row.get(key) is not None]
            if points:
                ax.plot(*zip(*points, strict=True), marker=".", label=method)
        ax.set_xlabel("epoch")
        _epoch_axis(ax, epochs)
        ax.set_title(label, fontsize=9)
    axes[0, 0].legend(fontsize=8)
    if note:
        fig.text(0.5, 0.005, note, ha="center", va="bottom", fontsize=8)
        fig.tight_layout(rect=(0, 0.05, 1, 1))
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
        ax.set_xlabel("$z_1$")
    axes[0, 0].set_ylabel("$z_2$")
    _class_legend(fig, labels)
    save_figure(fig, path)


def _class_legend(fig: plt.Figure, labels: np.ndarray,
                  names: Sequence[str] | None = None) -> None:
    """One legend entry per class (tab10 colours), to the right of the panels, with the
    class's name where ``names`` gives it."""
    from matplotlib.lines import Line2D

    colours = plt.get_cmap("tab10")
    classes = sorted({int(v) for v in labels})[:20]
    handles = [Line2D([], [], marker="o", ls="", color=colours(c % 10),
                      label=names[c] if names is not None and c < len(names) else str(c))
               for c in classes]
    fig.legend(handles=handles, title="class", loc="center left", bbox_to_anchor=(1.0, 0.5),
               fontsize=8, frameon=False)


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


def _history_panels(rows: list[dict]) -> list[tuple[str, list[str]]]:
    """(metric, its columns) for every numeric column of metrics.jsonl: a training column and
    its ``test_`` twin share a panel; a column equal to an earlier one at every epoch (``nll``
    beside ``recon``) is left out."""
    skip = {"epoch", "lr", "samples_per_s", "skipped_steps"}
    numeric = [k for k in rows[0] if k not in skip and
               all(isinstance(r.get(k), (int, float)) for r in rows)]
    series: dict[tuple, str] = {}
    panels: dict[str, list[str]] = {}
    for key in numeric:
        values = tuple(r[key] for r in rows)
        if values in series:
            continue
        series[values] = key
        panels.setdefault(key.removeprefix("test_"), []).append(key)
    return list(panels.items())


# what a metrics.jsonl column measures (docs/metrics.md), under its panel's title
HISTORY_NOTES = {
    "loss": "the objective minimised (recon + weighted terms)",
    "recon": "reconstruction term of the loss, sampled z",
    "sample_recon_error": "squared error of the sampled z's decoding",
    "recon_error": "squared error of the code's decoding",
    "mse": "squared error per value, mean code",
    "kl_prior": "mean KL(q(z|x) || p(z)), nats",
    "elbo": "per-sample ELBO, nats",
    "aggregate_kl": "aggregate-KL bound term (Eq. 21)",
    "aggregate_kl_ub": "Eq. 21 bound on the test posteriors",
}


def _epoch_axis(ax: plt.Axes, epochs: list[int]) -> None:
    """Integer epoch ticks: each epoch of a short run, else integers chosen by matplotlib."""
    from matplotlib.ticker import MaxNLocator

    if len(set(epochs)) <= 12:
        ax.set_xticks(sorted(set(epochs)))
    else:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def plot_run_history(rows: list[dict], path: Path, title: str = "") -> None:
    """A run's metrics.jsonl over epochs: one panel per metric with its training and test
    values together (titled with what it measures, HISTORY_NOTES), integer epochs, labelled
    axes and ``title``."""
    panels = _history_panels(rows)
    cols = min(4, len(panels))
    n_rows = (len(panels) + cols - 1) // cols
    fig, axes = plt.subplots(n_rows, cols, figsize=(3.4 * cols, 2.7 * n_rows), squeeze=False)
    epochs = [r["epoch"] for r in rows]
    for ax, (metric, keys) in zip(axes.flat, panels, strict=False):
        for key in keys:
            ax.plot(epochs, [r[key] for r in rows], marker=".",
                    label="test" if key.startswith("test_") else "train")
        note = HISTORY_NOTES.get(metric)
        ax.set_title(metric if note is None else f"{metric}\n{note}", fontsize=9)
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric, fontsize=8)
        _epoch_axis(ax, epochs)
        if len(keys) > 1:
            ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    save_figure(fig, path)


def tile(images: np.ndarray, cols: int, pad: int = 2) -> np.ndarray:
    """Images [N, C, H, W] as one [H', W', C] array, ``cols`` a row, ``pad`` white (1.0)
    pixels around each."""
    n, channels, height, width = images.shape
    rows = -(-n // cols)
    canvas = np.ones((rows * (height + pad) + pad, cols * (width + pad) + pad, channels))
    for index, image in enumerate(images):
        top, left = pad + (index // cols) * (height + pad), pad + (index % cols) * (width + pad)
        canvas[top:top + height, left:left + width] = image.transpose(1, 2, 0)
    return canvas


def plot_sample_grid(images: np.ndarray, path: Path, title: str = "", pad: int = 2,
                     cols: int | None = None) -> None:
    """Images [N, C, H, W] in [0, 1] as a grid of ``cols`` columns (default: near-square) with
    ``pad`` pixels between them; values outside [0, 1] are clipped, and the title says how
    many were."""
    channels = images.shape[1]
    clipped = int(((images < 0) | (images > 1)).sum())
    if clipped:
        title = (f"{title} " if title else "") + \
            f"({clipped / images.size:.1%} of values outside [0, 1], clipped)"
    canvas = tile(np.clip(images, 0, 1), cols or int(np.ceil(np.sqrt(len(images)))), pad)
    side = min(10.0, max(3.0, max(canvas.shape[:2]) / 25))  # inches for the longer side
    fig, ax = plt.subplots(figsize=(side, side * canvas.shape[0] / canvas.shape[1]))
    ax.imshow(canvas.squeeze(-1) if channels == 1 else canvas, cmap="gray", vmin=0, vmax=1,
              interpolation="nearest")
    ax.axis("off")
    if title:
        ax.set_title(title, fontsize=10)
    save_figure(fig, path)


def plot_latents(codes: np.ndarray, labels: np.ndarray | None, path: Path,
                 title: str = "", class_names: Sequence[str] | None = None) -> None:
    """Posterior means [N, d]: a histogram for d = 1, a scatter for d = 2, else the first two
    principal components (with the share of variance each explains); coloured by class,
    named by ``class_names`` where given."""
    fig, ax = plt.subplots(figsize=(4.6, 4.0))
    if codes.shape[1] == 1:
        ax.hist(codes[:, 0], bins=40, color="C0")
        ax.set_xlabel("$z_1$")
        ax.set_ylabel("count")
    else:
        points, names = codes[:, :2], ("$z_1$", "$z_2$")
        if codes.shape[1] > 2:
            centred = codes - codes.mean(0)
            _, singular, vt = np.linalg.svd(centred, full_matrices=False)
            share = singular**2 / (singular**2).sum()
            points = centred @ vt[:2].T
            names = tuple(f"PC {k + 1} ({100 * share[k]:.0f}% of variance)" for k in (0, 1))
        colours = plt.get_cmap("tab10")
        ax.scatter(points[:, 0], points[:, 1], s=5, alpha=0.7,
                   c=None if labels is None else [colours(int(v) % 10) for v in labels])
        ax.set_xlabel(names[0])
        ax.set_ylabel(names[1])
        if labels is not None:
            _class_legend(fig, labels, class_names)
    if title:
        ax.set_title(title, fontsize=10)
    save_figure(fig, path)
