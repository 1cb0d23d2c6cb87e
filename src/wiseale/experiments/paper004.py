"""The experiments of seed 004 (the learned-variance VAE) as specs, with their measures and
figures.

004's setting (Supp. B.1, MNIST and Fashion-MNIST): the `lv-mnist` network, d_z = 16, batch
256, Adam 5e-4, 16 epochs of stage 1 and 14 of stage 2 (30 in all; the one-stage methods train
30 epochs), images as reals in [0, 1], mixtures of 32 components (Sec. 5.5). Supp. B.2 (CelebA
at 128 x 128, `lv-celeba`): d_z = 256, 75 + 20 epochs, 500 components. ``--quick`` trains 6
epochs on 10,000 Fashion-MNIST images and tests on 2,000, with the global variance in closed
form (SMALL_VARIANCE says why).

- lv-sweep (Fig. 1) and lv-latent2d (Table 1, Supp. C, d_z = 2): aevb with sigma^2 fixed at
  1 ... 0.01, and lv-vae learning it (Eq. 9): test ELBO, FID from the prior and from the
  mixture, KL(q_hat || p) of the mixture (10,000 samples, 10 runs).
- lv-fid (Table 2): lv-vae, VAE (sigma^2 = 0.5), beta-VAE (sigma^2 = 1: the KL weighs twice as
  much), DIP-VAE and WAE (0.5); FID from the prior and from the mixture (not for WAE, whose
  posteriors are points: Supp. D). Table 2 reports the mixture's FID where there is one
  (``fid_table2``).
- lv-components (Table 4): one lv-vae run, mixtures of M components fitted on posterior
  samples of the first 50,000 training images (004 Sec. 5.5).
- lv-iwae (Table 3, Sec. 5.4, Fig. 3-4): IWAE with K = 20 on 500 test images, with N(0, I)
  and with the mixture as p(z); the pixel-wise model's predicted variance against its
  squared error.

FIDs are measured in ``metrics.sample_features``: Inception when ``$WISEALE_INCEPTION`` names
its weights (comparable with 004's numbers), else a classifier trained on the data set's
labels (only the order of the methods is comparable). CelebA has no labels here, so it needs
the Inception weights (checked before training); its full scale needs about 40 GB of memory.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from wiseale.build import load_split
from wiseale.experiments.claims import Claim, Compare, Near, Q, Trend, extreme
from wiseale.experiments.measures import (
    MeasureContext,
    fid_mixture,
    fid_prior,
    kl_mixture_prior,
)
from wiseale.experiments.report import number
from wiseale.experiments.runner import first_config
from wiseale.experiments.spec import Figure, Measure, PaperValue, RunSpec, Spec
from wiseale.functional import standard_normal_log_prob
from wiseale.metrics.latent import aggregate_log_density, iwae
from wiseale.model import Autoencoder
from wiseale.plots import plot_image_grid, plot_log_densities, plt, save_figure, scale_per_image
from wiseale.samplers import (
    MIXTURE_FILE,
    LatentSampler,
    MixtureSampler,
    fit_mixture,
    latents_of,
    load_sampler,
    run_sampler,
)
from wiseale.training import load_run

SMALL_VARIANCE = (
    "At the quick and medium scales the global variance is set in closed form (004 Eq. 10: "
    "`--likelihood optimal` for lv-vae, `stage1_variance=closed-form` for lv-vae-pixel): Adam "
    "at 5e-4 moves sigma by about 5e-4 per step, so the 234 steps of a quick run and the 585 "
    "of a medium one take the gradient-learned sigma^2 only from 1 to 0.77 and 0.47 "
    "(benchmarks/learned_variance_adam.py, on Eq. 9's loss, D = 784) while the optimum Eq. 9 "
    "and 10 share is near 0.035; the full scale (3,744 stage-1 steps, where sigma^2 reaches "
    "the optimum) learns it by gradient as 004 Alg. 1 does.")
SETTING = {"batch_size": 256, "lr": 5e-4, "eval_size": 2_000, "likelihood": "gaussian",
           "sigma2": 0.5, "net": "lv-mnist", "latent_dim": 16, "components": 32}
QUICK = {"epochs": 6, "n_train": 10_000, "n_test": 2_000, "variance_note": SMALL_VARIANCE}
MEDIUM = {"epochs": 15, "n_train": 10_000, "n_test": 2_000, "variance_note": SMALL_VARIANCE}
FULL = {"epochs": 30, "n_train": None, "n_test": None, "variance_note": ""}
CELEBA = {"net": "lv-celeba", "latent_dim": 256, "components": 500,
          "data_options": {"crop": 178, "size": 128}, "full": {"epochs": 95}}
LV_VAE = RunSpec("lv-vae", "lv-vae", fields={"likelihood": None},  # sigma^2 learned (Eq. 9)
             quick={"likelihood": "optimal"},  # in closed form (Eq. 10): SMALL_VARIANCE
             medium={"likelihood": "optimal"})
PIXEL = "lv-vae-pixel"
LV_PIXEL = RunSpec(PIXEL, PIXEL, fields={"likelihood": None},  # Eq. 11, Alg. 1
               quick={"options": {"stage1_epochs": 3, "stage1_variance": "closed-form"}},
               medium={"options": {"stage1_epochs": 8, "stage1_variance": "closed-form"}},
               full={"options": {"stage1_epochs": 16}})
BASELINES = (RunSpec("vae", "aevb", fields={"sigma2": 0.5}),
             RunSpec("beta-vae", "aevb", fields={"sigma2": 1.0}),
             RunSpec("dip-vae", "dip-vae", fields={"sigma2": 0.5}))
WAE = RunSpec("wae", "wae", fields={"sigma2": 0.5})
SETTING_TEXT = ("004 Supp. B setting: {net} network, d_z = {latent_dim}, batch {batch_size}, "
                "Adam {lr:g}, {epochs} epochs on {n_train} training images, {n_test} test "
                "images; mixtures of {components} full-covariance Gaussians fitted by EM on "
                "posterior samples of the training images (004 Eq. 13). FIDs compare up to "
                "10,000 test images with as many decoded samples (`fid_n`; clamped to [0, 1]) in "
                "the `fid_features` features: a classifier's are not comparable with 004's "
                "Inception FIDs (docs/metrics.md). {variance_note}")


def _model(out: Path, name: str) -> Autoencoder:
    return load_run(out / "runs" / name)[0]


def final_sigma2(context: MeasureContext) -> dict[str, Any]:
    """The global sigma^2 a run ended with (the last one logged: a learned or closed-form
    variance, the pixel-wise model's frozen sigma^2_dataset; else the config's fixed one),
    and its ratio to the test MSE per pixel, where 004 Eq. 10 puts the optimum."""
    entry = context.entry
    logged = [row["sigma2"] for row in entry["history"] if row.get("sigma2") is not None]
    sigma2 = logged[-1] if logged else entry["config"]["sigma2"]
    return {"sigma2": sigma2, "sigma2_to_mse": sigma2 / entry["test"]["mse"]}


# --- lv-sweep and lv-latent2d: 004 Fig. 1, Table 1 -------------------------------------------

SIGMA2S = (1.0, 0.5, 0.1, 0.05, 0.02, 0.01)  # 004 Fig. 1 and Supp. C Table 1
FIXED = tuple(f"fixed-sigma2-{s:g}" for s in SIGMA2S)
TABLE1_KL = {1.0: 0.094, 0.5: 0.132, 0.1: 0.328, 0.05: 0.812, 0.02: 2.143, 0.01: 1.552}
N_DENSITY = 5_000  # training images whose posteriors make the drawn aggregate posterior
RESOLUTION = 200  # grid points per axis of the log-density panels
EXTENT_QUANTILE, EXTENT_MARGIN, MIN_EXTENT = 0.999, 1.0, 3.0
SWEEP_MEASURES = (Measure("fid_prior", fid_prior), Measure("fid_mixture", fid_mixture),
                  Measure("kl_mixture_prior", kl_mixture_prior),
                  Measure("sigma2", final_sigma2))
SWEEP_RUNS = (*(RunSpec(name, "aevb", fields={"sigma2": s}) for name, s in zip(FIXED, SIGMA2S,
                                                                           strict=True)),
              LV_VAE)
KL_RISES = Claim("kl-rises", "KL(q_hat || p) of the mixture rises as the fixed sigma^2 falls "
                 "from 1 to 0.02", "004 Supplement C, Table 1 (Sec. 5.1, Fig. 1c)",
                 "0.094, 0.132, 0.328, 0.812, 2.143 (MNIST, d_z = 2)",
                 (Trend(tuple(Q(name, "kl_mixture_prior") for name in FIXED[:5]), "<"),))
MIXTURE_BETTER = Claim("sweep-mixture-fid", "For every sigma^2, samples from the mixture have "
                       "a lower FID than samples from the prior", "004 Sec. 5.2, Fig. 1b",
                       "all runs (figure only)",
                       tuple(Compare(Q(r.label, "fid_mixture"), "<", Q(r.label, "fid_prior"))
                             for r in SWEEP_RUNS))
SWEEP_NOTES = ("Fixed runs: aevb with a Gaussian likelihood of variance sigma^2; lv-vae sets "
               "sigma^2 by the ELBO. `sigma2`: the variance at the end of training; "
               "`sigma2_to_mse`: its ratio to the test MSE per pixel (Eq. 10's optimum is the "
               "MSE). KL(q_hat || p): Monte Carlo with 10,000 samples of the mixture, mean "
               "(`kl_mixture_prior`) and std over 10 runs (004 Table 1).")
SWEEP_METRICS = ("sigma2", "sigma2_to_mse", "elbo", "fid_prior", "fid_mixture",
                 "kl_mixture_prior", "kl_mixture_prior_std")
def _draw_sweep(out: Path, results: dict[str, Any]) -> None:
    """004 Fig. 1: three panels against sigma^2 (log axis), lv-vae as a star."""
    methods = results["methods"]
    fixed = sorted((e["test"] for n, e in methods.items() if n != LV_VAE.label),
                   key=lambda t: t["sigma2"])
    learned = methods[LV_VAE.label]["test"]
    panels = [("(a) test ELBO", [("elbo", None, "test ELBO", "C0")]),
              ("(b) FID", [("fid_prior", None, "from the prior", "C3"),
                           ("fid_mixture", None, "from the mixture", "C0")]),
              ("(c) KL(q_hat || p)", [("kl_mixture_prior", "kl_mixture_prior_std",
                                       "KL", "C0")])]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.4 * len(panels), 3.4))
    for ax, (title, lines) in zip(axes, panels, strict=True):
        for i, (key, err, label, colour) in enumerate(lines):
            ax.errorbar([t["sigma2"] for t in fixed], [t[key] for t in fixed],
                        yerr=None if err is None else [t[err] for t in fixed], marker="o",
                        color=colour, label=label, capsize=3)
            ax.errorbar([learned["sigma2"]], [learned[key]],
                        yerr=None if err is None else [learned[err]], marker="*",
                        markersize=16, markerfacecolor="C2", markeredgecolor=colour,
                        color=colour, linestyle="none", capsize=3,
                        label="_" if i else "lv-vae (learned sigma2)")
        ax.set_xscale("log")
        ax.set_xlabel("sigma2")
        ax.set_title(title, fontsize=10)
        ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, out / "fig1_sigma2_sweep.png")


@torch.no_grad()
def _posteriors(model: Any, x: torch.Tensor, batch_size: int = 1024) -> tuple[torch.Tensor,
                                                                                torch.Tensor]:
    parts = [model.encode(batch, sample=False) for batch in x.split(batch_size)]
    return torch.cat([p.mu for p in parts]), torch.cat([p.logvar for p in parts])


def _draw_densities(out: Path, results: dict[str, Any]) -> None:
    """004 Table 1: the aggregate posterior and its mixture on a grid, per run, and the
    prior, over a square that holds 99.9% of every run's codes (posterior means) in each
    dimension, with a margin."""
    config = first_config(results)
    x = load_split(config, "train").floats(slice(0, N_DENSITY))
    models = {name: _model(out, name) for name in results["methods"]}
    posteriors = {name: _posteriors(model, x) for name, model in models.items()}
    extent = max(MIN_EXTENT, *(mu.abs().quantile(EXTENT_QUANTILE, dim=0).max().item()
                               + EXTENT_MARGIN for mu, _ in posteriors.values()))
    axis = torch.linspace(-extent, extent, RESOLUTION, dtype=torch.float64)
    grid = torch.stack(torch.meshgrid(axis, axis, indexing="xy"), -1).reshape(-1, 2)

    def image(values: torch.Tensor) -> np.ndarray:
        return values.reshape(RESOLUTION, RESOLUTION).numpy()

    components = results["settings"]["components"]
    rows: dict[str, dict[str, np.ndarray]] = {"aggregate posterior": {},
                                              f"mixture ({components})": {}}
    aggregate, mixture = rows.values()
    for name, (mu, logvar) in posteriors.items():
        test = results["methods"][name]["test"]
        label = (f"lv-vae (sigma2 = {test['sigma2']:.3g})" if name == LV_VAE.label
                 else f"sigma2 = {test['sigma2']:g}")
        aggregate[label] = image(aggregate_log_density(grid, mu.double(), logvar.double()))
        fitted = load_sampler(out / "runs" / name / MIXTURE_FILE, models[name].latent_dim)
        mixture[label] = image(fitted.log_prob(grid))
    for panels in rows.values():
        panels["prior"] = image(standard_normal_log_prob(grid))
    plot_log_densities(rows, extent, out / "table1_log_densities.png")


def seeded_iwae(model: Autoencoder, x: Tensor, prior: LatentSampler | None = None) -> float:
    """The IWAE bound (K = IWAE_K) on ``x`` with the posterior noise seeded, so that both
    priors see the same importance samples; the global RNG is left as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(IWAE_SEED)
        return iwae(model, x, k=IWAE_K, prior=prior)


