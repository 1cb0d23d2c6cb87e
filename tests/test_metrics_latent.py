import math

import numpy as np
import pytest
import torch
from torch import nn

from wiseale import functional
from wiseale.likelihoods import Bernoulli, FixedGaussian
from wiseale.metrics.latent import (
    aggregate_kl_mc,
    gaussianity_ks,
    iwae,
    knn_accuracy,
    latent_total_variance,
    posterior_overlap,
    sampler_prior_kl,
)
from wiseale.model import Autoencoder
from wiseale.noises import GaussianNoise

D, DZ, SIGMA2 = 5, 2, 0.3


def _linear_gaussian_model(exact_posterior: bool) -> tuple[Autoencoder, torch.Tensor,
                                                            torch.Tensor]:
    """x = W z + b + noise: log p(x) is N(b, W W' + s2 I); W has orthogonal columns, so the
    true posterior is diagonal and representable by the encoder's heads."""
    torch.manual_seed(0)
    q, _ = torch.linalg.qr(torch.randn(D, DZ, dtype=torch.float64))
    w = q * torch.tensor([1.5, 0.7], dtype=torch.float64)
    b = torch.randn(D, dtype=torch.float64)
    decoder = nn.Linear(DZ, D).double()
    decoder.weight.data, decoder.bias.data = w.clone(), b.clone()
    noise = GaussianNoise(D, DZ).double()
    post_var = 1.0 / (1.0 + (w * w).sum(0) / SIGMA2)  # diagonal because W'W is diagonal
    noise.mu_head.weight.data = (post_var[:, None] * w.T / SIGMA2)
    noise.mu_head.bias.data = -(post_var[:, None] * w.T / SIGMA2) @ b
    noise.sigma_head.weight.data.zero_()
    sigma = post_var.sqrt() - 1e-3  # undo the encoder's floor
    noise.sigma_head.bias.data = torch.log(torch.expm1(sigma))  # inverse softplus
    if not exact_posterior:
        noise.mu_head.bias.data += 0.4
        noise.sigma_head.bias.data += 0.5
    model = Autoencoder(nn.Identity(), noise, decoder, FixedGaussian(SIGMA2), [])
    return model, w, b


def _log_marginal(x, w, b):
    cov = w @ w.T + SIGMA2 * torch.eye(D, dtype=torch.float64)
    return torch.distributions.MultivariateNormal(b, cov).log_prob(x)


def test_iwae_is_exact_with_the_true_posterior():
    model, w, b = _linear_gaussian_model(exact_posterior=True)
    x = torch.randn(300, D, dtype=torch.float64) * 1.5
    truth = _log_marginal(x, w, b).mean().item()
    assert math.isclose(iwae(model, x, k=1), truth, rel_tol=1e-6)  # constant weights


def test_iwae_bounds_grow_with_k_and_stay_below_log_likelihood():
    model, w, b = _linear_gaussian_model(exact_posterior=False)
    torch.manual_seed(1)
    x = torch.randn(400, D, dtype=torch.float64) * 1.5
    truth = _log_marginal(x, w, b).mean().item()
    elbo, k10, k500 = (iwae(model, x, k=k) for k in (1, 10, 500))
    assert elbo < k10 < k500 <= truth + 0.01
    assert truth - k500 < 0.1 * (truth - elbo)  # K = 500 closes most of the gap


def test_aggregate_kl_mc_single_component_is_the_gaussian_kl():
    mu = torch.tensor([[0.5, -1.0, 2.0]], dtype=torch.float64)
    logvar = torch.tensor([[0.2, -1.0, 0.5]], dtype=torch.float64)
    gen = torch.Generator().manual_seed(0)
    value, se = aggregate_kl_mc(mu, logvar, n_samples=100_000, generator=gen)
    assert abs(value - functional.gaussian_kl(mu, logvar).item()) < 4 * se


