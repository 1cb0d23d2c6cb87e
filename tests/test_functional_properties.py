"""Property-based tests (hypothesis) of the invariants of ``wiseale.functional``.

Equation numbers refer to the seeds in /work/shared/seeds: 001 = WiSE-ALE
(``001_cff6386105c0db9a.txt``; App. B numbers its own equations, cited as "App. B Eq. n"),
003 = VCAE, 004 = learned-variance VAE. ``tests/test_functional.py`` checks fixed examples
against brute force; here the same functions are checked on drawn sizes, scales and seeds for
the identities the equations imply: bounds, symmetries, consistency between implementations,
and finiteness at extreme inputs. Every reference is evaluated in float64.
"""

from __future__ import annotations

import math
from unittest import mock

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from wiseale import pairwise as pairwise_module
from wiseale.functional import (
    aggregate_kl_upper_bound,
    aggregate_kl_upper_bound_reference,
    bernoulli_nll,
    dip_covariance_penalty,
    gaussian_kl,
    gaussian_nll,
    information_rate_bits,
    mmd,
    pairwise_bernoulli_nll,
    pairwise_gaussian_nll,
    standard_normal_log_prob,
    total_variance,
    variance_penalty,
)
from wiseale.noises import FlowPosterior, GaussianPosterior

F64 = torch.float64
# Jensen gap of Eq. 21 for one Gaussian per latent dimension: log E_q[q] - E_q[log q] =
# -1/2 log(4 pi s^2) + 1/2 log(2 pi e s^2) = 1/2 log(e / 2).
GAP_PER_DIM = 0.5 * math.log(math.e / 2.0)

# Monte Carlo checks run fixed examples (a 5-standard-error miss must not flake in CI).
MONTE_CARLO = settings(max_examples=12, deadline=None, derandomize=True)
SOME = settings(max_examples=30, deadline=None)

seeds = st.integers(0, 2**31 - 1)
dtypes = st.sampled_from([torch.float32, F64])


@st.composite
def gaussians(draw, m=(1, 8), d=(1, 5), mean_scale=(0.0, 3.0), logvar_range=(-3.0, 3.0),
              dtype=(F64,)):
    """Means [M, d] (sizes drawn from the inclusive ranges m, d) scaled by a drawn factor and
    log-variances uniform on a drawn sub-range of logvar_range."""
    m_, d_ = draw(st.integers(*m)), draw(st.integers(*d))
    seed, dt = draw(seeds), draw(st.sampled_from(dtype))
    scale = draw(st.floats(*mean_scale))
    lo, hi = sorted(draw(st.floats(*logvar_range)) for _ in range(2))
    gen = torch.Generator().manual_seed(seed)
    mu = scale * (2.0 * torch.rand(m_, d_, generator=gen, dtype=F64) - 1.0)
    logvar = lo + (hi - lo) * torch.rand(m_, d_, generator=gen, dtype=F64)
    return mu.to(dt), logvar.to(dt)


extreme_gaussians = gaussians(m=(1, 6), d=(1, 8), mean_scale=(0.0, 1e3),
                              logvar_range=(-20.0, 20.0), dtype=(torch.float32, F64))


def _value_and_grads(fn, *inputs, weight=1.0):
    """fn(*inputs) and the gradients of weight * fn(*inputs) (a non-unit upstream gradient)."""
    leaves = [x.detach().clone().requires_grad_(True) for x in inputs]
    value = fn(*leaves)
    (weight * value.sum()).backward()
    return value.detach(), [x.grad for x in leaves]


def _all_finite(*tensors) -> bool:
    return all(bool(torch.isfinite(t).all()) for t in tensors)


def _close(a, b, rtol=1e-10, atol=1e-12) -> bool:
    return bool(torch.allclose(a, b, rtol=rtol, atol=atol))


def _log_normal(z, mu, var):
    """log N(z | mu, var) per element, written out from the density."""
    return -0.5 * (math.log(2.0 * math.pi) + var.log() + (z - mu).square() / var)


# --------------------------------------------------------------------------------------------
# Aggregate KL upper bound, Eq. 21-24 of 001.
# --------------------------------------------------------------------------------------------

