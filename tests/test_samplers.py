"""Latent samplers: the prior and the flow fitted to the aggregate posterior (003 Eq. 8-9)."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from wiseale.errors import WisealeError
from wiseale.likelihoods import FixedGaussian
from wiseale.model import Autoencoder
from wiseale.noises import FixedNoise
from wiseale.samplers import (
    FlowSampler,
    LatentSampler,
    PriorSampler,
    fit_flow,
    latents_of,
    load_sampler,
    run_flow,
    save_sampler,
)


def _two_moons_of_gaussians(n: int, seed: int) -> torch.Tensor:
    """Two well-separated Gaussians at (-3, 1) and (3, -1), sd 0.5: far from one Gaussian."""
    g = torch.Generator().manual_seed(seed)
    side = torch.randint(0, 2, (n,), generator=g).float() * 2 - 1
    centre = torch.stack([3 * side, -side], 1)
    return centre + 0.5 * torch.randn(n, 2, generator=g)


@pytest.fixture(scope="module")
def data() -> tuple[torch.Tensor, torch.Tensor]:
    return _two_moons_of_gaussians(2000, seed=1), _two_moons_of_gaussians(1000, seed=2)


@pytest.fixture(scope="module")
def maf(data) -> FlowSampler:
    torch.set_num_threads(1)
    return fit_flow(data[0], kind="maf", epochs=25, batch_size=100, seed=0)


@pytest.fixture(scope="module")
def realnvp(data) -> FlowSampler:
    torch.set_num_threads(1)
    return fit_flow(data[0], kind="realnvp", epochs=25, batch_size=100, seed=0, transforms=4,
                    hidden=(64, 64))


def _gaussian_test_ll(train: torch.Tensor, test: torch.Tensor) -> float:
    """Exact mean test log-likelihood of the maximum-likelihood Gaussian of ``train``."""
    mean = train.double().mean(0)
    cov = torch.cov(train.double().T, correction=0)
    gauss = torch.distributions.MultivariateNormal(mean, covariance_matrix=cov)
    return gauss.log_prob(test.double()).mean().item()


def test_exports_and_protocol(maf):
    assert isinstance(PriorSampler(3), LatentSampler) and isinstance(maf, LatentSampler)
    assert maf.name == "flow" and maf.latent_dim == 2


def test_default_architecture_is_table5():
    maf = FlowSampler(16)
    layers = list(maf.flow.transform.transforms)
    assert len(layers) == 6
    widths = [m.out_features for m in layers[0].hyper if isinstance(m, nn.Linear)]
    assert widths[:-1] == [64, 64]
    orders = [t.order for t in layers]
    assert all(sorted(o.tolist()) == list(range(16)) for o in orders)
    assert torch.equal(orders[1], 15 - orders[0])  # random order, then its reverse
    assert len({tuple(o.tolist()) for o in orders}) >= 4  # random permutations between pairs
    nvp = FlowSampler(64, kind="realnvp")
    assert len(nvp.flow.transform.transforms) == 8 and nvp.hidden == (256, 256, 256)
    with pytest.raises(WisealeError, match="unknown flow kind"):
        FlowSampler(2, kind="glow")


def test_two_dimensional_orders_alternate():
    orders = [t.order.tolist() for t in FlowSampler(2, seed=3).flow.transform.transforms]
    assert all(orders[i] != orders[i + 1] for i in range(0, len(orders) - 1, 2))
    masks = [t.mask.tolist() for t in FlowSampler(2, "realnvp").flow.transform.transforms]
    assert all(masks[i] != masks[i + 1] for i in range(0, len(masks) - 1, 2))


@pytest.mark.parametrize("kind", ["maf", "realnvp"])
def test_flow_beats_a_single_gaussian_on_held_out_data(kind, data, maf, realnvp):
    flow = {"maf": maf, "realnvp": realnvp}[kind]
    train, test = data
    with torch.no_grad():
        flow_ll = flow.log_prob(test).mean().item()
    gauss_ll = _gaussian_test_ll(train, test)
    # entropy of the mixture ~ 2.14 nats, of the Gaussian fit ~ 3.3: the flow must get close
    assert flow_ll > gauss_ll + 0.6, (flow_ll, gauss_ll)
    assert flow.history[-1] < flow.history[0]


def test_samples_have_shape_are_reproducible_and_bimodal(maf):
    a = maf.sample(500, torch.Generator().manual_seed(7))
    b = maf.sample(500, torch.Generator().manual_seed(7))
    c = maf.sample(500, torch.Generator().manual_seed(8))
    assert a.shape == (500, 2) and torch.equal(a, b) and not torch.equal(a, c)
    torch.manual_seed(0)
    assert maf.sample(0).shape == (0, 2)
    # mass at both modes, little in between (a Gaussian would put most of it near x = 0)
    assert (a[:, 0] < -1.5).float().mean() > 0.35 and (a[:, 0] > 1.5).float().mean() > 0.35
    assert (a[:, 0].abs() < 1).float().mean() < 0.05


def test_sampling_does_not_depend_on_the_global_rng(maf):
    torch.manual_seed(1)
    a = maf.sample(50, torch.Generator().manual_seed(3))
    torch.manual_seed(2)
    b = maf.sample(50, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)


def test_log_prob_integrates_to_one(maf):
    """A grid sum of exp(log q) over the data's support: checks the standardisation's
    log-determinant (without it the integral would be off by the product of the stds)."""
    xs, ys = torch.linspace(-7, 7, 281), torch.linspace(-4, 4, 161)
    grid = torch.cartesian_prod(xs, ys)
    with torch.no_grad():
        mass = maf.log_prob(grid).exp().sum().item() * (xs[1] - xs[0]).item() * (
            ys[1] - ys[0]).item()
    assert mass == pytest.approx(1.0, abs=0.03)


def test_scaling_the_data_shifts_log_prob_by_the_jacobian(data):
    small = fit_flow(data[0], epochs=3, seed=4)
    large = fit_flow(10 * data[0], epochs=3, seed=4)
    with torch.no_grad():
        diff = small.log_prob(data[1]) - large.log_prob(10 * data[1])
    assert torch.allclose(diff, torch.full_like(diff, 2 * math.log(10)), atol=1e-3)
    assert large.history[-1] == pytest.approx(small.history[-1] + 2 * math.log(10), abs=1e-3)


def test_fit_is_seeded_and_leaves_the_global_rng_alone(data):
    torch.manual_seed(5)
    before, checks = torch.get_rng_state(), torch.distributions.Distribution._validate_args
    a = fit_flow(data[0][:300], epochs=2, seed=9)
    assert torch.equal(torch.get_rng_state(), before)
    assert torch.distributions.Distribution._validate_args == checks
    b = fit_flow(data[0][:300], epochs=2, seed=9)
    c = fit_flow(data[0][:300], epochs=2, seed=10)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


@pytest.mark.parametrize("kind", ["maf", "realnvp"])
def test_save_load_is_exact(kind, maf, realnvp, data, tmp_path):
    flow = {"maf": maf, "realnvp": realnvp}[kind]
    path = tmp_path / "flow.safetensors"
    save_sampler(path, flow)
    loaded = load_sampler(path, latent_dim=2)
    assert isinstance(loaded, FlowSampler) and loaded.kind == kind
    assert loaded.history == pytest.approx(flow.history, abs=1e-5)
    with torch.no_grad():
        assert torch.equal(loaded.log_prob(data[1]), flow.log_prob(data[1]))
    g1, g2 = torch.Generator().manual_seed(11), torch.Generator().manual_seed(11)
    assert torch.equal(loaded.sample(100, g1), flow.sample(100, g2))
    with pytest.raises(WisealeError, match="fitted to 2-dimensional"):
        load_sampler(path, latent_dim=16)


def test_permutations_travel_in_the_state_dict(maf, data):
    """The orders are buffers: a flow built with another seed becomes the same flow."""
    other = FlowSampler(2, seed=123)
    assert any(not torch.equal(a.order, b.order) or not torch.equal(
        a.hyper[0].weight, b.hyper[0].weight) for a, b in zip(
        other.flow.transform.transforms, maf.flow.transform.transforms, strict=True))
    other.load_state_dict(maf.state_dict(), strict=True)
    other.eval()
    with torch.no_grad():
        assert torch.equal(other.log_prob(data[1]), maf.log_prob(data[1]))


def test_prior_sampler_round_trip(tmp_path):
    prior = PriorSampler(4)
    z = prior.sample(8, torch.Generator().manual_seed(0))
    assert torch.equal(z, torch.randn(8, 4, generator=torch.Generator().manual_seed(0)))
    expected = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(1)
    assert torch.allclose(prior.log_prob(z), expected)
    save_sampler(tmp_path / "prior.safetensors", prior)
    loaded = load_sampler(tmp_path / "prior.safetensors")
    assert isinstance(loaded, PriorSampler) and loaded.latent_dim == 4
    with pytest.raises(WisealeError, match="positive integer"):
        PriorSampler(0)


def test_corrupt_files_are_refused(maf, tmp_path):
    path = tmp_path / "flow.safetensors"
    save_sampler(path, maf)
    raw = path.read_bytes()
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(WisealeError) as info:
        load_sampler(truncated)
    assert "\n" not in str(info.value)
    with pytest.raises(WisealeError, match="does not exist"):
        load_sampler(tmp_path / "missing.safetensors")
    # a well-formed file whose weights do not fit the architecture in its metadata
    tensors, meta = maf.state()
    from wiseale.storage import save_tensors

    save_tensors(tmp_path / "wrong.safetensors", tensors, {**meta, "hidden": [32, 32]})
    with pytest.raises(WisealeError, match="do not match") as info:
        load_sampler(tmp_path / "wrong.safetensors")
    assert "\n" not in str(info.value)
    missing = {k: v for k, v in tensors.items() if k != "loc"}
    save_tensors(tmp_path / "missing_key.safetensors", missing, meta)
    with pytest.raises(WisealeError, match="do not match"):
        load_sampler(tmp_path / "missing_key.safetensors")
    save_tensors(tmp_path / "other.safetensors", {}, {"sampler": "gmm"})
    with pytest.raises(WisealeError, match="no wiseale sampler"):
        load_sampler(tmp_path / "other.safetensors")
    nan = dict(tensors, loc=torch.full((2,), float("nan")))
    save_tensors(tmp_path / "nan.safetensors", nan, meta)
    with pytest.raises(WisealeError, match="NaN"):
        load_sampler(tmp_path / "nan.safetensors")


def test_bad_inputs_are_refused():
    with pytest.raises(WisealeError, match="NaN"):
        fit_flow(torch.tensor([[0.0, 1.0], [float("nan"), 2.0]]), epochs=1)
    with pytest.raises(WisealeError, match=r"\[n, d\]"):
        fit_flow(torch.randn(10), epochs=1)
    with pytest.raises(WisealeError, match="latents must be"):
        FlowSampler(3).log_prob(torch.randn(4, 2))


def test_latents_of_encodes_with_seeded_noise():
    torch.manual_seed(0)
    model = Autoencoder(nn.Linear(10, 8), FixedNoise(8, 3, sigma_eps=0.1), nn.Linear(3, 10),
                        FixedGaussian(0.5), [])
    model.train()
    x = torch.randn(50, 10)
    state = torch.get_rng_state()
    z = latents_of(model, x, batch_size=16, seed=1)
    assert torch.equal(torch.get_rng_state(), state) and model.training
    assert z.shape == (50, 3) and not z.requires_grad
    assert torch.equal(z, latents_of(model, x, batch_size=16, seed=1))
    mu = model.encode(x, sample=False).mu.detach()
    noise = z - mu
    assert 0.05 < noise.std().item() < 0.2 and not torch.equal(z, latents_of(model, x, seed=2))
    assert latents_of(model, x, copies=3).shape == (150, 3)
    flow = fit_flow(z, epochs=1, batch_size=25)
    assert flow.sample(4, torch.Generator().manual_seed(0)).shape == (4, 3)


def test_to_base_inverts_sample_and_gaussianises(maf, data):
    w = torch.randn(500, 2, generator=torch.Generator().manual_seed(3))
    z = maf.loc + maf.scale * maf.flow().transform.inv(w)
    assert torch.allclose(maf.to_base(z), w, atol=1e-4)
    base = maf.to_base(data[1])  # two separated blobs -> one standard normal (003 Fig. 8)
    assert base.mean(0).abs().max() < 0.15 and (base.std(0) - 1).abs().max() < 0.15
    with pytest.raises(WisealeError, match="latents must be"):
        maf.to_base(torch.randn(4, 3))


def test_run_flow_fits_once_then_loads_and_decodes(tmp_path):
    torch.manual_seed(0)
    model = Autoencoder(nn.Linear(10, 8), FixedNoise(8, 2, sigma_eps=0.1), nn.Linear(2, 10),
                        FixedGaussian(0.5), [])
    x = torch.randn(200, 10)
    with pytest.raises(WisealeError, match="no fitted flow yet"):
        run_flow(tmp_path, model, None, epochs=1)
    flow = run_flow(tmp_path, model, x, epochs=2)
    assert (tmp_path / "flow.safetensors").exists() and len(flow.history) == 2
    with pytest.raises(WisealeError, match="fitted with epochs=2, not epochs=50"):
        run_flow(tmp_path, model, None, epochs=50)  # never a silent reuse
    again = run_flow(tmp_path, model, None)  # the saved flow, whatever its epochs
    assert again.history == pytest.approx(flow.history, abs=1e-6)
    generator = torch.Generator().manual_seed(0)
    samples = model.sample(5, generator, sampler=again)
    z = flow.sample(5, torch.Generator().manual_seed(0))
    assert torch.allclose(samples, model.decode(z).detach())
    save_sampler(tmp_path / "flow.safetensors", PriorSampler(2))
    with pytest.raises(WisealeError, match="not a flow"):
        run_flow(tmp_path, model, x)


def _flow_inputs(monkeypatch) -> list[torch.Tensor]:
    """The standardised latents u of every mini-batch the flow is trained on, as they come."""
    seen: list[torch.Tensor] = []
    real = FlowSampler._flow_log_prob

    def spy(self, u):
        seen.append(u.detach().clone())
        return real(self, u)

    monkeypatch.setattr(FlowSampler, "_flow_log_prob", spy)
    return seen


def test_the_flow_sees_fresh_posterior_noise_in_every_epoch(monkeypatch):
    """Issue 12, point 5 (003 Alg. 1): with the posterior's std the flow trains on new
    z = mu + std * eps in every mini-batch: epochs see different samples, distributed as q(z),
    whose variance is Var(mu) + std^2 (closed form: mu = +-1 and +-3 in equal halves, so
    Var(mu) = 1 and 9; std 0.5 and 2 give 1.25 and 13)."""
    seen = _flow_inputs(monkeypatch)
    mu = torch.tensor([1.0, 3.0]) * torch.tensor([1.0, -1.0]).repeat_interleave(200)[:, None]
    flow = fit_flow(mu, epochs=8, batch_size=400, noise_std=torch.tensor([0.5, 2.0]))
    z = [u * flow.scale + flow.loc for u in seen]  # back to z
    assert len(z) == 8 and not torch.allclose(z[0].sort(0).values, z[1].sort(0).values)
    pooled = torch.cat(z)
    # 3,200 draws: the variances' standard errors are 1.5% (1.25) and 1.3% (13) of them
    assert torch.allclose(pooled.var(0), torch.tensor([1.25, 13.0]), rtol=0.06)
    assert torch.allclose(pooled.mean(0), torch.zeros(2), atol=0.15)


def test_the_fresh_noise_is_seeded(monkeypatch):
    """Same seed, same flow; another seed draws other noise (and batches)."""
    mu = torch.randn(60, 2, generator=torch.Generator().manual_seed(3))
    fits = [fit_flow(mu, epochs=2, batch_size=20, seed=s, noise_std=torch.tensor(0.3))
            for s in (0, 0, 1)]
    first, again, other = (f.state_dict() for f in fits)
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert not all(torch.equal(first[k], other[k]) for k in first)


def test_a_flow_posterior_gives_the_flow_fresh_samples_in_every_epoch(tmp_path, monkeypatch):
    """VAE + IAF has no diagonal Gaussian to add noise to: every mini-batch re-encodes its
    images, so epochs differ, and the pooled samples match q(z) drawn by the encoder itself."""
    from wiseale.noises import IAFNoise

    seen = _flow_inputs(monkeypatch)
    torch.manual_seed(0)
    model = Autoencoder(nn.Identity(), IAFNoise(3, 2), nn.Linear(2, 3), FixedGaussian(), [])
    x = torch.randn(50, 3, generator=torch.Generator().manual_seed(1))
    flow = run_flow(tmp_path, model, x, epochs=40)
    z = [u * flow.scale + flow.loc for u in seen]
    assert len(z) == 40 and not torch.allclose(z[0].sort(0).values, z[1].sort(0).values)
    with torch.no_grad():
        reference = torch.cat([model.encode(x).z for _ in range(40)])
    pooled = torch.cat(z)
    within = torch.stack([model.encode(x).z for _ in range(40)]).detach().var(0).mean(0)
    assert torch.all((pooled.mean(0) - reference.mean(0)).abs() < 4 * (within / 1000).sqrt())
    assert torch.allclose(pooled.std(0), reference.std(0), rtol=0.06)


def test_a_flow_fitted_to_one_fixed_draw_is_refused(tmp_path):
    """Flows of the old format (one noise draw per image) are not silently reused."""
    from wiseale.storage import load_tensors, save_tensors

    path = tmp_path / "flow.safetensors"
    save_sampler(path, FlowSampler(2))
    tensors, meta = load_tensors(path)
    meta.pop("format")
    save_tensors(path, tensors, {**meta, "sampler_format": 1})
    with pytest.raises(WisealeError, match="one fixed posterior draw.*delete its file") as info:
        load_sampler(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_run_flow_gives_the_flow_the_posterior_means_and_their_noise(tmp_path, monkeypatch):
    from torch import nn

    from wiseale.likelihoods import FixedGaussian
    from wiseale.model import Autoencoder
    from wiseale.noises import FixedNoise, NoNoise
    from wiseale.samplers import flow as flow_module

    calls = []
    monkeypatch.setattr(flow_module, "fit_flow",
                        lambda latents, **kw: calls.append((latents, kw)) or
                        flow_module.FlowSampler(latents.shape[1]))
    x = torch.randn(50, 3)
    for noise, std in ((FixedNoise(3, 2, 0.3), 0.3), (NoNoise(3, 2), None)):
        model = Autoencoder(nn.Identity(), noise, nn.Linear(2, 3), FixedGaussian(), [])
        (tmp_path / type(noise).__name__).mkdir()
        flow_module.run_flow(tmp_path / type(noise).__name__, model, x, epochs=1)
        latents, kw = calls[-1]
        assert torch.allclose(latents, model.encode(x, sample=False).mu)
        if std is None:
            assert kw["noise_std"] is None
        else:
            assert torch.allclose(kw["noise_std"], torch.full((50, 2), std))


def test_every_flow_mini_batch_draws_its_own_noise(monkeypatch):
    """003 Alg. 1: fresh eps in every mini-batch of every epoch. Posterior means 1 apart on a
    line with std 0.05, so each latent the flow is trained on names its sample (the nearest
    mean) and its eps = (z - mu) / 0.05. 100 samples, batches of 25, 4 epochs: 16 batches.
    Under fresh draws the eps are iid N(0, 1), so (5 standard errors, or more, each):
    - pooled over 800 values: mean 0 (SE 0.035), variance 1 (SE 0.05);
    - the same sample's 4 draws vary: the mean within-sample variance is 1 (SE 0.06; 0 if a
      sample kept its eps);
    - the same position in the 16 batches varies: 16 x the mean squared position mean is
      chi^2_50 / 50, 1 +- 0.2 (16 if every batch reused one eps)."""
    seen = _flow_inputs(monkeypatch)
    n, std = 100, 0.05
    mu = torch.stack([torch.arange(n, dtype=torch.float32), torch.zeros(n)], 1)
    flow = fit_flow(mu, epochs=4, batch_size=25, noise_std=torch.tensor(std))
    z = torch.stack([u * flow.scale + flow.loc for u in seen]).double()  # [16, 25, 2]
    index = z[..., 0].round().long()
    assert z.shape == (16, 25, 2) and (z[..., 0] - index).abs().max() < 0.4
    for epoch in index.reshape(4, 100):
        assert sorted(epoch.tolist()) == list(range(n))  # each epoch: every sample once
    eps = (z - mu.double()[index]) / std
    assert abs(eps.mean().item()) < 5 * 0.035 and abs(eps.var().item() - 1) < 5 * 0.05
    by_sample = torch.zeros(n, 4, 2, dtype=torch.float64)
    by_sample[index.reshape(4, 100).T, torch.arange(4)[None, :]] = eps.reshape(
        4, 100, 2).transpose(0, 1)  # [sample, epoch, dim]
    assert abs(by_sample.var(1).mean().item() - 1) < 5 * 0.06
    assert (16 * eps.mean(0).square().mean()).item() < 2.0


def test_the_flow_standardises_by_the_spread_of_the_noisy_latents(monkeypatch):
    """With noise_std the flow is trained on z = mu + std * eps, whose variance per dimension
    is Var(mu) + mean(std^2) (the law of total variance over the samples): ``scale`` is its
    square root (numpy, float64, Var(mu) unbiased), and the standardised latents u the flow
    sees have mean 0 and variance 1 (Monte Carlo over 1,600 draws a dimension, each sample's
    mean 4 times: standard errors about 0.015 and 0.03; 5 of each). Scaled by the means'
    spread alone, u's variances would be about 1.6 and 1.3."""
    seen = _flow_inputs(monkeypatch)
    g = torch.Generator().manual_seed(6)
    mu = torch.randn(400, 2, generator=g) * torch.tensor([1.0, 3.0])
    std = 0.5 + torch.rand(400, 2, generator=g) * torch.tensor([0.5, 2.0])  # mean std^2 0.58, 2.6
    flow = fit_flow(mu, epochs=4, batch_size=100, noise_std=std)
    expected = np.sqrt(mu.double().numpy().var(axis=0, ddof=1)
                       + (std.double().numpy() ** 2).mean(axis=0))
    np.testing.assert_allclose(flow.scale.double().numpy(), expected, rtol=1e-5)
    u = torch.cat(seen).double()
    assert u.shape == (1600, 2)
    assert torch.all(u.mean(0).abs() < 5 * 0.015) and torch.all((u.var(0) - 1).abs() < 5 * 0.03)
