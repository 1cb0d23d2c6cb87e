"""Optional dependencies (issue 16): each part that needs one says which extra to install, in
one line, when it is missing; the core trains without them."""

import importlib

import pytest
import torch

from wiseale import extras
from wiseale.errors import WisealeError


@pytest.fixture
def missing(monkeypatch):
    """Make the named top-level packages fail to import through wiseale.extras.require."""
    gone: set[str] = set()
    real = importlib.import_module

    def import_module(name, *args, **kwargs):
        if name.split(".")[0] in gone:
            raise ImportError(name)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(extras.importlib, "import_module", import_module)
    return gone


def test_each_optional_part_names_its_extra(missing):
    from wiseale.data import load
    from wiseale.noises import IAFNoise
    from wiseale.samplers import fit_flow, fit_mixture
    from wiseale.training import TensorBoard

    missing.update({"zuko", "sklearn", "tensorboard"})
    cases = [(lambda: fit_flow(torch.randn(50, 2), epochs=1), "flows"),
             (lambda: IAFNoise(8, 2), "flows"),
             (lambda: fit_mixture(torch.randn(50, 2), components=2), "sklearn"),
             (lambda: load("digits", "train"), "sklearn"),
             (lambda: TensorBoard(), "tensorboard")]
    for make, extra in cases:
        with pytest.raises(WisealeError, match=rf"install it: pip install 'wiseale\[{extra}\]'"):
            make()


def test_training_needs_none_of_them(missing, tmp_path, tiny_sine):
    from wiseale.training import train

    missing.update({"zuko", "sklearn", "tensorboard", "h5py"})
    train(tiny_sine, tmp_path / "run", progress=False)
    assert (tmp_path / "run/evaluation.json").exists()
