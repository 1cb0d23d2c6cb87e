"""Likelihood bounds and latent-space measures of a trained model.

Definitions (docs/metrics.md gives them as formulas):
- ``iwae``: the importance-weighted bound of Burda et al. with K samples;
- ``aggregate_kl_mc``: KL(q_hat(z) || N(0, I)) by Monte Carlo (004 Table 1), with
  q_hat(z) = 1/N sum_i q(z|x_i) the aggregate posterior of N samples;
- ``sampler_prior_kl``: KL(q_hat || N(0, I)) by Monte Carlo for a fitted sampler q_hat (the
  Gaussian mixture of 004 Eq. 13; 004 Table 1, Fig. 1c);
- ``latent_total_variance``: sum_k Var(z_k) of encoded samples (003 Tables 6-9);
- ``gaussianity_ks``: per dimension, the Kolmogorov-Smirnov distance of the standardised
  codes to N(0, 1) (003 Fig. 5: how Gaussian each feature's histogram is);
- ``posterior_overlap`` (smoothness), ``aggregate_kl_mc`` (compactness) and
  ``knn_accuracy`` (separation): the three properties of 001 Sec. 1 and Fig. 1.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from wiseale.functional import gaussian_log_prob, standard_normal_log_prob
from wiseale.model import Autoencoder
from wiseale.samplers import LatentSampler


@torch.no_grad()
def iwae(model: Autoencoder, x: Tensor, k: int = 20, batch_size: int = 100,
         prior: LatentSampler | None = None) -> float | None:
    """Mean over x of log 1/K sum_k p(x|z_k) p(z_k) / q(z_k|x), z_k ~ q(z|x) (Burda et al.).

    Each x is encoded K times (so any posterior with a density works: diagonal Gaussian,
    fixed noise, or a flow with its ``log_q``). None for a deterministic encoder.
    K = 1 gives the ELBO's estimate. ``prior`` replaces p(z) = N(0, I) by another density,
    e.g. a mixture fitted to the aggregate posterior (004 Table 3's second row).
    """
    log_prior = standard_normal_log_prob if prior is None else prior.log_prob
    values = []
    for batch in x.split(batch_size):
        copies = batch.repeat(k, *[1] * (batch.dim() - 1))
        post = model.encode(copies, sample=True)
        if not post.has_density:
            return None
        log_q = post.log_prob_of_sample()
        log_px = -model.likelihood.nll(copies, model.decode(post.z))
        log_w = (log_px + log_prior(post.z).to(log_px) - log_q).view(k, -1)
        values.append(torch.logsumexp(log_w, dim=0) - math.log(k))
    return torch.cat(values).mean().item()


@torch.no_grad()
def aggregate_kl_mc(mu: Tensor, logvar: Tensor, n_samples: int = 10_000,
                    generator: torch.Generator | None = None,
                    chunk_size: int = 512) -> tuple[float, float]:
    """(estimate, standard error) of KL(q_hat || N(0, I)), q_hat = 1/N sum_i N(mu_i, var_i).

    Draws ``n_samples`` z ~ q_hat (a component uniformly, then its Gaussian) and averages
    log q_hat(z) - log N(z | 0, I); log q_hat is a log-sum-exp over the N components.
    """
    n, d = mu.shape
    index = torch.randint(n, (n_samples,), generator=generator, device=mu.device)
    noise = torch.randn((n_samples, d), generator=generator, device=mu.device, dtype=mu.dtype)
    z = mu[index] + (0.5 * logvar[index]).exp() * noise
    values = aggregate_log_density(z, mu, logvar, chunk_size) - standard_normal_log_prob(z)
    return values.mean().item(), (values.std() / math.sqrt(n_samples)).item()


@torch.no_grad()
def aggregate_log_density(z: Tensor, mu: Tensor, logvar: Tensor,
                          chunk_size: int = 512) -> Tensor:
    """log q_hat(z) for each row of z, q_hat = 1/N sum_i N(mu_i, diag exp(logvar_i)): the
    aggregate posterior of N encoded samples (004 Eq. 12), in chunks of z."""
    return torch.cat([
        torch.logsumexp(gaussian_log_prob(chunk[:, None, :], mu[None], logvar[None]), dim=1)
        - math.log(len(mu)) for chunk in z.split(chunk_size)])


def latent_total_variance(z: Tensor) -> float:
    """sum_k Var(z_k) over the rows of z (003 Tables 6-9: Sigma var(z_i))."""
    return z.var(dim=0).sum().item()


def posterior_overlap(mu: Tensor, logvar: Tensor) -> float:
    """Smoothness: the mean Bhattacharyya coefficient BC(q_i, q_nn(i)) between each posterior
    and the posterior whose mean is nearest to its own; 1 = identical, 0 = disjoint.

    BC = exp(-D_B), D_B = 1/8 dmu' S^-1 dmu + 1/2 log(det S / sqrt(det S_i det S_j)),
    S = (S_i + S_j) / 2 (diagonal Gaussian posteriors; a deterministic encoder's points
    have overlap 0).
    """
    nearest = _nearest(mu, 1)[:, 0]
    var_i, var_j = logvar.exp(), logvar[nearest].exp()
    var = 0.5 * (var_i + var_j)
    d_b = 0.125 * ((mu - mu[nearest]).square() / var).sum(-1) + 0.5 * (
        var.log().sum(-1) - 0.5 * (logvar.sum(-1) + logvar[nearest].sum(-1)))
    return torch.exp(-d_b).mean().item()


def _nearest(z: Tensor, k: int, chunk_size: int = 1024) -> Tensor:
    """Indices [N, k] of each row's k nearest other rows (Euclidean), in row chunks."""
    found = []
    for start in range(0, len(z), chunk_size):
        distances = torch.cdist(z[start:start + chunk_size], z)
        rows = torch.arange(distances.shape[0], device=z.device)
        distances[rows, rows + start] = float("inf")
        found.append(distances.topk(k, largest=False).indices)
    return torch.cat(found)


def knn_accuracy(z: Tensor, labels: Tensor, k: int = 5) -> float:
    """Separation: leave-one-out k-nearest-neighbour label accuracy of the latent means
    (majority vote of the k nearest other points, ties to the smallest label)."""
    neighbours = _nearest(z, k)
    votes = torch.nn.functional.one_hot(labels[neighbours], int(labels.max()) + 1).sum(1)
    return (votes.argmax(dim=1) == labels).float().mean().item()


def gaussianity_ks(z: Tensor) -> list[float]:
    """Per dimension k: sup_t |F_n(t) - Phi(t)| for the codes z[:, k] standardised by their own
    mean and std (the one-sample Kolmogorov-Smirnov distance to a Gaussian, in [0, 1]; about
    0.9 / sqrt(n) for Gaussian data, larger for multimodal or skewed features)."""
    if z.ndim != 2 or len(z) < 2:
        raise ValueError(f"codes must be an [n >= 2, d] tensor, got {tuple(z.shape)}")
    z = z.double()
    u = ((z - z.mean(0)) / z.std(0).clamp_min(1e-12)).sort(dim=0).values
    cdf = torch.special.ndtr(u)
    n = len(z)
    above = torch.arange(1, n + 1, dtype=z.dtype, device=z.device)[:, None] / n - cdf
    below = cdf - torch.arange(n, dtype=z.dtype, device=z.device)[:, None] / n
    return torch.maximum(above, below).amax(0).tolist()


@torch.no_grad()
def sampler_prior_kl(sampler: LatentSampler, n_samples: int = 10_000, runs: int = 10,
                     seed: int = 0) -> tuple[float, float]:
    """(mean, std over ``runs``) of the Monte Carlo estimate of KL(q_hat || N(0, I)) =
    E_q_hat[log q_hat(z) - log N(z | 0, I)] with ``n_samples`` z ~ q_hat per run, for a fitted
    sampler q_hat such as the Gaussian mixture of the aggregate posterior (004 Table 1: 10k
    samples, 10 runs). Seeded; the global RNG is untouched."""
    generator = torch.Generator().manual_seed(seed)
    estimates = []
    for _ in range(runs):
        z = sampler.sample(n_samples, generator)
        estimates.append((sampler.log_prob(z).double()
                          - standard_normal_log_prob(z.double())).mean().item())
    values = torch.tensor(estimates, dtype=torch.float64)
    return values.mean().item(), (values.std().item() if runs > 1 else 0.0)
