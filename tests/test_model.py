import math

import pytest
import torch

from wiseale import functional
from wiseale.build import build_model
from wiseale.errors import WisealeError
from wiseale.likelihoods import Bernoulli, FixedGaussian
from wiseale.methods import METHODS, get_method, resolve_options
from wiseale.model import Autoencoder
from wiseale.nets import build_nets
from wiseale.noises import SIGMA_MIN, FixedNoise, GaussianNoise, NoNoise
from wiseale.regularizers import AggregateKL, PriorKL


def _model(method: str, **options) -> Autoencoder:
    m = get_method(method)
    enc, feat, dec = build_nets("mlp", (10,), 3)
    return build_model(m, resolve_options(m, options), enc, feat, dec, FixedGaussian(0.5), 3)


@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_method_trains_a_step(method):
    torch.manual_seed(0)
    model = _model(method)
    x = torch.randn(16, 10)
    out = model(x)
    assert out.loss.dim() == 0 and torch.isfinite(out.loss)
    out.loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in model.noise.mu_head.parameters())
    assert {"loss", "recon", "recon_error"} <= set(out.parts)


def test_loss_is_reconstruction_plus_weighted_terms():
    torch.manual_seed(1)
    model = _model("beta-vae", beta=3.0)
    x = torch.randn(8, 10)
    torch.manual_seed(2)
    out = model(x)
    torch.manual_seed(2)
    post = model.encode(x)
    nll = model.likelihood.nll(x, model.decode(post.z)).mean()
    expected = nll + 3.0 * functional.gaussian_kl(post.mu, post.logvar).mean()
    assert torch.allclose(out.loss, expected, rtol=1e-6)


def test_aggregate_scaling_follows_eq27():
    torch.manual_seed(0)
    mu, logvar = torch.randn(32, 4), torch.randn(32, 4) * 0.1
    from wiseale.noises import Posterior

    post = Posterior(mu, logvar, mu)
    value, batch = AggregateKL(2.0, "batch")(post)
    _, per_sample = AggregateKL(2.0, "per-sample")(post)
    assert torch.allclose(batch, 2.0 * value / 32)  # once per batch, loss averaged over M
    assert torch.allclose(per_sample, 2.0 * value)
    with pytest.raises(ValueError, match="scaling"):
        AggregateKL(1.0, "per-epoch")


def test_exact_reconstruction_is_the_mean_over_the_batch():
    torch.manual_seed(0)
    model = _model("wise-ale", reconstruction="exact")
    x = torch.randn(6, 10)
    torch.manual_seed(3)
    loss_exact = model(x).parts["recon"]
    torch.manual_seed(3)
    post = model.encode(x)
    out = model.decode(post.z)
    brute = torch.stack([model.likelihood.nll(x, out[i].expand_as(out)) for i in range(6)])
    assert torch.allclose(loss_exact, brute.mean(), rtol=1e-5)
    model.reconstruction = "mixture"
    torch.manual_seed(3)
    loss_mix = model(x).parts["recon"]
    expected = -(torch.logsumexp(-brute, dim=1) - math.log(6)).mean()
    assert torch.allclose(loss_mix, expected, rtol=1e-5)


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
    assert post.logvar is None and torch.equal(post.z, post.mu)
    with pytest.raises(ValueError):
        FixedNoise(7, 3, sigma_eps=0.0)


def test_per_sample_kl_needs_a_variance():
    from wiseale.noises import Posterior

    with pytest.raises(ValueError, match="stochastic encoder"):
        PriorKL()(Posterior(torch.zeros(2, 2), None, torch.zeros(2, 2)))


def test_likelihood_means_and_nll():
    x = torch.rand(4, 3)
    logits = torch.randn(4, 3)
    assert torch.allclose(Bernoulli().mean(logits), torch.sigmoid(logits))
    g = FixedGaussian(0.5)
    # sigma^2 = 0.5: the NLL is the sum of squared errors plus 0.5 log(pi) per dimension
    nll = g.nll(x, logits)
    sse = (x - logits).square().sum(1)
    assert torch.allclose(nll, sse + 3 * 0.5 * math.log(math.pi), rtol=1e-6)
    with pytest.raises(ValueError):
        FixedGaussian(0.0)


def test_method_presets_and_options():
    assert get_method("vae").name == "aevb"
    assert resolve_options(get_method("beta-vae"), {})["beta"] == 4.0
    assert resolve_options(get_method("wae"), {"lambda": "3"})["lambda"] == 3.0
    with pytest.raises(WisealeError, match="unknown method 'nope'"):
        get_method("nope")
    with pytest.raises(WisealeError, match="has no option 'gamma'"):
        resolve_options(get_method("aevb"), {"gamma": 1})
    with pytest.raises(WisealeError, match="must be a number"):
        resolve_options(get_method("aevb"), {"beta": "big"})
    with pytest.raises(WisealeError, match="must be one of"):
        resolve_options(get_method("wise-ale"), {"reconstruction": "approx"})
    with pytest.raises(WisealeError, match="finite"):
        resolve_options(get_method("wae"), {"lambda": "nan"})


