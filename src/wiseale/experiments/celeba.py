"""001 Fig. 5b and App. D.3: AEVB, WAE and WiSE-ALE reconstructions of CelebA on the WAE
network (d_z = 64, batch 256, 50 epochs, Adam 3e-4 then 1.5e-4 after 30 epochs).

CelebA is not shipped: give its aligned images with ``--data-dir`` or ``$WISEALE_DATA``
(`wiseale datasets`). ``--quick`` trains on 2,048 images for 2 epochs.
"""

from __future__ import annotations

from pathlib import Path

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
from wiseale.plots import plot_image_grid
from wiseale.storage import atomic_write_text
from wiseale.training import load_run

METHODS = ("aevb", "wae", "wise-ale")
FULL = {"epochs": 50, "n_train": None, "n_test": 10_000, "lr_milestones": [30]}
QUICK = {"epochs": 2, "n_train": 2_048, "n_test": 256, "lr_milestones": [1]}
N_SHOWN = 8
TABLE_KEYS = ["recon_error", "mse", "kl_prior", "elbo", "aggregate_kl_ub"]


def configs(quick: bool, seed: int, data_dir: str | None = None,
            device: str = "cpu") -> dict[str, RunConfig]:
    scale = QUICK if quick else FULL
    return {m: RunConfig(method=m, data="celeba", data_dir=data_dir, latent_dim=64,
                         batch_size=256, lr=3e-4, lr_schedule="step", lr_gamma=0.5,
                         likelihood="gaussian", sigma2=0.5, seed=seed, device=device,
                         eval_size=256, **scale)
            for m in METHODS}


def _report(quick: bool, config: RunConfig, methods: dict) -> str:
    wise = methods["wise-ale"]["test"]["recon_error"]
    beaten = [m for m in ("aevb", "wae") if methods[m]["test"]["recon_error"] > wise]
    return "\n".join([
        f"# CelebA reconstructions ({'quick' if quick else 'full'})", "",
        "Seed 001 Fig. 5b, App. D.3: the WAE network, d_z = 64, batch 256, Adam 3e-4 (1.5e-4 "
        f"after epoch {config.lr_milestones[0]}); {config.epochs} epochs on "
        f"{config.n_train or 'all'} training images, 64x64 centre crops; Gaussian likelihood "
        "with variance 0.5.", "",
        "## Test metrics", "", metrics_table(methods, TABLE_KEYS), "",
        f"WiSE-ALE's test recon_error is lower than: {', '.join(beaten) or 'none'}.", "",
        "## Reconstructions (Fig. 5b)", "", "![reconstructions](fig5b_reconstructions.png)", "",
        "First row: test images; then one row per method.", ""])


def run(out: Path, quick: bool = False, seed: int = 0, data: str | None = None,
        progress: bool = True, data_dir: str | None = None,
        device: str = "cpu") -> Path:
    """Train the three methods on CelebA, then write results.json, the grid and report.md."""
    choose_data("celeba", data, ("celeba",))
    out = Path(out)
    plans = configs(quick, seed, data_dir, device)
    methods = compare_methods("celeba", out, plans, quick, progress)
    plot(out)
    report = out / "report.md"
    atomic_write_text(report, _report(quick, next(iter(plans.values())), methods))
    return report


def plot(out: Path) -> list[Path]:
    """Fig. 5b: the first test images and each method's reconstructions."""
    out = Path(out)
    results = read_results(out, "celeba")
    shown = load_split(first_config(results), "test").x[:N_SHOWN]
    rows = {"input": shown.numpy()}
    for name in results["methods"]:
        rows[name] = load_run(out / "runs" / name)[0].reconstruct(shown).numpy()
    figure = out / "fig5b_reconstructions.png"
    plot_image_grid(rows, figure)
    return [figure]


EXPERIMENT = Experiment("celeba", "001 Fig. 5b: CelebA reconstructions of AEVB, WAE, WiSE-ALE "
                        "(needs CelebA: --data-dir)", run, plot)
