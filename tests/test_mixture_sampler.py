"""The Gaussian-mixture sampler of the aggregate posterior (004 Eq. 12-13, Sec. 5.5)."""

import math

import numpy as np
import pytest
import torch
from sklearn.mixture import GaussianMixture
from torch import nn

from wiseale.errors import WisealeError
from wiseale.likelihoods import FixedGaussian
from wiseale.model import Autoencoder
from wiseale.noises import FixedNoise
from wiseale.samplers import (
    FLOW_FILE,
    MIXTURE_FILE,
    SAMPLER_CLASSES,
    FlowSampler,
    LatentSampler,
    MixtureSampler,
    PriorSampler,
    fit_flow,
    fit_mixture,
    latents_of,
    load_sampler,
    run_flow,
    run_mixture,
    save_sampler,
)
from wiseale.storage import save_tensors

CENTRES = torch.tensor([[-2.0, 0.0], [2.0, 0.0], [0.0, 3.0]], dtype=torch.float64)


def _blobs(n: int, seed: int, sd: float = 0.3) -> torch.Tensor:
    """Three Gaussian blobs of standard deviation ``sd`` at CENTRES, equal weights (float64)."""
    g = torch.Generator().manual_seed(seed)
    which = torch.randint(0, 3, (n,), generator=g)
    return CENTRES[which] + sd * torch.randn(n, 2, generator=g, dtype=torch.float64)


def _blob_mixture(sd: float) -> MixtureSampler:
    """The exact density of :func:`_blobs` as a mixture."""
    return MixtureSampler(torch.full((3,), 1 / 3, dtype=torch.float64), CENTRES,
                          torch.full((3, 2), sd**2, dtype=torch.float64), "diag")


@pytest.fixture(scope="module")
def train() -> torch.Tensor:
    return _blobs(600, seed=1)


@pytest.fixture(scope="module")
def full(train) -> MixtureSampler:
    return fit_mixture(train, components=3, seed=0)


@pytest.fixture(scope="module")
def hand() -> MixtureSampler:
    """A skewed 2-D mixture with correlated full covariances."""
    weights = torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64)
    means = torch.tensor([[0.0, 0.0], [3.0, 1.0], [-2.0, 2.5]], dtype=torch.float64)
    covs = torch.tensor([[[1.0, 0.6], [0.6, 0.8]], [[0.3, -0.2], [-0.2, 0.5]],
                         [[0.2, 0.0], [0.0, 1.5]]], dtype=torch.float64)
    return MixtureSampler(weights, means, covs, "full")


def _toy_model(sigma_eps: float) -> Autoencoder:
    """q(z|x) = N(x, sigma_eps^2 I) on 2-D x: the posterior means are the data themselves."""
    noise = FixedNoise(2, 2, sigma_eps=sigma_eps)
    with torch.no_grad():
        noise.mu_head.weight.copy_(torch.eye(2))
        noise.mu_head.bias.zero_()
    return Autoencoder(nn.Identity(), noise, nn.Linear(2, 2), FixedGaussian(0.5), [])


def test_exports_registry_and_protocol(full):
    import argparse

    from wiseale.cli import build_parser

    subcommands = next(a for a in build_parser()._actions
                       if isinstance(a, argparse._SubParsersAction)).choices
    choices = next(a.choices for a in subcommands["sample"]._actions if a.dest == "sampler")
    assert tuple(SAMPLER_CLASSES) == ("prior", "flow", "mixture") == tuple(choices)
    assert SAMPLER_CLASSES["mixture"] is MixtureSampler and MIXTURE_FILE == "mixture.safetensors"
    assert FLOW_FILE == "flow.safetensors" and SAMPLER_CLASSES["flow"] is FlowSampler
    assert all(callable(f) for f in (fit_flow, latents_of, run_flow))
    assert isinstance(full, LatentSampler) and isinstance(PriorSampler(2), LatentSampler)
    assert full.name == "mixture" and full.latent_dim == 2 and full.components == 3


