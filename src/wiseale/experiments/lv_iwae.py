"""004 Table 3 (``lv-iwae``): the IWAE test log-likelihood of the learned-variance VAEs (a
global sigma^2 and the two-stage pixel-wise sigma^2(z)) against VAE, beta-VAE and DIP-VAE,
with N(0, I) and with the run's Gaussian mixture of the aggregate posterior as the prior; and
004 Fig. 3-4, the pixel-wise model's predicted variance beside its reconstructions and samples.

Runs: ``lv-vae`` ("dataset": one learned sigma^2, Eq. 9), ``lv-vae-pixel`` ("pixel": Alg. 1,
the setting's 16 stage-1 epochs with that global sigma^2, then
sigma_k^2(z) = v_k(z) + sigma^2_dataset / 2 from the `lv-mnist` variance branch, Eq. 11),
``vae`` (sigma^2 = 0.5), ``beta-vae`` (sigma^2 = 1) and
``dip-vae`` (sigma^2 = 0.5), all at d_z = 16 in 004's setting (``lv_common``, Supp. B.1; at
``--quick`` the global sigma^2 is in closed form, Eq. 10: ``lv_common.QUICK_VARIANCE``).

Measures (004 Sec. 5.2): the IWAE bound with K = 20 importance samples per image on the first
500 test images, once with p(z) = N(0, I) (``iwae_prior``) and once with p(z) the run's
mixture of the setting's 32 components (``iwae_mixture``, fitted once per run on one posterior
sample per training image). For the pixel-wise run (004 Sec. 5.4): the Pearson correlation,
over all test pixels, between the predicted sigma^2 and the squared reconstruction error, both
at the posterior mean (``variance_error_corr``; ``variance_error_corr_per_image`` is the mean
of the per-image correlations, without the differences between images), and the smallest
predicted variance against its floor sigma^2_dataset / 2 (and the fraction of pixels at it).

Data: fashion-mnist (default) and mnist, Table 3's data sets.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from wiseale.experiments.common import Experiment, first_config, read_results, write_results
from wiseale.experiments.lv_common import setting
from wiseale.experiments.lv_fid import (
    SAMPLE_SEED,
    cell,
    claim,
    final_sigma2,
    first_test_images,
    setting_text,
    sigma2_note,
    table,
    train_runs,
    write_report,
)
from wiseale.metrics.latent import iwae
from wiseale.model import Autoencoder
from wiseale.plots import plot_image_grid, scale_per_image
from wiseale.samplers import MIXTURE_FILE, LatentSampler, load_sampler, run_mixture
from wiseale.training import load_run

IWAE_RUNS = ("lv-vae", "lv-vae-pixel", "vae", "beta-vae", "dip-vae")  # Table 3's columns
PIXEL = "lv-vae-pixel"
IWAE_N, IWAE_K = 500, 20  # 004 Sec. 5.2: 500 test images, 20 importance samples
IWAE_SEED = 1234
FAR = 1.0  # "far higher": by more than this many nats per data dimension
AT_FLOOR = 1e-3  # a predicted variance within this fraction of the floor counts as at the floor
PAPER_TABLE3 = {  # 004 Table 3, in IWAE_RUNS' order
    "mnist": {"iwae_prior": (1307, 6037, -462, -730, -461),
              "iwae_mixture": (1323, 6052, -461, -730, -460)},
    "fashion-mnist": {"iwae_prior": (1145, 5708, -463, -731, -463),
                      "iwae_mixture": (1157, 5724, -462, -731, -462)},
}


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


def _claims(methods: dict[str, Any], dims: int) -> list[str]:
    test = {name: entry["test"] for name, entry in methods.items()}
    gap = test[PIXEL]["iwae_prior"] - test["lv-vae"]["iwae_prior"]
    fixed = [name for name in test if name not in ("lv-vae", PIXEL)]
    beaten = [name for name in fixed if test[name]["iwae_prior"] >= test["lv-vae"]["iwae_prior"]]
    lower = [name for name, t in test.items() if t["iwae_mixture"] < t["iwae_prior"]]
    pixel = test[PIXEL]
    corr = pixel["variance_error_corr"]
    return [
        claim("pixel-wise variance gives a far higher IWAE than the global one",
              gap > FAR * dims, f"pixel {pixel['iwae_prior']:.1f} vs global "
              f"{test['lv-vae']['iwae_prior']:.1f} with the prior: {gap:+.1f} nats, "
              f"{gap / dims:+.2f} per dimension; 'far' = more than {FAR:g} per dimension "
              f"({FAR * dims:g}); 004: +4730 and +4563"),
        claim("learning sigma^2 gives a higher IWAE than every fixed-variance model",
              not beaten, f"not higher than {', '.join(beaten)}" if beaten else
              f"lv-vae {test['lv-vae']['iwae_prior']:.1f} vs the best fixed "
              f"{max(test[n]['iwae_prior'] for n in fixed):.1f}"),
        claim("the mixture prior gives an IWAE at least as high as N(0, I) for every run",
              not lower, f"lower for {', '.join(lower)}" if lower else
              "004: higher by 0 to 16 nats"),
        claim("the predicted sigma^2 highlights where the reconstruction differs (positive "
              "correlation with the squared error)", corr is not None and corr > 0,
              f"Pearson {cell(corr)} over all test pixels, "
              f"{cell(pixel['variance_error_corr_per_image'])} within images on average"),
    ]


def run(out: Path, quick: bool = False, seed: int = 0, data: str | None = None,
        progress: bool = True, data_dir: str | None = None, device: str = "cpu") -> Path:
    """Train the five runs, fit their mixtures, measure both IWAE bounds and the pixel-wise
    model's uncertainty, and write results.json, the figures and report.md."""
    out = Path(out)
    data, methods, train_data, test_data = train_runs("lv-iwae", out, IWAE_RUNS, quick, seed,
                                                      data, progress, data_dir, device)
    components = setting(data, quick)["components"]
    x = test_data.x[:IWAE_N]
    for name, entry in methods.items():
        model = load_run(out / "runs" / name)[0]
        mixture = run_mixture(out / "runs" / name, model, train_data.x, components=components,
                              seed=seed)
        entry["test"]["iwae_prior"] = seeded_iwae(model, x)
        entry["test"]["iwae_mixture"] = seeded_iwae(model, x, mixture)
        if name == PIXEL:
            entry["test"].update(uncertainty(model, test_data.x))
    write_results(out, "lv-iwae", quick, methods)
    plot(out)
    paper = PAPER_TABLE3[data]
    rows = [[name, cell(final_sigma2(entry)), cell(entry["test"]["mse"]),
             f"{entry['test']['iwae_prior']:.1f}",
             f"{entry['test']['iwae_mixture']:.1f}", f"{paper['iwae_prior'][i]:g}",
             f"{paper['iwae_mixture'][i]:g}"] for i, (name, entry) in enumerate(methods.items())]
    pixel = methods[PIXEL]["test"]
    dims = int(np.prod(test_data.x.shape[1:]))
    stage1 = methods[PIXEL]["config"]["options"]["stage1_epochs"]
    return write_report(out, [
        f"# 004 Table 3: IWAE test log-likelihood on {data} ({'quick' if quick else 'full'})",
        "", setting_text(first_config({"methods": methods}), quick) + f" lv-vae-pixel: "
        f"stage 1 (global sigma^2) for at most {stage1} epochs, then stage 2 (Alg. 1).",
        f"IWAE with K = {IWAE_K} on the first {len(x)} test images, in nats per image, with "
        f"p(z) = N(0, I) (prior) and p(z) = the run's {components}-component mixture fitted to "
        "one posterior sample per training image (mixture). sigma^2: the global variance at "
        "the end of training (lv-vae-pixel: the frozen sigma^2_dataset; its predicted "
        "variance is that over 2 plus the variance branch); test MSE: per pixel, "
        "reconstructing from the posterior mean.", "",
        table(["run", "sigma^2", "test MSE", "IWAE prior", "IWAE mixture", "004 prior",
               "004 mixture"], rows), "", *_claims(methods, dims),
        sigma2_note(methods["lv-vae"], len(train_data)), "",
        "## Uncertainty of the pixel-wise model (004 Sec. 5.4, Fig. 3-4)", "",
        f"Over the {len(test_data)} test images at the posterior mean: mean predicted sigma^2 "
        f"{pixel['variance_mean']:.4g} (smallest {pixel['variance_min']:.4g}, floor "
        f"sigma^2_dataset / 2 = {pixel['variance_floor']:.4g}, within {100 * AT_FLOOR:g}% "
        f"of which are {100 * pixel['variance_at_floor']:.1f}% of the pixels; trained into "
        f"stage {pixel['stage']}), mean squared error {pixel['squared_error_mean']:.4g}; "
        f"correlation of the two over all pixels {cell(pixel['variance_error_corr'])}, within "
        f"images {cell(pixel['variance_error_corr_per_image'])} on average. With every "
        f"variance at or above the floor, log p(x) <= {dims} * -1/2 log(2 pi floor) = "
        f"{floor_bound(pixel['variance_floor'], dims):.0f} nats for any image (all errors zero), "
        "whatever the variance branch learns.", "",
        "![reconstructions](fig3_uncertainty_reconstructions.png)", "",
        "Rows: test images, reconstructions, predicted sigma^2 and squared error, the last two "
        "each divided by its image's maximum.", "",
        "![samples](fig4_uncertainty_samples.png)", "",
        "Rows: samples from the mixture and their predicted sigma^2 (divided by each image's "
        "maximum)."])


@torch.no_grad()
def plot(out: Path) -> list[Path]:
    """004 Fig. 3 (test images, reconstructions, predicted sigma^2, squared error) and Fig. 4
    (mixture samples and their predicted sigma^2) for the pixel-wise run."""
    out = Path(out)
    results = read_results(out, "lv-iwae")
    run_dir = out / "runs" / PIXEL
    model = load_run(run_dir)[0]
    x = torch.from_numpy(first_test_images(results))
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
    return [fig3, fig4]


IWAE = Experiment("lv-iwae", "004 Table 3 and Fig. 3-4: IWAE test log-likelihood with the prior "
                  "and with the mixture, and the pixel-wise model's predicted variance", run, plot)
EXPERIMENT = IWAE