def _pearson(a: Tensor, b: Tensor) -> float | None:
    """Pearson correlation of two flat tensors (None when one of them is constant)."""
    a, b = a.double() - a.double().mean(), b.double() - b.double().mean()
    norm = (a.square().sum() * b.square().sum()).sqrt()
    return None if norm == 0 else (a @ b / norm).item()


@torch.no_grad()
def uncertainty(model: Autoencoder, x: Tensor, batch_size: int = 1000) -> dict[str, Any]:
    """004 Sec. 5.4 in numbers: how the predicted sigma^2 at the posterior mean follows the
    squared reconstruction error over the pixels of ``x``, and its smallest value against the
    floor sigma^2_dataset / 2 of the pixel-wise likelihood."""
    variances, errors = [], []
    for batch in x.split(batch_size):
        z = model.encode(batch, sample=False).mu
        errors.append((batch - model.likelihood.mean(model.decode(z))).square())
        variances.append(model.predicted_variance(z).expand_as(errors[-1]))
    variance, error = torch.cat(variances).flatten(1), torch.cat(errors).flatten(1)
    per_image = [_pearson(v, e) for v, e in zip(variance, error, strict=True)]
    per_image = [c for c in per_image if c is not None]
    floor = model.likelihood.floor().item()
    return {"variance_error_corr": _pearson(variance.flatten(), error.flatten()),
            "variance_error_corr_per_image": float(np.mean(per_image)) if per_image else None,
            "variance_min": variance.min().item(), "variance_mean": variance.mean().item(),
            "squared_error_mean": error.mean().item(),
            "variance_floor": floor,
            "variance_at_floor": (variance <= floor * (1 + AT_FLOOR)).double().mean().item(),
            "stage": int(model.likelihood.stage)}


