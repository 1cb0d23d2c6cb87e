"""004 Sec. 5.1-5.2, Fig. 1, Table 1 and Supp. C: VAEs trained with the Gaussian likelihood
variance sigma^2 fixed at 1, 0.5, 0.1, 0.05, 0.02 and 0.01, and one with sigma^2 learned under
the ELBO (004 Eq. 9, ``lv-vae``). Two experiments share this module:

- ``lv-sweep`` (Fig. 1, d_z = 16): test ELBO, FID of samples from the prior and from the
  32-component Gaussian mixture of the aggregate posterior, and KL(q_hat || p) of that mixture
  against each run's sigma^2, the learned one drawn as a star;
- ``lv-latent2d`` (Table 1, Supp. C, d_z = 2): the same numbers, and the log densities of the
  aggregate posterior and of its mixture on a grid beside the prior's, with the KL set against
  004's Table 1.

Both use 004's Supp. B.1 setting (``lv_common.lv_config``: the ``lv-mnist`` network, batch
256, Adam 5e-4, 30 epochs; ``--quick``: 6 epochs on 10,000 Fashion-MNIST images, 2,000 test
images). KL(q_hat || p) is ``metrics.latent.sampler_prior_kl`` on the run's mixture: 10,000
samples, mean and standard deviation over 10 runs (004 Table 1). ``sigma2`` in the results is
the fixed value, or for ``lv-vae`` the learned one read from the trained model's likelihood
(at ``--quick``, ``lv_config`` sets lv-vae's variance in closed form, 004 Eq. 10, as
``lv_common.QUICK_VARIANCE`` explains; the full scale learns it by gradient, Eq. 9).

Decisions: 004's Fig. 1 and Table 1 are on MNIST; the runs here default to Fashion-MNIST like
the other 004 experiments (``--data mnist`` where the MNIST files are available). CelebA is
not offered (``lv_common.DATA`` has it): the FIDs here are measured in the features of a
classifier trained on the data set's labels, which CelebA's image folder does not have, and
004 has no CelebA version of these figures.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from wiseale.build import load_split
from wiseale.config import RunConfig
from wiseale.experiments import common
from wiseale.experiments.lv_common import add_sample_fids, lv_config, setting
from wiseale.functional import standard_normal_log_prob
from wiseale.metrics.latent import aggregate_log_density, sampler_prior_kl
from wiseale.plots import plot_log_densities, plt, save_figure
from wiseale.samplers import run_mixture
from wiseale.storage import atomic_write_text
from wiseale.training import load_run

DATA = ("fashion-mnist", "mnist")  # not celeba: see the module docstring
SIGMA2S = (1.0, 0.5, 0.1, 0.05, 0.02, 0.01)  # 004 Fig. 1 and Supp. C Table 1
LEARNED = "lv-vae"
# 004 Supp. C Table 1 (MNIST, d_z = 2): KL(q_hat || p) mean and std; the learned sigma^2 0.035
PAPER_KL = {1.0: (0.094, 0.003), 0.5: (0.132, 0.003), 0.1: (0.328, 0.009),
            0.05: (0.812, 0.013), 0.02: (2.143, 0.030), 0.01: (1.552, 0.034),
            LEARNED: (0.422, 0.011)}
PAPER_LEARNED_SIGMA2 = 0.035
KL_SAMPLES, KL_RUNS = 10_000, 10  # 004 Table 1
N_DENSITY = 5_000  # training images whose posteriors make the drawn aggregate posterior
RESOLUTION = 200  # grid points per axis of the log-density panels
# panel half-width: the 99.9% quantile of |code| over every run and dimension plus 1, at least 3
EXTENT_QUANTILE, EXTENT_MARGIN, MIN_EXTENT = 0.999, 1.0, 3.0
SWEEP_FIGURE, DENSITY_FIGURE = "fig1_sigma2_sweep.png", "table1_log_densities.png"


def run_name(sigma2: float) -> str:
    return f"fixed-sigma2-{sigma2:g}"


@dataclass(frozen=True)
class Spec:
    """What tells the two experiments apart: the latent size, the figure and the report's
    own section."""

    name: str
    latent_dim: int | None  # None: the setting's (16)
    title: str
    draw: Callable[[Path, dict[str, Any]], list[Path]]
    section: Callable[[dict[str, Any]], list[str]]


def configs(spec: Spec, data: str, quick: bool, seed: int, data_dir: str | None = None,
            device: str = "cpu") -> dict[str, RunConfig]:
    """The fixed-variance runs (aevb with a Gaussian of variance sigma^2), then lv-vae."""
    overrides = {} if spec.latent_dim is None else {"latent_dim": spec.latent_dim}
    shared = dict(data=data, quick=quick, seed=seed, data_dir=data_dir, device=device,
                  **overrides)
    plans = {run_name(s): lv_config("aevb", likelihood="gaussian", sigma2=s, **shared)
             for s in SIGMA2S}
    plans[LEARNED] = lv_config(LEARNED, likelihood=None, **shared)
    return plans


def model_sigma2(model: Any) -> float:
    """The global variance of a fixed (exactly as configured) or learned Gaussian
    likelihood."""
    likelihood = model.likelihood
    if hasattr(likelihood, "sigma2"):
        return float(likelihood.sigma2)
    return float(likelihood.variance(torch.zeros(1)).item())


def _run(spec: Spec, out: Path, quick: bool = False, seed: int = 0, data: str | None = None,
         progress: bool = True, data_dir: str | None = None, device: str = "cpu") -> Path:
    """Train the fixed-variance runs and lv-vae, add the FIDs from the prior and the
    mixture, KL(q_hat || p) and sigma^2 to each run's test metrics, and write results.json,
    the figure and report.md."""
    data = common.choose_data(spec.name, data, DATA)
    out = Path(out)
    plans = configs(spec, data, quick, seed, data_dir, device)
    first = next(iter(plans.values()))
    train_data, test_data = load_split(first, "train"), load_split(first, "test")
    methods = common.train_methods(plans, out, train_data, test_data, progress=progress)
    components = setting(data, quick)["components"]
    add_sample_fids(out, methods, train_data, test_data, components, seed=seed)
    for name, entry in methods.items():
        model = load_run(out / "runs" / name)[0]
        mixture = run_mixture(out / "runs" / name, model, train_data.x, components=components,
                              seed=seed)
        kl, kl_std = sampler_prior_kl(mixture, KL_SAMPLES, KL_RUNS, seed=seed)
        entry["test"].update(kl_mixture_prior=kl, kl_mixture_prior_std=kl_std,
                             sigma2=model_sigma2(model))
    common.write_results(out, spec.name, quick, methods)
    spec.draw(out, common.read_results(out, spec.name))
    report = out / "report.md"
    steps = first.epochs * (len(train_data) // first.batch_size)  # the last partial dropped
    scale = {"data": data, "quick": quick, "components": components, "steps": steps,
             "fid_n": next(iter(methods.values()))["test"]["fid_n"]}
    atomic_write_text(report, _report(spec, first, scale, methods))
    return report


def _plot(spec: Spec, out: Path) -> list[Path]:
    out = Path(out)
    return spec.draw(out, common.read_results(out, spec.name))


# ------------------------------------------------------------------------------------------
# Report


def _cell(value: float | None, digits: str = ".4g") -> str:
    return "n/a" if value is None else format(value, digits)


def _kl_cell(test: dict[str, Any]) -> str:
    return f"{test['kl_mixture_prior']:.3f} ± {test['kl_mixture_prior_std']:.3f}"


def _table(methods: dict[str, Any]) -> str:
    lines = ["| run | sigma2 | test ELBO | FID prior | FID mixture | KL(q_hat \\|\\| p) |",
             "|---|---|---|---|---|---|"]
    for name, entry in methods.items():
        test = entry["test"]
        lines.append(f"| {name} | {test['sigma2']:.4g} | {_cell(test['elbo'])} | "
                     f"{_cell(test['fid_prior'])} | {_cell(test['fid_mixture'])} | "
                     f"{_kl_cell(test)} |")
    return "\n".join(lines)


def _holds(condition: bool) -> str:
    return "holds" if condition else "does NOT hold"


def _claims(methods: dict[str, Any]) -> list[str]:
    """004 Sec. 5.2's claims, computed from the numbers."""
    learned = methods[LEARNED]["test"]
    fixed = {n: e["test"] for n, e in methods.items() if n != LEARNED}
    best = max(fixed, key=lambda n: fixed[n]["elbo"])
    below = [n for n, t in methods.items() if t["test"]["fid_mixture"] < t["test"]["fid_prior"]]
    by_fid = sorted(methods, key=lambda n: methods[n]["test"]["fid_mixture"])
    return [
        f"- the learned variance has the highest test ELBO among the variances tried: "
        f"{_holds(learned['elbo'] > fixed[best]['elbo'])} (lv-vae {learned['elbo']:.2f} at "
        f"learned sigma2 = {learned['sigma2']:.4g}; best fixed: {best} "
        f"{fixed[best]['elbo']:.2f}).",
        f"- for lv-vae FID from the mixture is below FID from the prior: "
        f"{_holds(learned['fid_mixture'] < learned['fid_prior'])} "
        f"({learned['fid_mixture']:.4g} vs {learned['fid_prior']:.4g}).",
        f"- FID from the mixture is below FID from the prior for {len(below)} of "
        f"{len(methods)} runs (004 Fig. 1b: all of them).",
        f"- lv-vae's FID from the mixture ranks {by_fid.index(LEARNED) + 1} of "
        f"{len(methods)} (004: one of the lowest).",
    ]


