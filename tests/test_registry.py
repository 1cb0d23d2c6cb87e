"""One registry per kind of part (wiseale.registry): a new likelihood or noise is one
registered class that a run's parts can name, with no list to edit."""

import pytest
import torch

from wiseale.config import RunConfig
from wiseale.errors import WisealeError
from wiseale.likelihoods import LIKELIHOOD_CLASSES, FixedGaussian
from wiseale.registry import Registry
from wiseale.training import load_run, train


def test_a_new_likelihood_is_one_registered_class_that_parts_can_name(tmp_path):
    @LIKELIHOOD_CLASSES.register
    class Laplace(FixedGaussian):  # -log p(x|x_hat) = sum |x - x_hat| / b (+ const)
        name = "laplace"

        def __init__(self, b: float = 0.5):
            super().__init__(sigma2=b)
            self.b = b

        def nll(self, x, out):
            return (x - out).abs().flatten(1).sum(1) / self.b

    try:
        parts = {"noise": {"name": "none", "args": {}}, "regularizers": [],
                 "reconstruction": "sample", "likelihood": {"name": "laplace", "args": {"b": 2.0}}}
        config = RunConfig(method="wae", data="sine", n_train=64, n_test=32, epochs=1,
                           batch_size=32, eval_size=32, final_eval="fast", parts=parts)
        train(config, tmp_path, progress=False)
        model = load_run(tmp_path)[0]
        assert isinstance(model.likelihood, Laplace) and model.likelihood.b == 2.0
        x = torch.zeros(2, 1, 256)
        assert torch.equal(model.likelihood.nll(x, x + 1), torch.full((2,), 128.0))
    finally:
        del LIKELIHOOD_CLASSES["laplace"]


def test_a_name_taken_by_another_class_is_refused_and_an_unknown_name_listed():
    registry = Registry("widget")

    @registry.register
    class A:
        name = "a"

    class B:
        name = "a"

    with pytest.raises(WisealeError, match="cannot register B: its name 'a' is not a new "
                                           "widget name"):
        registry.register(B)
    assert registry.register(A) is A and registry["a"] is A  # the same class again: kept
    with pytest.raises(WisealeError, match="unknown widget 'b'; use one of a"):
        registry["b"]