def _block(draw: int, m: int) -> int:
    """A block size in 1..M + 1 from a drawn integer, so most blocks split the batch."""
    return 1 + draw % (m + 1)


@pytest.mark.parametrize("kernel", ["eager", "native"])
@settings(max_examples=60, deadline=None)
@given(gaussians(m=(1, 12), d=(1, 6)), st.integers(0, 12),
       st.booleans(), st.floats(-3.0, 3.0).filter(lambda w: abs(w) > 0.1))
def test_blockwise_bound_equals_literal_eq21_value_and_gradient(kernel, params, chunk, default,
                                                                weight):
    """001 Eq. 21-24: the log-space blockwise bound (custom backward) equals the literal
    transcription in value and in both gradients, for any block size of the eager kernel (M
    need not divide) and the native kernel's fixed tiles."""
    mu, logvar = params
    chunk = _block(chunk, mu.shape[0])
    if default:  # the default tile, from a TILE_ELEMENTS that gives tiles of side `chunk`
        d = mu.shape[1]
        with mock.patch.object(pairwise_module, "TILE_ELEMENTS", ((chunk + 1) ** 2 - 1) * d):
            ours, ours_grad = _value_and_grads(
                lambda a, b: aggregate_kl_upper_bound(a, b, kernel=kernel), mu, logvar,
                weight=weight)
    else:
        ours, ours_grad = _value_and_grads(
            lambda a, b: aggregate_kl_upper_bound(a, b, chunk_size=chunk, kernel=kernel), mu,
            logvar, weight=weight)
    ref, ref_grad = _value_and_grads(aggregate_kl_upper_bound_reference, mu, logvar,
                                     weight=weight)
    assert _close(ours, ref)
    assert _close(ours_grad[0], ref_grad[0]) and _close(ours_grad[1], ref_grad[1])


def _mixture_kl_1d_quadrature(mu, logvar) -> float:
    """KL(1/M sum_j N(mu_j, var_j) || N(0, 1)) for d = 1 by the trapezoid rule on a fine grid."""
    s = (0.5 * logvar).exp()
    lo = min((mu - 14.0 * s).min().item(), -14.0)
    hi = max((mu + 14.0 * s).max().item(), 14.0)
    z = torch.linspace(lo, hi, 60_001, dtype=F64)
    log_q = torch.logsumexp(_log_normal(z[:, None], mu[None, :], s[None, :] ** 2), 1)
    log_q = log_q - math.log(mu.shape[0])
    log_p = _log_normal(z, torch.zeros(()), torch.ones((), dtype=F64))
    return torch.trapezoid(log_q.exp() * (log_q - log_p), z).item()


@SOME
@given(gaussians(m=(1, 6), d=(1, 1), mean_scale=(0.0, 4.0),
                 logvar_range=(-2.5, 2.0)))
def test_bound_at_or_above_true_kl_d1_quadrature(params):
    """001 Eq. 19-21: KL(q(z|batch) || p) <= KL_UB, the true KL of the d = 1 mixture (Eq. 10)
    integrated on a grid; the true KL also sits in [mean KL_i - log M, mean KL_i] (Eq. 26)."""
    mu, logvar = params
    true_kl = _mixture_kl_1d_quadrature(mu[:, 0], logvar[:, 0])
    bound = aggregate_kl_upper_bound(mu, logvar).item()
    mean_kl = gaussian_kl(mu, logvar).mean().item()
    assert true_kl >= -1e-10
    assert bound >= true_kl - 1e-9
    assert mean_kl - math.log(mu.shape[0]) - 1e-9 <= true_kl <= mean_kl + 1e-9


@MONTE_CARLO
@given(gaussians(m=(1, 4), d=(2, 4), mean_scale=(0.0, 4.0),
                 logvar_range=(-2.0, 1.5)), seeds)
