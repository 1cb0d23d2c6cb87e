import dataclasses
import math

import pytest
import torch

from wiseale.build import build_model
from wiseale.likelihoods import FixedGaussian
from wiseale.methods import get_method, resolve_options
from wiseale.nets import build_nets
from wiseale.noises import PointPosterior
from wiseale.regularizers import TotalCorrelation, permute_dims
from wiseale.storage import load_tensors
from wiseale.training import train
from wiseale.training.loop import _optimizers


def _factorvae(method: str = "factorvae"):
    torch.manual_seed(0)
    m = get_method(method)
    enc, feat, dec = build_nets("mlp", (10,), 3)
    return build_model(m, resolve_options(m, {}), enc, feat, dec, FixedGaussian(0.5), 3)


def test_discriminator_architecture_follows_kim_and_mnih():
    tc = TotalCorrelation(7.0, latent_dim=6)
    linears = [m for m in tc.discriminator if isinstance(m, torch.nn.Linear)]
    assert [layer.out_features for layer in linears] == [1000] * 6 + [2]
    slopes = {m.negative_slope for m in tc.discriminator if isinstance(m, torch.nn.LeakyReLU)}
    assert slopes == {0.2}


def test_the_discriminator_steps_from_its_hook_on_the_step_z_and_leaves_the_encoder():
    """The loop has no TC branch: the regulariser's on_step_end steps its own Adam on the
    detached z of the forward pass before it."""
    model = _factorvae()
    output = model(torch.randn(32, 10))
    for parameter in model.parameters():
        parameter.grad = None
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    (tc,) = [part for part in model.hooks() if isinstance(part, TotalCorrelation)]
    for part in model.hooks():
        part.on_step_end(0, output.parts)
    assert output.parts["adversary_loss"].requires_grad is False
    for name, parameter in model.named_parameters():
        moved = not torch.equal(parameter, before[name])
        assert moved == name.startswith("regularizers.1.discriminator"), name
        assert (parameter.grad is not None) == moved, name
    with torch.no_grad():  # an evaluation's forward leaves the step's z alone
        z = tc._step_z
        model(torch.randn(8, 10))
    assert tc._step_z is z


def test_the_two_optimizers_split_the_parameters():
    model = _factorvae("tc-vcae")
    optimizers = _optimizers(model, 1e-3)
    main = {id(p) for g in optimizers["optim"].param_groups for p in g["params"]}
    adv = {id(p) for g in optimizers["adversary"].param_groups for p in g["params"]}
    assert not main & adv and main | adv == {id(p) for p in model.parameters()}
    assert "adversary" not in _optimizers(_factorvae("vcae"), 1e-3)


def test_permute_dims_keeps_marginals_and_breaks_dependence():
    torch.manual_seed(0)
    x = torch.randn(5000, 1)
    z = torch.cat([x, x + 0.1 * torch.randn(5000, 1)], dim=1)
    p = permute_dims(z)
    for j in range(2):
        assert torch.equal(p[:, j].sort().values, z[:, j].sort().values)
    assert abs(torch.corrcoef(p.T)[0, 1]) < 0.05 < torch.corrcoef(z.T)[0, 1]


def test_regularizer_value_estimates_the_total_correlation_of_a_gaussian():
    """The term's value, after training its discriminator, is the closed-form TC of a
    correlated Gaussian (positive): a sign error or a swapped logit fails it."""
    torch.manual_seed(0)
    rho = 0.9
    truth = -0.5 * math.log(1 - rho**2)  # TC of a bivariate Gaussian with correlation rho
    tc = TotalCorrelation(1.0, latent_dim=2, width=128)
    optimizer = torch.optim.Adam(tc.parameters(), lr=1e-3)
    cov = torch.tensor([[1.0, rho], [rho, 1.0]])
    dist = torch.distributions.MultivariateNormal(torch.zeros(2), cov)
    for _ in range(600):
        optimizer.zero_grad()
        tc.adversary_loss(dist.sample((512,))).backward()
        optimizer.step()
    z = dist.sample((20_000,))
    with torch.no_grad():
        value, loss = tc(PointPosterior(z, z))
    assert abs(value.item() - truth) < 0.2, (value.item(), truth)
    assert loss.item() == pytest.approx(value.item())  # weight 1


def test_factorvae_resume_is_exact(tmp_path, tiny_sine, monkeypatch):
    import wiseale.training.loop as training

    config = dataclasses.replace(tiny_sine, method="factorvae", epochs=3)
    train(config, tmp_path / "straight", progress=False)
    calls = {"n": 0}
    real = training.evaluate

    def crash(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(training, "evaluate", crash)
    try:
        train(config, tmp_path / "resumed", progress=False)
    except KeyboardInterrupt:
        pass
    monkeypatch.setattr(training, "evaluate", real)
    train(config, tmp_path / "resumed", resume=True, progress=False)
    a = load_tensors(tmp_path / "straight/model.safetensors")[0]
    b = load_tensors(tmp_path / "resumed/model.safetensors")[0]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any("discriminator" in k for k in a)


def test_the_loop_steps_the_discriminator_every_step_and_logs_its_loss(tmp_path, tiny_sine):
    """Through train(): the discriminator leaves its initial weights (its only optimiser is
    its own, stepped from its hook) and every epoch logs adversary_loss."""
    from wiseale.training import load_run
    from wiseale.training.run import read_metrics

    config = dataclasses.replace(tiny_sine, method="factorvae", epochs=2)
    train(config, tmp_path, progress=False)
    model = load_run(tmp_path)[0]
    torch.manual_seed(0)
    initial = TotalCorrelation(7.0, latent_dim=config.latent_dim).discriminator
    trained = model.regularizers[1].discriminator
    assert all(not torch.equal(a, b) for a, b in zip(initial.parameters(), trained.parameters(),
                                                     strict=True))
    rows = read_metrics(tmp_path / "metrics.jsonl")
    assert all(math.isfinite(row["adversary_loss"]) and row["adversary_loss"] > 0 for row in rows)
