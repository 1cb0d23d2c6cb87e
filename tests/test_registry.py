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
        x = torch.randn(4, 1, 256)  # the training step's loss is the subclass's nll
        with torch.no_grad():
            trained = model(x).parts["nll"]
            laplace = model.likelihood.nll(x, model.decode(model.code(x))).mean()
        assert trained.item() == pytest.approx(laplace.item(), rel=1e-6)
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


def load_ramps(split: str = "train", data_dir: object = None, n_train: int | None = None,
               n_test: int | None = None, seed: int = 0):
    """A data set of ramps x_t = a * t / 16 (16 values), for the registry test below."""
    from wiseale.data import Dataset

    n = (n_train or 64) if split == "train" else (n_test or 32)
    a = torch.rand(n, 1, 1, generator=torch.Generator().manual_seed(seed))
    return Dataset(f"ramps-{split}", a * torch.arange(16.0).view(1, 1, 16) / 16)


def test_a_new_network_and_data_set_are_one_registered_entry_each(tmp_path):
    from torch import nn

    from wiseale.dataset_index import DATASETS, Entry
    from wiseale.nets import NETWORKS, Network

    def tiny(shape, latent_dim):  # a 16 -> 8 encoder, an 8-unit decoder
        encoder = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU())
        decoder = nn.Sequential(nn.Linear(latent_dim, 16), nn.Unflatten(1, tuple(shape)))
        return encoder, 8, decoder

    NETWORKS.register(Network("tiny", tiny, "a test", (1, 16), ((1, 16),)))
    DATASETS.register(Entry("ramps", __name__, "load_ramps", "ramps, for a test"))
    try:
        config = RunConfig(method="aevb", data="ramps", n_train=64, n_test=32, epochs=1,
                           batch_size=32, eval_size=32, final_eval="fast")
        train(config, tmp_path, progress=False)  # the network chosen from the shape
        model, config = load_run(tmp_path)[:2]
        assert config.net == "tiny" and model.encoder[1].out_features == 8
        with pytest.raises(WisealeError, match="cannot register Network: its name 'tiny' is not"):
            NETWORKS.register(Network("tiny", tiny, "another", (1, 16)))
    finally:
        del NETWORKS["tiny"], DATASETS["ramps"]


def test_every_kind_of_part_is_one_registry():
    from wiseale.dataset_index import DATASETS
    from wiseale.experiments import EXPERIMENTS
    from wiseale.experiments.index import INDEX
    from wiseale.likelihoods import LIKELIHOOD_CLASSES
    from wiseale.nets import NETWORKS
    from wiseale.noises import NOISES
    from wiseale.regularizers import REGULARIZERS
    from wiseale.samplers import SAMPLER_CLASSES

    kinds = (NOISES, LIKELIHOOD_CLASSES, REGULARIZERS, SAMPLER_CLASSES, NETWORKS, DATASETS,
             INDEX, EXPERIMENTS)
    assert all(isinstance(kind, Registry) for kind in kinds)
    assert all(entry.name == name for kind in kinds for name, entry in kind.items())
