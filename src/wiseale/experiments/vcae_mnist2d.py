"""003 Sec. 6.1 (second toy), Fig. 2d-e, App. B.2, C.1 (Fig. 5) and C.4 (Fig. 8): VCAE and cWAE
with a 2-D latent on MNIST: reconstruction errors, the latent codes by class, per-feature
histograms, and the codes mapped through a flow to its Gaussian base, w = NF^-1(z).

003 App. B.2: the Table 4 MNIST network, VCAE lambda 1 and v = 2, cWAE lambda 100 and P_Z =
N(0, I_2) (App. B's single-scale MMD kernel), sigma_eps^2 = 0.01, Adam 1e-4, batch 200, no
schedule. App. C.1 raises cWAE's lambda to 3,000 for its histograms: that run is here too
(``cwae-lambda-3000``). The epoch count is not given (ours: 100). 003 reports train/test errors
25.52/27.67 (VCAE) and 30.09/31.50 (cWAE), which are per-image sums of squared errors
(``recon_error``).

``--quick`` trains 10 epochs on 10,000 Fashion-MNIST images with 001's smaller App. D.2
network at Adam 1e-3 (1e-4 leaves the quick runs far from converged); the flow (Table 5 MAF)
gets 20 epochs instead of 100.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
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
    write_results,
)
from wiseale.metrics.latent import gaussianity_ks
from wiseale.plots import plot_embeddings, plot_feature_histograms
from wiseale.samplers import run_flow
from wiseale.storage import atomic_write_text
from wiseale.training import load_run

DATA = ("fashion-mnist", "mnist")
LATENT_DIM, V, SIGMA_EPS2 = 2, 2.0, 0.01
RUNS = {"vcae": ("vcae", {"lambda": 1.0, "v": V}),
        "cwae": ("cwae", {"lambda": 100.0}),
        "cwae-lambda-3000": ("cwae", {"lambda": 3000.0})}
PAPER = {"vcae": (25.52, 27.67), "cwae": (30.09, 31.50)}
FULL = {"epochs": 100, "n_train": None, "n_test": None, "lr": 1e-4, "net": "mnist-vcae",
        "flow_epochs": 100}
QUICK = {"epochs": 10, "n_train": 10_000, "n_test": 2_000, "lr": 1e-3, "net": "mnist-conv",
         "flow_epochs": 20}
N_SHOWN = 2_000
TABLE_KEYS = ["recon_error", "latent_total_variance", "knn_accuracy", "information_rate_bits",
              "gaussianity_ks"]


def configs(data: str, quick: bool, seed: int, data_dir: str | None = None,
            device: str = "cpu") -> dict[str, RunConfig]:
    scale = QUICK if quick else FULL
    noise = {"sigma_eps": math.sqrt(SIGMA_EPS2)}
    return {name: RunConfig(method=method, data=data, data_dir=data_dir,
                            options={**options, **noise}, latent_dim=LATENT_DIM,
                            net=scale["net"], likelihood="gaussian", sigma2=0.5,
                            batch_size=200, lr=scale["lr"], epochs=scale["epochs"],
                            n_train=scale["n_train"], n_test=scale["n_test"], seed=seed,
                            device=device, eval_size=2_000)
            for name, (method, options) in RUNS.items()}


def _codes(out: Path, name: str, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return load_run(out / "runs" / name)[0].code(x)


def _errors_table(methods: dict) -> str:
    lines = ["| method | train L2 | test L2 | 003 train / test |", "|---|---|---|---|"]
    for name, entry in methods.items():
        paper = " / ".join(f"{v:g}" for v in PAPER[name]) if name in PAPER else "-"
        lines.append(f"| {name} | {entry['train']['recon_error']:.4g} | "
                     f"{entry['test']['recon_error']:.4g} | {paper} |")
    return "\n".join(lines)


def _report(data: str, quick: bool, plans: dict, methods: dict) -> str:
    first = next(iter(plans.values()))
    vcae, cwae = methods["vcae"]["test"], methods["cwae"]["test"]
    lower = vcae["recon_error"] < cwae["recon_error"]
    gaussian = cwae["gaussianity_ks"] < vcae["gaussianity_ks"]
    return "\n".join([
        f"# VCAE vs cWAE with a 2-D latent on {data} ({'quick' if quick else 'full'})", "",
        f"Seed 003 Sec. 6.1, Fig. 2d-e, App. B.2, C.1, C.4: {first.net} network, "
        f"{first.epochs} epochs at Adam {first.lr:g} on {first.n_train or 'all'} training "
        f"images, batch 200, sigma_eps^2 = {SIGMA_EPS2}. L2 = per-image sum of squared errors "
        "(reconstruction from the posterior mean).", "",
        _errors_table(methods), "", metrics_table(methods, TABLE_KEYS), "",
        "`gaussianity_ks`: the mean over the two features of the Kolmogorov-Smirnov distance "
        "of the standardised test codes to N(0, 1) (0 = a Gaussian histogram).", "",
        f"- VCAE's test L2 is {'lower' if lower else 'NOT lower'} than cWAE's "
        f"({vcae['recon_error']:.4g} vs {cwae['recon_error']:.4g}; 003: 27.67 vs 31.50).",
        f"- cWAE's features are {'closer to' if gaussian else 'NOT closer to'} Gaussian than "
        f"VCAE's (KS {cwae['gaussianity_ks']:.3f} vs {vcae['gaussianity_ks']:.3f}; 003 "
        "App. C.1: cWAE close to a unit Gaussian, VCAE not).", "",
        "![latents](fig2de_latents.png)", "",
        "The test codes of each method, coloured by class (003 Fig. 2d-e).", "",
        "![histograms](feature_histograms.png)", "",
        "Per-feature histograms of the test codes (003 Fig. 5).", "",
        "![flow](fig8_flow_latents.png)", "",
        "Each method's codes z and the same codes mapped to the flow's base, w = NF^-1(z) "
        "(003 Fig. 8, where w has no gaps between the classes: samples drawn there avoid the "
        "regions where the decoder is undefined).", ""])


def run(out: Path, quick: bool = False, seed: int = 0, data: str | None = None,
        progress: bool = True, data_dir: str | None = None, device: str = "cpu") -> Path:
    """Train VCAE and cWAE (two lambdas), fit a flow to each, write results.json, the
    figures and report.md."""
    data = choose_data("vcae-mnist2d", data, DATA)
    out = Path(out)
    plans = configs(data, quick, seed, data_dir, device)
    methods = compare_methods("vcae-mnist2d", out, plans, quick, progress)
    first = next(iter(plans.values()))
    train_x, test_x = load_split(first, "train").x, load_split(first, "test").x
    flow_epochs = (QUICK if quick else FULL)["flow_epochs"]
    for name, entry in methods.items():
        entry["config"]["v"] = V  # cWAE's N(0, I_2) has the same total variance
        model = load_run(out / "runs" / name)[0]
        run_flow(out / "runs" / name, model, train_x, epochs=flow_epochs, seed=seed,
                 progress=progress)
        entry["test"]["gaussianity_ks"] = float(np.mean(gaussianity_ks(
            _codes(out, name, test_x))))
    write_results(out, "vcae-mnist2d", quick, methods)
    plot(out)
    report = out / "report.md"
    atomic_write_text(report, _report(data, quick, plans, methods))
    return report


def plot(out: Path) -> list[Path]:
    """Fig. 2d-e (codes by class), Fig. 5 (feature histograms), Fig. 8 (codes and NF^-1)."""
    from wiseale.samplers import FLOW_FILE, load_sampler

    out = Path(out)
    results = read_results(out, "vcae-mnist2d")
    test_data = load_split(first_config(results), "test")
    x, labels = test_data.x[:N_SHOWN], test_data.y[:N_SHOWN].numpy()
    codes = {name: _codes(out, name, x) for name in results["methods"]}
    figures = [out / "fig2de_latents.png", out / "feature_histograms.png",
               out / "fig8_flow_latents.png"]
    plot_embeddings({n: (z.numpy(), None) for n, z in codes.items()}, labels, figures[0])
    plot_feature_histograms({n: z.numpy() for n, z in codes.items()}, figures[1])
    mapped = {}
    for name, z in codes.items():
        flow = load_sampler(out / "runs" / name / FLOW_FILE, LATENT_DIM)
        mapped[f"{name}: z"] = (z.numpy(), None)
        mapped[f"{name}: NF^-1(z)"] = (flow.to_base(z).numpy(), None)
    plot_embeddings(mapped, labels, figures[2])
    return figures


EXPERIMENT = Experiment("vcae-mnist2d", "003 Fig. 2d-e, 5, 8: VCAE vs cWAE with a 2-D latent "
                        "on MNIST (errors, codes, histograms, flow)", run, plot)
