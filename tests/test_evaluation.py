"""evaluate() and the training diagnostics against a linear-Gaussian model whose every metric
has a closed form: mu(x) = A x + b, sigma(x) = s, x_hat(z) = W z + c, p(x|z) = N(x_hat, v I)."""

import math

import pytest
import torch
from torch import nn

from wiseale.likelihoods import FixedGaussian
from wiseale.metrics import evaluate
from wiseale.model import Autoencoder
from wiseale.noises import SIGMA_MIN, GaussianNoise, IAFNoise
from wiseale.regularizers import AggregateKL, PriorKL

D, D_Z, V = 6, 3, 0.5


def _inverse_softplus(y: float) -> float:
    return math.log(math.expm1(y))


def _linear_gaussian(s: float, seed: int = 0, reconstruction: str = "sample",
                     regularizer: nn.Module | None = None) -> tuple[Autoencoder, dict]:
    g = torch.Generator().manual_seed(seed)
    p = {"A": 0.4 * torch.randn(D_Z, D, generator=g, dtype=torch.float64),
         "b": torch.randn(D_Z, generator=g, dtype=torch.float64),
         "W": 0.5 * torch.randn(D, D_Z, generator=g, dtype=torch.float64),
         "c": torch.randn(D, generator=g, dtype=torch.float64)}
    noise = GaussianNoise(D, D_Z).double()
    decoder = nn.Linear(D_Z, D).double()
    with torch.no_grad():
        noise.mu_head.weight.copy_(p["A"])
        noise.mu_head.bias.copy_(p["b"])
        noise.sigma_head.weight.zero_()
        noise.sigma_head.bias.fill_(_inverse_softplus(s - SIGMA_MIN) if s > SIGMA_MIN else -40.0)
        decoder.weight.copy_(p["W"])
        decoder.bias.copy_(p["c"])
    model = Autoencoder(nn.Identity(), noise, decoder, FixedGaussian(V),
                        [PriorKL() if regularizer is None else regularizer], reconstruction)
    return model, p


def _exact(x: torch.Tensor, p: dict, s: float) -> dict:
    """The closed forms, written out with numpy-style tensor algebra (no wiseale code)."""
    mu = x @ p["A"].T + p["b"]
    residual = x - (mu @ p["W"].T + p["c"])
    sse = residual.square().sum(1)
    trace = s * s * p["W"].square().sum()  # E ||W eps||^2, eps ~ N(0, s^2 I)
    log_lik = -0.5 * D * math.log(2 * math.pi * V) - (sse + trace) / (2 * V)
    kl = 0.5 * (mu.square() + s * s - 1 - math.log(s * s)).sum(1)
    return {"recon_error": sse.mean().item(), "kl_prior": kl.mean().item(),
            "elbo": (log_lik - kl).mean().item(), "sse": sse, "mu": mu}


