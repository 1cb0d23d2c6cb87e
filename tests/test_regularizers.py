"""Regularisers (wiseale.regularizers): each term's value and the options that set it."""

import dataclasses
import json
import math

import pytest
import torch

from wiseale import functional
from wiseale.errors import WisealeError
from wiseale.regularizers import AggregateKL, PriorKL
from wiseale.training import train


def test_per_sample_kl_needs_a_variance():
    from wiseale.noises import PointPosterior

    with pytest.raises(ValueError, match="stochastic encoder"):
        PriorKL()(PointPosterior(torch.zeros(2, 2), torch.zeros(2, 2)))


def test_aggregate_scaling_follows_eq27():
    torch.manual_seed(0)
    mu, logvar = torch.randn(32, 4), torch.randn(32, 4) * 0.1
    from wiseale.noises import GaussianPosterior

    post = GaussianPosterior(mu, logvar, mu)
    value, batch = AggregateKL(2.0, "batch")(post)
    _, per_sample = AggregateKL(2.0, "per-sample")(post)
    assert torch.allclose(batch, 2.0 * value / 32)  # once per batch, loss averaged over M
    assert torch.allclose(per_sample, 2.0 * value)
    with pytest.raises(WisealeError, match="scaling must be one of batch, per-sample"):
        AggregateKL(1.0, "per-epoch")


def test_variance_penalty_and_information_rate():
    z = torch.randn(500, 3, dtype=torch.float64) * torch.tensor([1.0, 2.0, 0.5],
                                                                  dtype=torch.float64)
    unbiased = z.numpy().var(axis=0, ddof=1).sum()  # 003 Eq. 6's population value, estimated
    assert math.isclose(functional.total_variance(z).item(), unbiased, rel_tol=1e-12)
    assert math.isclose(functional.variance_penalty(z, 3.0).item(), abs(unbiased - 3.0),
                        rel_tol=1e-12)
    assert functional.information_rate_bits(16, math.sqrt(0.1)) == pytest.approx(8 * math.log2(10))


def test_variance_penalty_measures_the_distance_to_the_v_it_is_given(preset_model):
    """003 Eq. 7: lambda |total variance of z - v| for the v given (here not d_z = 3), checked
    against numpy's unbiased per-dimension variances; and through a VCAE model with v = 5."""
    from wiseale.noises import PointPosterior
    from wiseale.regularizers import VariancePenalty

    g = torch.Generator().manual_seed(0)
    z = torch.randn(400, 3, generator=g, dtype=torch.float64) * torch.tensor(
        [1.0, 2.0, 0.5], dtype=torch.float64)
    total = float(z.numpy().var(axis=0, ddof=1).sum())  # about 5.25
    for v in (1.0, 5.0, 12.0):
        value, weighted = VariancePenalty(weight=2.0, target=v)(PointPosterior(z, z))
        assert value.item() == pytest.approx(abs(total - v), rel=1e-12), v
        assert weighted.item() == pytest.approx(2.0 * abs(total - v), rel=1e-12), v
    model = preset_model("vcae", v="5")
    x = torch.randn(64, 10, generator=g)
    torch.manual_seed(0)
    out = model(x)
    torch.manual_seed(0)
    sample = model.encode(x).z.detach().double().numpy()
    expected = abs(float(sample.var(axis=0, ddof=1).sum()) - 5.0)
    assert out.parts["variance"].item() == pytest.approx(expected, rel=1e-5)


def test_a_new_regulariser_is_one_class_and_a_method_one_preset(tmp_path, tiny_sine,
                                                                 monkeypatch):
    """Defining a Regularizer subclass registers it; a Method entry naming it trains."""
    from wiseale import methods, regularizers
    from wiseale.methods import Method

    class CodeNorm(regularizers.Regularizer):
        name = "code_norm"

        option_names = {"weight": "lambda"}  # the method option "lambda" sets weight

        def __init__(self, weight: float = 1.0):
            super().__init__()
            self.weight = weight

        def forward(self, post):
            value = post.z.square().sum(1).mean()
            return value, self.weight * value

    try:
        assert regularizers.REGULARIZERS["code_norm"] is CodeNorm
        monkeypatch.setitem(methods.METHODS, "l2-ae", Method(
            "l2-ae", "deterministic codes with a squared-norm penalty", "a test", "none",
            ("code_norm",), {"lambda": 0.01}))
        train(dataclasses.replace(tiny_sine, method="l2-ae", epochs=1), tmp_path,
              progress=False)
    finally:
        del regularizers.REGULARIZERS["code_norm"]
    row = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[-1])
    assert row["code_norm"] > 0 and row["loss"] == pytest.approx(
        row["recon"] + 0.01 * row["code_norm"], rel=1e-4)


