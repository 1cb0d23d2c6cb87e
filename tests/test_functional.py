"""Tests of ``wiseale.functional`` against independent evaluations.

The aggregate-posterior KL bound is Eq. 19-24 and Appendix B of seed ``001_cff6386105c0db9a``:

    KL_UB = 1/M sum_i log(1/M sum_j prod_k A^-1/2 B) + 1/(2M) sum_i sum_k C,
    A = 2 pi (s_ik^2 + s_jk^2), B = exp(-(mu_ik - mu_jk)^2 / (2 (s_ik^2 + s_jk^2))),
    C = s_ik^2 + mu_ik^2 + log 2 pi.

Reference values here are computed with plain Python loops, closed forms derived by hand, Monte
Carlo estimates or ``torch.distributions``; none are copied from the implementation.
"""

from __future__ import annotations

import functools
import math

import pytest
import torch

from wiseale.errors import WisealeError
from wiseale.functional import (
    MMD_SCALE_SETS,
    MMD_SCALES,
    aggregate_kl_upper_bound,
    aggregate_kl_upper_bound_reference,
    bernoulli_nll,
    gaussian_kl,
    gaussian_log_prob,
    gaussian_nll,
    mmd,
    pairwise_bernoulli_nll,
    pairwise_gaussian_nll,
    standard_normal_log_prob,
    total_variance,
    variance_penalty,
)
from wiseale.noises import PointPosterior
from wiseale.pairwise import PLANES_MAX_D
from wiseale.regularizers import PriorMMD

F64 = torch.float64
# Jensen gap of the bound for a single Gaussian (and for well-separated mixture components):
# log E_q[q] - E_q[log q] = -d/2 log(4 pi s^2) + d/2 log(2 pi e s^2) = d/2 log(e / 2) per latent.
GAP_PER_DIM = 0.5 * math.log(math.e / 2.0)


def _rand_params(m: int, d: int, seed: int, mean_scale: float = 1.0, logvar_scale: float = 0.7):
    gen = torch.Generator().manual_seed(seed)
    mu = mean_scale * torch.randn(m, d, generator=gen, dtype=F64)
    logvar = logvar_scale * torch.randn(m, d, generator=gen, dtype=F64)
    return mu, logvar


def _brute_force_bound(mu: torch.Tensor, logvar: torch.Tensor) -> float:
    """Eq. 21-24 evaluated with scalar Python arithmetic over i, j, k."""
    mu_l, var_l = mu.tolist(), [[math.exp(v) for v in row] for row in logvar.tolist()]
    m, d = len(mu_l), len(mu_l[0])
    first = 0.0
    for i in range(m):
        inner = 0.0
        for j in range(m):
            prod = 1.0
            for k in range(d):
                pair = var_l[i][k] + var_l[j][k]
                a = 2.0 * math.pi * pair
                b = math.exp(-0.5 * (mu_l[i][k] - mu_l[j][k]) ** 2 / pair)
                prod *= a ** -0.5 * b
            inner += prod
        first += math.log(inner / m)
    second = 0.0
    for i in range(m):
        for k in range(d):
            second += var_l[i][k] + mu_l[i][k] ** 2 + math.log(2.0 * math.pi)
    return first / m + second / (2.0 * m)