def test_bound_at_or_above_monte_carlo_kl(params, seed):
    """001 Eq. 19-21: KL_UB >= a Monte Carlo estimate of KL(q(z|batch) || p) (Eq. 10-11),
    within five standard errors of the estimate (stratified over the M components)."""
    mu, logvar = params
    m, d = mu.shape
    n = 4000
    std = (0.5 * logvar).exp()
    gen = torch.Generator().manual_seed(seed)
    z = mu[:, None, :] + std[:, None, :] * torch.randn(m, n, d, generator=gen, dtype=F64)
    log_each = _log_normal(z[:, :, None, :], mu, std.square()).sum(-1)  # [M, n, M]
    log_q = torch.logsumexp(log_each, dim=-1) - math.log(m)
    f = log_q - standard_normal_log_prob(z)  # [M, n]
    estimate = f.mean().item()
    stderr = math.sqrt((f.var(dim=1) / n).sum().item()) / m
    bound = aggregate_kl_upper_bound(mu, logvar).item()
    assert bound >= estimate - 5.0 * stderr - 1e-12


@SOME
@given(gaussians(m=(1, 8), d=(1, 6), mean_scale=(0.0, 100.0),
                 logvar_range=(-10.0, 10.0)))
def test_bound_above_its_separated_limit_and_nonnegative(params):
    """001 App. B Eq. 6-7: E_qi[q] >= E_qi[q_i] / M, so KL_UB >= mean_i KL(q_i||p) - log M
    + d/2 log(e/2) (equality for far-apart components), and KL_UB >= 0."""
    mu, logvar = params
    m, d = mu.shape
    bound = aggregate_kl_upper_bound(mu, logvar).item()
    limit = gaussian_kl(mu, logvar).mean().item() - math.log(m) + d * GAP_PER_DIM
    assert bound >= limit - 1e-10 * (1.0 + abs(limit))
    assert bound >= 0.0


@pytest.mark.parametrize("kernel", ["eager", "native"])
@SOME
@given(gaussians(m=(1, 8), d=(1, 5), mean_scale=(0.0, 20.0),
                 logvar_range=(-5.0, 5.0)), seeds, st.floats(0.0, 20.0), st.integers(0, 9))
def test_bound_shift_of_all_means_only_moves_the_prior_term(kernel, params, seed, shift, chunk):
    """001 Eq. 23-24: B depends on mean differences only, so shifting every mu_i by c changes
    KL_UB by 1/(2M) sum_i (|mu_i + c|^2 - |mu_i|^2); and B <= 1 bounds the first term by its
    value at equal means."""
    mu, logvar = params
    chunk = _block(chunk, mu.shape[0])
    gen = torch.Generator().manual_seed(seed)
    c = shift * torch.randn(mu.shape[1], generator=gen, dtype=F64)
    base = aggregate_kl_upper_bound(mu, logvar, chunk_size=chunk, kernel=kernel).item()
    moved = aggregate_kl_upper_bound(mu + c, logvar, chunk_size=chunk, kernel=kernel).item()
    delta = 0.5 * ((mu + c).square().sum(1) - mu.square().sum(1)).mean().item()
    assert moved == pytest.approx(base + delta, rel=1e-10, abs=1e-10)
    at_equal_means = aggregate_kl_upper_bound(torch.zeros_like(mu), logvar).item()
    assert base <= at_equal_means + 0.5 * mu.square().sum(1).mean().item() + 1e-10 * (
        1.0 + abs(base))


@pytest.mark.parametrize("kernel", ["eager", "native"])
@SOME
@given(gaussians(m=(2, 10), d=(1, 5)), seeds, st.integers(0, 10))
def test_bound_batch_permutation_invariant_gradient_equivariant(kernel, params, seed, chunk):
    """001 Eq. 10 and 21: q(z|batch) is a mean over the batch, so permuting the rows leaves
    KL_UB unchanged and permutes the rows of both gradients the same way."""
    mu, logvar = params
    chunk = _block(chunk, mu.shape[0])
    perm = torch.randperm(mu.shape[0], generator=torch.Generator().manual_seed(seed))
    fn = lambda a, b: aggregate_kl_upper_bound(a, b, chunk_size=chunk, kernel=kernel)  # noqa: E731
    value, (g_mu, g_lv) = _value_and_grads(fn, mu, logvar)
    p_value, (p_mu, p_lv) = _value_and_grads(fn, mu[perm], logvar[perm])
    assert _close(p_value, value, rtol=1e-12)
    assert _close(p_mu, g_mu[perm], rtol=1e-9) and _close(p_lv, g_lv[perm], rtol=1e-9)


