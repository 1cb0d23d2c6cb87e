"""The likelihood axis of 004: learned (Eq. 9), closed-form (Eq. 10) and pixel-wise (Eq. 11,
Alg. 1) Gaussian variances, and the DIP-VAE baseline's penalty."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from wiseale import functional
from wiseale.errors import WisealeError
from wiseale.likelihoods import (
    LIKELIHOOD_CLASSES,
    SIGMA2_MIN,
    FixedGaussian,
    LearnedGaussian,
    OptimalGaussian,
    PixelGaussian,
    build_likelihood,
)
from wiseale.model import Autoencoder
from wiseale.noises import GaussianNoise


def _fixed_reconstructions(seed=0, n=512, d=20):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, d, generator=g, dtype=torch.float64)
    return x, x + 0.2 * torch.randn(n, d, generator=g, dtype=torch.float64)



def _epoch_end(part, index: int, row: dict) -> dict:
    """What ``part``'s epoch-end hooks (a likelihood's, or a model's parts') add to ``row``
    after the epoch of 0-based ``index``."""
    before = dict(row)
    for hook in part.hooks() if isinstance(part, Autoencoder) else [part]:
        hook.on_epoch_end(index + 1, row, None, None)
    return {key: value for key, value in row.items() if key not in before}

def test_gaussian_nll_with_a_variance_per_dimension_matches_torch():
    x, mean = _fixed_reconstructions()
    var = torch.rand_like(x) + 0.1
    expected = -torch.distributions.Normal(mean, var.sqrt()).log_prob(x).sum(1)
    assert torch.allclose(functional.gaussian_nll(x, mean, var.log()), expected, atol=1e-10)


def test_closed_form_variance_is_the_mean_squared_error_and_maximises_the_likelihood():
    x, mean = _fixed_reconstructions()
    lik = OptimalGaussian().double().train()
    nll = lik.nll(x, mean).mean()
    mse = (x - mean).square().mean()
    # Eq. 9 at sigma^2 = Eq. 10
    expected = 0.5 * x.shape[1] * (functional.LOG_2PI + mse.log() + 1.0)
    assert nll.item() == pytest.approx(expected.item(), rel=1e-12)
    for other in (0.8 * mse, 1.25 * mse):  # any other fixed variance explains the data worse
        assert FixedGaussian(other.item()).nll(x, mean).mean() > nll
    assert lik.running_sigma2.item() == pytest.approx(0.9 + 0.1 * mse.item(), rel=1e-12)


def test_closed_form_variance_holds_no_gradient_and_evaluates_with_the_running_value():
    x, mean = _fixed_reconstructions()
    mean = mean.clone().requires_grad_()
    lik = OptimalGaussian().double().train()
    lik.nll(x, mean).mean().backward()
    mse = (x - mean.detach()).square().mean()
    assert torch.allclose(mean.grad, (mean.detach() - x) / mse / len(x), atol=1e-12)
    lik.eval()
    before = lik.running_sigma2.clone()
    expected = FixedGaussian(before.item()).nll(x, mean.detach())
    assert torch.allclose(lik.nll(x, mean.detach()), expected.double(), atol=1e-9)
    assert torch.equal(lik.running_sigma2, before)  # evaluation does not move it


def test_variance_learned_by_gradient_converges_to_the_closed_form():
    x, mean = _fixed_reconstructions()
    lik = LearnedGaussian().double()
    optimizer = torch.optim.Adam(lik.parameters(), lr=0.05)
    for _ in range(600):
        optimizer.zero_grad()
        lik.nll(x, mean).mean().backward()
        optimizer.step()
    mse = (x - mean).square().mean().item()
    assert _epoch_end(lik, 0, {})["sigma2"] == pytest.approx(mse, rel=1e-3)


def test_learned_variance_has_a_floor_and_a_pairwise_form():
    lik = LearnedGaussian()
    with torch.no_grad():
        lik.sigma.fill_(1e-20)
    assert lik.variance(torch.zeros(2, 3)).min().item() == pytest.approx(SIGMA2_MIN)
    x, mean = _fixed_reconstructions(n=6, d=4)
    lik = LearnedGaussian().double()
    with torch.no_grad():
        lik.sigma.fill_(math.sqrt(0.3))
    pairwise = lik.pairwise_nll(x, mean)
    for i in range(6):
        assert torch.allclose(pairwise[i], lik.nll(x, mean[i].expand_as(x)), atol=1e-10)


def _pixel_out(mean, v):
    return torch.cat([mean, v], dim=1)


def test_pixel_likelihood_stage_one_is_the_global_variance_and_ignores_v():
    x, mean = _fixed_reconstructions(d=8)
    lik = PixelGaussian(stage1_epochs=3).double()
    v = torch.rand_like(mean).requires_grad_()
    out = _pixel_out(mean, v)
    assert torch.allclose(lik.nll(x, out), LearnedGaussian().double().nll(x, mean))
    lik.nll(x, out).sum().backward()
    assert not v.grad.any() and torch.equal(lik.mean(out), mean)  # v gets zero gradient


def test_pixel_likelihood_switches_stage_and_floors_the_variance():
    x, mean = _fixed_reconstructions(d=8)
    lik = PixelGaussian(stage1_epochs=3, stage1_tolerance=0.0).double()
    for epoch, elbo in enumerate((-10.0, -9.0, -8.0)):
        assert _epoch_end(lik, epoch, {"elbo": elbo})["stage"] == 1  # the stage trained in
    assert int(lik.stage) == 2  # stage1_epochs reached
    stalled = PixelGaussian(stage1_epochs=10, stage1_tolerance=0.5)
    _epoch_end(stalled, 0, {"elbo": -10.0})
    assert int(stalled.stage) == 1
    _epoch_end(stalled, 1, {"elbo": -9.7})
    assert int(stalled.stage) == 2  # improved by < 0.5 nats
    assert float(lik.sigma2_dataset) == pytest.approx(1.0)  # the global variance, frozen
    lik.sigma2_dataset.fill_(0.04)
    v = torch.rand_like(mean) * torch.tensor([0.0, 1.0]).repeat(4)  # some v exactly 0
    out = _pixel_out(mean, v)
    variance = lik.variance(out)
    assert variance.min().item() == pytest.approx(0.02) and torch.all(variance >= 0.02 - 1e-12)
    expected = -torch.distributions.Normal(mean, (v + 0.02).sqrt()).log_prob(x).sum(1)
    assert torch.allclose(lik.nll(x, out), expected, atol=1e-10)
    sigma = lik.global_variance.sigma
    v.requires_grad_()
    lik.nll(x, _pixel_out(mean, v)).sum().backward()
    assert sigma.grad is None and v.grad is not None  # sigma^2_dataset is frozen
    with pytest.raises(ValueError, match="per-sample reconstruction only"):
        lik.pairwise_nll(x, out)


def test_pixel_stage_travels_in_the_state_dict():
    lik = PixelGaussian(stage1_epochs=1)
    _epoch_end(lik, 0, {"elbo": -5.0})
    fresh = PixelGaussian(stage1_epochs=1)
    fresh.load_state_dict(lik.state_dict())
    assert int(fresh.stage) == 2 and float(fresh.last_elbo) == -5.0


def test_build_likelihood_names_and_errors():
    assert set(LIKELIHOOD_CLASSES) == {"gaussian", "bernoulli", "learned", "optimal", "pixel"}
    assert isinstance(build_likelihood("pixel", stage1_epochs=2), PixelGaussian)
    with pytest.raises(ValueError, match="unknown likelihood 'laplace'"):
        build_likelihood("laplace")
    with pytest.raises(WisealeError, match="stage1_epochs must be a positive integer, got 0"):
        build_likelihood("pixel", stage1_epochs=0)


def _brute_force_dip(mu, logvar, lambda_od, lambda_d, variant):
    mu, var = mu.numpy(), logvar.exp().numpy()
    cov = np.cov(mu.T, bias=True) + (np.diag(var.mean(0)) if variant == "ii" else 0.0)
    off = sum(cov[i, j] ** 2 for i in range(len(cov)) for j in range(len(cov)) if i != j)
    return lambda_od * off + lambda_d * sum((cov[i, i] - 1) ** 2 for i in range(len(cov)))


@pytest.mark.parametrize("variant", ["i", "ii"])
def test_dip_penalty_against_brute_force_and_zero_at_identity(variant):
    g = torch.Generator().manual_seed(0)
    mu = torch.randn(300, 4, generator=g, dtype=torch.float64) @ torch.randn(4, 4, generator=g,
                                                                             dtype=torch.float64)
    logvar = torch.randn(300, 4, generator=g, dtype=torch.float64) - 1
    value = functional.dip_covariance_penalty(mu, logvar, 10.0, 100.0, variant)
    assert value.item() == pytest.approx(_brute_force_dip(mu, logvar, 10.0, 100.0, variant),
                                         rel=1e-10)
    white = torch.randn(20000, 3, generator=g, dtype=torch.float64)
    white = (white - white.mean(0)) @ torch.linalg.inv(torch.linalg.cholesky(
        torch.cov(white.T, correction=0))).T
    assert functional.dip_covariance_penalty(white, torch.full_like(white, -50.0), 1.0, 1.0,
                                    variant).item() == pytest.approx(0.0, abs=1e-12)
    assert torch.autograd.gradcheck(
        lambda m: functional.dip_covariance_penalty(m, logvar[:20], 10.0, 100.0, variant),
        (mu[:20].clone().requires_grad_(),))


def test_the_models_hooks_add_the_variance_to_the_row_and_predict_it():
    torch.manual_seed(0)
    model = Autoencoder(nn.Linear(6, 8), GaussianNoise(8, 2), nn.Linear(2, 6),
                        OptimalGaussian(), [])
    model.train()
    model(torch.rand(32, 6))
    assert _epoch_end(model, 0, {"loss": 1.0}) == {
        "sigma2": pytest.approx(model.likelihood.running_sigma2.item())}
    variance = model.predicted_variance(torch.zeros(5, 2))
    assert variance.shape == (5, 6) and torch.all(variance == variance[0, 0])
    fixed = Autoencoder(nn.Linear(6, 8), GaussianNoise(8, 2), nn.Linear(2, 6),
                        FixedGaussian(0.5), [])
    assert fixed.hooks() == [fixed.likelihood]  # a likelihood is a callback
    assert _epoch_end(fixed, 0, {"loss": 1.0}) == {}


def test_two_stage_training_switches_logs_and_resumes_exactly(tmp_path):
    import dataclasses
    import json

    from wiseale.config import RunConfig
    from wiseale.storage import load_tensors
    from wiseale.training import load_run, train

    config = RunConfig(method="lv-vae-pixel", data="fashion-mnist", net="lv-mnist",
                       options={"stage1_epochs": 1}, latent_dim=4, epochs=2, batch_size=32,
                       n_train=128, n_test=64, eval_size=64, lr=5e-4)
    train(config, tmp_path / "full", progress=False)
    rows = [json.loads(r) for r in (tmp_path / "full/metrics.jsonl").read_text().splitlines()]
    assert [r["stage"] for r in rows] == [1, 2]  # switched after epoch 1 (stage1_epochs=1)
    assert rows[0]["sigma2"] == pytest.approx(rows[1]["sigma2"])  # frozen in stage 2
    assert rows[0]["sigma2"] < 1.0  # learned away from its initial 1
    model, saved = load_run(tmp_path / "full")
    assert saved.likelihood == "pixel" and int(model.likelihood.stage) == 2
    z = torch.zeros(3, 4)
    floor = model.likelihood.floor()
    assert torch.all(model.predicted_variance(z) >= floor)
    with pytest.warns(UserWarning, match=r"--epochs 1 ends within stage 1 \(stage1_epochs=1\)"):
        train(dataclasses.replace(config, epochs=1), tmp_path / "part", progress=False)
    train(config, tmp_path / "part", resume=True, progress=False)
    full, part = (load_tensors(tmp_path / d / "model.safetensors")[0] for d in ("full", "part"))
    assert all(torch.equal(full[k], part[k]) for k in full)
    from wiseale.errors import WisealeError

    with pytest.raises(WisealeError, match="variance branch"):
        train(dataclasses.replace(config, net="mnist-conv"), tmp_path / "bad", progress=False)
    with pytest.raises(WisealeError, match="lv-vae-pixel uses the pixel likelihood"):
        train(dataclasses.replace(config, likelihood="gaussian"), tmp_path / "bad",
              progress=False)


@pytest.mark.parametrize("method, likelihood", [("lv-vae", None), ("lv-vae", "optimal"),
                                                ("dip-vae", None)])
def test_004_presets_train_on_sine(tmp_path, tiny_sine, method, likelihood):
    import dataclasses
    import json

    from wiseale.training import train

    config = dataclasses.replace(tiny_sine, method=method, likelihood=likelihood)
    model = train(config, tmp_path / "run", progress=False)
    rows = [json.loads(r) for r in (tmp_path / "run/metrics.jsonl").read_text().splitlines()]
    saved = json.loads((tmp_path / "run/config.json").read_text())
    if method == "dip-vae":
        assert saved["likelihood"] == "gaussian" and rows[-1]["dip"] >= 0
    else:
        assert saved["likelihood"] == (likelihood or "learned")
        assert 0 < rows[-1]["sigma2"] < 1  # moved from its start at 1 towards the MSE
        assert model.likelihood.name == saved["likelihood"]


def test_pixel_stage_one_in_closed_form_freezes_the_running_optimum():
    x, mean = _fixed_reconstructions(d=8)
    lik = PixelGaussian(stage1_epochs=1, stage1_variance="closed-form").double().train()
    out = _pixel_out(mean, torch.rand_like(mean))
    assert torch.allclose(lik.nll(x, out), OptimalGaussian().double().train().nll(x, mean))
    running = float(lik.global_variance.running_sigma2)
    assert _epoch_end(lik, 0, {"elbo": -1.0}) == {"sigma2": pytest.approx(running), "stage": 1}
    assert float(lik.sigma2_dataset) == pytest.approx(running) and int(lik.stage) == 2
    with pytest.raises(WisealeError, match="stage1_variance must be one of gradient, "
                                           "closed-form \\(the pixel likelihood\\); got 'adam'"):
        PixelGaussian(stage1_variance="adam")


def test_learned_sigma_moves_the_variance_as_004_alg1_does():
    """004 Alg. 1 updates sigma (from 1) with Adam, which moves a parameter by about lr per
    step: with lr 0.01 sigma reaches the closed-form optimum sqrt(0.035) = 0.187 (004 Eq. 10:
    sigma^2 = the mean squared error per dimension, computed here from the data) after about
    (1 - 0.187) / 0.01 = 80 steps, and 40 steps later it is within one step (lr) of it, i.e.
    sigma^2 within 11% of 0.035 (measured: 1%). A log sigma^2 parameter, moved by Adam as
    fast, is still 8x too large then (it has fallen only to about -1.2)."""
    x, mean = _fixed_reconstructions(n=64, d=784)
    scale = math.sqrt(0.035 / (x - mean).square().mean().item())
    mean = x + (mean - x) * scale  # squared error 0.035 per dimension
    optimum = (x - mean).square().mean().item()  # 004 Eq. 10
    lik = LearnedGaussian().double()
    logvar = torch.zeros((), dtype=torch.float64, requires_grad=True)  # the slower alternative
    optimizers = [torch.optim.Adam(lik.parameters(), lr=0.01), torch.optim.Adam([logvar], lr=0.01)]
    sse, dims = (x - mean).square().sum(1).mean(), x.shape[1]
    for _ in range(120):
        for optimizer in optimizers:
            optimizer.zero_grad()
        lik.nll(x, mean).mean().backward()
        (0.5 * dims * (math.log(2 * math.pi) + logvar) + 0.5 * sse * (-logvar).exp()).backward()
        for optimizer in optimizers:
            optimizer.step()
    sigma2 = _epoch_end(lik, 0, {})["sigma2"]
    assert abs(math.sqrt(sigma2) - math.sqrt(optimum)) < 0.01
    assert math.exp(logvar.item()) > 4 * optimum


def test_learned_variance_is_the_square_of_sigma():
    """The parameter is sigma and the variance sigma^2 (004 Alg. 1): at sigma = 0.5 and 2 the
    likelihood is torch's Normal(mean, sigma) and d nll / d sigma = N D / sigma - SSE / sigma^3
    (the derivative of N D log sigma + SSE / (2 sigma^2))."""
    x, mean = _fixed_reconstructions(n=64, d=10)
    sse = (x - mean).square().sum().item()
    for sigma in (0.5, 2.0):
        lik = LearnedGaussian().double()
        with torch.no_grad():
            lik.sigma.fill_(sigma)
        nll = lik.nll(x, mean)
        expected = -torch.distributions.Normal(mean, sigma).log_prob(x).sum(1)
        assert torch.allclose(nll, expected, rtol=1e-12, atol=0), sigma
        assert torch.allclose(lik.variance(mean), torch.full_like(mean, sigma**2), rtol=1e-12)
        assert _epoch_end(lik, 0, {})["sigma2"] == pytest.approx(sigma**2, rel=1e-12)
        nll.sum().backward()
        assert lik.sigma.grad.item() == pytest.approx(x.numel() / sigma - sse / sigma**3,
                                                      rel=1e-10), sigma


def test_closed_form_pairwise_uses_the_batch_variance_of_nll():
    """In training, [i, i] of the pairwise matrix is -log p(x_i | z_i), as nll gives it (the
    same batch sigma^2 for Eq. 15-16 as for Eq. 17), and only nll moves the running value."""
    x, mean = _fixed_reconstructions(n=6, d=4)
    lik = OptimalGaussian().double().train()
    own = lik.nll(x, mean)
    running = lik.running_sigma2.clone()
    pairwise = lik.pairwise_nll(x, mean)
    assert torch.allclose(pairwise.diagonal(), own, rtol=1e-12)
    assert torch.equal(lik.running_sigma2, running)


def test_stage_switch_without_an_elbo_reads_the_loss_as_its_negative():
    """A row without an ELBO (a deterministic encoder) uses -loss: a falling loss is an
    improving ELBO, so stage 1 goes on; a rising loss stalls it."""
    lik = PixelGaussian(stage1_epochs=10, stage1_tolerance=0.0)
    _epoch_end(lik, 0, {"loss": 100.0})
    _epoch_end(lik, 1, {"loss": 90.0})
    assert int(lik.stage) == 1
    _epoch_end(lik, 2, {"loss": 95.0})
    assert int(lik.stage) == 2


def test_a_run_with_the_old_log_variance_parameter_is_refused_in_one_line(tmp_path):
    from wiseale.errors import WisealeError
    from wiseale.training.checkpoint import load_weights

    model = Autoencoder(torch.nn.Identity(), GaussianNoise(3, 2), torch.nn.Linear(2, 3),
                        LearnedGaussian(), [])
    state = {k: v for k, v in model.state_dict().items() if k != "likelihood.sigma"}
    state["likelihood.log_sigma2"] = torch.zeros(())
    with pytest.raises(WisealeError, match="stores the learned variance as log sigma\\^2"):
        load_weights(model, state, tmp_path / "model.safetensors")