@pytest.mark.parametrize("covariance", ["full", "diag"])
def test_log_prob_matches_sklearn(covariance, train):
    mixture = fit_mixture(train, components=4, covariance=covariance, seed=3)
    gm = GaussianMixture(4, covariance_type=covariance, random_state=3).fit(train.numpy())
    assert np.allclose(mixture.weights.numpy(), gm.weights_, rtol=0, atol=1e-12)
    test = _blobs(300, seed=2)
    expected = torch.from_numpy(gm.score_samples(test.numpy()))
    got = mixture.log_prob(test)
    assert got.dtype == torch.float64
    assert torch.allclose(got, expected, rtol=0, atol=1e-6)
    assert torch.allclose(mixture.log_prob(test.float()).double(), got, atol=1e-4)
    assert mixture.log_prob(test.float()).dtype == torch.float32


def test_log_prob_is_exact_for_a_single_gaussian(hand):
    z = torch.randn(50, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    one = MixtureSampler(torch.ones(1, dtype=torch.float64), hand.means[:1], hand.covariances[:1])
    gauss = torch.distributions.MultivariateNormal(hand.means[0], hand.covariances[0])
    assert torch.allclose(one.log_prob(z), gauss.log_prob(z), rtol=0, atol=1e-12)
    far = torch.tensor([[200.0, -300.0]], dtype=torch.float64)  # every component underflows
    assert torch.isfinite(hand.log_prob(far)).all()


@pytest.mark.parametrize("which", ["full", "diag"])
def test_log_prob_integrates_to_one(which, hand):
    mixture = hand if which == "full" else _blob_mixture(0.5)
    xs = torch.linspace(-8, 8, 401, dtype=torch.float64)
    ys = torch.linspace(-6, 9, 376, dtype=torch.float64)
    cell = (xs[1] - xs[0]) * (ys[1] - ys[0])
    mass = (mixture.log_prob(torch.cartesian_prod(xs, ys)).exp().sum() * cell).item()
    assert mass == pytest.approx(1.0, abs=1e-4)


def test_samples_are_reproducible_and_ignore_the_global_rng(hand):
    torch.manual_seed(1)
    state = torch.get_rng_state()
    a = hand.sample(300, torch.Generator().manual_seed(5))
    assert torch.equal(torch.get_rng_state(), state)  # the global RNG was not drawn from
    torch.manual_seed(2)
    b = hand.sample(300, torch.Generator().manual_seed(5))
    c = hand.sample(300, torch.Generator().manual_seed(6))
    assert a.shape == (300, 2) and a.dtype == torch.float32
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert hand.sample(0).shape == (0, 2)
    with pytest.raises(WisealeError, match="non-negative integer"):
        hand.sample(-1)


def test_sample_moments_match_the_mixture(hand):
    n = 200_000
    z = hand.sample(n, torch.Generator().manual_seed(0)).double()
    mean, cov = hand.moments()
    # analytic moments: E z = sum w mu; Cov z = sum w (Sigma + mu mu^T) - E z E z^T
    w, mu = hand.weights, hand.means
    second = sum(w[m] * (hand.covariances[m] + torch.outer(mu[m], mu[m])) for m in range(3))
    assert torch.allclose(mean, w @ mu) and torch.allclose(cov, second - torch.outer(mean, mean))
    sd = cov.diagonal().sqrt()
    assert ((z.mean(0) - mean).abs() < 5 * sd / math.sqrt(n)).all()
    assert ((torch.cov(z.T) - cov).abs() < 0.03).all()  # ~ 5 standard errors at n = 2e5
    # each component gets its weight of the samples: the nearest-mean assignment of the
    # well-separated components' draws matches the weights to Monte Carlo accuracy
    frac = hand.component_log_prob(z).argmax(1).bincount(minlength=3).double() / n
    assert torch.allclose(frac, w, atol=0.02)


def test_diag_samples_have_the_diag_variances():
    mixture = _blob_mixture(0.5)
    z = mixture.sample(60_000, torch.Generator().manual_seed(1)).double()
    near = z[(z - CENTRES[2]).norm(dim=1) < 1.5] - CENTRES[2]  # the blob at (0, 3)
    assert near.std(0).sub(0.5).abs().max() < 0.03
    assert abs(torch.corrcoef(near.T)[0, 1].item()) < 0.03


def test_save_load_is_exact(full, hand, tmp_path):
    for mixture in (full, hand, _blob_mixture(0.7)):
        path = tmp_path / "mixture.safetensors"
        save_sampler(path, mixture)
        loaded = load_sampler(path, latent_dim=2)
        assert isinstance(loaded, MixtureSampler) and loaded.covariance == mixture.covariance
        assert loaded.fit_info == mixture.fit_info
        z = _blobs(100, seed=4)
        assert torch.equal(loaded.log_prob(z), mixture.log_prob(z))
        g1, g2 = torch.Generator().manual_seed(9), torch.Generator().manual_seed(9)
        assert torch.equal(loaded.sample(100, g1), mixture.sample(100, g2))
    assert full.fit_info["converged"] and full.fit_info["n"] == 600
    with pytest.raises(WisealeError, match="fitted to 2-dimensional.*refit the mixture"):
        load_sampler(path, latent_dim=8)


def _refused(path, match: str) -> None:
    with pytest.raises(WisealeError, match=match) as info:
        load_sampler(path)
    assert "\n" not in str(info.value) and "refit the mixture" in str(info.value)


def test_corrupt_files_are_refused(full, hand, tmp_path):
    tensors, meta = hand.state()
    cases = {
        "negative_weight": ({**tensors, "weights": torch.tensor([1.2, -0.4, 0.2])}, meta,
                            "positive"),
        "weights_not_summing_to_1": ({**tensors, "weights": torch.tensor([0.5, 0.3, 0.3])},
                                     meta, "sum to 1.1"),
        "not_pd": ({**tensors, "covariances": torch.cat(
            [tensors["covariances"][:2], torch.tensor([[[1.0, 2.0], [2.0, 1.0]]])])}, meta,
            "component 2 is not positive definite"),
        "asymmetric": ({**tensors, "covariances": torch.cat(
            [torch.tensor([[[1.0, 0.5], [0.0, 1.0]]]), tensors["covariances"][1:]])}, meta,
            "component 0 is not symmetric"),
        "nan_mean": ({**tensors, "means": torch.full((3, 2), float("nan"))}, meta, "NaN"),
        "missing_tensor": ({"weights": tensors["weights"], "means": tensors["means"]}, meta,
                           "tensors are"),
        "wrong_shape": ({**tensors, "covariances": torch.ones(3, 2)}, meta,
                        r"full covariances must be \[3, 2, 2\]"),
        "wrong_format": (tensors, {**meta, "sampler_format": 2}, "format 2"),
        "wrong_type": (tensors, {**meta, "covariance": "tied"}, "unknown covariance type"),
        "wrong_counts": (tensors, {**meta, "components": 4}, "components=4"),
        "bad_fit_info": (tensors, {**meta, "fit": [1, 2]}, "fit_info must be a dict"),
        "zero_variance": ({**tensors, "covariances": torch.tensor([[1.0, 1.0], [0.0, 1.0],
                                                                   [1.0, 1.0]])},
                          {**meta, "covariance": "diag"}, "variances are not all positive"),
    }
    for name, (t, m, match) in cases.items():
        save_tensors(tmp_path / f"{name}.safetensors", t, m)
        _refused(tmp_path / f"{name}.safetensors", match)
    path = tmp_path / "good.safetensors"
    save_sampler(path, full)
    raw = path.read_bytes()
    (tmp_path / "truncated.safetensors").write_bytes(raw[: len(raw) - 20])
    with pytest.raises(WisealeError, match="corrupt or truncated") as info:
        load_sampler(tmp_path / "truncated.safetensors")
    assert "\n" not in str(info.value)
    with pytest.raises(WisealeError, match="not a mixture"):
        MixtureSampler.from_state(*PriorSampler(2).state())


def test_beats_a_single_gaussian_on_held_out_blobs(full, train):
    test = _blobs(2000, seed=3)
    single = fit_mixture(train, components=1, seed=0)
    gauss = torch.distributions.MultivariateNormal(train.mean(0),
                                                   torch.cov(train.T, correction=0))
    assert torch.allclose(single.log_prob(test), gauss.log_prob(test), atol=1e-4)
    mixture_ll, single_ll = full.log_prob(test).mean().item(), single.log_prob(test).mean().item()
    true_ll = _blob_mixture(0.3).log_prob(test).mean().item()  # -1.26: the entropy bound
    assert mixture_ll > single_ll + 1.0, (mixture_ll, single_ll)
    assert mixture_ll == pytest.approx(true_ll, abs=0.05)
    assert (full.means[full.means[:, 0].argsort()] - CENTRES[[0, 2, 1]]).abs().max() < 0.1


def test_fit_is_seeded_and_leaves_the_global_rngs_alone(train):
    torch.manual_seed(0)
    np.random.seed(0)
    torch_state, np_state = torch.get_rng_state(), np.random.get_state()[1].copy()
    a = fit_mixture(train, components=6, seed=4)
    assert torch.equal(torch.get_rng_state(), torch_state)
    assert np.array_equal(np.random.get_state()[1], np_state)
    b = fit_mixture(train, components=6, seed=4)
    c = fit_mixture(train, components=6, seed=5)
    assert torch.equal(a.means, b.means) and torch.equal(a.covariances, b.covariances)
    assert not torch.equal(a.means, c.means)


def test_bad_inputs_are_refused(train, hand):
    with pytest.raises(WisealeError, match="5 latents cannot fit 32 mixture components"):
        fit_mixture(train[:5])
    with pytest.raises(WisealeError, match="NaN"):
        fit_mixture(torch.tensor([[0.0, 1.0], [float("nan"), 2.0], [1.0, 1.0]]), components=2)
    with pytest.raises(WisealeError, match=r"\[n, d\]"):
        fit_mixture(torch.randn(10), components=2)
    with pytest.raises(WisealeError, match="unknown covariance type 'tied'"):
        fit_mixture(train, components=2, covariance="tied")
    with pytest.raises(WisealeError, match="positive integer"):
        fit_mixture(train, components=0)
    with pytest.raises(WisealeError, match="reg_covar"):
        fit_mixture(train, components=2, reg_covar=-1.0)
    with pytest.raises(WisealeError, match="latents must be"):
        hand.log_prob(torch.randn(4, 3))
    with pytest.raises(WisealeError, match="floating-point"):
        MixtureSampler(torch.ones(1, dtype=torch.long), torch.zeros(1, 2), torch.ones(1, 2),
                       "diag")
    with pytest.raises(WisealeError, match="means must be"):
        MixtureSampler(torch.ones(1), torch.zeros(2, 2), torch.ones(1, 2), "diag")


def test_run_mixture_fits_once_then_loads_and_decodes(tmp_path):
    model = _toy_model(0.3)
    x = _blobs(300, seed=5).float()
    with pytest.raises(WisealeError, match="no fitted mixture yet"):
        run_mixture(tmp_path, model, None)
    with pytest.raises(WisealeError, match="on must be one of"):
        run_mixture(tmp_path, model, x, on="modes")
    with pytest.raises(WisealeError, match="copies=1"):
        run_mixture(tmp_path, model, x, on="means", copies=2)
    mixture = run_mixture(tmp_path, model, x, components=3, copies=2, seed=1)
    assert (tmp_path / MIXTURE_FILE).exists() and mixture.components == 3
    assert mixture.fit_info["on"] == "samples" and mixture.fit_info["n"] == 600
    with pytest.raises(WisealeError, match="fitted with components=3, not components=50; "
                       "delete it to refit"):
        run_mixture(tmp_path, model, None, components=50, copies=2, seed=1)
    with pytest.raises(WisealeError, match="fitted with seed=1, not seed=0"):
        run_mixture(tmp_path, model, None, copies=2)
    again = run_mixture(tmp_path, model, None, copies=2, seed=1)  # loaded, not refitted
    assert again.components == 3 and torch.equal(again.means, mixture.means)
    samples = model.sample(5, torch.Generator().manual_seed(0), sampler=again)
    z = mixture.sample(5, torch.Generator().manual_seed(0))
    assert torch.allclose(samples, model.decode(z))
    save_sampler(tmp_path / MIXTURE_FILE, PriorSampler(2))
    with pytest.raises(WisealeError, match="not a mixture; delete it"):
        run_mixture(tmp_path, model, x)


def test_a_run_mixture_records_and_checks_the_weights_it_was_fitted_to(tmp_path, tiny_sine):
    """Issue 23, point 2, from Python: the file records model.safetensors' SHA-256; files of
    other weights, files that record none and a model that is not the saved one are refused;
    load_sampler checks a recorded digest only against weights it is given."""
    from wiseale.build import load_split
    from wiseale.derived import WEIGHTS_DIGEST, weights_digest
    from wiseale.storage import load_tensors
    from wiseale.training import load_run, train

    run = tmp_path / "r"
    train(tiny_sine, run, progress=False)
    model, config = load_run(run)
    x, weights, path = load_split(config, "train").floats(), run / "model.safetensors", \
        run / MIXTURE_FILE
    mixture = run_mixture(run, model, x, components=2)
    assert load_tensors(path)[1][WEIGHTS_DIGEST] == weights_digest(weights)
    assert run_mixture(run, model, None).components == 2  # the same weights: loaded
    other = tmp_path / "other.safetensors"  # stands for another run's model.safetensors
    save_tensors(other, {"w": torch.zeros(1)}, {})
    save_sampler(path, mixture, weights=other)
    with pytest.raises(WisealeError, match=r"was fitted to other weights than .*model\."
                       r"safetensors \(the run was trained further, or the file copied from "
                       r"another run\); delete it to refit"):
        run_mixture(run, model, None)
    with pytest.raises(WisealeError, match="fitted to other weights"):
        load_sampler(path, weights=weights)
    assert load_sampler(path, weights=other).components == 2
    assert load_sampler(path).components == 2  # no weights given: nothing to check
    save_sampler(path, mixture)  # as a wiseale without digests saved it
    with pytest.raises(WisealeError, match="does not record the weights it was fitted to .*; "
                       "delete it to refit"):
        run_mixture(run, model, None)
    assert load_sampler(path, weights=weights).components == 2  # a standalone file
    path.unlink()
    with torch.no_grad():
        next(model.parameters()).add_(1.0)  # no longer the saved model
    with pytest.raises(WisealeError, match="the model given is not the one saved in"):
        run_mixture(run, model, x, components=2)
    assert not path.exists()


def test_fitting_on_samples_beats_fitting_on_means(tmp_path):
    """004 Eq. 12: z ~ q(z|x_i) are exact draws of q(z), the means are not. With wide
    posteriors (sigma 0.7 around blobs of sd 0.3) the held-out log-likelihood of fresh draws
    of q(z) is higher under the mixture fitted to samples (docs/sampling.md)."""
    model = _toy_model(0.7)
    x_train, x_test = _blobs(1000, seed=6).float(), _blobs(2000, seed=7).float()
    fresh = latents_of(model, x_test, seed=123).double()  # held-out draws of q(z)
    ll = {}
    for on, copies in (("means", 1), ("samples", 1), ("samples", 4)):
        run_dir = tmp_path / f"{on}{copies}"
        run_dir.mkdir()
        mixture = run_mixture(run_dir, model, x_train, components=8,
                              copies=copies, seed=0, on=on)
        ll[on, copies] = mixture.log_prob(fresh).mean().item()
    true_ll = _blob_mixture(math.hypot(0.3, 0.7)).log_prob(fresh).mean().item()
    print({f"{on} x{copies}": round(v, 3) for (on, copies), v in ll.items()},
          f"true q(z): {true_ll:.3f}")
    assert ll["samples", 1] > ll["means", 1] + 0.5, ll
    assert ll["samples", 4] > ll["means", 1] + 0.5, ll
    assert true_ll - 0.1 < ll["samples", 4] <= true_ll + 0.05
