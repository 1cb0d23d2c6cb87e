"""Wide batches (issue 6): the regularisers on the whole batch, the networks in
micro-batches, with the gradients of one pass over the whole batch."""

import dataclasses
import json

import pytest
import torch

from wiseale.build import load_split, model_from_config, resolve
from wiseale.config import RunConfig
from wiseale.errors import WisealeError
from wiseale.training import train
from wiseale.training.micro_batch import micro_batch_step

BASE = RunConfig(method="wise-ale", data="sine", n_train=64, n_test=16, batch_size=16,
                 latent_dim=4, seed=5)


@pytest.fixture
def noise_from_the_input(monkeypatch):
    """Encoder noise as a fixed function of mu, so it does not depend on how the batch is
    split (the real noise draws differ between one call of 16 and four of 4)."""
    monkeypatch.setattr(torch, "randn_like", lambda t, **kw: torch.sin(1000.0 * t.detach()))


@pytest.mark.parametrize("method", ["wise-ale", "vcae", "aevb", "cwae"])
def test_micro_batches_give_the_gradients_of_the_whole_batch(method, noise_from_the_input):
    config = resolve(dataclasses.replace(BASE, method=method), load_split(BASE, "train"))
    x = load_split(BASE, "train").floats(slice(0, 16)).double()
    grads, logged = [], []
    for micro in (None, 4, 5):  # 5 leaves a last micro-batch of 1
        model = model_from_config(config).double()
        if micro is None:
            output = model(x)
            output.loss.backward()
        else:
            output = micro_batch_step(model, x, micro)
        grads.append({n: p.grad for n, p in model.named_parameters()})
        logged.append(output.parts)
    for other, parts in zip(grads[1:], logged[1:], strict=True):
        for name, grad in grads[0].items():
            assert torch.allclose(other[name], grad, rtol=1e-9, atol=1e-12), name
        for key in ("loss", "nll", "sample_recon_error", "kl_prior", "elbo"):
            assert parts[key].item() == pytest.approx(logged[0][key].item(), rel=1e-9), key


def test_training_with_micro_batches_and_its_errors(tmp_path):
    config = dataclasses.replace(BASE, epochs=1, micro_batch=4)
    train(config, tmp_path / "run", progress=False)
    row = json.loads((tmp_path / "run/metrics.jsonl").read_text().splitlines()[0])
    assert row["aggregate_kl"] > 0 and row["loss"] == pytest.approx(row["nll"] + row[
        "aggregate_kl"] / 16, rel=1e-5)  # Eq. 27: the bound of the batch of 16, divided by M
    assert json.loads((tmp_path / "run/config.json").read_text())["micro_batch"] == 4
    with pytest.raises(WisealeError, match="needs the per-sample reconstruction"):
        train(dataclasses.replace(config, options={"reconstruction": "exact"}), tmp_path / "b",
              progress=False)
    with pytest.raises(WisealeError, match="micro-batch must be a positive integer"):
        train(dataclasses.replace(config, micro_batch=0), tmp_path / "c", progress=False)


def test_closed_form_variance_is_refused_in_micro_batches(tmp_path):
    """004 Eq. 10's sigma^2 is a statistic of the whole batch: per micro-batch it would change
    the gradients, so the combination is refused before anything is written."""
    config = dataclasses.replace(BASE, epochs=1, micro_batch=4, method="lv-vae",
                                 likelihood="optimal")
    with pytest.raises(WisealeError, match="closed-form likelihood variance .* per batch"):
        train(config, tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()
    train(dataclasses.replace(config, likelihood="learned"), tmp_path / "ok", progress=False)


@pytest.mark.parametrize("method", ["wise-ale", "vcae"])
def test_micro_batches_reuse_the_noise_of_their_first_pass(method, monkeypatch):
    """With the real random noise: encoding micro-batches of 4 from seed 11 draws four 4-row
    blocks of eps in turn. The gradients must be those of one pass over the whole batch with
    exactly that eps, which holds only if the second pass over each micro-batch (the one that
    back-propagates) draws the same eps as the first (which gave the regulariser its z)."""
    config = resolve(dataclasses.replace(BASE, method=method), load_split(BASE, "train"))
    x = load_split(BASE, "train").floats(slice(0, 16)).double()
    model = model_from_config(config).double()
    torch.manual_seed(11)
    micro = micro_batch_step(model, x, 4)
    micro_grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    torch.manual_seed(11)
    eps = torch.cat([torch.randn(4, config.latent_dim, dtype=torch.float64) for _ in range(4)])
    monkeypatch.setattr(torch, "randn_like", lambda t, **kw: eps.clone())
    model = model_from_config(config).double()
    whole = model(x)
    whole.loss.backward()
    grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    assert grads.keys() == micro_grads.keys()
    for name, grad in grads.items():
        assert torch.allclose(micro_grads[name], grad, rtol=1e-9, atol=1e-12), name
    assert micro.parts["loss"].item() == pytest.approx(whole.parts["loss"].item(), rel=1e-9)