def floor_bound(floor: float, dims: int) -> float:
    """The most log p(x|z) can be when every pixel's variance is at least ``floor``:
    dims * -1/2 log(2 pi floor) (every error zero). log p(x), the average of p(x|z) over the
    prior, cannot exceed it either, so neither can the IWAE bound in expectation."""
    return -0.5 * dims * math.log(2 * math.pi * floor)


@torch.no_grad()
def _draw_uncertainty(out: Path, results: dict[str, Any]) -> None:
    """004 Fig. 3 (test images, reconstructions, predicted sigma^2, squared error) and Fig. 4
    (mixture samples and their predicted sigma^2) for the pixel-wise run."""
    run_dir = out / "runs" / PIXEL
    model = _model(out, PIXEL)
    x = _first_test_images(results)
    z = model.encode(x, sample=False).mu
    x_hat = model.likelihood.mean(model.decode(z))
    fig3 = out / "fig3_uncertainty_reconstructions.png"
    plot_image_grid({"test\nimages": x.numpy(), "recon-\nstructions": x_hat.clamp(0, 1).numpy(),
                     "predicted\nsigma^2": scale_per_image(model.predicted_variance(z).numpy()),
                     "squared\nerror": scale_per_image((x - x_hat).square().numpy())}, fig3)
    mixture = load_sampler(run_dir / MIXTURE_FILE, model.latent_dim)
    z = mixture.sample(len(x), torch.Generator().manual_seed(SAMPLE_SEED))
    fig4 = out / "fig4_uncertainty_samples.png"
    x = model.likelihood.mean(model.decode(z)).clamp(0, 1)
    plot_image_grid({"mixture\nsamples": x.numpy(),
                     "predicted\nsigma^2": scale_per_image(model.predicted_variance(z).numpy())},
                    fig4)