def test_aggregate_kl_mc_against_quadrature_and_the_eq21_bound():
    mu = torch.tensor([[-1.5], [0.3], [2.0]], dtype=torch.float64)
    logvar = torch.tensor([[-1.0], [-2.0], [0.0]], dtype=torch.float64)
    grid = np.linspace(-12, 12, 200_001)
    var = logvar.exp().numpy().ravel()
    comps = np.exp(-0.5 * (grid[:, None] - mu.numpy().ravel()) ** 2 / var) / np.sqrt(
        2 * np.pi * var)
    q = comps.mean(1)
    p = np.exp(-0.5 * grid**2) / np.sqrt(2 * np.pi)
    exact = np.trapezoid(q * (np.log(q + 1e-300) - np.log(p)), grid)
    value, se = aggregate_kl_mc(mu, logvar, n_samples=200_000,
                                generator=torch.Generator().manual_seed(0))
    assert abs(value - exact) < 4 * se
    assert exact <= functional.aggregate_kl_upper_bound(mu, logvar).item()


def test_latent_total_variance():
    z = torch.randn(1000, 3) * torch.tensor([1.0, 2.0, 0.5])
    assert math.isclose(latent_total_variance(z), float(np.var(z.numpy(), axis=0,
                                                               ddof=1).sum()), rel_tol=1e-5)


def test_posterior_overlap_matches_numerical_bhattacharyya():
    mu = torch.tensor([[0.0], [0.8], [10.0], [10.5]], dtype=torch.float64)
    logvar = torch.tensor([[0.0], [-0.5], [-1.0], [0.3]], dtype=torch.float64)
    grid = np.linspace(-15, 25, 400_001)

    def density(i):
        v = math.exp(logvar[i, 0].item())
        return np.exp(-0.5 * (grid - mu[i, 0].item()) ** 2 / v) / math.sqrt(2 * math.pi * v)

    nearest = [1, 0, 3, 2]
    bc = [np.trapezoid(np.sqrt(density(i) * density(j)), grid) for i, j in enumerate(nearest)]
    assert math.isclose(posterior_overlap(mu, logvar), float(np.mean(bc)), rel_tol=1e-6)
    same = torch.zeros(4, 2)
    assert math.isclose(posterior_overlap(same, same), 1.0, rel_tol=1e-6)


def test_knn_accuracy_separated_and_random():
    gen = torch.Generator().manual_seed(0)
    labels = torch.arange(4).repeat_interleave(100)
    centres = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [10.0, 10.0]])
    z = centres[labels] + torch.randn(400, 2, generator=gen)
    assert knn_accuracy(z, labels) == 1.0
    shuffled = labels[torch.randperm(400, generator=gen)]
    assert knn_accuracy(z, shuffled) < 0.45
    assert knn_accuracy(z, labels, k=1) == 1.0


