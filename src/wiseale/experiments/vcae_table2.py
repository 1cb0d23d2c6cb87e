"""003 Sec. 6.3, Table 2 (MNIST column) and App. B.3, Tables 6-7: VAE, VAE + IAF, cWAE and
VCAE at d_z = 16: train/test L2 reconstruction error, FID of samples from the prior and from
a MAF fitted to the aggregate posterior, and the lambda sweeps with sum_i var(z_i).

003 App. B.3: the Table 4 MNIST network, sigma_eps^2 = 0.05, batch 100, Adam 1e-3 (VAE + IAF
1e-4 for twice the epochs), the learning rate halved after 30 epochs and divided by five
after 50, each cut applied to the current rate (1e-3, 5e-4, 1e-4; docs/deviations.md), 100
epochs; cWAE's MMD has App. B's single-scale kernel; the flow (Table 5 MAF) trained for 100
epochs with Adam 1e-3, batch 100. Table 2 uses lambda_VCAE = 0.1 (v = 16) and
lambda_WAE = 50, the sweep settings whose sum var(z) is nearest 16. "L2" is the per-image
sum of squared errors (``recon_error``), the scale of 003's numbers and of the loss with
sigma^2 = 0.5 (docs/deviations.md).

``--quick`` runs on 10,000 Fashion-MNIST images with 001's smaller App. D.2 network for 8
epochs (milestones scaled to 30% and 50% of them) and a 20-epoch flow.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import torch

from wiseale.build import load_split
from wiseale.config import RunConfig
from wiseale.experiments.common import (
    Experiment,
    choose_data,
    first_config,
    read_results,
    train_methods,
    write_results,
)
from wiseale.metrics import sample_features, sample_fid
from wiseale.metrics.evaluation import fid_count
from wiseale.plots import plot_image_grid
from wiseale.samplers import run_flow
from wiseale.storage import atomic_write_text
from wiseale.training import load_run

DATA = ("fashion-mnist", "mnist")
LATENT_DIM, SIGMA_EPS2 = 16, 0.05
VCAE_LAMBDAS = (0.05, 0.1, 0.5, 1.0, 1.5)          # Table 6
CWAE_LAMBDAS = (5.0, 10.0, 25.0, 50.0, 75.0, 100.0, 150.0)  # Table 7
CHOSEN = {"cwae": "cwae-lambda-50", "vcae": "vcae-lambda-0.1"}  # B.3.2
ROWS = {"VAE": "vae", "VAE + IAF": "vae-iaf", "cWAE": CHOSEN["cwae"],
        "VCAE": CHOSEN["vcae"]}  # Table 2's rows -> run names
WITH_FLOW = ("vae", CHOSEN["cwae"], CHOSEN["vcae"])  # Table 2 has no flow FID for VAE + IAF
PAPER = {"VAE": (6.16, 8.72, 23.20, 23.03), "VAE + IAF": (6.65, 7.91, 29.30, None),
         "cWAE": (1.36, 5.36, 30.08, 8.22), "VCAE": (1.36, 5.15, None, 7.68)}
FULL = {"epochs": 100, "n_train": None, "n_test": None, "net": "mnist-vcae", "flow_epochs": 100}
QUICK = {"epochs": 8, "n_train": 10_000, "n_test": 2_000, "net": "mnist-conv",
         "flow_epochs": 20}
N_SHOWN = 10


def _label(value: float) -> str:
    return f"{value:g}"


def configs(data: str, quick: bool, seed: int, data_dir: str | None = None,
            device: str = "cpu") -> dict[str, RunConfig]:
    """The runs of Tables 2, 6 and 7 (the chosen lambdas are sweep entries, trained once)."""
    scale = QUICK if quick else FULL
    epochs = scale["epochs"]
    milestones = [round(0.3 * epochs), round(0.5 * epochs)]  # 30 and 50 of 100 epochs
    base = RunConfig(method="aevb", data=data, data_dir=data_dir, latent_dim=LATENT_DIM,
                     net=scale["net"], likelihood="gaussian", sigma2=0.5, batch_size=100,
                     lr=1e-3, lr_schedule="step", lr_milestones=milestones,
                     lr_gamma=[0.5, 0.2], epochs=epochs, n_train=scale["n_train"],
                     n_test=scale["n_test"], seed=seed, device=device, eval_size=2_000)
    noise = {"sigma_eps": math.sqrt(SIGMA_EPS2)}
    plans = {"vae": base,
             "vae-iaf": dataclasses.replace(base, method="vae-iaf", lr=1e-4, epochs=2 * epochs)}
    for lam in VCAE_LAMBDAS:
        plans[f"vcae-lambda-{_label(lam)}"] = dataclasses.replace(
            base, method="vcae", options={"lambda": lam, "v": float(LATENT_DIM), **noise})
    for lam in CWAE_LAMBDAS:
        plans[f"cwae-lambda-{_label(lam)}"] = dataclasses.replace(
            base, method="cwae", options={"lambda": lam, **noise})
    return plans


def _cell(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}"


def _table2(methods: dict) -> str:
    lines = ["| model | train L2 | test L2 | FID P_Z | FID flow | 003: train, test, FID P_Z, "
             "FID flow |", "|---|---|---|---|---|---|"]
    for row, name in ROWS.items():
        entry = methods[name]
        paper = ", ".join("-" if v is None else f"{v:g}" for v in PAPER[row])
        lines.append(f"| {row} | {_cell(entry['train']['recon_error'])} | "
                     f"{_cell(entry['test']['recon_error'])} | "
                     f"{_cell(entry['test'].get('fid_prior'))} | "
                     f"{_cell(entry['test'].get('fid_flow'))} | {paper} |")
    return "\n".join(lines)


def _sweep(methods: dict, family: str, lambdas: tuple[float, ...], fid: bool) -> str:
    header = "| lambda | train L2 | test L2 | " + ("FID P_Z | " if fid else "") + \
        "sum var(z_i) |"
    lines = [header, "|---" * (header.count("|") - 1) + "|"]
    for lam in lambdas:
        entry = methods[f"{family}-lambda-{_label(lam)}"]
        cells = [entry["train"]["recon_error"], entry["test"]["recon_error"]]
        cells += [entry["test"].get("fid_prior")] if fid else []
        cells.append(entry["test"]["latent_total_variance"])
        lines.append(f"| {_label(lam)} | " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(lines)


def _selected(methods: dict, family: str, lambdas: tuple[float, ...]) -> str:
    """B.3.2's rule: the lambda whose sum var(z) is nearest d_z (ties: the smaller lambda)."""
    return min((f"{family}-lambda-{_label(lam)}" for lam in lambdas),
               key=lambda n: abs(methods[n]["test"]["latent_total_variance"] - LATENT_DIM))