def _variance_note(methods: dict[str, Any], steps: int) -> str:
    """How lv-vae's sigma2 was set: in closed form (quick scale, lv_common.QUICK_VARIANCE), or
    by gradient, which Adam moves by about lr per step in log sigma2 (so it may stop short)."""
    config, test = methods[LEARNED]["config"], methods[LEARNED]["test"]
    mse = (f"its test reconstruction MSE per dimension, about where 004 Eq. 10 puts the "
           f"optimal sigma2: {test['mse']:.4g}")
    if config["likelihood"] == "optimal":
        return (f"- lv-vae's sigma2 is set in closed form here (004 Eq. 10, the running mean "
                "of the batches' squared error per dimension, as lv_common.QUICK_VARIANCE "
                f"explains): {test['sigma2']:.4g} ({mse}).")
    lr = config["lr"]
    return (f"- lv-vae's log sigma2 is trained by the network's Adam (lr {lr:g}), which moves a "
            f"parameter by about lr per step: in this run's {steps:,} steps sigma2 could fall "
            f"from its start at 1 to about exp(-{steps:,} x {lr:g}) = "
            f"{math.exp(-steps * lr):.3g} at the least (learned: {test['sigma2']:.4g}; "
            f"{mse}).")


def _report(spec: Spec, first: RunConfig, scale: dict[str, Any],
            methods: dict[str, Any]) -> str:
    components, fid_n = scale["components"], scale["fid_n"]
    how = ("in closed form, 004 Eq. 10" if methods[LEARNED]["config"]["likelihood"] == "optimal"
           else "by gradient, 004 Eq. 9")
    return "\n".join([
        f"# {spec.title} on {scale['data']} ({'quick' if scale['quick'] else 'full'})", "",
        f"004 Supp. B.1 setting: {first.net} network, d_z = {first.latent_dim}, batch "
        f"{first.batch_size}, Adam {first.lr:g}, {first.epochs} epochs on "
        f"{first.n_train or 'all'} training images, {first.n_test or 'all'} test images. "
        "Fixed runs: aevb with a Gaussian likelihood of variance sigma2; lv-vae sets sigma2 "
        f"by the ELBO ({how}). Mixture: {components} full-covariance Gaussians fitted by EM to "
        f"posterior samples of the training images (004 Eq. 13). FID: {fid_n:,} test images "
        "vs decoded samples in the features of a classifier trained on this data set "
        "(docs/metrics.md: not comparable with 004's Inception FIDs). KL(q_hat || p): "
        f"Monte Carlo with {KL_SAMPLES:,} samples of the mixture, mean ± std over {KL_RUNS} "
        "runs (004 Table 1).", "",
        _table(methods), "", "## 004's claims", "", *_claims(methods),
        _variance_note(methods, scale["steps"]), "",
        *spec.section(methods)])


