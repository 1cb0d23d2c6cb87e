"""004 Table 2 (``lv-fid``) and Table 4 (``lv-components``): the FID of samples of the
learned-variance VAE against VAE, beta-VAE, DIP-VAE and WAE, from the prior and from a
Gaussian mixture fitted to the aggregate posterior, and the FID against the number of the
mixture's components.

Runs (004 Sec. 5.2), all in 004's setting (``lv_common``: Supp. B.1, `lv-mnist`, d_z = 16,
batch 256, Adam 5e-4, 30 epochs): ``lv-vae`` learns one global sigma^2 by gradient (Eq. 9;
in closed form, Eq. 10, at ``--quick``: ``lv_common.QUICK_VARIANCE``);
``vae`` is AEVB with sigma^2 = 0.5; ``beta-vae`` is AEVB with sigma^2 = 1 (004's beta-VAE:
the KL weighs twice as much against the squared error as at 0.5); ``dip-vae`` and ``wae`` use
sigma^2 = 0.5. Each run's FID is measured from N(0, I) (``fid_prior``) and from a mixture with
the setting's 32 components fitted on posterior samples of the training images
(``fid_mixture``; not for WAE, whose posteriors are points: 004 Supp. D). 004's Table 2
reports the mixture's FID where there is one, so the ``Table 2 FID`` column does too.

``lv-components`` trains one ``lv-vae`` run and fits mixtures with M components, M in
``COUNTS`` (004 Table 4: 500 to 10,000 on CelebA) or ``QUICK_COUNTS`` (8 to 512) with
``--quick``, on posterior samples of the first ``FIT_IMAGES`` training images (004 fitted on
50k latents); each is fitted once and saved in the run as ``mixture-<M>.safetensors``.

Data: fashion-mnist (default), mnist and celeba (004 Table 2's third row, Table 4's data; the
`lv-celeba` network at 128 x 128, Supp. B.2). FIDs are measured in ``metrics.sample_features``:
Inception when ``$WISEALE_INCEPTION`` names its weights (comparable with 004's numbers), else a
classifier trained on the data set's labels (only the order of the methods is comparable).
CelebA has no labels here, so it needs the Inception weights; this is checked before any
training. At 128 x 128, CelebA's 162,770 training images take 32 GB as float32, so the full
scale needs a machine with about 40 GB of memory (``--quick`` loads 10,000 and 2,000).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from wiseale.build import load_split
from wiseale.config import RunConfig
from wiseale.data import Dataset
from wiseale.experiments import common
from wiseale.experiments.common import Experiment, first_config, read_results
from wiseale.experiments.lv_common import (
    DATA,
    QUICK_VARIANCE,
    add_sample_fids,
    lv_config,
    setting,
)
from wiseale.metrics import sample_features, sample_fid
from wiseale.metrics.evaluation import fid_count
from wiseale.model import Autoencoder
from wiseale.plots import plot_image_grid, save_figure
from wiseale.samplers import (
    MIXTURE_FILE,
    LatentSampler,
    MixtureSampler,
    fit_mixture,
    latents_of,
    load_sampler,
    run_sampler,
)
from wiseale.storage import atomic_write_text
from wiseale.training import load_run

IWAE_DATA = ("fashion-mnist", "mnist")  # 004 Table 3
RUNS: dict[str, dict[str, Any]] = {  # run name -> lv_config's arguments (004 Sec. 5.2)
    "lv-vae": {"method": "lv-vae", "likelihood": None},  # learned global sigma^2 (Eq. 9)
    "lv-vae-pixel": {"method": "lv-vae-pixel", "likelihood": None},  # Eq. 11, Alg. 1
    "vae": {"method": "aevb", "sigma2": 0.5},
    "beta-vae": {"method": "aevb", "sigma2": 1.0},
    "dip-vae": {"method": "dip-vae", "sigma2": 0.5},
    "wae": {"method": "wae", "sigma2": 0.5},
}
FID_RUNS = ("lv-vae", "vae", "beta-vae", "dip-vae", "wae")  # Table 2's columns
WITHOUT_MIXTURE = ("wae",)
PAPER_TABLE2 = {"mnist": (8.9, 74.9, 438.1, 114.9, 142.8),  # 004 Table 2, in FID_RUNS' order
                "fashion-mnist": (10.6, 123.8, 281.5, 103.6, 149.5),
                "celeba": (74.7, 78.4, 106.4, 87.5, 85.4)}
COUNTS = (500, 1000, 2000, 10_000)  # 004 Table 4
QUICK_COUNTS = (8, 32, 128, 512)
PAPER_TABLE4 = (79.9, 79.2, 78.4, 73.1)  # 004 Table 4 (CelebA)
FIT_IMAGES = 50_000  # 004 Sec. 5.5: the mixtures are fitted on 50k latents
N_SHOWN = 10
SAMPLE_SEED = 0
HOW_SIGMA2 = {"learned": "learned by gradient, Eq. 9", "optimal": "in closed form, Eq. 10"}

# --- shared by the 004 experiments (lv_iwae imports these) -----------------------------------


def plans(names: tuple[str, ...], data: str, quick: bool, seed: int,
          data_dir: str | None = None, device: str = "cpu") -> dict[str, RunConfig]:
    """The configs of the runs ``names`` (keys of ``RUNS``) in 004's setting for ``data``."""
    return {name: lv_config(data=data, quick=quick, seed=seed, data_dir=data_dir,
                            device=device, **RUNS[name]) for name in names}