def test_neighbours_past_the_first_chunk_of_rows_exclude_the_point_itself():
    """1,500 points, more than the 1,024 rows searched at once: knn_accuracy and
    posterior_overlap against a float64 brute force over the full distance matrix. A point
    that counted itself would vote for its own label and overlap itself (BC = 1)."""
    g = torch.Generator().manual_seed(0)
    n, k = 1500, 5
    z = torch.randn(n, 2, generator=g, dtype=torch.float64)
    labels = torch.randint(0, 3, (n,), generator=g)  # random: leave-one-out accuracy ~ 1/3
    points, y = z.numpy(), labels.numpy()
    distances = ((points[:, None, :] - points[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(distances, np.inf)
    neighbours = np.argsort(distances, axis=1, kind="stable")[:, :k]
    votes = np.stack([np.bincount(y[row], minlength=3) for row in neighbours])
    expected = float((votes.argmax(1) == y).mean())  # ties to the smallest label
    assert 0.25 < expected < 0.45
    assert knn_accuracy(z, labels, k=k) == pytest.approx(expected, abs=0.1 / n)  # one point: 1/n

    mu = z[:, :1]  # 1-D posteriors: BC = sqrt(2 s1 s2 / (s1^2 + s2^2)) exp(-dmu^2 / 4(s1^2 + s2^2))
    logvar = torch.rand(n, 1, generator=g, dtype=torch.float64) - 3.0
    m, var = mu.numpy()[:, 0], np.exp(logvar.numpy()[:, 0])
    gaps = np.abs(m[:, None] - m[None, :])
    np.fill_diagonal(gaps, np.inf)
    j = gaps.argmin(1)
    sd_i, sd_j = np.sqrt(var), np.sqrt(var[j])
    bc = np.sqrt(2 * sd_i * sd_j / (var + var[j])) * np.exp(-(m - m[j]) ** 2 / (4 * (var + var[j])))
    assert posterior_overlap(mu, logvar) == pytest.approx(float(bc.mean()), rel=1e-10)


def test_iwae_is_above_the_elbo_for_every_stochastic_method():
    from wiseale.build import build_model
    from wiseale.methods import METHODS, resolve_options
    from wiseale.nets import build_nets

    x = (torch.rand(400, 12) > 0.5).float()
    for method in METHODS.values():
        if method.noise == "none":
            continue
        torch.manual_seed(0)
        enc, feat, dec = build_nets("mlp", (12,), 3)
        model = build_model(method, resolve_options(method, {}), enc, feat, dec, Bernoulli(), 3)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
        for _ in range(30):  # a little training, so that q is not the initial one
            optimizer.zero_grad()
            model(x[:64]).loss.backward()
            optimizer.step()
        torch.manual_seed(1)
        elbo = iwae(model, x, k=1)
        bound = iwae(model, x, k=50)
        assert bound >= elbo - 0.05, method.name


def test_gaussianity_ks_matches_the_ks_statistic_and_separates_shapes():
    from scipy import stats

    g = torch.Generator().manual_seed(0)
    gaussian = 3 + 2 * torch.randn(4000, 1, generator=g)
    bimodal = torch.cat([torch.randn(2000, 1, generator=g) - 4,
                         torch.randn(2000, 1, generator=g) + 4])
    values = gaussianity_ks(torch.cat([gaussian, bimodal], 1))
    for value, column in zip(values, (gaussian, bimodal), strict=True):
        u = (column[:, 0].double() - column.double().mean()) / column.double().std()
        assert value == pytest.approx(stats.kstest(u.numpy(), "norm").statistic, abs=1e-12)
    assert values[0] < 0.03 < 0.1 < values[1]
    with pytest.raises(ValueError, match="codes must be"):
        gaussianity_ks(torch.randn(1, 3))


def test_iwae_with_the_prior_as_a_sampler_is_the_default_iwae():
    from wiseale.samplers import PriorSampler

    torch.manual_seed(0)
    model = Autoencoder(nn.Linear(D, 8), GaussianNoise(8, DZ), nn.Linear(DZ, D),
                        FixedGaussian(SIGMA2), []).eval()
    x = torch.randn(40, D)
    torch.manual_seed(1)
    default = iwae(model, x, k=5)
    torch.manual_seed(1)
    assert iwae(model, x, k=5, prior=PriorSampler(DZ)) == pytest.approx(default, abs=1e-5)


def test_sampler_prior_kl_matches_the_gaussian_closed_form():
    from wiseale.samplers import fit_mixture

    g = torch.Generator().manual_seed(0)
    z = 0.5 + 0.7 * torch.randn(20_000, 2, generator=g, dtype=torch.float64)
    mixture = fit_mixture(z, components=1)  # one component: the ML Gaussian of z
    mean, cov = mixture.moments()
    mean, cov = torch.as_tensor(mean, dtype=torch.float64), torch.as_tensor(cov,
                                                                              dtype=torch.float64)
    closed = 0.5 * (torch.trace(cov) + mean @ mean - 2 - torch.logdet(cov)).item()
    estimate, spread = sampler_prior_kl(mixture, n_samples=20_000, runs=5)
    assert estimate == pytest.approx(closed, abs=4 * spread + 1e-3) and 0 < spread < 0.02
    assert sampler_prior_kl(mixture, 1000, 3, seed=4) == sampler_prior_kl(mixture, 1000, 3, 4)