def _sweep_section(methods: dict[str, Any]) -> list[str]:
    return [f"![sweep]({SWEEP_FIGURE})", "",
            "004 Fig. 1: (a) test ELBO, (b) FID from the prior and from the mixture, (c) "
            "KL(q_hat || p) with its std over the runs, against sigma2; the star is lv-vae at "
            "its learned sigma2.", ""]


def _latent2d_section(methods: dict[str, Any]) -> list[str]:
    lines = ["## KL(q_hat || p) against 004 Table 1 (MNIST)", "",
             "| run | sigma2 | KL here | 004 Table 1 |", "|---|---|---|---|"]
    for name, entry in methods.items():
        test = entry["test"]
        key = LEARNED if name == LEARNED else test["sigma2"]
        paper = PAPER_KL.get(key)
        cited = "-" if paper is None else f"{paper[0]:.3f} ± {paper[1]:.3f}"
        if name == LEARNED:
            cited += f" (at sigma2 = {PAPER_LEARNED_SIGMA2:g})"
        lines.append(f"| {name} | {test['sigma2']:.4g} | {_kl_cell(test)} | {cited} |")
    trend = sorted(((e["test"]["sigma2"], e["test"]["kl_mixture_prior"])
                   for n, e in methods.items() if n != LEARNED and e["test"]["sigma2"] >= 0.02),
                   reverse=True)
    rising = all(b[1] > a[1] for a, b in zip(trend, trend[1:], strict=False))
    learned = methods[LEARNED]["test"]
    return [*lines, "",
            f"- KL(q_hat || p) rises as sigma2 falls from {trend[0][0]:g} to {trend[-1][0]:g} "
            f"(004 Table 1: {PAPER_KL[1.0][0]:g} at 1 -> {PAPER_KL[0.02][0]:g} at 0.02): "
            f"{_holds(rising)} "
            f"({', '.join(f'{kl:.3f}' for _, kl in trend)}).",
            f"- the learned sigma2 is {learned['sigma2']:.4g} (004: {PAPER_LEARNED_SIGMA2:g}), "
            f"with KL {_kl_cell(learned)} (004: {PAPER_KL[LEARNED][0]:.3f} ± "
            f"{PAPER_KL[LEARNED][1]:.3f}).", "",
            f"![log densities]({DENSITY_FIGURE})", "",
            "004 Table 1: log densities over the latent plane of the aggregate posterior of "
            f"up to {N_DENSITY:,} training images (top) and of its mixture (bottom), one "
            "column per run, and the prior N(0, I); colours are shared within a row and span "
            "20 nats below its maximum.", ""]