def train_runs(experiment: str, out: Path, names: tuple[str, ...], quick: bool, seed: int,
               data: str | None, progress: bool, data_dir: str | None,
               device: str) -> tuple[str, dict[str, Any], Dataset, Dataset]:
    """Check the data set (and, for the FID experiments, that its FID features exist), train
    the runs ``names`` into ``out/runs`` (finished ones are reused) and return (data set, the
    methods block of results.json, train and test data)."""
    fid = experiment != "lv-iwae"
    data = common.choose_data(experiment, data, DATA if fid else IWAE_DATA)
    configs = plans(names, data, quick, seed, data_dir, device)
    first = next(iter(configs.values()))
    train_data, test_data = load_split(first, "train"), load_split(first, "test")
    if fid:
        sample_features(train_data)  # fails now, not after hours of training
    methods = common.train_methods(configs, out, train_data, test_data, progress=progress)
    return data, methods, train_data, test_data


def final_sigma2(entry: dict[str, Any]) -> float:
    """The global sigma^2 a run ended with: the last one logged (learned variances, the
    frozen sigma^2_dataset of the pixel-wise model), else the config's fixed sigma^2."""
    logged = [row["sigma2"] for row in entry["history"] if row.get("sigma2") is not None]
    return logged[-1] if logged else entry["config"]["sigma2"]


