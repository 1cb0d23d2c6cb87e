"""Proposition 1 of 003 (Eq. 5): E||x - mu_theta(mu_phi(x) + eps)||^2 vs the Jacobian form."""

import pytest
import torch
from torch import nn
from torch.autograd.functional import hessian, jacobian

from wiseale.errors import WisealeError
from wiseale.likelihoods import FixedGaussian
from wiseale.metrics import decoder_jacobian_sq_norm, proposition1
from wiseale.model import Autoencoder
from wiseale.noises import FixedNoise, GaussianNoise

D64 = torch.float64


def _brute_force_sq_norm(f, z):
    return torch.stack([jacobian(lambda v: f(v[None])[0], row).square().sum() for row in z])


def test_jacobian_sq_norm_matches_brute_force():
    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(3, 16), nn.Tanh(), nn.Linear(16, 16), nn.Softplus(),
                        nn.Linear(16, 8), nn.Unflatten(1, (2, 4))).to(D64)
    z = 2.0 * torch.randn(6, 3, dtype=D64)
    got = decoder_jacobian_sq_norm(mlp, z)
    assert got.shape == (6,)
    torch.testing.assert_close(got, _brute_force_sq_norm(mlp, z), rtol=1e-12, atol=1e-12)


def test_jacobian_sq_norm_uses_eval_mode_and_restores_flags():
    torch.manual_seed(1)
    net = nn.Sequential(nn.Linear(2, 5), nn.BatchNorm1d(5), nn.Tanh(), nn.Linear(5, 3)).to(D64)
    with torch.no_grad():
        net[1].running_mean.uniform_(-1, 1)
        net[1].running_var.uniform_(0.5, 2)
    net.train()
    net[3].eval()  # a mixed state is restored as it was
    z = torch.randn(4, 2, dtype=D64)
    got = decoder_jacobian_sq_norm(net, z)
    assert [m.training for m in net.modules()] == [True, True, True, True, False]
    net.eval()
    torch.testing.assert_close(got, _brute_force_sq_norm(net, z), rtol=1e-12, atol=1e-12)
    with pytest.raises(WisealeError, match=r"\[M, d_z\]"):
        decoder_jacobian_sq_norm(net, z[0])


def _model(decoder, data_dim, latent_dim, encoder_weight=None, sigma_eps=0.1):
    """Identity backbone + fixed noise whose mean head is ``encoder_weight`` (random if None)."""
    noise = FixedNoise(data_dim, latent_dim, sigma_eps)
    if encoder_weight is not None:
        with torch.no_grad():
            noise.mu_head.weight.copy_(encoder_weight)
            noise.mu_head.bias.zero_()
    return Autoencoder(nn.Identity(), noise, decoder, FixedGaussian(), []).to(D64)


def test_linear_decoder_is_exact_at_any_sigma():
    torch.manual_seed(2)
    decoder = nn.Linear(3, 10)
    model = _model(decoder, 10, 3)
    x = torch.randn(32, 10, dtype=D64)
    frobenius = decoder.weight.square().sum().item()
    for sigma in (0.1, 2.0):
        out = proposition1(model, x, sigma, samples=4000,
                           generator=torch.Generator().manual_seed(0))
        assert out["jacobian"] == pytest.approx(sigma ** 2 * frobenius, rel=1e-12)
        assert out["approximation"] == out["deterministic"] + out["jacobian"]
        assert abs(out["mc"] - out["approximation"]) < 4 * out["mc_se"]
        assert out["mc_se"] < 0.01 * out["jacobian"]  # the check has teeth


class _Curved(nn.Module):
    """mu_theta(z) = (z, g(z)) with g a tanh MLP: the encoder (x -> x[:d]) inverts it on its
    image, so x = mu_theta(c) is reconstructed exactly from mu_phi(x) = c."""

    def __init__(self, d, out):
        super().__init__()
        self.g = nn.Sequential(nn.Linear(d, 16), nn.Tanh(), nn.Linear(16, out - d))
        with torch.no_grad():
            self.g[0].weight.mul_(3.0)  # curved enough for the error to show at sigma 0.3

    def forward(self, z):
        return torch.cat([z, self.g(z)], 1)


def _curved_setup():
    torch.manual_seed(0)
    d, data_dim = 2, 8
    decoder = _Curved(d, data_dim)
    model = _model(decoder, data_dim, d, encoder_weight=torch.eye(d, data_dim))
    c = torch.randn(16, d, dtype=D64)
    with torch.no_grad():
        x = decoder(c)
    residual = torch.zeros_like(x)  # orthogonal to the encoder's rows: mu_phi(x + r) = c
    residual[:, d:] = 0.5 * torch.randn(16, data_dim - d, dtype=D64)
    return model, c, x, residual