# ------------------------------------------------------------------------------------------
# Figures


def _draw_sweep(out: Path, results: dict[str, Any]) -> list[Path]:
    """004 Fig. 1: three panels against sigma^2 (log axis), lv-vae as a star."""
    methods = results["methods"]
    fixed = sorted((e["test"] for n, e in methods.items() if n != LEARNED),
                   key=lambda t: t["sigma2"])
    learned = methods[LEARNED]["test"]
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
    path = out / SWEEP_FIGURE
    fig.tight_layout()
    save_figure(fig, path)
    return [path]


@torch.no_grad()
def _posteriors(model: Any, x: torch.Tensor, batch_size: int = 1024) -> tuple[torch.Tensor,
                                                                                torch.Tensor]:
    parts = [model.encode(batch, sample=False) for batch in x.split(batch_size)]
    return torch.cat([p.mu for p in parts]), torch.cat([p.logvar for p in parts])


def _draw_densities(out: Path, results: dict[str, Any]) -> list[Path]:
    """004 Table 1: the aggregate posterior and its mixture on a grid, per run, and the
    prior, over a square that holds 99.9% of every run's codes (posterior means) in each
    dimension, with a margin."""
    config = common.first_config(results)
    x = load_split(config, "train").x[:N_DENSITY]
    models = {name: load_run(out / "runs" / name)[0] for name in results["methods"]}
    posteriors = {name: _posteriors(model, x) for name, model in models.items()}
    extent = max(MIN_EXTENT, *(mu.abs().quantile(EXTENT_QUANTILE, dim=0).max().item()
                               + EXTENT_MARGIN for mu, _ in posteriors.values()))
    axis = torch.linspace(-extent, extent, RESOLUTION, dtype=torch.float64)
    grid = torch.stack(torch.meshgrid(axis, axis, indexing="xy"), -1).reshape(-1, 2)

    def image(values: torch.Tensor) -> np.ndarray:
        return values.reshape(RESOLUTION, RESOLUTION).numpy()

    components = setting(config.data, results["quick"])["components"]
    rows: dict[str, dict[str, np.ndarray]] = {"aggregate posterior": {},
                                              f"mixture ({components})": {}}
    aggregate, mixture = rows.values()
    for name, (mu, logvar) in posteriors.items():
        test = results["methods"][name]["test"]
        label = (f"lv-vae (sigma2 = {test['sigma2']:.3g})" if name == LEARNED
                 else f"sigma2 = {test['sigma2']:g}")
        aggregate[label] = image(aggregate_log_density(grid, mu.double(), logvar.double()))
        fitted = run_mixture(out / "runs" / name, models[name], None)
        mixture[label] = image(fitted.log_prob(grid))
    for panels in rows.values():
        panels["prior"] = image(standard_normal_log_prob(grid))
    path = out / DENSITY_FIGURE
    plot_log_densities(rows, extent, path)
    return [path]


SWEEP_SPEC = Spec("lv-sweep", None, "Fixed vs learned likelihood variance at d_z = 16 "
                  "(004 Fig. 1)", _draw_sweep, _sweep_section)
LATENT2D_SPEC = Spec("lv-latent2d", 2, "Fixed vs learned likelihood variance at d_z = 2 "
                     "(004 Table 1, Supp. C)", _draw_densities, _latent2d_section)


def _experiment(spec: Spec, summary: str) -> common.Experiment:
    return common.Experiment(spec.name, summary, partial(_run, spec), partial(_plot, spec))


SWEEP = _experiment(SWEEP_SPEC, "004 Fig. 1: test ELBO, FID (prior, mixture) and "
                    "KL(q_hat || p) against a fixed or learned likelihood variance, d_z = 16")
LATENT2D = _experiment(LATENT2D_SPEC, "004 Table 1, Supp. C: aggregate-posterior and mixture "
                       "log densities and KL(q_hat || p) for fixed and learned variances, "
                       "d_z = 2")
EXPERIMENTS = (SWEEP, LATENT2D)