@pytest.mark.parametrize("method, options, expected", [
    ("beta-vae", {"beta": 2.5}, {"kl": {"weight": 2.5}}),
    ("aevb", {}, {"kl": {"weight": 1.0}}),
    ("wise-ale", {"weight": 2.0, "scaling": "per-sample"},
     {"aggregate_kl": {"weight": 2.0, "scaling": "per-sample"}}),
    ("cwae", {"lambda": 7.0, "kernel": "rbf"},
     {"mmd": {"weight": 7.0, "kernel": "rbf", "scales": "single"}}),
    ("vcae", {"lambda": 3.0, "v": 5.0}, {"variance": {"weight": 3.0, "target": 5.0}}),
    ("tc-vcae", {"gamma": 2.0}, {"variance": {"weight": 1.0}, "tc": {"weight": 2.0}}),
    ("factorvae", {"beta": 0.5, "gamma": 3.0}, {"kl": {"weight": 0.5}, "tc": {"weight": 3.0}}),
    ("dip-vae", {"lambda_od": 3.0, "variant": "ii"},
     {"kl": {"weight": 1.0}, "dip": {"lambda_od": 3.0, "lambda_d": 3.0, "variant": "ii"}}),
])
def test_method_options_reach_the_regularisers_they_name(tiny_sine, method, options, expected):
    """The papers' option names (beta, lambda, gamma, v) set the regularisers' arguments."""
    from wiseale.build import load_split, model_from_config, resolve

    config = dataclasses.replace(tiny_sine, method=method, options=options)
    model = model_from_config(resolve(config, load_split(config, "train")))
    assert [term.name for term in model.regularizers] == list(expected)
    for term in model.regularizers:
        assert {key: getattr(term, key) for key in expected[term.name]} == expected[term.name]


def test_a_regulariser_that_is_a_callback_takes_part_in_the_loop(tmp_path, tiny_sine,
                                                                   monkeypatch):
    """A part joins the loop through the callback hooks (wiseale.hooks): its on_epoch_end runs
    after every epoch, before the row is written, with no edit to the loop."""
    import dataclasses
    import json

    from wiseale import methods, regularizers
    from wiseale.hooks import Callback
    from wiseale.methods import Method
    from wiseale.training import train

    class AnnealedNorm(regularizers.Regularizer, Callback):
        name = "annealed_norm"

        def __init__(self):
            super().__init__()
            self.weight = 0.0

        def forward(self, post):
            value = post.z.square().sum(1).mean()
            return value, self.weight * value

        def on_epoch_end(self, epoch, row, model, x_eval):
            self.weight = 0.5 * epoch  # 0 in epoch 1, 0.5 in epoch 2
            row["norm_weight"] = self.weight

    try:
        monkeypatch.setitem(methods.METHODS, "annealed", Method(
            "annealed", "a norm penalty whose weight grows each epoch", "a test", "none",
            ("annealed_norm",)))
        train(dataclasses.replace(tiny_sine, method="annealed", epochs=2), tmp_path,
              progress=False)
    finally:
        del regularizers.REGULARIZERS["annealed_norm"]
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [row["norm_weight"] for row in rows] == [0.5, 1.0]
    assert rows[0]["loss"] == pytest.approx(rows[0]["recon"], rel=1e-5)  # weight 0 in epoch 1
    assert rows[1]["loss"] == pytest.approx(rows[1]["recon"] + 0.5 * rows[1]["annealed_norm"],
                                            rel=1e-4)


@pytest.mark.parametrize("beta", [1.0, 4.0, 0.25])
def test_the_prior_kl_contributes_beta_times_its_value(beta):
    """beta-VAE's beta (001 Eq. 26, Higgins et al.): the loss gets beta x the mean KL, with
    beta = 1 the KL itself, bit for bit; the logged value is the KL either way."""
    from wiseale.noises import GaussianPosterior

    g = torch.Generator().manual_seed(0)
    mu, logvar = torch.randn(5, 3, generator=g), torch.randn(5, 3, generator=g)
    value, contribution = PriorKL(weight=beta)(GaussianPosterior(mu, logvar, mu))
    expected = functional.gaussian_kl(mu, logvar).mean()
    assert torch.equal(value, expected)
    assert torch.equal(contribution, beta * expected)