def _claims(methods: dict) -> list[str]:
    test = {row: methods[name]["test"] for row, name in ROWS.items()}
    best_l2 = min(test, key=lambda r: test[r]["recon_error"])
    fids = {r: min(v for v in (t.get("fid_prior"), t.get("fid_flow")) if v is not None)
            for r, t in test.items()}
    best_fid = min(fids, key=fids.get)
    cwae = test["cWAE"]
    flow_better = cwae["fid_flow"] < cwae["fid_prior"]
    return [
        f"- Lowest test L2: {best_l2} (003: VCAE).",
        f"- Lowest FID (each model's better sampler): {best_fid} (003: VCAE).",
        f"- cWAE FID with the flow {cwae['fid_flow']:.4g} vs the prior "
        f"{cwae['fid_prior']:.4g}: the flow is {'better' if flow_better else 'NOT better'} "
        "(003: 8.22 vs 30.08).",
        f"- B.3.2's rule (sum var(z) nearest {LATENT_DIM}) picks "
        f"{_selected(methods, 'vcae', VCAE_LAMBDAS)} and "
        f"{_selected(methods, 'cwae', CWAE_LAMBDAS)} here (003: lambda 0.1 and 50).",
    ]


def _add_fids(out: Path, methods: dict, train_data, test_data, flow_epochs: int,
              seed: int, progress: bool) -> None:
    """fid_prior for Table 2's rows and Table 7's sweep; fid_flow where Table 2 has one."""
    needs_prior = set(ROWS.values()) | {f"cwae-lambda-{_label(v)}" for v in CWAE_LAMBDAS}
    features = sample_features(train_data)
    for name in methods:
        model = load_run(out / "runs" / name)[0]
        if name in needs_prior | set(WITH_FLOW):
            methods[name]["test"]["fid_features"] = features.name
            methods[name]["test"]["fid_n"] = fid_count(test_data)
        if name in needs_prior:
            methods[name]["test"]["fid_prior"] = sample_fid(model, train_data, test_data,
                                                            features=features)
        if name in WITH_FLOW:
            flow = run_flow(out / "runs" / name, model, train_data.x, epochs=flow_epochs,
                            seed=seed, progress=progress)
            methods[name]["test"]["fid_flow"] = sample_fid(model, train_data, test_data,
                                                           sampler=flow, features=features)
            methods[name]["test"]["flow_train_nll"] = flow.history[-1]