def _relative_errors(model, x, sigmas):
    errors = {}
    for sigma in sigmas:
        out = proposition1(model, x, sigma, samples=20_000,
                           generator=torch.Generator().manual_seed(0))
        errors[sigma] = (out["mc"] - out["approximation"]) / out["jacobian"], out
    return errors


def test_nonlinear_decoder_error_vanishes_with_sigma_when_reconstruction_is_exact():
    # x = mu_theta(mu_phi(x)): E||x - mu_theta(z)||^2 = sigma^2 ||J||^2 + O(sigma^4), so the
    # error relative to the Jacobian term is O(sigma^2)
    model, _, x, _ = _curved_setup()
    errors = _relative_errors(model, x, (0.3, 0.03))
    big, out_big = errors[0.3]
    small, out_small = errors[0.03]
    assert out_big["deterministic"] < 1e-20 and out_small["deterministic"] < 1e-20
    assert abs(big) > 0.03  # measured -6.8%
    assert abs(out_big["mc"] - out_big["approximation"]) > 10 * out_big["mc_se"]
    assert abs(small) < 0.01  # measured -0.3%, within Monte Carlo noise
    assert abs(out_small["mc"] - out_small["approximation"]) < 4 * out_small["mc_se"]
    assert abs(big) > 10 * abs(small)


def test_nonlinear_decoder_with_residual_has_a_curvature_term_of_order_sigma_squared():
    # with a = x - mu_theta(mu_phi(x)) != 0 the second-order Taylor term pairs with a:
    # E||x - mu_theta(z)||^2 = |a|^2 + sigma^2 (||J||^2 - a . Laplacian mu_theta) + O(sigma^4),
    # so Eq. 5 misses -sigma^2 a . Laplacian, which does not vanish relative to the Jacobian term
    model, c, x, residual = _curved_setup()
    decoder = model.decoder
    laplacian_term = torch.stack([
        -torch.trace(hessian(lambda v, a=a: (a * decoder(v[None])[0]).sum(), row))
        for row, a in zip(c, residual, strict=True)]).mean().item()
    errors = _relative_errors(model, x + residual, (0.1, 0.01))
    for relative, out in errors.values():
        assert out["deterministic"] == pytest.approx(residual.square().sum(1).mean().item())
        remainder = out["mc"] - out["approximation"]
        assert abs(remainder) > 10 * out["mc_se"]  # measured 0.075, 0.087 of the Jacobian term
        assert abs(relative) > 0.05
    relative, out = errors[0.01]
    predicted = 0.01 ** 2 * laplacian_term
    assert abs(out["mc"] - out["approximation"] - predicted) < 4 * out["mc_se"]


def test_proposition1_on_a_vcae_model_is_finite_and_has_no_side_effects():
    from wiseale.build import load_split, model_from_config, resolve
    from wiseale.config import RunConfig

    config = RunConfig(method="vcae", data="sine", n_train=16, n_test=4, batch_size=8)
    train = load_split(config, "train")
    model = model_from_config(resolve(config, train))
    for training in (True, False):
        model.train(training)
        state = torch.get_rng_state()
        out = proposition1(model, train.floats(slice(0, 8)), samples=16)
        assert torch.equal(torch.get_rng_state(), state)
        assert all(m.training == training for m in model.modules())
        assert set(out) == {"mc", "mc_se", "deterministic", "jacobian", "approximation",
                            "sigma_eps"}
        assert all(torch.isfinite(torch.tensor(v)) for v in out.values())
        assert out["sigma_eps"] == model.noise.sigma_eps and out["jacobian"] > 0
    again = proposition1(model, train.floats(slice(0, 8)), samples=16)
    assert again == out  # seeded: the same numbers


def test_errors():
    gaussian = Autoencoder(nn.Identity(), GaussianNoise(4, 2), nn.Linear(2, 4), FixedGaussian(),
                           [])
    x = torch.randn(3, 4)
    with pytest.raises(WisealeError, match="not fixed noise; pass sigma_eps"):
        proposition1(gaussian, x)
    assert proposition1(gaussian, x, 0.0, samples=4)["jacobian"] == 0.0
    fixed = _model(nn.Linear(2, 4), 4, 2).float()
    for bad in (-0.1, float("nan"), float("inf"), "0.1", True):
        with pytest.raises(WisealeError, match="sigma_eps must be a finite number >= 0"):
            proposition1(fixed, x, bad)
    with pytest.raises(WisealeError, match="samples must be an integer >= 2"):
        proposition1(fixed, x, samples=1)
