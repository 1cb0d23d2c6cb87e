import math

import pytest
import torch

from wiseale import functional
from wiseale.errors import WisealeError
from wiseale.likelihoods import Bernoulli, FixedGaussian, LearnedGaussian, OptimalGaussian
from wiseale.methods import METHODS


@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_method_trains_a_step(preset_model, method):
    torch.manual_seed(0)
    model = preset_model(method)
    x = torch.randn(16, 10)
    out = model(x)
    assert out.loss.dim() == 0 and torch.isfinite(out.loss)
    out.loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in model.noise.mu_head.parameters())
    assert {"loss", "recon", "sample_recon_error"} <= set(out.parts)


def test_loss_is_reconstruction_plus_weighted_terms(preset_model):
    torch.manual_seed(1)
    model = preset_model("beta-vae", beta=3.0)
    x = torch.randn(8, 10)
    torch.manual_seed(2)
    out = model(x)
    torch.manual_seed(2)
    post = model.encode(x)
    nll = model.likelihood.nll(x, model.decode(post.z)).mean()
    expected = nll + 3.0 * functional.gaussian_kl(post.mu, post.logvar).mean()
    assert torch.allclose(out.loss, expected, rtol=1e-6)




def _likelihood(name: str):
    if name == "learned":
        learned = LearnedGaussian()
        learned.sigma.data.fill_(0.7)
        return learned
    return {"fixed": FixedGaussian(0.3), "fixed-half": FixedGaussian(0.5),
            "bernoulli": Bernoulli(), "optimal": OptimalGaussian()}[name]


@pytest.mark.parametrize("name", ["fixed", "fixed-half", "learned", "bernoulli", "optimal"])
def test_logged_parts_against_float64_brute_force(name):
    """The logged NLL, squared error of the decoded samples and ELBO of one step, against
    torch.distributions in float64 on the same z (the Gaussian likelihoods share one pass for
    the first two: Likelihood.nll_and_squared_error)."""
    from wiseale.build import build_model
    from wiseale.methods import get_method, resolve_options
    from wiseale.nets import build_nets

    torch.manual_seed(0)
    method = get_method("aevb")
    model = build_model(method, resolve_options(method, {}), *build_nets("mlp", (10,), 3),
                        _likelihood(name), 3)
    x = torch.rand(8, 10)
    torch.manual_seed(4)
    parts = model(x).parts
    torch.manual_seed(4)
    post = model.encode(x)
    out = model.decode(post.z).double()
    x64 = x.double()
    if name == "bernoulli":
        mean = out.sigmoid()
        log_sigmoid = torch.nn.functional.logsigmoid
        log_px = (x64 * log_sigmoid(out) + (1 - x64) * log_sigmoid(-out)).sum(1)
    else:
        var = {"fixed": 0.3, "fixed-half": 0.5, "learned": 0.49,
               "optimal": (x64 - out).square().mean().item()}[name]
        mean = out
        log_px = torch.distributions.Normal(out, math.sqrt(var)).log_prob(x64).sum(1)
    kl = torch.distributions.kl_divergence(
        torch.distributions.Normal(post.mu.double(), post.std.double()),
        torch.distributions.Normal(0.0, 1.0)).sum(1)
    expected = {"sample_recon_error": (x64 - mean).square().sum(1).mean(),
                "nll": -log_px.mean(), "kl_prior": kl.mean(), "elbo": (log_px - kl).mean()}
    for key, value in expected.items():
        assert parts[key].item() == pytest.approx(value.item(), rel=1e-5, abs=1e-5), key


def test_exact_reconstruction_is_the_mean_over_the_batch(preset_model):
    torch.manual_seed(0)
    model = preset_model("wise-ale", reconstruction="exact")
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




def test_prior_sampling(preset_model):
    model = preset_model("aevb")
    assert model.latent_dim == 3
    a = model.sample(5, torch.Generator().manual_seed(0))
    b = model.sample(5, torch.Generator().manual_seed(0))
    assert a.shape == (5, 10) and torch.equal(a, b)












def test_vae_iaf_trains_with_a_monte_carlo_kl(preset_model):
    torch.manual_seed(0)
    model = preset_model("vae-iaf", steps=3)
    assert len(model.noise.steps) == 3 and model.latent_dim == 3
    x = torch.randn(16, 10)
    torch.manual_seed(1)
    out = model(x)
    torch.manual_seed(1)
    post = model.encode(x)
    kl = (post.log_q - functional.standard_normal_log_prob(post.z)).mean()
    assert torch.allclose(out.parts["kl_prior"], kl) and torch.isfinite(out.loss)
    assert "kl" not in out.parts  # logged once
    with pytest.raises(WisealeError, match="positive integer"):
        preset_model("vae-iaf", steps=0)