@SOME
@given(gaussians(m=(1, 8), d=(2, 6)), seeds)
def test_bound_invariant_to_permuting_and_reflecting_latent_dims(params, seed):
    """001 Eq. 21-24 with the isotropic prior of App. B Eq. 8: a product/sum over k of terms in
    (mu_ik - mu_jk)^2 and mu_ik^2, so reordering latent dimensions or flipping signs is free."""
    mu, logvar = params
    gen = torch.Generator().manual_seed(seed)
    perm = torch.randperm(mu.shape[1], generator=gen)
    signs = torch.randint(0, 2, (mu.shape[1],), generator=gen).to(F64) * 2.0 - 1.0
    base = aggregate_kl_upper_bound(mu, logvar)
    moved = aggregate_kl_upper_bound((mu * signs)[:, perm], logvar[:, perm])
    assert _close(moved, base, rtol=1e-12)
    torch.testing.assert_close(gaussian_kl((mu * signs)[:, perm], logvar[:, perm]),
                               gaussian_kl(mu, logvar), rtol=1e-12, atol=1e-14)


@SOME
@given(gaussians(m=(1, 1), d=(1, 6), mean_scale=(0.0, 1e3),
                 logvar_range=(-20.0, 20.0)), st.integers(2, 9))
def test_bound_of_identical_posteriors_is_the_single_posterior_bound(params, copies):
    """001 Eq. 10 and 21: M copies of one posterior form that posterior, so KL_UB equals the
    M = 1 value, KL(q||p) + d/2 log(e/2), and by symmetry each copy gets 1/M of its gradient."""
    mu, logvar = params
    single, (g_mu, g_lv) = _value_and_grads(aggregate_kl_upper_bound, mu, logvar)
    value, (c_mu, c_lv) = _value_and_grads(aggregate_kl_upper_bound, mu.expand(copies, -1),
                                           logvar.expand(copies, -1))
    closed_form = gaussian_kl(mu, logvar)[0] + mu.shape[1] * GAP_PER_DIM
    assert _close(value, single, rtol=1e-12) and _close(single, closed_form, rtol=1e-12)
    assert _close(c_mu, (g_mu / copies).expand(copies, -1), rtol=1e-9)
    assert _close(c_lv, (g_lv / copies).expand(copies, -1), rtol=1e-9)


@pytest.mark.parametrize("kernel", ["eager", "native"])
@SOME
@given(extreme_gaussians, st.integers(0, 7), st.booleans())
def test_bound_finite_value_and_gradients_at_extreme_inputs(kernel, params, chunk, identical):
    """001 Eq. 21-24 in log space: finite, non-negative KL_UB and finite gradients for means up to
    1e3, log-variances in [-20, 20], batch size 1 and identical posteriors, float32 and 64."""
    mu, logvar = params
    chunk = _block(chunk, mu.shape[0])
    if identical:
        mu, logvar = mu[:1].expand_as(mu), logvar[:1].expand_as(logvar)
    value, grads = _value_and_grads(
        lambda a, b: aggregate_kl_upper_bound(a, b, chunk_size=chunk, kernel=kernel), mu,
        logvar)
    assert _all_finite(value, *grads)
    assert value.item() >= 0.0


# --------------------------------------------------------------------------------------------
# Per-sample KL (Eq. 26 of 001), Posterior.kl_to_prior and the prior's log density.
# --------------------------------------------------------------------------------------------

@SOME
@given(gaussians(m=(1, 3), d=(1, 3), mean_scale=(0.0, 5.0),
                 logvar_range=(-4.0, 4.0)))
