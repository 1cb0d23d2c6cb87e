"""Evaluation of a trained model on a data set (001 Sec. 5, Fig. 6)."""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor

from wiseale import functional
from wiseale.data import Dataset
from wiseale.errors import WisealeError
from wiseale.metrics.fid import FeatureExtractor, feature_extractor, image_fid
from wiseale.metrics.latent import (
    aggregate_kl_mc,
    iwae,
    knn_accuracy,
    latent_total_variance,
    posterior_overlap,
)
from wiseale.model import Autoencoder
from wiseale.noises import GaussianPosterior, PointPosterior
from wiseale.samplers import LatentSampler

AGGREGATE_SAMPLES = 4096
EVAL_SEED = 1234
Samples = Tensor | Dataset  # a data set is read a batch at a time, as float32


def _device(model: Autoencoder) -> torch.device:
    return next(model.parameters()).device


def _first(x: Samples, n: int, device: torch.device) -> Tensor:
    """The first ``n`` samples of ``x`` as a float32 tensor on ``device``."""
    return x.floats(slice(0, n), device) if isinstance(x, Dataset) else x[:n]


def _batches(x: Samples, size: int, device: torch.device) -> Iterable[Tensor]:
    """``x`` in consecutive batches of ``size`` samples."""
    return x.batches(size, device) if isinstance(x, Dataset) else x.split(size)


@torch.no_grad()
def evaluate(model: Autoencoder, x: Samples, batch_size: int = 1024,
             kernel: str = "auto") -> dict[str, float | None]:
    """Test metrics, each a mean over the samples of ``x`` (a tensor, or a data set read a
    batch at a time):

    - ``recon_error``: sum_d (x - x_hat)^2 with x_hat decoded from the posterior's code
      (``Posterior.code``: the mean; for a flow posterior the flow at eps = 0);
    - ``mse``: recon_error / number of data dimensions;
    - ``kl_prior``: KL(q(z|x) || N(0, I)), the "AEVB KL" of Fig. 6;
    - ``elbo``: log p(x|z) - KL(q(z|x) || N(0, I)) with one z ~ q(z|x) (seeded);
    - ``aggregate_kl_ub``: Eq. 21 over the first 4096 posteriors (the bound depends on how
      many: compare values computed over the same number), with the ``kernel`` of
      functional.aggregate_kl_upper_bound.
    The last three are None for a deterministic encoder, which has no posterior density; for a
    flow posterior (vae-iaf) ``kl_prior`` and ``elbo`` use one-sample Monte Carlo KL and
    ``aggregate_kl_ub`` is None.
    """
    was_training = model.training
    model.eval()
    sse, kl, elbo, mus, logvars = [], [], [], [], []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(EVAL_SEED)
        for batch in _batches(x, batch_size, _device(model)):
            post = model.encode(batch, sample=True)
            x_hat = model.likelihood.mean(model.decode(post.code))
            sse.append((batch - x_hat).square().flatten(1).sum(1))
            if not post.has_density:
                continue
            batch_kl = post.kl_to_prior()
            kl.append(batch_kl)
            elbo.append(-model.likelihood.nll(batch, model.decode(post.z)) - batch_kl)
            if isinstance(post, GaussianPosterior):
                mus.append(post.mu)
                logvars.append(post.logvar)
    model.train(was_training)
    recon_error = torch.cat(sse).mean().item()
    result: dict[str, float | None] = {"recon_error": recon_error,
                                       "mse": recon_error / batch[0].numel(),
                                       "kl_prior": None, "elbo": None, "aggregate_kl_ub": None}
    if kl:
        result.update(kl_prior=torch.cat(kl).mean().item(), elbo=torch.cat(elbo).mean().item())
    if mus:
        mu, logvar = torch.cat(mus)[:AGGREGATE_SAMPLES], torch.cat(logvars)[:AGGREGATE_SAMPLES]
        result["aggregate_kl_ub"] = functional.aggregate_kl_upper_bound(mu, logvar,
                                                                        kernel=kernel).item()
    return result


IWAE_K, IWAE_N, LATENT_N, MC_SAMPLES = 20, 1000, 2000, 10_000