def samples(model: Autoencoder, sampler: LatentSampler | None) -> np.ndarray:
    """N_SHOWN decoded samples in [0, 1] from the prior or ``sampler`` (seeded)."""
    x = model.sample(N_SHOWN, torch.Generator().manual_seed(SAMPLE_SEED), sampler)
    return x.clamp(0, 1).numpy()


def _first_test_images(results: dict[str, Any]) -> Tensor:
    return load_split(first_config(results), "test").floats(slice(0, N_SHOWN))


def _draw_fid_samples(out: Path, results: dict[str, Any]) -> None:
    """004 Fig. 2b and Supp. D: samples of every run from the prior and from its mixture."""
    rows = {"test images": _first_test_images(results).numpy()}
    for name in results["methods"]:
        model = _model(out, name)
        rows[f"{name}\n(prior)"] = samples(model, None)
        if (out / "runs" / name / MIXTURE_FILE).exists():
            mixture = load_sampler(out / "runs" / name / MIXTURE_FILE, model.latent_dim)
            rows[f"{name}\n(mixture)"] = samples(model, mixture)
    plot_image_grid(rows, out / "fig2_samples.png")


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

    return {m: run_sampler(run_dir, mixture_file(m), MixtureSampler, model, latents, fitter(m),
                           {"components": m, "seed": seed, "images": FIT_IMAGES})
            for m in components}