def test_gaussian_kl_equals_quadrature_of_its_definition(params):
    """001 Eq. 26 term KL(q(z|x)||p(z)): the closed form equals sum_k of int q log(q/p) dz_k
    integrated numerically (trapezoid rule, float64) for each latent dimension."""
    mu, logvar = params
    std = (0.5 * logvar).exp()
    u = torch.linspace(-14.0, 14.0, 8001, dtype=F64)
    z = mu[..., None] + std[..., None] * u  # a grid per element, in units of its std
    log_q = _log_normal(z, mu[..., None], std[..., None].square())
    integrand = log_q.exp() * (log_q - _log_normal(z, torch.zeros(()), torch.ones((), dtype=F64)))
    numeric = torch.trapezoid(integrand, z, dim=-1).sum(-1)
    torch.testing.assert_close(gaussian_kl(mu, logvar), numeric, rtol=1e-9, atol=1e-11)


@SOME
@given(extreme_gaussians)
def test_gaussian_kl_nonnegative_and_finite_at_extreme_inputs(params):
    """001 Eq. 26: KL(q(z|x)||p) >= 0 (up to a few ulps of rounding), finite with finite
    gradients for means up to 1e3 and log-variances in [-20, 20], float32 and float64."""
    mu, logvar = params
    value, grads = _value_and_grads(gaussian_kl, mu, logvar)
    assert _all_finite(value, *grads)
    # the sum of terms of mixed size rounds: allow a few ulps (each term is >= 0, see below).
    ulps = 8.0 * torch.finfo(mu.dtype).eps * mu.shape[1]
    assert bool((value >= -ulps).all())


def test_gaussian_kl_exactly_nonnegative_in_float32():
    """001 Eq. 26: KL >= 0 also after float32 rounding (mu = 0, logvar = -1e-4: true 2.5e-9)."""
    assert gaussian_kl(torch.zeros(1, 1), torch.tensor([[-1e-4]])).item() >= 0.0


@MONTE_CARLO
@given(gaussians(m=(1, 3), d=(1, 3), mean_scale=(0.0, 2.0),
                 logvar_range=(-1.5, 1.0)), seeds)
def test_the_flow_posterior_kl_is_unbiased_for_a_gaussian_posterior(params, seed):
    """001 Eq. 26 via App. B Eq. 9: the one-sample estimate log q(z|x) - log p(z) of a non-
    Gaussian posterior averages to the closed form when q is Gaussian; Gaussians use it exactly."""
    mu, logvar = params
    gen = torch.Generator().manual_seed(seed)
    n = 4000
    z = mu + (0.5 * logvar).exp() * torch.randn(n, *mu.shape, generator=gen, dtype=F64)
    log_q = _log_normal(z, mu, logvar.exp()).sum(-1)
    flat = FlowPosterior(mu=z.flatten(0, 1), z=z.flatten(0, 1), log_q=log_q.flatten())
    samples = flat.kl_to_prior().view(n, -1)
    closed = gaussian_kl(mu, logvar)
    stderr = samples.std(0) / math.sqrt(n)
    assert bool(((samples.mean(0) - closed).abs() <= 5.0 * stderr + 1e-12).all())
    exact = GaussianPosterior(mu=mu, logvar=logvar, z=mu).kl_to_prior()
    assert torch.equal(exact, closed)


@SOME
@given(st.integers(1, 4), st.integers(1, 6), seeds, st.floats(0.0, 1e3), dtypes)
def test_standard_normal_log_prob_is_the_prior_density(m, d, seed, scale, dtype):
    """001 App. B Eq. 9: log p(z) = -1/2 sum_k (log 2 pi + z_k^2), at most -d/2 log 2 pi (at
    z = 0), finite with finite gradients for |z| up to 1e3."""
    z = scale * torch.randn(m, d, generator=torch.Generator().manual_seed(seed), dtype=F64)
    expected = torch.tensor([sum(-0.5 * (math.log(2 * math.pi) + v * v) for v in row)
                             for row in z.tolist()], dtype=F64)
    torch.testing.assert_close(standard_normal_log_prob(z), expected, rtol=1e-12, atol=1e-12)
    value, (grad,) = _value_and_grads(standard_normal_log_prob, z.to(dtype))
    assert _all_finite(value, grad)
    assert bool((value <= -0.5 * d * math.log(2 * math.pi) * (1 - 1e-6)).all())


# --------------------------------------------------------------------------------------------
# MMD (the WAE baseline of 001 Sec. 5; IMQ kernel as in 003 App. B).
# --------------------------------------------------------------------------------------------