def test_evaluate_matches_the_linear_gaussian_closed_forms():
    s = 0.4
    model, p = _linear_gaussian(s)
    x = torch.randn(20_000, D, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    exact = _exact(x, p, s)
    got = evaluate(model, x)
    # recon_error decodes the mean: exact up to float64 rounding (decoding a sample adds
    # s^2 |W|_F^2, about 3 here)
    assert got["recon_error"] == pytest.approx(exact["recon_error"], rel=1e-10)
    assert got["mse"] == pytest.approx(exact["recon_error"] / D, rel=1e-10)
    assert got["kl_prior"] == pytest.approx(exact["kl_prior"], rel=1e-10)
    # the ELBO uses one z per sample: Monte Carlo, standard error 0.05 here, while the
    # KL (what a sign error would move it by, twice) is several nats
    assert exact["kl_prior"] > 2.0
    assert got["elbo"] == pytest.approx(exact["elbo"], abs=0.25)


def test_training_elbo_uses_each_samples_own_likelihood_under_every_reconstruction():
    """parts['elbo'] is log p(x_i|z_i) - KL_i whatever the trained reconstruction term is
    (001 Eq. 15-17 change the loss, not the ELBO being reported)."""
    s = SIGMA_MIN  # z = mu up to 1e-3, so the one-sample ELBO is the closed form
    x = torch.randn(32, D, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    for reconstruction in ("sample", "exact", "mixture"):
        model, p = _linear_gaussian(s, reconstruction=reconstruction, regularizer=AggregateKL())
        exact = _exact(x, p, s)
        torch.manual_seed(0)
        out = model(x)  # z - mu ~ 1e-3 moves the ELBO (about -40) by ~0.01
        assert out.parts["elbo"].item() == pytest.approx(exact["elbo"], rel=2e-3)
        if reconstruction != "sample":  # the trained term really differs from the own one
            assert abs(out.parts["recon"].item() - out.parts["nll"].item()) > 1.0


def _iaf_model(seed: int = 0) -> Autoencoder:
    torch.manual_seed(seed)
    noise = IAFNoise(D, D_Z, steps=2).double()
    with torch.no_grad():
        noise.base.sigma_head.weight.zero_()
        noise.base.sigma_head.bias.fill_(-40.0)  # sigma = SIGMA_MIN: z_0 = mu + 1e-3 eps
        for param in noise.steps.parameters():  # a flow far from the identity
            param.mul_(3.0)
    return Autoencoder(nn.Identity(), noise, nn.Linear(D_Z, D).double(), FixedGaussian(V),
                       [PriorKL()])


def test_a_flow_posterior_is_reconstructed_from_the_flows_output():
    """VAE + IAF: the decoder only sees flow outputs z_T, so reconstructions decode the flow
    at eps = 0, which a near-deterministic posterior sample must match (issue 12, point 1)."""
    model = _iaf_model()
    x = torch.randn(256, D, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    with torch.no_grad():
        post = model.encode(x, sample=True)
        seen = (x - model.decode(post.z)).square().sum(1).mean().item()
        from_mean = (x - model.decode(post.mu)).square().sum(1).mean().item()
    got = evaluate(model, x)["recon_error"]
    assert got == pytest.approx(seen, rel=1e-2)
    assert abs(from_mean - seen) > 0.1 * seen  # decoding z_0's mean would be caught
    assert model.reconstruct(x).sub(model.decode(post.z)).abs().max() < 0.05


def test_the_iaf_context_vector_has_the_latent_length():
    """003 App. B: the encoder outputs "another vector of z_dim length" for the flows."""
    assert IAFNoise(10, 5).context_head.out_features == 5


def test_every_iaf_output_depends_on_every_noise_coordinate(monkeypatch):
    """The IAF steps take reversed orders in turn: a masked autoregressive step leaves its first
    feature a function of itself alone, so with one order in both steps z_T[0] would ignore
    eps[1:]. Each eps coordinate is moved by 1 with the rest held (the noise drawn is
    replaced) and every coordinate of the posterior sample must move."""
    model = _iaf_model()
    h = torch.randn(1, D, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    eps = torch.zeros(1, D_Z, dtype=torch.float64)
    monkeypatch.setattr(torch, "randn_like", lambda t, **kw: eps.clone())
    with torch.no_grad():
        model.noise.base.sigma_head.bias.fill_(0.0)  # sigma = softplus(0): eps moves z_0 by 0.7
        start = model.noise(h).z
        for k in range(D_Z):
            eps.zero_()
            eps[0, k] = 1.0
            moved = (model.noise(h).z - start).abs()[0]
            assert torch.all(moved > 1e-6), (k, moved.tolist())


def test_evaluate_is_seeded_and_leaves_the_global_rng_alone():
    """The ELBO draws one z per sample: evaluate seeds its own generator, so two calls from any
    global random state give the same numbers, and the caller's random stream goes on as if
    evaluate had not run."""
    model, _ = _linear_gaussian(0.4)
    x = torch.randn(256, D, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    torch.manual_seed(1)
    first = evaluate(model, x)
    torch.manual_seed(2)
    torch.rand(7)
    assert evaluate(model, x) == first
    torch.manual_seed(3)
    expected = torch.rand(4)
    torch.manual_seed(3)
    evaluate(model, x)
    assert torch.equal(torch.rand(4), expected)


def test_the_final_evaluation_is_sized_by_final_eval(tmp_path, tiny_sine):
    """fast: the per-epoch metrics on eval_size samples of each split (the last epoch's test
    row, to the digit); none: no evaluation.json, and an extension with none removes the one
    that described the former weights."""
    import dataclasses
    import json

    from wiseale.training import train

    run = tmp_path / "fast"
    train(dataclasses.replace(tiny_sine, final_eval="fast"), run, progress=False)
    evaluation = json.loads((run / "evaluation.json").read_text())
    last = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    assert set(evaluation) == {"train", "test"}
    assert evaluation["test"] == {k[len("test_"):]: v for k, v in last.items()
                                  if k.startswith("test_")}
    assert "iwae" not in evaluation["train"] and "knn_accuracy" not in evaluation["test"]
    run = tmp_path / "none"
    train(tiny_sine, run, progress=False)
    assert "iwae" in json.loads((run / "evaluation.json").read_text())["test"]
    train(dataclasses.replace(tiny_sine, epochs=3, final_eval="none"), run, resume=True,
          progress=False)
    assert not (run / "evaluation.json").exists() and (run / "model.safetensors").exists()
