import pytest
import torch

from wiseale.config import RunConfig


@pytest.fixture(autouse=True)
def _threads_and_cache(tmp_path_factory, monkeypatch):
    torch.set_num_threads(1)  # repeatable timings-free tests; CI has 2 cores
    monkeypatch.setenv("WISEALE_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture
def tiny_sine() -> RunConfig:
    """A sine run that trains in about a second."""
    return RunConfig(method="wise-ale", data="sine", n_train=256, n_test=64, epochs=2,
                     batch_size=32, eval_size=64, lr=1e-3)