def _draw_components(out: Path, results: dict[str, Any]) -> None:
    """FID against the number of components (with the prior's FID as a line) beside 004's
    Table 4, and samples from the prior and from each mixture."""
    entry = results["methods"]["lv-vae"]
    ms = results["settings"]["counts"]
    fig, (ours, paper) = plt.subplots(1, 2, figsize=(8, 3))
    ours.plot(ms, [entry["test"][f"fid_mixture_m{i + 1}"] for i in range(len(ms))], "o-",
              label="mixture")
    ours.axhline(entry["test"]["fid_prior"], color="C3", ls="--", label="prior N(0, I)")
    paper.plot(COUNTS, TABLE4_FID, "s-", color="C2")
    for ax, title in ((ours, f"this run ({first_config(results).data})"),
                      (paper, "004 Table 4 (CelebA, Inception FID)")):
        ax.set_xscale("log")
        ax.set_xlabel("mixture components M")
        ax.set_ylabel("FID")
        ax.set_title(title, fontsize=9)
    ours.legend(fontsize=8)
    save_figure(fig, out / "table4_fid_components.png")
    model = _model(out, "lv-vae")
    rows = {"prior": samples(model, None)}
    for m in ms:
        mixture = load_sampler(out / "runs" / "lv-vae" / mixture_file(m), model.latent_dim)
        rows[f"M = {m}"] = samples(model, mixture)
    plot_image_grid(rows, out / "table4_samples.png")

# --- measures of lv-fid, lv-components and lv-iwae ------------------------------------------


def fid_table2(context: MeasureContext) -> dict[str, Any]:
    """Table 2's number: the mixture's FID where a mixture is fitted, else the prior's."""
    test = context.entry["test"]
    return {"fid_table2": test.get("fid_mixture", test["fid_prior"])}


def component_fids(context: MeasureContext) -> dict[str, Any]:
    """``fid_mixture_m{i}``: the FID of the mixture with the i-th of the setting's component
    counts (``counts``), and its EM iterations and convergence."""
    counts = context.settings["counts"]
    mixtures = component_mixtures(context.run_dir, context.model, context.train.floats(), counts,
                                  context.seed)
    found: dict[str, Any] = {}
    for i, m in enumerate(counts, start=1):
        found[f"fid_mixture_m{i}"] = context.fid(mixtures[m])
        found[f"em_iterations_m{i}"] = mixtures[m].fit_info["n_iter"]
        found[f"em_converged_m{i}"] = float(mixtures[m].fit_info["converged"])
    return found


def iwae_bounds(context: MeasureContext) -> dict[str, Any]:
    """The IWAE bound (K = 20) on the first 500 test images with N(0, I) and with the run's
    mixture as p(z), on the same importance samples (004 Sec. 5.2, Table 3)."""
    x = context.test.floats(slice(0, IWAE_N))
    return {"iwae_prior": seeded_iwae(context.model, x),
            "iwae_mixture": seeded_iwae(context.model, x, context.mixture())}


def pixel_uncertainty(context: MeasureContext) -> dict[str, Any]:
    """004 Sec. 5.4: the pixel-wise model's predicted variance against its squared error."""
    return uncertainty(context.model, context.test.floats())