def run(out: Path, quick: bool = False, seed: int = 0, data: str | None = None,
        progress: bool = True, data_dir: str | None = None, device: str = "cpu") -> Path:
    """Train the 14 runs, fit the flows, and write results.json, the samples and report.md."""
    data = choose_data("vcae-table2", data, DATA)
    out = Path(out)
    plans = configs(data, quick, seed, data_dir, device)
    first = plans["vae"]
    train_data, test_data = load_split(first, "train"), load_split(first, "test")
    methods = train_methods(plans, out, train_data, test_data, progress=progress)
    scale = QUICK if quick else FULL
    _add_fids(out, methods, train_data, test_data, scale["flow_epochs"], seed, progress)
    write_results(out, "vcae-table2", quick, methods)
    plot(out)
    report, chosen = out / "report.md", methods[CHOSEN["vcae"]]["test"]
    atomic_write_text(report, "\n".join([
        f"# VCAE, cWAE, VAE and VAE + IAF at d_z = 16 on {data} "
        f"({'quick' if quick else 'full'})", "",
        f"Seed 003 Table 2 and App. B.3 (Tables 6-7): {first.net} network, {first.epochs} "
        f"epochs (VAE + IAF {2 * first.epochs}) on {first.n_train or 'all'} training images, "
        f"sigma_eps^2 = {SIGMA_EPS2}, flow: MAF (Table 5) fitted for {scale['flow_epochs']} "
        "epochs. L2 = per-image sum of squared errors, reconstructing from the posterior "
        "mean (VAE + IAF: the flow's output at eps = 0); FID on "
        f"{chosen['fid_n']:,} test images and as many samples (003: 10,000) "
        f"in the {chosen['fid_features']} features (docs/metrics.md: "
        "classifier features are not comparable with 003's Inception FIDs).", "",
        "## Table 2", "", _table2(methods), "", *_claims(methods), "",
        "## Table 6: VCAE lambda sweep (v = 16)", "",
        _sweep(methods, "vcae", VCAE_LAMBDAS, fid=False), "",
        "## Table 7: cWAE lambda sweep", "", _sweep(methods, "cwae", CWAE_LAMBDAS, fid=True), "",
        "![samples](fig7_samples.png)", "",
        "Rows: test images, then decoded samples of each Table 2 model from the prior and "
        "(where fitted) from the flow (003 Fig. 6-7).", ""]))
    return report


def plot(out: Path) -> list[Path]:
    """003 Fig. 6-7: samples of each Table 2 model from the prior and from its flow."""
    from wiseale.samplers import FLOW_FILE, load_sampler

    out = Path(out)
    results = read_results(out, "vcae-table2")
    test_data = load_split(first_config(results), "test")
    rows = {"test images": test_data.x[:N_SHOWN].numpy()}
    with torch.no_grad():
        for row, name in ROWS.items():
            model = load_run(out / "runs" / name)[0]
            samplers = {"prior": None}
            if (out / "runs" / name / FLOW_FILE).exists():
                samplers["flow"] = load_sampler(out / "runs" / name / FLOW_FILE,
                                                model.latent_dim)
            for label, sampler in samplers.items():
                x = model.sample(N_SHOWN, torch.Generator().manual_seed(0),
                                 sampler)
                rows[f"{row} ({label})"] = np.clip(x.numpy(), 0, 1)
    figure = out / "fig7_samples.png"
    plot_image_grid(rows, figure)
    return [figure]


EXPERIMENT = Experiment("vcae-table2", "003 Table 2 (MNIST) and Tables 6-7: L2 errors, FID from "
                        "the prior and from a flow, lambda sweeps at d_z = 16", run, plot)