@torch.no_grad()
def evaluate_full(model: Autoencoder, x: Samples, y: Tensor | None = None,
                  kernel: str = "auto") -> dict[str, Any]:
    """:func:`evaluate` plus the measures of docs/metrics.md, for the end of a run:

    ``iwae`` (K = 20 on the first 1,000 samples), and on the first 2,000 samples:
    ``aggregate_kl_mc`` (10,000 Monte Carlo samples) with its standard error,
    ``latent_total_variance``, ``posterior_overlap`` and, with labels, ``knn_accuracy``;
    for a fixed-noise encoder, ``information_rate_bits`` (003 Sec. 4).
    Seeded, so the same model gives the same numbers.
    """
    result: dict[str, Any] = dict(evaluate(model, x, kernel=kernel))
    was_training = model.training
    model.eval()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(EVAL_SEED)
        result["iwae"] = iwae(model, _first(x, IWAE_N, _device(model)), k=IWAE_K)
        subset = _first(x, LATENT_N, _device(model))
        posts = [model.encode(batch) for batch in subset.split(1024)]
        mu = torch.cat([p.mu for p in posts])
        code = torch.cat([p.code for p in posts])
        z = torch.cat([p.z for p in posts])
        result["latent_total_variance"] = latent_total_variance(z)
        # points do not overlap (0); a flow has no diagonal Gaussian to measure (None)
        result["posterior_overlap"] = 0.0 if isinstance(posts[0], PointPosterior) else None
        result["aggregate_kl_mc"] = result["aggregate_kl_mc_se"] = None
        if isinstance(posts[0], GaussianPosterior):
            logvar = torch.cat([p.logvar for p in posts])
            result["posterior_overlap"] = posterior_overlap(mu, logvar)
            result["aggregate_kl_mc"], result["aggregate_kl_mc_se"] = aggregate_kl_mc(
                mu, logvar, MC_SAMPLES)
        result["knn_accuracy"] = None if y is None else knn_accuracy(code, y[:LATENT_N])
        if model.noise.sigma_eps is not None:
            result["information_rate_bits"] = functional.information_rate_bits(model.latent_dim,
                                                                      model.noise.sigma_eps)
    model.train(was_training)
    return result


FID_N = 10_000  # 003 Table 2: 10,000 test images and as many samples


def fid_count(test: Dataset, n: int = FID_N) -> int:
    """How many images :func:`sample_fid` compares: ``n``, or every test image when there are
    fewer (with a warning, since FIDs over fewer images are biased upwards)."""
    if len(test) < n:
        warnings.warn(f"the FID of {test.name} uses its {len(test):,} test images, fewer than "
                      f"the {n:,} asked for (003 Table 2 uses 10,000); FIDs over different "
                      "counts are not comparable", stacklevel=2)
    return min(n, len(test))


def sample_features(train: Dataset) -> FeatureExtractor:
    """The features :func:`sample_fid` measures in: Inception when ``$WISEALE_INCEPTION`` names
    its weights (the papers' FID), else a classifier trained once (cached) on the labelled
    training images (docs/metrics.md: not comparable with Inception FIDs). Unlabelled images
    (CelebA) need Inception. The extractor's ``name`` says which; record it with the FID."""
    if len(train.sample_shape) != 3:
        raise WisealeError(f"the FID needs images (N x C x H x W); {train.name} has samples of "
                           f"shape {tuple(train.sample_shape)}")
    return feature_extractor(train.name.rsplit("-", 1)[0], train.floats(), train.y)


def sample_fid(model: Autoencoder, train: Dataset, test: Dataset, n: int = FID_N,
               sampler: LatentSampler | None = None,
               features: FeatureExtractor | None = None) -> float:
    """FID between :func:`fid_count` test images (``n``, 003's 10,000, or all there are) and
    as many decoded samples (clamped to [0, 1]) with z from the prior, or from ``sampler``
    (e.g. a flow, 003 Table 2's Q_Z column; a mixture, 004 Eq. 13), in ``features`` (default:
    :func:`sample_features` of ``train``). Record ``fid_count(test, n)`` beside it."""
    if features is None:
        features = sample_features(train)
    reference = test.floats(slice(0, fid_count(test, n)))
    samples = model.sample(len(reference), torch.Generator().manual_seed(EVAL_SEED), sampler)
    return image_fid(features, reference, samples.clamp(0, 1))  # Gaussian means can overshoot