def _uncertainty_section(results: dict[str, Any]) -> list[str]:
    pixel = results["methods"][PIXEL]["test"]
    dims = int(np.prod(load_split(first_config(results), "test").sample_shape))
    return [
        "## Uncertainty of the pixel-wise model (004 Sec. 5.4, Fig. 3-4)", "",
        f"Over the test images at the posterior mean (means over the seeds): predicted sigma^2 "
        f"{number(pixel['variance_mean'])} (smallest {number(pixel['variance_min'])}, floor "
        f"sigma^2_dataset / 2 = {number(pixel['variance_floor'])}, within {100 * AT_FLOOR:g}% "
        f"of which are {100 * pixel['variance_at_floor']:.1f}% of the pixels), mean squared "
        f"error {number(pixel['squared_error_mean'])}; their correlation over all pixels "
        f"{number(pixel['variance_error_corr'])}, within images "
        f"{number(pixel['variance_error_corr_per_image'])}. With every variance at or above the "
        f"floor, log p(x) <= {dims} * -1/2 log(2 pi floor) = "
        f"{floor_bound(pixel['variance_floor'], dims):.0f} nats for any image, whatever the "
        "variance branch learns."]


def _check_fid_features(settings: dict[str, Any], train: Any) -> None:
    from wiseale.metrics import sample_features

    sample_features(train)  # CelebA without Inception weights fails here, before training


# --- the specs --------------------------------------------------------------------------------

MNIST_LIKE = ("fashion-mnist", "mnist")
SWEEP = Spec(
    name="lv-sweep",
    title="Fixed vs learned likelihood variance at d_z = 16", source="004 Sec. 5.2, Fig. 1",
    data=MNIST_LIKE, base=SETTING, quick=QUICK, medium=MEDIUM, full=FULL, runs=SWEEP_RUNS,
    measures=SWEEP_MEASURES, metrics=SWEEP_METRICS,
    claims=(
        Claim("sweep-elbo", "The learned sigma^2 has the highest test ELBO of all the "
              "sigma^2 tried", "004 Sec. 5.2, Fig. 1a", "highest (figure only)",
              extreme(LV_VAE.label, "elbo", FIXED, lowest=False)),
        MIXTURE_BETTER, KL_RISES),
    figures=(Figure(("fig1_sigma2_sweep.png",), _draw_sweep,
                    "004 Fig. 1: (a) test ELBO, (b) FID from the prior and from the mixture, "
                    "(c) KL(q_hat || p) with its std over the runs, against sigma^2; the star is "
                    "lv-vae at its learned sigma^2 (first seed's runs, means over seeds)."),),
    setting=SETTING_TEXT, notes=SWEEP_NOTES, check=_check_fid_features)

LATENT2D = Spec(
    name="lv-latent2d",
    title="Fixed vs learned likelihood variance at d_z = 2", source="004 Table 1, Supp. C",
    data=MNIST_LIKE, base={**SETTING, "latent_dim": 2}, quick=QUICK, medium=MEDIUM, full=FULL,
    runs=SWEEP_RUNS,
    measures=SWEEP_MEASURES, metrics=SWEEP_METRICS,
    paper=(*(PaperValue(name, "kl_mixture_prior", TABLE1_KL[s], "004 Table 1", "MNIST")
             for name, s in zip(FIXED, SIGMA2S, strict=True)),
           PaperValue(LV_VAE.label, "kl_mixture_prior", 0.422, "004 Table 1", "MNIST"),
           PaperValue(LV_VAE.label, "sigma2", 0.035, "004 Sec. 5.1, Table 1", "MNIST")),
    claims=(KL_RISES, MIXTURE_BETTER),
    figures=(Figure(("table1_log_densities.png",), _draw_densities,
                    f"004 Table 1: log densities over the latent plane of the aggregate "
                    f"posterior of up to {N_DENSITY:,} training images (top) and of its mixture "
                    "(bottom), one column per run, and the prior N(0, I); colours are shared "
                    "within a row and span 20 nats below its maximum (first seed)."),),
    setting=SETTING_TEXT, notes=SWEEP_NOTES, check=_check_fid_features)

FID_RUNS = (LV_VAE, *BASELINES, WAE)
TABLE2_FID = {"mnist": (8.9, 74.9, 438.1, 114.9, 142.8),  # 004 Table 2, FID_RUNS' order
              "fashion-mnist": (10.6, 123.8, 281.5, 103.6, 149.5),
              "celeba": (74.7, 78.4, 106.4, 87.5, 85.4)}