def test_prior_sampling():
    model = _model("aevb")
    assert model.latent_dim == 3
    a = model.sample(5, torch.Generator().manual_seed(0))
    b = model.sample(5, torch.Generator().manual_seed(0))
    assert a.shape == (5, 10) and torch.equal(a, b)


def test_variance_penalty_and_information_rate():
    z = torch.randn(500, 3, dtype=torch.float64) * torch.tensor([1.0, 2.0, 0.5],
                                                                  dtype=torch.float64)
    unbiased = z.numpy().var(axis=0, ddof=1).sum()  # 003 Eq. 6's population value, estimated
    assert math.isclose(functional.total_variance(z).item(), unbiased, rel_tol=1e-12)
    assert math.isclose(functional.variance_penalty(z, 3.0).item(), abs(unbiased - 3.0),
                        rel_tol=1e-12)
    assert functional.information_rate_bits(16, math.sqrt(0.1)) == pytest.approx(8 * math.log2(10))


def test_variance_penalty_measures_the_distance_to_the_v_it_is_given():
    """003 Eq. 7: lambda |total variance of z - v| for the v given (here not d_z = 3), checked
    against numpy's unbiased per-dimension variances; and through a VCAE model with v = 5."""
    from wiseale.noises import Posterior
    from wiseale.regularizers import VariancePenalty

    g = torch.Generator().manual_seed(0)
    z = torch.randn(400, 3, generator=g, dtype=torch.float64) * torch.tensor(
        [1.0, 2.0, 0.5], dtype=torch.float64)
    total = float(z.numpy().var(axis=0, ddof=1).sum())  # about 5.25
    for v in (1.0, 5.0, 12.0):
        value, weighted = VariancePenalty(weight=2.0, target=v)(Posterior(z, None, z))
        assert value.item() == pytest.approx(abs(total - v), rel=1e-12), v
        assert weighted.item() == pytest.approx(2.0 * abs(total - v), rel=1e-12), v
    model = _model("vcae", v="5")
    x = torch.randn(64, 10, generator=g)
    torch.manual_seed(0)
    out = model(x)
    torch.manual_seed(0)
    sample = model.encode(x).z.detach().double().numpy()
    expected = abs(float(sample.var(axis=0, ddof=1).sum()) - 5.0)
    assert out.parts["variance"].item() == pytest.approx(expected, rel=1e-5)


def test_vcae_family_presets():
    from wiseale.regularizers import VariancePenalty

    vcae = _model("vcae")
    assert isinstance(vcae.noise, FixedNoise) and vcae.noise.sigma_eps == pytest.approx(
        math.sqrt(0.1))
    penalty = vcae.regularizers[0]
    assert isinstance(penalty, VariancePenalty) and penalty.target is None  # v = d_z
    x = torch.randn(64, 10)
    torch.manual_seed(0)
    out = vcae(x)
    torch.manual_seed(0)
    post = vcae.encode(x)
    assert torch.allclose(out.parts["variance"], (functional.total_variance(post.z) - 3).abs())
    assert isinstance(_model("dvcae").noise, NoNoise)
    assert _model("vcae", v="5").regularizers[0].target == 5.0
    cwae = _model("cwae", sigma_eps=0.2)
    assert cwae.noise.sigma_eps == 0.2 and cwae.regularizers[0].name == "mmd"
    with pytest.raises(ValueError, match="sigma_eps must be positive"):  # the part's own check
        _model("cwae", sigma_eps=0)


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


def test_vae_iaf_trains_with_a_monte_carlo_kl():
    torch.manual_seed(0)
    model = _model("vae-iaf", steps=3)
    assert len(model.noise.steps) == 3 and model.latent_dim == 3
    x = torch.randn(16, 10)
    torch.manual_seed(1)
    out = model(x)
    torch.manual_seed(1)
    post = model.encode(x)
    kl = (post.log_q - functional.standard_normal_log_prob(post.z)).mean()
    assert torch.allclose(out.parts["kl"], kl) and torch.isfinite(out.loss)
    with pytest.raises(WisealeError, match="positive integer"):
        _model("vae-iaf", steps=0)


def test_posterior_density_and_its_torch_distribution():
    """A Gaussian posterior is torch's Independent Normal; a point has no density; a flow
    posterior's density of its sample is its log_q."""
    from wiseale.noises import Posterior

    g = torch.Generator().manual_seed(3)
    mu, logvar = torch.randn(5, 2, generator=g), torch.randn(5, 2, generator=g)
    z = mu + torch.exp(0.5 * logvar) * torch.randn(5, 2, generator=g)
    gaussian = Posterior(mu, logvar, z)
    assert gaussian.has_density and gaussian.distribution.batch_shape == (5,)
    assert torch.allclose(gaussian.log_prob_of_sample(), gaussian.distribution.log_prob(z),
                          atol=1e-5)
    point = Posterior(mu, None, mu)
    assert not point.has_density and point.distribution is None
    with pytest.raises(ValueError, match="no density"):
        point.log_prob_of_sample()
    flow = Posterior(mu, None, z, log_q=torch.arange(5.0))
    assert flow.has_density and torch.equal(flow.log_prob_of_sample(), torch.arange(5.0))