def sigma2_note(entry: dict[str, Any], n_train: int) -> str:
    """How the global sigma^2 of an lv-vae run ended: against the test MSE per pixel (about
    the closed-form optimum of 004 Eq. 10) and, when learned by gradient, against the smallest
    value Adam can reach from sigma^2 = 1 in this run, as it moves log sigma^2 by at most about
    the learning rate per step."""
    config = entry["config"]
    sigma2, mse = final_sigma2(entry), entry["test"]["mse"]
    how = HOW_SIGMA2.get(config["likelihood"], config["likelihood"])
    note = (f"- lv-vae's sigma^2 ({how}) ended at {sigma2:.3g}, {sigma2 / mse:.3g} times the "
            f"test MSE per pixel ({mse:.3g}, about Eq. 10's optimum).")
    if config["likelihood"] == "learned":
        steps = config["epochs"] * (n_train // config["batch_size"])
        note += (f" Adam moves log sigma^2 by at most about lr = {config['lr']:g} per step, so "
                 f"the {steps} steps of this run can lower it from 1 to about "
                 f"exp(-{steps * config['lr']:.3g}) = {math.exp(-steps * config['lr']):.3g} at "
                 "best.")
    return note


def cell(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}"


def table(header: list[str], rows: list[list[str]]) -> str:
    """A markdown table of already formatted cells."""
    lines = ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    return "\n".join([*lines, *("| " + " | ".join(row) + " |" for row in rows)])


def claim(statement: str, holds: bool, detail: str) -> str:
    """One computed claim line of a report."""
    return f"- {statement}: {'holds' if holds else 'does NOT hold'} ({detail})."


def setting_text(config: RunConfig, quick: bool) -> str:
    """The training setting of a report, from the first run's config."""
    supplement = "B.2" if config.data == "celeba" else "B.1"
    return (f"004 Supp. {supplement} setting{' scaled down by --quick' if quick else ''}: "
            f"{config.net} network, d_z = {config.latent_dim}, batch {config.batch_size}, "
            f"Adam {config.lr:g}, {config.epochs} epochs on {config.n_train or 'all'} "
            f"training images of {config.data}, {config.n_test or 'all'} test images."
            + (f" {QUICK_VARIANCE}" if quick else ""))


def fid_note(features: str, n: int) -> str:
    """What the FIDs of a report are measured in (``features``: the extractor's name) and on
    how many images (``n``)."""
    text = (f"FIDs compare {n:,} test images with as many decoded samples (clamped to "
            "[0, 1]) ")
    if features == "inception":
        return text + "in the FID Inception features, as 004's."
    return text + ("in the features of a classifier trained on this data set "
                   "(docs/metrics.md): they rank models but are not comparable with 004's "
                   "Inception FIDs.")


def write_report(out: Path, lines: list[str]) -> Path:
    report = out / "report.md"
    atomic_write_text(report, "\n".join([*lines, ""]))
    return report


def samples(model: Autoencoder, sampler: LatentSampler | None) -> np.ndarray:
    """N_SHOWN decoded samples in [0, 1] from the prior or ``sampler`` (seeded)."""
    x = model.sample(N_SHOWN, torch.Generator().manual_seed(SAMPLE_SEED), sampler)
    return x.clamp(0, 1).numpy()


def first_test_images(results: dict[str, Any]) -> np.ndarray:
    """The first N_SHOWN test images of an experiment's data."""
    return load_split(first_config(results), "test").x[:N_SHOWN].numpy()


# --- lv-fid: 004 Table 2 --------------------------------------------------------------------


def table2_fid(test: dict[str, Any]) -> float:
    """Table 2's number: the mixture's FID where one was fitted, else the prior's."""
    return test.get("fid_mixture", test["fid_prior"])


def _fid_claims(methods: dict[str, Any]) -> list[str]:
    fids = {name: table2_fid(entry["test"]) for name, entry in methods.items()}
    best, second = sorted(fids, key=fids.get)[:2]
    ranking = f"lowest: {best} with {fids[best]:.4g}, then {second} with {fids[second]:.4g}"
    if "lv-vae" not in (best, second):
        ranking += f", lv-vae {fids['lv-vae']:.4g}"
    worse = [name for name, entry in methods.items() if "fid_mixture" in entry["test"]
             and entry["test"]["fid_mixture"] >= entry["test"]["fid_prior"]]
    with_mixture = sum("fid_mixture" in entry["test"] for entry in methods.values())
    return [
        claim("lv-vae has the lowest FID", best == "lv-vae",
              ranking + "; 004: lv-vae on every data set"),
        claim("every method's mixture FID is below its prior FID", not worse,
              f"not below for {', '.join(worse)}" if worse else
              f"all {with_mixture} runs with a mixture; 004 Sec. 5.3, Fig. 2a"),
    ]


def run_fid(out: Path, quick: bool = False, seed: int = 0, data: str | None = None,
            progress: bool = True, data_dir: str | None = None, device: str = "cpu") -> Path:
    """Train the five runs, add the prior and mixture FIDs, write results.json, the samples
    figure and report.md."""
    out = Path(out)
    data, methods, train_data, test_data = train_runs("lv-fid", out, FID_RUNS, quick, seed,
                                                      data, progress, data_dir, device)
    components = setting(data, quick)["components"]
    add_sample_fids(out, methods, train_data, test_data, components, seed=seed,
                    without_mixture=WITHOUT_MIXTURE)
    common.write_results(out, "lv-fid", quick, methods)
    plot_fid(out)
    rows = [[name, cell(final_sigma2(entry)), cell(entry["test"]["mse"]),
             cell(entry["test"]["fid_prior"]), cell(entry["test"].get("fid_mixture")),
             cell(table2_fid(entry["test"])), f"{paper:g}"]
            for (name, entry), paper in zip(methods.items(), PAPER_TABLE2[data], strict=True)]
    return write_report(out, [
        f"# 004 Table 2: FID of the learned-variance VAE and four baselines on {data} "
        f"({'quick' if quick else 'full'})", "",
        setting_text(first_config({"methods": methods}), quick), f"Mixture: {components} "
        "full-covariance Gaussians fitted by EM on one posterior sample per training image "
        "(not for WAE). sigma^2: the likelihood variance at the end of training (lv-vae's own, "
        "fixed otherwise); test MSE: per pixel, reconstructing from the posterior mean. "
        + fid_note(*(methods["lv-vae"]["test"][k] for k in ("fid_features", "fid_n"))), "",
        table(["run", "sigma^2", "test MSE", "FID prior", "FID mixture", "Table 2 FID",
               "004 Table 2"], rows),
        "", *_fid_claims(methods), sigma2_note(methods["lv-vae"], len(train_data)), "",
        "![samples](fig2_samples.png)", "",
        "Rows: test images, then samples of each run from the prior and (but for WAE) from its "
        "mixture (004 Fig. 2b, Supp. D)."])


def plot_fid(out: Path) -> list[Path]:
    """004 Fig. 2b and Supp. D: samples of every run from the prior and from its mixture."""
    out = Path(out)
    results = read_results(out, "lv-fid")
    rows = {"test images": first_test_images(results)}
    for name in results["methods"]:
        model = load_run(out / "runs" / name)[0]
        rows[f"{name}\n(prior)"] = samples(model, None)
        if (out / "runs" / name / MIXTURE_FILE).exists():
            mixture = load_sampler(out / "runs" / name / MIXTURE_FILE, model.latent_dim)
            rows[f"{name}\n(mixture)"] = samples(model, mixture)
    figure = out / "fig2_samples.png"
    plot_image_grid(rows, figure)
    return [figure]


# --- lv-components: 004 Table 4 ------------------------------------------------------------


def mixture_file(components: int) -> str:
    return f"mixture-{components}.safetensors"


def component_mixtures(run_dir: Path, model: Autoencoder, x: torch.Tensor,
                       components: tuple[int, ...], seed: int) -> dict[int, MixtureSampler]:
    """A mixture per number of components, each fitted once on one posterior sample of each
    of the first FIT_IMAGES images of ``x`` and saved in ``run_dir`` (reused if there)."""
    missing = any(not (run_dir / mixture_file(m)).exists() for m in components)
    latents = latents_of(model, x[:FIT_IMAGES], seed=seed) if missing else None

    def fitter(m: int):
        return lambda z: fit_mixture(z, m, seed=seed)

    return {m: run_sampler(run_dir, mixture_file(m), MixtureSampler, model, latents, fitter(m))
            for m in components}


def _component_claims(prior: float, fids: dict[int, float]) -> list[str]:
    values = list(fids.values())
    worse = [m for m, fid in fids.items() if fid >= prior]
    falling = all(b < a for a, b in zip(values, values[1:], strict=False))
    first, last = min(fids), max(fids)
    return [
        claim("every mixture's FID is below the prior's", not worse,
              f"prior {prior:.4g}" + (f"; not below for M = {worse}" if worse else "")),
        claim("the FID falls as M grows", falling,
              ", ".join(f"M = {m}: {fid:.4g}" for m, fid in fids.items())
              + "; 004: " + ", ".join(f"{v:g}" for v in PAPER_TABLE4)),
        f"- From M = {first} to M = {last} the FID changes by {_change(fids[first], fids[last])} "
        f"(004, {COUNTS[0]} to {COUNTS[-1]}: {_change(PAPER_TABLE4[0], PAPER_TABLE4[-1])}; "
        f"{COUNTS[0]} to {COUNTS[2]}: {_change(PAPER_TABLE4[0], PAPER_TABLE4[2])}).",
    ]


def _change(before: float, after: float) -> str:
    return f"{100 * (after / before - 1):+.1f}%"


def run_components(out: Path, quick: bool = False, seed: int = 0, data: str | None = None,
                   progress: bool = True, data_dir: str | None = None,
                   device: str = "cpu") -> Path:
    """Train one lv-vae run, fit a mixture per number of components, and write the FIDs,
    the figures and report.md."""
    out = Path(out)
    data, methods, train_data, test_data = train_runs("lv-components", out, ("lv-vae",),
                                                      quick, seed, data, progress, data_dir,
                                                      device)
    run_dir = out / "runs" / "lv-vae"
    model = load_run(run_dir)[0]
    entry = methods["lv-vae"]
    features = sample_features(train_data)
    entry["test"]["fid_features"] = features.name
    entry["test"]["fid_n"] = fid_count(test_data)
    entry["test"]["fid_prior"] = sample_fid(model, train_data, test_data, features=features)
    components = QUICK_COUNTS if quick else COUNTS
    mixtures = component_mixtures(run_dir, model, train_data.x, components, seed)
    entry["components"] = {
        str(m): {"fid": sample_fid(model, train_data, test_data, sampler=mixture,
                                   features=features),
                 **mixture.fit_info} for m, mixture in mixtures.items()}
    common.write_results(out, "lv-components", quick, methods)
    plot_components(out)
    fids = {int(m): value["fid"] for m, value in entry["components"].items()}
    rows = [[str(m), cell(value["fid"]), str(value["n"]), str(value["n_iter"]),
             "yes" if value["converged"] else "NO"] for m, value in entry["components"].items()]
    return write_report(out, [
        f"# 004 Table 4: FID against the mixture's number of components on {data} "
        f"({'quick' if quick else 'full'})", "",
        setting_text(first_config({"methods": methods}), quick),
        "One lv-vae run; each mixture is fitted by "
        f"EM (full covariances, k-means start) on one posterior sample of each of the first "
        f"{min(FIT_IMAGES, len(train_data))} training images. "
        + fid_note(entry["test"]["fid_features"], entry["test"]["fid_n"]), "",
        table(["M", "FID", "latents", "EM iterations", "converged"], rows), "",
        f"Prior N(0, I): FID {entry['test']['fid_prior']:.4g}. 004 Table 4 (CelebA, Inception "
        "FID, 50k latents): " + ", ".join(f"M = {m}: {v:g}" for m, v in
                                           zip(COUNTS, PAPER_TABLE4, strict=True)) + ".",
        "", *_component_claims(entry["test"]["fid_prior"], fids),
        sigma2_note(entry, len(train_data)), "",
        "![FID against M](table4_fid_components.png)", "",
        "![samples](table4_samples.png)", "",
        "Samples from the prior and from each mixture (rows), same seed."])


def plot_components(out: Path) -> list[Path]:
    """FID against the number of components (with the prior's FID as a line) beside 004's
    Table 4, and samples from the prior and from each mixture."""
    import matplotlib.pyplot as plt

    out = Path(out)
    results = read_results(out, "lv-components")
    entry = results["methods"]["lv-vae"]
    ms = [int(m) for m in entry["components"]]
    fig, (ours, paper) = plt.subplots(1, 2, figsize=(8, 3))
    ours.plot(ms, [v["fid"] for v in entry["components"].values()], "o-", label="mixture")
    ours.axhline(entry["test"]["fid_prior"], color="C3", ls="--", label="prior N(0, I)")
    paper.plot(COUNTS, PAPER_TABLE4, "s-", color="C2")
    for ax, title in ((ours, f"this run ({first_config(results).data})"),
                      (paper, "004 Table 4 (CelebA, Inception FID)")):
        ax.set_xscale("log")
        ax.set_xlabel("mixture components M")
        ax.set_ylabel("FID")
        ax.set_title(title, fontsize=9)
    ours.legend(fontsize=8)
    figure = out / "table4_fid_components.png"
    save_figure(fig, figure)
    model = load_run(out / "runs" / "lv-vae")[0]
    rows = {"prior": samples(model, None)}
    for m in ms:
        mixture = load_sampler(out / "runs" / "lv-vae" / mixture_file(m), model.latent_dim)
        rows[f"M = {m}"] = samples(model, mixture)
    grid = out / "table4_samples.png"
    plot_image_grid(rows, grid)
    return [figure, grid]


FID = Experiment("lv-fid", "004 Table 2: FID of the learned-variance VAE, VAE, beta-VAE, "
                 "DIP-VAE and WAE from the prior and from a mixture of the aggregate posterior",
                 run_fid, plot_fid)
COMPONENTS = Experiment(
    "lv-components", "004 Table 4: FID of lv-vae samples against the number of components of "
    "the aggregate posterior's mixture", run_components, plot_components)
EXPERIMENTS = (FID, COMPONENTS)