FID = Spec(
    name="lv-fid",
    title="004 Table 2: FID of the learned-variance VAE and four baselines",
    source="004 Sec. 5.2-5.3, Table 2, Fig. 2", data=(*MNIST_LIKE, "celeba"), base=SETTING,
    quick=QUICK, medium=MEDIUM, full=FULL, by_data={"celeba": CELEBA}, runs=FID_RUNS,
    measures=(Measure("fid_prior", fid_prior),
              Measure("fid_mixture", fid_mixture, tuple(r.label for r in FID_RUNS[:-1])),
              Measure("fid_table2", fid_table2), Measure("sigma2", final_sigma2)),
    metrics=("sigma2", "mse", "fid_prior", "fid_mixture", "fid_table2"),
    paper=tuple(PaperValue(run.label, "fid_table2", value, "004 Table 2",
                           data.replace("fashion-mnist", "Fashion-MNIST"), data=(data,))
                for data, values in TABLE2_FID.items()
                for run, value in zip(FID_RUNS, values, strict=True)),
    claims=(
        Claim("t2-lv-lowest", "Learning sigma^2 gives the lowest FID", "004 Sec. 5.2, Table 2",
              "8.9 / 10.6 / 74.7 vs the next 74.9 / 103.6 / 78.4 (MNIST / Fashion / CelebA)",
              extreme(LV_VAE.label, "fid_table2", [r.label for r in FID_RUNS])),
        Claim("t2-beta-worst", "beta-VAE (sigma^2 = 1) has the highest FID", "004 Table 2",
              "438.1 / 281.5 / 106.4",
              extreme("beta-vae", "fid_table2", [r.label for r in FID_RUNS], lowest=False)),
        Claim("fig2-mixture-better", "Samples from the mixture have a lower FID than from the "
              "prior, for every method with a mixture", "004 Sec. 5.3, Fig. 2a",
              "always (bars only)",
              tuple(Compare(Q(r.label, "fid_mixture"), "<", Q(r.label, "fid_prior"))
                    for r in FID_RUNS[:-1]))),
    figures=(Figure(("fig2_samples.png",), _draw_fid_samples,
                    "Rows: test images, then samples of each run from the prior and (but for "
                    "WAE) from its mixture (004 Fig. 2b, Supp. D; first seed)."),),
    setting=SETTING_TEXT, notes="`fid_table2` is Table 2's number: the mixture's FID, the "
    "prior's for WAE. `sigma2`: the likelihood variance at the end of training.",
    check=_check_fid_features)

COUNTS, QUICK_COUNTS = (500, 1000, 2000, 10_000), (8, 32, 128, 512)  # 004 Table 4; quick
TABLE4_FID = (79.9, 79.2, 78.4, 73.1)
FIT_IMAGES = 50_000  # 004 Sec. 5.5: the mixtures are fitted on 50k latents
COMPONENTS = Spec(
    name="lv-components",
    title="004 Table 4: FID against the mixture's number of components",
    source="004 Sec. 5.5, Table 4", data=(*MNIST_LIKE, "celeba"), base=SETTING,
    quick={**QUICK, "counts": QUICK_COUNTS}, medium={**MEDIUM, "counts": QUICK_COUNTS},
    full={**FULL, "counts": COUNTS},
    by_data={"celeba": CELEBA}, runs=(LV_VAE,),
    measures=(Measure("fid_prior", fid_prior), Measure("component_fids", component_fids)),
    metrics=("fid_prior", *(f"fid_mixture_m{i}" for i in range(1, 5))),
    paper=tuple(PaperValue(LV_VAE.label, f"fid_mixture_m{i}", v, f"004 Table 4 (M = {m})",
                           "CelebA") for i, (m, v) in enumerate(zip(COUNTS, TABLE4_FID,
                                                                   strict=True), start=1)),
    claims=(
        Claim("t4-below-prior", "Every mixture's FID is below the prior's", "004 Sec. 5.5",
              "79.9 ... 73.1 (CelebA; prior FID not given)",
              tuple(Compare(Q(LV_VAE.label, f"fid_mixture_m{i}"), "<",
                            Q(LV_VAE.label, "fid_prior")) for i in range(1, 5))),
        Claim("t4-no-obvious-gain", "More components give no obvious improvement: the FID "
              "with the third count of components is within 2% of the FID with the first",
              "004 Sec. 5.5, Table 4",
              "'only improves by 1.5 (< 2%)' from M = 500 to 2,000: 79.9 -> 78.4",
              (Near(Q(LV_VAE.label, "fid_mixture_m3"), Q(LV_VAE.label, "fid_mixture_m1"),
                    0.02),))),
    figures=(Figure(("table4_fid_components.png", "table4_samples.png"), _draw_components,
                    "FID against the number of components M (the prior's as a line) beside "
                    "004's Table 4; samples from the prior and from each mixture, same seed "
                    "(first seed)."),),
    setting=SETTING_TEXT, notes="`fid_mixture_m1` ... `m4` are the mixtures with {counts} "
    "components, each fitted by EM (full covariances, k-means start) on one posterior sample "
    f"of each of the first {FIT_IMAGES:,} training images; 004's are on CelebA with 500 ... "
    "10,000 components.", check=_check_fid_features)