samples_pair = st.tuples(st.integers(2, 8), st.integers(2, 8), st.integers(1, 4), seeds,
                         st.floats(0.1, 5.0))
kernels = st.sampled_from(["imq", "rbf"])


def _two_sets(n, m, d, seed, scale):
    gen = torch.Generator().manual_seed(seed)
    return (scale * torch.randn(n, d, generator=gen, dtype=F64),
            1.0 + scale * torch.randn(m, d, generator=gen, dtype=F64))


@SOME
@given(samples_pair, kernels, seeds)
def test_mmd_symmetric_and_invariant_to_permutations_shifts_rotations(sizes, kernel, seed):
    """003 App. B: k(x, y) depends on |x - y|^2 only, so the MMD^2 estimate is symmetric and
    invariant to reordering either set and to a common shift or rotation of both sets."""
    z, p = _two_sets(*sizes)
    gen = torch.Generator().manual_seed(seed)
    d = z.shape[1]
    rotation, _ = torch.linalg.qr(torch.randn(d, d, generator=gen, dtype=F64))
    shift = 3.0 * torch.randn(d, generator=gen, dtype=F64)
    pz, pp = (torch.randperm(len(t), generator=gen) for t in (z, p))
    base = mmd(z, p, kernel)
    for other in (mmd(p, z, kernel), mmd(z[pz], p[pp], kernel),
                  mmd(z @ rotation + shift, p @ rotation + shift, kernel)):
        assert _close(other, base, rtol=1e-9, atol=1e-12)


@SOME
@given(samples_pair, kernels)
def test_mmd_biased_estimate_recovered_from_unbiased_ones_is_nonnegative(sizes, kernel):
    """003 App. B: IMQ and RBF kernels are positive definite, so the biased MMD^2, which equals
    mmd(z, p) - (mmd(z, z) + mmd(p, p)) / 2 for this unbiased estimator, is >= 0."""
    z, p = _two_sets(*sizes)
    self_z, self_p = mmd(z, z, kernel).item(), mmd(p, p, kernel).item()
    assert self_z <= 1e-12 and self_p <= 1e-12  # k(x, x) >= k(x, y): same-set estimate <= 0
    assert mmd(z, p, kernel).item() - 0.5 * (self_z + self_p) >= -1e-12


@SOME
@given(st.integers(2, 5), st.integers(1, 4), seeds, st.floats(0.0, 1e3), kernels, dtypes,
       st.booleans())
def test_mmd_finite_at_extreme_inputs(n, d, seed, scale, kernel, dtype, identical):
    """003 App. B kernels: finite MMD^2 and gradients for samples up to 1e3 apart, two samples per
    side and coincident samples (zero distances), float32 and float64."""
    gen = torch.Generator().manual_seed(seed)
    z = scale * torch.randn(n, d, generator=gen, dtype=F64)
    p = z.clone() if identical else scale * torch.randn(n, d, generator=gen, dtype=F64)
    value, grads = _value_and_grads(lambda a, b: mmd(a, b, kernel), z.to(dtype), p.to(dtype))
    assert _all_finite(value, *grads)


# --------------------------------------------------------------------------------------------
# VCAE total variance (003 Eq. 6-7) and information rate (003 Sec. 4).
# --------------------------------------------------------------------------------------------

@SOME
@given(st.integers(2, 10), st.integers(1, 5), seeds, st.floats(0.0, 10.0), st.floats(0.1, 5.0),
       st.floats(0.0, 30.0))
def test_total_variance_is_half_mean_pairwise_sq_distance(m, d, seed, shift, scale, target):
    """003 Eq. 6-7, unbiased batch estimate: 1/(2M(M-1)) sum_{i != j} |z_i - z_j|^2, hence
    >= 0, shift- and permutation-invariant and quadratic in scale; the penalty is
    |that - v| >= 0."""
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(m, d, generator=gen, dtype=F64)
    pairwise = sum(sum((a - b) ** 2 for a, b in zip(zi, zj, strict=True))
                   for zi in z.tolist() for zj in z.tolist()) / (2 * m * (m - 1))
    tv = total_variance(z).item()
    assert tv == pytest.approx(pairwise, rel=1e-10, abs=1e-12) and tv >= 0.0
    perm = torch.randperm(m, generator=gen)
    moved = scale * z[perm] + shift * torch.randn(d, generator=gen, dtype=F64)
    assert total_variance(moved).item() == pytest.approx(scale**2 * tv, rel=1e-9, abs=1e-9)
    assert variance_penalty(z, target).item() == pytest.approx(abs(pairwise - target),
                                                               rel=1e-10, abs=1e-10)


