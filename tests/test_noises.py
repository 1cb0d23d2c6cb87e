"""Encoder noises (wiseale.noises): the posteriors each noise gives, the IAF density."""

import math

import pytest
import torch

from wiseale.noises import SIGMA_MIN, FixedNoise, GaussianNoise, NoNoise, PointPosterior


def test_encoder_noises():
    h = torch.randn(5, 7)
    gauss = GaussianNoise(7, 3)
    torch.nn.init.constant_(gauss.sigma_head.bias, -1e4)  # a ReLU head would give sigma = 0
    post = gauss(h)
    assert torch.isfinite(post.logvar).all()
    assert torch.allclose(post.logvar.exp().sqrt(), torch.full((5, 3), SIGMA_MIN), rtol=1e-3)
    fixed = FixedNoise(7, 3, sigma_eps=0.1)
    post = fixed(h)
    assert torch.allclose(post.logvar, torch.full((5, 3), 2 * math.log(0.1)))
    assert torch.equal(fixed(h, sample=False).z, post.mu)
    # z - mu ~ N(0, 0.1^2) iid: over n = 12,000 draws the sample std has standard error
    # 0.1 / sqrt(2 (n - 1)) = 0.00065 and the mean 0.1 / sqrt(n) = 0.0009; 5 of each
    torch.manual_seed(0)
    many = fixed(torch.randn(4000, 7))
    eps = (many.z - many.mu).double().flatten()
    assert abs(eps.std().item() - 0.1) < 5 * 0.1 / math.sqrt(2 * (len(eps) - 1))
    assert abs(eps.mean().item()) < 5 * 0.1 / math.sqrt(len(eps))
    post = NoNoise(7, 3)(h)
    assert isinstance(post, PointPosterior) and torch.equal(post.z, post.mu)
    with pytest.raises(ValueError):
        FixedNoise(7, 3, sigma_eps=0.0)


def test_iaf_posterior_density_is_normalised():
    """E_q[p(z) / q(z)] = 1 for any density p: checks log_q of the flow's own samples."""
    from wiseale.noises import IAFNoise

    torch.manual_seed(0)
    noise = IAFNoise(feature_dim=4, latent_dim=2, steps=3).double()
    with torch.no_grad():
        h = torch.randn(1, 4, dtype=torch.float64).expand(200_000, 4)
        post = noise(h)
    z = post.z
    reference = torch.distributions.MultivariateNormal(z.mean(0), torch.cov(z.T) * 1.5)
    ratio = (reference.log_prob(z) - post.log_q).exp()
    assert abs(ratio.mean().item() - 1.0) < 4 * ratio.std().item() / math.sqrt(len(z))
    base, deterministic = noise.base(h[:5], sample=False), noise(h[:5], sample=False)
    assert torch.equal(deterministic.mu, base.mu)  # z_0's mean; the code is the flow's output
    assert torch.equal(deterministic.z, deterministic.code)


def test_iaf_log_q_is_the_change_of_variables_with_an_autograd_jacobian():
    """log q(z_T|x) = log N(z_0; mu, sigma^2) - log |det dz_T/dz_0|, the determinant taken by
    autograd of the whole flow (a strongly non-Gaussian one), not from the flow's own ladj."""
    from wiseale.noises import IAFNoise

    torch.manual_seed(0)
    noise = IAFNoise(feature_dim=4, latent_dim=3, steps=3).double()
    with torch.no_grad():
        for p in noise.steps.parameters():
            p.mul_(3.0)
    h = torch.randn(6, 4, dtype=torch.float64)
    torch.manual_seed(1)
    post = noise(h)
    torch.manual_seed(1)
    base = noise.base(h)  # the same eps: z_0
    context = noise.context_head(h)
    for i in range(len(h)):
        def flow(z0, i=i):
            return noise._flow(context[i:i + 1], z0[None])[0][0]
        jacobian = torch.autograd.functional.jacobian(flow, base.z[i])
        assert torch.allclose(flow(base.z[i]), post.z[i])
        log_n = torch.distributions.Normal(base.mu[i], (0.5 * base.logvar[i]).exp()).log_prob(
            base.z[i]).sum()
        expected = log_n - torch.linalg.slogdet(jacobian).logabsdet
        assert post.log_q[i].item() == pytest.approx(expected.item(), rel=1e-9, abs=1e-9)


def test_posterior_density_and_its_torch_distribution():
    """A Gaussian posterior is torch's Independent Normal; a point has no density; a flow
    posterior's density of its sample is its log_q."""
    from wiseale.noises import FlowPosterior, GaussianPosterior, PointPosterior

    g = torch.Generator().manual_seed(3)
    mu, logvar = torch.randn(5, 2, generator=g), torch.randn(5, 2, generator=g)
    z = mu + torch.exp(0.5 * logvar) * torch.randn(5, 2, generator=g)
    gaussian = GaussianPosterior(mu, logvar, z)
    assert gaussian.has_density and gaussian.distribution.batch_shape == (5,)
    assert torch.allclose(gaussian.log_prob_of_sample(), gaussian.distribution.log_prob(z),
                          atol=1e-5)
    point = PointPosterior(mu, mu)
    assert not point.has_density and point.distribution is None
    with pytest.raises(ValueError, match="no density"):
        point.log_prob_of_sample()
    flow = FlowPosterior(mu, z, log_q=torch.arange(5.0))
    assert flow.has_density and torch.equal(flow.log_prob_of_sample(), torch.arange(5.0))