def _log_normal_diag(z: torch.Tensor, mu: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
    """log N(z | mu, diag var) summed over the last dimension, written out from the density."""
    return (-0.5 * math.log(2.0 * math.pi) - 0.5 * var.log()
            - 0.5 * (z - mu).square() / var).sum(dim=-1)


# --------------------------------------------------------------------------------------------
# 1. Exact agreement with Eq. 21 (literal transcription and scalar brute force), chunking.
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("m,d,seed", [(1, 3, 0), (2, 1, 1), (5, 4, 2), (7, 3, 3), (9, 6, 4)])
def test_aggregate_kl_matches_reference_and_brute_force(m, d, seed):
    mu, logvar = _rand_params(m, d, seed)
    value = aggregate_kl_upper_bound(mu, logvar)
    assert value.dtype == F64 and value.shape == ()
    reference = aggregate_kl_upper_bound_reference(mu, logvar).item()
    brute = _brute_force_bound(mu, logvar)
    assert value.item() == pytest.approx(brute, rel=1e-10, abs=1e-12)
    assert value.item() == pytest.approx(reference, rel=1e-10, abs=1e-12)
    assert reference == pytest.approx(brute, rel=1e-10, abs=1e-12)


@pytest.mark.parametrize("chunk_size", [1, 2, 3, 6, 7, 100])
def test_aggregate_kl_chunk_size_does_not_change_value(chunk_size):
    mu, logvar = _rand_params(7, 5, seed=11)
    brute = _brute_force_bound(mu, logvar)
    value = aggregate_kl_upper_bound(mu, logvar, chunk_size=chunk_size, kernel="eager").item()
    assert value == pytest.approx(brute, rel=1e-10, abs=1e-12)


def test_aggregate_kl_close_means_brute_force():
    # Overlapping components (all off-diagonal terms matter) and mixed variance scales.
    mu, logvar = _rand_params(6, 3, seed=5, mean_scale=0.1, logvar_scale=2.0)
    value = aggregate_kl_upper_bound(mu, logvar, chunk_size=4).item()
    assert value == pytest.approx(_brute_force_bound(mu, logvar), rel=1e-10)


def test_aggregate_kl_rejects_bad_shapes():
    mu, logvar = _rand_params(4, 3, seed=0)
    with pytest.raises(ValueError):
        aggregate_kl_upper_bound(mu, logvar[:, :2])
    with pytest.raises(ValueError):
        aggregate_kl_upper_bound(mu[0], logvar[0])


# --------------------------------------------------------------------------------------------
# 2. Upper bound on a Monte Carlo estimate of the true KL(q_mix || N(0, I)).
# --------------------------------------------------------------------------------------------

def _mc_mixture_kl(mu: torch.Tensor, logvar: torch.Tensor, n: int, seed: int):
    """Stratified MC estimate of KL(1/M sum_j N(mu_j, var_j) || N(0, I)) and its std. error."""
    gen = torch.Generator().manual_seed(seed)
    m, d = mu.shape
    per = n // m
    var = logvar.exp()
    comp_means, comp_vars = [], []
    for j in range(m):
        z = mu[j] + var[j].sqrt() * torch.randn(per, d, generator=gen, dtype=F64)
        log_q_each = _log_normal_diag(z[:, None, :], mu[None], var[None])  # [per, M]
        log_q = torch.logsumexp(log_q_each, dim=1) - math.log(m)
        log_p = _log_normal_diag(z, torch.zeros(d, dtype=F64), torch.ones(d, dtype=F64))
        f = log_q - log_p
        comp_means.append(f.mean())
        comp_vars.append(f.var() / per)
    estimate = torch.stack(comp_means).mean().item()
    stderr = math.sqrt(torch.stack(comp_vars).sum().item()) / m
    return estimate, stderr


@pytest.mark.parametrize(
    "m,d,mean_scale,logvar_scale,seed",
    [
        (3, 2, 1.0, 0.5, 0),  # overlapping components
        (4, 3, 0.3, 0.3, 1),  # strongly overlapping
        (5, 2, 2.0, 1.0, 2),  # heterogeneous variances
        (4, 2, 8.0, 0.3, 3),  # well separated
    ],
)
def test_aggregate_kl_upper_bounds_monte_carlo_kl(m, d, mean_scale, logvar_scale, seed):
    mu, logvar = _rand_params(m, d, seed, mean_scale, logvar_scale)
    mc, se = _mc_mixture_kl(mu, logvar, n=200_000, seed=100 + seed)
    bound = aggregate_kl_upper_bound(mu, logvar).item()
    assert bound >= mc - 4.0 * se
    # The Jensen gap is positive: the bound is strictly above the true KL, not equal to it.
    assert bound - mc > 0.0


def test_aggregate_kl_well_separated_gap_is_known():
    # Far-apart components: E_qi[q_mix] ~ E_qi[q_i]/M and E_qi[log q_mix] ~ E_qi[log q_i] - log M,
    # so the bound exceeds the true KL by exactly the single-Gaussian gap d/2 log(e/2).
    m, d = 3, 2
    mu = torch.tensor([[-30.0, 0.0], [0.0, 30.0], [30.0, -30.0]], dtype=F64)
    logvar = torch.tensor([[0.0, -1.0], [0.5, 0.2], [-0.5, 0.3]], dtype=F64)
    mc, se = _mc_mixture_kl(mu, logvar, n=150_000, seed=7)
    bound = aggregate_kl_upper_bound(mu, logvar).item()
    assert bound - mc == pytest.approx(d * GAP_PER_DIM, abs=4.0 * se + 1e-9)
    # The same limit in closed form: mean_i KL(q_i || p) - log M + gap.
    expected = gaussian_kl(mu, logvar).mean().item() - math.log(m) + d * GAP_PER_DIM
    assert bound == pytest.approx(expected, rel=1e-12)


def test_aggregate_kl_identical_components_equal_single_gaussian():
    # A mixture of M copies of the same Gaussian is that Gaussian; the bound must not depend on M.
    mu1, logvar1 = _rand_params(1, 4, seed=9)
    single = aggregate_kl_upper_bound(mu1, logvar1).item()
    for m in (2, 5, 8):
        value = aggregate_kl_upper_bound(mu1.expand(m, 4), logvar1.expand(m, 4)).item()
        assert value == pytest.approx(single, rel=1e-12)


# --------------------------------------------------------------------------------------------
# 3. M = 1 closed form.
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("d,seed", [(1, 0), (3, 1), (16, 2)])
def test_aggregate_kl_single_posterior_closed_form(d, seed):
    mu, logvar = _rand_params(1, d, seed)
    s2 = [math.exp(v) for v in logvar[0].tolist()]
    mus = mu[0].tolist()
    # Eq. 21 with M = 1: log prod_k (2 pi * 2 s_k^2)^-1/2 (B = 1) + 1/2 sum_k C.
    expected = sum(-0.5 * math.log(2.0 * math.pi * 2.0 * s) for s in s2)
    expected += 0.5 * sum(
        s + u * u + math.log(2.0 * math.pi) for s, u in zip(s2, mus, strict=True))
    value = aggregate_kl_upper_bound(mu, logvar).item()
    assert value == pytest.approx(expected, rel=1e-12)
    # It is not the exact Gaussian KL: it exceeds it by d/2 log(e/2) (derived by hand).
    exact_kl = sum(0.5 * (u * u + s - 1.0 - math.log(s)) for s, u in zip(s2, mus, strict=True))
    assert value - exact_kl == pytest.approx(d * GAP_PER_DIM, rel=1e-10)
    assert gaussian_kl(mu, logvar).item() == pytest.approx(exact_kl, rel=1e-12)


# --------------------------------------------------------------------------------------------
# 4. Gradients.
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("chunk_size", [3, 7, 1024])
@pytest.mark.parametrize("d", [4, PLANES_MAX_D + 3])  # the eager kernel's two layouts
def test_blockwise_backward_equals_autograd_of_the_literal_formula(chunk_size, d):
    """The value and the hand-written backward (issue 6) against Eq. 21 as printed and
    autograd through it."""
    mu, logvar = _rand_params(17, d, seed=5)
    ours = functools.partial(aggregate_kl_upper_bound, chunk_size=chunk_size, kernel="eager")
    assert ours(mu, logvar).item() == \
        pytest.approx(aggregate_kl_upper_bound_reference(mu, logvar).item(), rel=1e-10)
    grads = []
    for fn in (ours,
               aggregate_kl_upper_bound_reference):
        a, b = mu.clone().requires_grad_(), logvar.clone().requires_grad_()
        (3.0 * fn(a, b)).backward()  # a non-unit upstream gradient
        grads.append((a.grad, b.grad))
    for ours, literal in zip(grads[0], grads[1], strict=True):
        assert torch.allclose(ours, literal, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("chunk_size, kernel", [(2, "eager"), (1024, "eager"), (None, "native")])
def test_gradcheck_aggregate_kl(chunk_size, kernel):
    mu, logvar = _rand_params(5, 3, seed=3)
    mu.requires_grad_(True)
    logvar.requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda a, b: aggregate_kl_upper_bound(a, b, chunk_size=chunk_size, kernel=kernel),
        (mu, logvar))


def test_gradcheck_gaussian_kl():
    mu, logvar = _rand_params(4, 3, seed=4)
    mu.requires_grad_(True)
    logvar.requires_grad_(True)
    assert torch.autograd.gradcheck(gaussian_kl, (mu, logvar))


@pytest.mark.parametrize("kernel", ["imq", "rbf"])
def test_gradcheck_mmd(kernel):
    torch.manual_seed(0)
    z = torch.randn(5, 3, dtype=F64, requires_grad=True)
    zp = torch.randn(6, 3, dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: mmd(a, b, kernel), (z, zp))


# --------------------------------------------------------------------------------------------
# 5. gaussian_kl.
# --------------------------------------------------------------------------------------------

def test_gaussian_kl_matches_torch_distributions():
    mu, logvar = _rand_params(6, 5, seed=12, mean_scale=2.0, logvar_scale=1.5)
    value = gaussian_kl(mu, logvar)
    assert value.shape == (6,)
    q = torch.distributions.Normal(mu, (0.5 * logvar).exp())
    p = torch.distributions.Normal(torch.zeros_like(mu), torch.ones_like(mu))
    expected = torch.distributions.kl_divergence(q, p).sum(dim=-1)
    torch.testing.assert_close(value, expected, rtol=1e-12, atol=1e-12)


def test_gaussian_kl_matches_monte_carlo():
    mu, logvar = _rand_params(4, 3, seed=13)
    torch.manual_seed(13)
    n = 200_000
    var = logvar.exp()
    z = mu[:, None, :] + var.sqrt()[:, None, :] * torch.randn(4, n, 3, dtype=F64)
    f = _log_normal_diag(z, mu[:, None, :], var[:, None, :]) - _log_normal_diag(
        z, torch.zeros(3, dtype=F64), torch.ones(3, dtype=F64))
    mc, se = f.mean(dim=1), f.std(dim=1) / math.sqrt(n)
    value = gaussian_kl(mu, logvar)
    assert value.shape == (4,)
    assert bool(((value - mc).abs() <= 4.0 * se).all()), (value, mc, se)


def test_gaussian_kl_zero_at_prior():
    mu = torch.zeros(3, 7, dtype=F64)
    assert torch.equal(gaussian_kl(mu, torch.zeros_like(mu)), torch.zeros(3, dtype=F64))


# --------------------------------------------------------------------------------------------
# 6. MMD.
# --------------------------------------------------------------------------------------------

def _brute_force_mmd(x: torch.Tensor, y: torch.Tensor, kernel: str,
                     scales=(0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)) -> float:
    xs, ys = x.tolist(), y.tolist()
    d = len(xs[0])

    def k(a, b):
        sq = sum((ai - bi) ** 2 for ai, bi in zip(a, b, strict=True))
        total = 0.0
        for scale in scales:
            c = 2.0 * d * scale
            total += c / (c + sq) if kernel == "imq" else math.exp(-sq / c)
        return total

    n, m = len(xs), len(ys)
    kxx = sum(k(xs[i], xs[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    kyy = sum(k(ys[i], ys[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    kxy = sum(k(xs[i], ys[j]) for i in range(n) for j in range(m)) / (n * m)
    return kxx + kyy - 2.0 * kxy


def test_mmd_default_scales():
    assert tuple(MMD_SCALES) == (0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)
    assert MMD_SCALE_SETS == {"single": (1.0,), "multi": MMD_SCALES}  # C = 2 d_z (003 App. B)


@pytest.mark.parametrize("kernel", ["imq", "rbf"])
def test_single_scale_mmd_matches_the_literal_u_statistic(kernel):
    """003 App. B: one kernel C / (C + |x - y|^2), C = 2 d_z sigma_z^2 with sigma_z^2 = 1."""
    torch.manual_seed(5)
    x, y = torch.randn(7, 4, dtype=F64) * 1.3, torch.randn(9, 4, dtype=F64) + 0.2
    value = mmd(x, y, kernel, scales=MMD_SCALE_SETS["single"]).item()
    assert value == pytest.approx(_brute_force_mmd(x, y, kernel, scales=(1.0,)), rel=1e-10)


def _rbf_gaussian_mmd(d: int, s1: float, s2: float, shift: float, c: float) -> float:
    """Closed-form MMD^2 between N(shift 1, s1^2 I) and N(0, s2^2 I) under exp(-|u|^2 / c):
    for u ~ N(m, s^2 I), E exp(-|u|^2 / c) = (1 + 2 s^2 / c)^(-d/2) exp(-|m|^2 / (c + 2 s^2))."""
    def expect(var: float, sq_mean: float) -> float:
        return (1 + 2 * var / c) ** (-d / 2) * math.exp(-sq_mean / (c + 2 * var))
    return (expect(2 * s1**2, 0.0) + expect(2 * s2**2, 0.0)
            - 2 * expect(s1**2 + s2**2, d * shift**2))


def test_single_scale_rbf_mmd_is_unbiased_for_the_closed_form_between_gaussians():
    """The U-statistic's mean over many batches of 100 equals the closed-form MMD^2 of two
    Gaussians under the single-C kernel (C = 2 d = 12) within 5 standard errors."""
    d, s1, s2, shift, reps = 6, 1.5, 1.0, 0.3, 400
    gen = torch.Generator().manual_seed(11)
    values = torch.stack([
        mmd(s1 * torch.randn(100, d, generator=gen, dtype=F64) + shift,
            s2 * torch.randn(100, d, generator=gen, dtype=F64), "rbf",
            scales=MMD_SCALE_SETS["single"]) for _ in range(reps)])
    truth = _rbf_gaussian_mmd(d, s1, s2, shift, c=2.0 * d)
    se = values.std().item() / math.sqrt(reps)
    assert abs(values.mean().item() - truth) < 5 * se and se < 0.1 * truth, (values.mean(),
                                                                               truth, se)


@pytest.mark.parametrize("kernel", ["imq", "rbf"])
@pytest.mark.parametrize("n,m,d", [(6, 9, 3), (8, 8, 1), (5, 4, 7)])
def test_mmd_matches_brute_force(kernel, n, m, d):
    torch.manual_seed(n * 100 + m * 10 + d)
    x = torch.randn(n, d, dtype=F64)
    y = 1.5 * torch.randn(m, d, dtype=F64) + 0.3
    value = mmd(x, y, kernel).item()
    assert value == pytest.approx(_brute_force_mmd(x, y, kernel), rel=1e-10, abs=1e-13)


@pytest.mark.parametrize("kernel", ["imq", "rbf"])
def test_mmd_near_zero_for_same_distribution_and_positive_when_shifted(kernel):
    torch.manual_seed(21)
    a = torch.randn(2000, 3, dtype=F64)
    b = torch.randn(2000, 3, dtype=F64)
    same = mmd(a, b, kernel).item()
    shifted = mmd(a, b + 0.5, kernel).item()
    far = mmd(a, b + 1.0, kernel).item()
    assert abs(same) < 0.01
    assert shifted > 0.1
    assert far > shifted  # grows with the shift


@pytest.mark.parametrize("kernel", ["imq", "rbf"])
def test_mmd_symmetric(kernel):
    torch.manual_seed(22)
    x = torch.randn(7, 4, dtype=F64)
    y = torch.randn(10, 4, dtype=F64) * 2.0
    assert mmd(x, y, kernel).item() == pytest.approx(mmd(y, x, kernel).item(), rel=1e-12)


@pytest.mark.parametrize("scale", [1.0, 2.0])
def test_prior_mmd_term_compares_codes_with_standard_normal_draws(scale):
    """PriorMMD's value on codes z ~ N(0, scale^2 I), averaged over batches of 100, is the
    closed-form MMD^2 to N(0, I): about 0 at scale 1, clearly positive at scale 2."""
    d, reps = 4, 300
    term = PriorMMD(weight=1.0, kernel="rbf", scales="single")
    torch.manual_seed(13)
    values = torch.stack([term(PointPosterior(z, z))[0] for z in
                          (scale * torch.randn(reps, 100, d, dtype=F64))])
    truth = _rbf_gaussian_mmd(d, scale, 1.0, 0.0, c=2.0 * d)
    se = values.std().item() / math.sqrt(reps)
    assert abs(values.mean().item() - truth) < 5 * se < 0.01, (values.mean(), truth, se)
    assert truth > 0.05 if scale == 2.0 else truth == 0.0


def test_mmd_unknown_kernel_raises():
    x = torch.randn(4, 2)
    with pytest.raises(ValueError):
        mmd(x, x + 1.0, "laplace")


# --------------------------------------------------------------------------------------------
# 7. float32 accuracy (log-space evaluation).
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("d", [4, 64, 256])
@pytest.mark.parametrize("variance", [1e-6, 1e-2, 1.0])
def test_float32_matches_float64(d, variance):
    gen = torch.Generator().manual_seed(d)
    mu32 = torch.randn(64, d, generator=gen).float()
    logvar32 = (math.log(variance) + 0.1 * torch.randn(64, d, generator=gen)).float()
    mu64, logvar64 = mu32.double(), logvar32.double()  # identical inputs, higher precision

    bound32 = aggregate_kl_upper_bound(mu32, logvar32)
    bound64 = aggregate_kl_upper_bound(mu64, logvar64)
    assert bound32.dtype == torch.float32
    assert torch.isfinite(bound32)
    assert bound32.item() == pytest.approx(bound64.item(), rel=1e-4, abs=1e-3)

    kl32, kl64 = gaussian_kl(mu32, logvar32), gaussian_kl(mu64, logvar64)
    assert bool(torch.isfinite(kl32).all())
    torch.testing.assert_close(kl32.double(), kl64, rtol=1e-4, atol=1e-3)

    # Gradients stay finite in float32 too.
    mu_g, lv_g = mu32.clone().requires_grad_(True), logvar32.clone().requires_grad_(True)
    aggregate_kl_upper_bound(mu_g, lv_g).backward()
    assert bool(torch.isfinite(mu_g.grad).all()) and bool(torch.isfinite(lv_g.grad).all())


def test_literal_reference_breaks_in_float32_at_high_dim_small_variance():
    gen = torch.Generator().manual_seed(256)
    mu32 = torch.randn(64, 256, generator=gen).float()
    logvar32 = torch.full((64, 256), math.log(1e-6))
    stable64 = aggregate_kl_upper_bound(mu32.double(), logvar32.double()).item()
    literal32 = aggregate_kl_upper_bound_reference(mu32, logvar32).item()
    # prod_k A^-1/2 with A = 2 pi * 2e-6 is ~ 282^256 = 1e627: it overflows float32 (and float64).
    assert not math.isfinite(literal32) or abs(literal32 - stable64) > 1e-2 * abs(stable64)
    assert math.isfinite(aggregate_kl_upper_bound(mu32, logvar32).item())


# --------------------------------------------------------------------------------------------
# 8. Pairwise likelihood matrices.
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("logvar", [0.0, -1.3, 0.7])
def test_pairwise_gaussian_nll_matches_loop(logvar):
    torch.manual_seed(31)
    x = torch.randn(5, 2, 3, dtype=F64)  # non-flat inputs exercise the flattening
    mean = torch.randn(4, 2, 3, dtype=F64)
    value = pairwise_gaussian_nll(x, mean, logvar)
    assert value.shape == (4, 5)
    expected = torch.empty(4, 5, dtype=F64)
    for i in range(4):
        for j in range(5):
            expected[i, j] = gaussian_nll(x[j:j + 1], mean[i:i + 1], logvar)[0]
    torch.testing.assert_close(value, expected, rtol=1e-10, atol=1e-10)
    # Spot check one entry against the density written out by hand.
    sq = (x[2] - mean[1]).square().sum().item()
    hand = 0.5 * (6 * (math.log(2.0 * math.pi) + logvar) + sq * math.exp(-logvar))
    assert value[1, 2].item() == pytest.approx(hand, rel=1e-10)


def test_pairwise_bernoulli_nll_matches_loop():
    torch.manual_seed(32)
    x_binary = (torch.rand(6, 10, dtype=F64) > 0.5).to(F64)
    x_soft = torch.rand(6, 10, dtype=F64)  # grey-level targets in [0, 1]
    logits = 3.0 * torch.randn(3, 10, dtype=F64)
    for x in (x_binary, x_soft):
        value = pairwise_bernoulli_nll(x, logits)
        assert value.shape == (3, 6)
        expected = torch.empty(3, 6, dtype=F64)
        for i in range(3):
            for j in range(6):
                expected[i, j] = bernoulli_nll(x[j:j + 1], logits[i:i + 1])[0]
        torch.testing.assert_close(value, expected, rtol=1e-10, atol=1e-10)
    # Hand check of one entry: -sum_k [x log p + (1 - x) log(1 - p)], p = sigmoid(logit).
    p = torch.sigmoid(logits[2])
    hand = -(x_soft[4] * p.log() + (1.0 - x_soft[4]) * (1.0 - p).log()).sum().item()
    assert pairwise_bernoulli_nll(x_soft, logits)[2, 4].item() == pytest.approx(hand, rel=1e-10)


@pytest.mark.parametrize("shape", [(), (4, 6)], ids=["one variance", "per element"])
def test_gaussian_nll_and_its_gradients_against_torch_distributions(shape):
    """A learned variance: one (0-dim tensor, the factored form) or one per element."""
    torch.manual_seed(34)
    x, mean = torch.randn(4, 2, 3, dtype=F64), torch.randn(4, 2, 3, dtype=F64)
    logvar = (0.3 * torch.randn(shape, dtype=F64)).requires_grad_()
    lv = logvar if logvar.dim() == 0 else logvar.view(4, 2, 3)
    mine = gaussian_nll(x, mean, lv)
    theirs = -torch.distributions.Normal(mean, (0.5 * lv).exp()).log_prob(x).flatten(1).sum(1)
    torch.testing.assert_close(mine, theirs, rtol=1e-12, atol=1e-12)
    weights = torch.arange(1.0, 5.0, dtype=F64)
    grad_mine, = torch.autograd.grad((weights * mine).sum(), logvar)
    grad_theirs, = torch.autograd.grad((weights * theirs).sum(), logvar)
    torch.testing.assert_close(grad_mine, grad_theirs, rtol=1e-12, atol=1e-12)


def test_nll_helpers_against_torch_distributions():
    torch.manual_seed(33)
    x = torch.randn(4, 6, dtype=F64)
    mean = torch.randn(4, 6, dtype=F64)
    expected = -torch.distributions.Normal(mean, math.exp(0.5 * -0.4)).log_prob(x).sum(1)
    torch.testing.assert_close(gaussian_nll(x, mean, -0.4), expected, rtol=1e-12, atol=1e-12)
    xb = (torch.rand(4, 6, dtype=F64) > 0.5).to(F64)
    logits = torch.randn(4, 6, dtype=F64)
    expected_b = -torch.distributions.Bernoulli(logits=logits).log_prob(xb).sum(1)
    torch.testing.assert_close(bernoulli_nll(xb, logits), expected_b, rtol=1e-12, atol=1e-12)


# --------------------------------------------------------------------------------------------
# 9. Permutation invariance.
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("chunk_size", [3, 1024])
def test_aggregate_kl_permutation_invariant(chunk_size):
    mu, logvar = _rand_params(10, 4, seed=41)
    torch.manual_seed(41)
    perm = torch.randperm(10)
    assert not torch.equal(perm, torch.arange(10))
    base = aggregate_kl_upper_bound(mu, logvar, chunk_size=chunk_size).item()
    permuted = aggregate_kl_upper_bound(mu[perm], logvar[perm], chunk_size=chunk_size).item()
    assert permuted == pytest.approx(base, rel=1e-12)
    # Permuting mu and logvar inconsistently (breaking the row pairing) must change the value.
    mismatched = aggregate_kl_upper_bound(mu[perm], logvar, chunk_size=chunk_size).item()
    assert abs(mismatched - base) > 1e-6


# --------------------------------------------------------------------------------------------
# 10. VCAE total variance (003 Eq. 6-7).
# --------------------------------------------------------------------------------------------

def test_batch_total_variance_is_unbiased_for_a_known_variance():
    """Batches of M = 4 from N(0, diag(s^2)): the mean of the batch estimate over many batches
    is sum(s^2) = 3.5 (the 1/M moment would give 3/4 of it, 2.625)."""
    s2 = torch.tensor([0.5, 1.0, 2.0], dtype=F64)
    gen = torch.Generator().manual_seed(3)
    batches = torch.randn(20_000, 4, 3, generator=gen, dtype=F64) * s2.sqrt()
    values = torch.stack([total_variance(b) for b in batches])
    se = values.std().item() / math.sqrt(len(values))
    assert abs(values.mean().item() - s2.sum().item()) < 5 * se < 0.1


def test_variance_penalty_hand_computed():
    z = torch.tensor([[0.0, 1.0], [2.0, 3.0]], dtype=F64)  # deviations +-1 in each dimension
    assert variance_penalty(z, 2.0).item() == pytest.approx(2.0)  # |4 / (2 - 1) - 2|
    with pytest.raises(WisealeError, match="at least 2 samples"):
        total_variance(z[:1])


def test_gaussian_log_prob_is_torchs_independent_normal():
    g = torch.Generator().manual_seed(5)
    z, mu = torch.randn(7, 3, generator=g, dtype=F64), torch.randn(7, 3, generator=g, dtype=F64)
    logvar = torch.randn(7, 3, generator=g, dtype=F64)
    reference = torch.distributions.Independent(
        torch.distributions.Normal(mu, torch.exp(0.5 * logvar)), 1).log_prob(z)
    assert torch.allclose(gaussian_log_prob(z, mu, logvar), reference, atol=1e-12)
    assert torch.allclose(gaussian_log_prob(z, torch.zeros(3, dtype=F64),
                                              torch.zeros(3, dtype=F64)),
                          standard_normal_log_prob(z), atol=1e-12)