@SOME
@given(st.integers(1, 256), st.floats(1e-4, 1e2))
def test_information_rate_is_the_gaussian_channel_entropy_difference(latent_dim, sigma_eps):
    """003 Sec. 4: I_bits = d_z/2 log2(1/sigma^2) is h(N(0, 1)) - h(N(0, sigma^2)) per
    dimension (v = d_z), in bits; positive exactly when sigma_eps < 1."""
    def entropy(std: float) -> float:
        return torch.distributions.Normal(0.0, torch.tensor(std, dtype=F64)).entropy().item()

    expected = latent_dim * (entropy(1.0) - entropy(sigma_eps)) / math.log(2.0)
    value = information_rate_bits(latent_dim, sigma_eps)
    assert value == pytest.approx(expected, rel=1e-10, abs=1e-10)
    assert (value > 0) == (sigma_eps < 1.0) or sigma_eps == 1.0


# --------------------------------------------------------------------------------------------
# Likelihoods: 004 Eq. 6-10 (Gaussian), the reconstruction terms of 001 Eq. 14-15.
# --------------------------------------------------------------------------------------------

@SOME
@given(st.integers(1, 4), st.integers(1, 12), seeds, st.floats(1e-2, 10.0),
       st.floats(-3.0, 3.0).filter(lambda t: abs(t) > 1e-3))
def test_gaussian_nll_minimised_at_the_closed_form_variance(m, d, seed, err, delta):
    """004 Eq. 8 and 10: for each sample the NLL over log sigma^2 is minimised at
    sigma*^2 = mean_k (x_k - g_k)^2, where its value is d/2 (log 2 pi + log sigma*^2 + 1)."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(m, d, generator=gen, dtype=F64)
    mean = x + err * torch.randn(m, d, generator=gen, dtype=F64)
    best = (x - mean).square().mean(1, keepdim=True).log()
    value, (_, _, grad) = _value_and_grads(gaussian_nll, x, mean, best)
    expected = 0.5 * d * (math.log(2 * math.pi) + best[:, 0] + 1.0)
    torch.testing.assert_close(value, expected, rtol=1e-12, atol=1e-12)
    assert _close(grad, torch.zeros_like(grad), atol=1e-9 * d)
    assert bool((gaussian_nll(x, mean, best + delta) > value).all())


@SOME
@given(st.integers(1, 4), st.integers(1, 10), seeds, st.floats(0.0, 1e3), st.booleans(), dtypes)
def test_bernoulli_nll_nonnegative_minimised_at_the_target_and_finite(m, d, seed, scale,
                                                                       binary, dtype):
    """001 Eq. 14 with a Bernoulli decoder: -log p(x|z) >= sum_k H(x_k) >= 0, with equality at
    logits = logit(x); finite with finite gradients for logits up to 1e3 (float32 and 64)."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(m, d, generator=gen, dtype=F64)
    x = (x > 0.5).to(F64) if binary else 0.02 + 0.96 * x
    logits = scale * torch.randn(m, d, generator=gen, dtype=F64)
    entropy = -(x * x.clamp_min(1e-300).log() + (1 - x) * (1 - x).clamp_min(1e-300).log())
    value = bernoulli_nll(x, logits)
    assert bool((value >= entropy.sum(1) - 1e-9).all()) and bool((value >= 0).all())
    if not binary:
        at_target = bernoulli_nll(x, torch.logit(x))
        torch.testing.assert_close(at_target, entropy.sum(1), rtol=1e-10, atol=1e-10)
    value, grads = _value_and_grads(bernoulli_nll, x.to(dtype), logits.to(dtype))
    assert _all_finite(value, *grads)


