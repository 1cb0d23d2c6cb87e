"""001 Sec. 5, Fig. 5a and Fig. 6: AEVB, beta-VAE, WiSE-ALE and WAE on the sine waves.

Full scale is App. D.1: batch 64, 50 epochs, Adam 5e-4, d_z = 4, 180,000 training waves
(of the 200,000) on the sine-conv network. ``--quick`` trains the same network and
hyper-parameters on fewer waves and epochs.
"""

from __future__ import annotations

from pathlib import Path

import torch

from wiseale.build import load_split
from wiseale.config import RunConfig
from wiseale.experiments.common import (
    Experiment,
    choose_data,
    compare_methods,
    first_config,
    metrics_table,
    read_results,
)
from wiseale.metrics.evaluation import AGGREGATE_SAMPLES
from wiseale.plots import plot_curves, plot_signal_reconstructions
from wiseale.storage import atomic_write_text
from wiseale.training import load_run

METHODS = ("aevb", "beta-vae", "wise-ale", "wae")
FULL = {"epochs": 50, "n_train": None, "n_test": None}
QUICK = {"epochs": 12, "n_train": 16_000, "n_test": 2_000}
TABLE_KEYS = ["recon_error", "mse", "kl_prior", "elbo", "aggregate_kl_ub"]


def configs(quick: bool, seed: int, device: str = "cpu") -> dict[str, RunConfig]:
    scale = QUICK if quick else FULL
    return {m: RunConfig(method=m, data="sine", latent_dim=4, batch_size=64, lr=5e-4,
                         seed=seed, device=device, eval_size=2_000, **scale) for m in METHODS}


def _pick_waves(factors: torch.Tensor) -> tuple[list[int], list[str]]:
    """Two lowest-frequency, two lowest-amplitude and two typical test waves (Fig. 5a)."""
    freq, amp = factors[:, 0], factors[:, 2]
    picks = [*freq.argsort()[:2].tolist(), *amp.argsort()[:2].tolist(), 0, 1]
    titles = [f"f={freq[i]:.1f} Hz, A={amp[i]:.2f}" for i in picks]
    return picks, titles


def _report(out: Path, quick: bool, methods: dict) -> str:
    wise = methods["wise-ale"]["test"]["recon_error"]
    beaten = [m for m in ("aevb", "beta-vae") if methods[m]["test"]["recon_error"] > wise]
    claim = ("holds" if len(beaten) == 2 else "does NOT hold") + \
        f" (WiSE-ALE is lower than: {', '.join(beaten) or 'none'})"
    scale = QUICK if quick else FULL
    return "\n".join([
        f"# Sine waves: WiSE-ALE vs AEVB, beta-VAE and WAE ({'quick' if quick else 'full'})",
        "",
        "Seed 001 Sec. 5, Fig. 5a, Fig. 6; network and hyper-parameters of App. D.1 "
        f"(batch 64, Adam 5e-4, d_z = 4); {scale['epochs']} epochs on "
        f"{scale['n_train'] or 180_000} training waves, metrics on "
        f"{scale['n_test'] or 20_000} test waves. Gaussian likelihood with variance 0.5.",
        "",
        "## Test metrics", "", metrics_table(methods, TABLE_KEYS), "",
        "`recon_error` is the mean over waves of sum_t (x - x_hat)^2 with x_hat decoded from "
        "the posterior mean; `kl_prior` the mean KL(q(z|x) || N(0, I)); `elbo` the mean ELBO "
        f"(one z sample); `aggregate_kl_ub` Eq. 21 over the first "
        f"{min(AGGREGATE_SAMPLES, scale['n_test'] or 20_000)} test posteriors; docs/metrics.md "
        "defines the rest. WAE's encoder "
        "is deterministic, so it has no posterior density (n/a).",
        "",
        f"Paper's claim (lower reconstruction error than AEVB and beta-VAE): {claim}.",
        "",
        "## Reconstructions (Fig. 5a)", "", "![reconstructions](fig5a_reconstructions.png)", "",
        "## Training curves (Fig. 6)", "", "![curves](fig6_curves.png)", "",
        "Training-set means per epoch: reconstruction error, AEVB KL, ELBO.", ""])


def run(out: Path, quick: bool = False, seed: int = 0, data: str | None = None,
        progress: bool = True, data_dir: str | None = None,
        device: str = "cpu") -> Path:
    """Train the four methods, then write results.json, the figures and report.md."""
    choose_data("sine", data, ("sine",))
    out = Path(out)
    methods = compare_methods("sine", out, configs(quick, seed, device), quick, progress)
    plot(out)
    report = out / "report.md"
    atomic_write_text(report, _report(out, quick, methods))
    return report


def plot(out: Path) -> list[Path]:
    """Fig. 5a (reconstructions of chosen test waves) and Fig. 6 (training curves)."""
    out = Path(out)
    results = read_results(out, "sine")
    test_data = load_split(first_config(results), "test")
    picks, titles = _pick_waves(test_data.factors)
    x = test_data.x[picks]
    recons = {m: load_run(out / "runs" / m)[0].reconstruct(x).numpy() for m in results["methods"]}
    figures = [out / "fig5a_reconstructions.png", out / "fig6_curves.png"]
    plot_signal_reconstructions(x.numpy(), recons, titles, figures[0])
    histories = {m: e["history"] for m, e in results["methods"].items() if m != "wae"}
    plot_curves(histories, [("recon_error", "training reconstruction error"),
                            ("kl_prior", "AEVB KL divergence"), ("elbo", "ELBO")], figures[1])
    return figures


EXPERIMENT = Experiment("sine", "001 Fig. 5a/6: WiSE-ALE vs AEVB, beta-VAE, WAE on sine waves",
                        run, plot)