IWAE_N, IWAE_K, IWAE_SEED = 500, 20, 1234  # 004 Sec. 5.2: 500 test images, 20 samples
IWAE_RUNS = (LV_VAE, LV_PIXEL, *BASELINES)
AT_FLOOR = 1e-3  # a predicted variance within this fraction of the floor counts as at the floor
FAR = 1.0  # "far higher": by more than this many nats per data dimension (784 for 28 x 28)
TABLE3 = {"mnist": {"iwae_prior": (1307, 6037, -462, -730, -461),
                    "iwae_mixture": (1323, 6052, -461, -730, -460)},
          "fashion-mnist": {"iwae_prior": (1145, 5708, -463, -731, -463),
                            "iwae_mixture": (1157, 5724, -462, -731, -462)}}
IWAE = Spec(
    name="lv-iwae",
    title="004 Table 3: IWAE test log-likelihood", source="004 Sec. 5.2, 5.4, Table 3, Fig. 3-4",
    data=MNIST_LIKE, base=SETTING, quick=QUICK, medium=MEDIUM, full=FULL, runs=IWAE_RUNS,
    measures=(Measure("iwae", iwae_bounds), Measure("sigma2", final_sigma2),
              Measure("uncertainty", pixel_uncertainty, (PIXEL,))),
    metrics=("sigma2", "mse", "iwae_prior", "iwae_mixture"),
    paper=tuple(PaperValue(run.label, key, value, "004 Table 3",
                           data.replace("fashion-mnist", "Fashion-MNIST"), data=(data,))
                for data, block in TABLE3.items() for key, values in block.items()
                for run, value in zip(IWAE_RUNS, values, strict=True)),
    claims=(
        Claim("t3-lv-beats-fixed", "Learning sigma^2 gives a higher IWAE than VAE, beta-VAE and "
              "DIP-VAE", "004 Sec. 5.2, Table 3", "1307 vs -462, -730, -461 (MNIST)",
              extreme(LV_VAE.label, "iwae_prior", [r.label for r in IWAE_RUNS if r != LV_PIXEL],
                      lowest=False)),
        Claim("t3-pixel-far-higher", f"The pixel-wise variance gives a far higher IWAE than the "
              f"global one (by more than {FAR:g} nat per pixel)", "004 Sec. 5.2, Table 3",
              "6037 vs 1307 (MNIST), 5708 vs 1145 (Fashion)",
              (Compare(Q(PIXEL, "iwae_prior"), ">", Q(LV_VAE.label, "iwae_prior"),
                       margin=FAR * 784),)),
        Claim("t3-mixture-prior", "The mixture as p(z) does not lower the IWAE (by more than 1 "
              "nat) for any run", "004 Sec. 4, Table 3", "+0 to +16 nats",
              tuple(Compare(Q(r.label, "iwae_mixture"), ">", Q(r.label, "iwae_prior"),
                            margin=-1.0) for r in IWAE_RUNS)),
        Claim("fig3-variance-follows-error", "The predicted sigma^2 highlights where the "
              "reconstruction differs (positive correlation with the squared error)",
              "004 Sec. 5.4, Fig. 3-4", "figures only",
              (Compare(Q(PIXEL, "variance_error_corr"), ">", 0.0),))),
    figures=(Figure(("fig3_uncertainty_reconstructions.png", "fig4_uncertainty_samples.png"),
                    _draw_uncertainty,
                    "Fig. 3: test images, reconstructions, predicted sigma^2 and squared error "
                    "(the last two divided by each image's maximum); Fig. 4: samples from the "
                    "mixture and their predicted sigma^2 (first seed)."),),
    setting=SETTING_TEXT + " lv-vae-pixel: stage 1 (global sigma^2), then stage 2 (Alg. 1). "
    f"IWAE with K = {IWAE_K} on the first {IWAE_N} test images, in nats per image, with p(z) "
    "= N(0, I) (`iwae_prior`) and p(z) = the run's mixture (`iwae_mixture`).",
    sections=_uncertainty_section)

SPECS = (SWEEP, LATENT2D, FID, COMPONENTS, IWAE)
N_SHOWN, SAMPLE_SEED = 10, 0  # decoded samples drawn per row, and their seed