@SOME
@given(st.integers(1, 5), st.integers(1, 5), st.lists(st.integers(1, 3), min_size=1,
       max_size=3), seeds, st.floats(-4.0, 2.0), st.floats(0.1, 3.0))
def test_pairwise_nll_matrices_entrywise_and_permutation_equivariant(n, k, shape, seed, logvar,
                                                                     scale):
    """001 Eq. 15: entry [i, j] is -log p(x_j | z_i), equal to the per-sample NLL of that pair;
    reordering the data permutes columns and reordering the decoder outputs permutes rows."""
    gen = torch.Generator().manual_seed(seed)
    x = scale * torch.randn(n, *shape, generator=gen, dtype=F64)
    mean = scale * torch.randn(k, *shape, generator=gen, dtype=F64)
    xb = torch.rand(n, *shape, generator=gen, dtype=F64)  # soft targets in [0, 1]
    pi, pj = torch.randperm(k, generator=gen), torch.randperm(n, generator=gen)
    cases = ((pairwise_gaussian_nll, lambda a, b: gaussian_nll(a, b, logvar), x, (logvar,)),
             (pairwise_bernoulli_nll, bernoulli_nll, xb, ()))
    for pairwise, rowwise, data, extra in cases:
        matrix = pairwise(data, mean, *extra)
        assert matrix.shape == (k, n)
        loop = torch.stack([rowwise(data, mean[i].expand_as(data)) for i in range(k)])
        torch.testing.assert_close(matrix, loop, rtol=1e-9, atol=1e-9)
        torch.testing.assert_close(pairwise(data[pj], mean[pi], *extra), matrix[pi][:, pj],
                                   rtol=1e-12, atol=1e-12)


def test_pairwise_gaussian_nll_float32_diagonal_matches_rowwise_nll():
    """001 Eq. 15: the [i, i] entry equals -log N(x_i | m_i, sigma^2) in float32 as well (x = 3,
    m = 3.001, sigma^2 = 1e-6: the true value is -5.489)."""
    x, mean, logvar = torch.tensor([[3.0]]), torch.tensor([[3.001]]), math.log(1e-6)
    exact = gaussian_nll(x.double(), mean.double(), logvar).item()
    assert pairwise_gaussian_nll(x, mean, logvar).item() == pytest.approx(exact, abs=1e-2)


# --------------------------------------------------------------------------------------------
# DIP-VAE penalty (Kumar et al. 2018, Eq. 6-7, as cited by the docstring; not a seed).
# --------------------------------------------------------------------------------------------

@SOME
@given(gaussians(m=(2, 10), d=(1, 4), mean_scale=(0.1, 5.0)), seeds,
       st.floats(0.0, 50.0), st.floats(0.0, 50.0), st.sampled_from(["i", "ii"]))
def test_dip_penalty_nonnegative_linear_and_batch_invariant(params, seed, lam_od, lam_d,
                                                            variant):
    """DIP-VAE Eq. 6-7 (Kumar et al., docstring): lambda_od sum_{i!=j} C_ij^2 + lambda_d
    sum_i (C_ii - 1)^2 is >= 0, linear in the lambdas, and (C being a batch covariance)
    invariant to reordering the batch and to shifting every mean."""
    mu, logvar = params
    gen = torch.Generator().manual_seed(seed)
    perm = torch.randperm(mu.shape[0], generator=gen)
    shift = 10.0 * torch.randn(mu.shape[1], generator=gen, dtype=F64)
    value = dip_covariance_penalty(mu, logvar, lam_od, lam_d, variant).item()
    parts = [dip_covariance_penalty(mu, logvar, a, b, variant).item() for a, b in ((1, 0), (0, 1))]
    assert value >= 0.0 and min(parts) >= 0.0
    assert value == pytest.approx(lam_od * parts[0] + lam_d * parts[1], rel=1e-10, abs=1e-10)
    moved = dip_covariance_penalty(mu[perm] + shift, logvar[perm], lam_od, lam_d, variant)
    assert moved.item() == pytest.approx(value, rel=1e-8, abs=1e-8)
