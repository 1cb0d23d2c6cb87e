import pytest
import torch

from wiseale.config import RunConfig


@pytest.fixture(autouse=True)
def _threads_and_cache(tmp_path_factory, monkeypatch):
    torch.set_num_threads(1)  # repeatable timings-free tests; CI has 2 cores
    monkeypatch.setenv("WISEALE_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
    monkeypatch.delenv("WISEALE_INCEPTION", raising=False)  # a user's weights change the FIDs


@pytest.fixture
def tiny_sine() -> RunConfig:
    """A sine run that trains in about a second."""
    return RunConfig(method="wise-ale", data="sine", n_train=256, n_test=64, epochs=2,
                     batch_size=32, eval_size=64, lr=1e-3)


@pytest.fixture
def random_inception(tmp_path, monkeypatch) -> torch.nn.Module:
    """A FID Inception net with random weights (the 2015 weights are not available offline),
    saved as safetensors with the 2015 file's 1008-class fc layer, and named by
    $WISEALE_INCEPTION; returns the net."""
    from safetensors.torch import save_file

    from wiseale.metrics.fid import _FIDInception

    net = _FIDInception()
    state = {key: value.clone() for key, value in net.state_dict().items()
             if not key.endswith("num_batches_tracked")}  # the 2015 weights have none
    state["fc.weight"], state["fc.bias"] = torch.zeros(1008, 2048), torch.zeros(1008)
    path = tmp_path / "inception.safetensors"
    save_file(state, str(path))
    monkeypatch.setenv("WISEALE_INCEPTION", str(path))
    return net


def _shrink(spec, runs=None, **quick):
    """``spec`` at a tiny quick scale with only the runs ``runs`` (and the claims on them)."""
    import dataclasses

    kept = tuple(r for r in spec.runs if runs is None or r.label in runs)
    labels = {r.label for r in kept}
    claims = tuple(c for c in spec.claims if {q.run for q in c.quantities()} <= labels)
    return dataclasses.replace(spec, runs=kept, claims=claims, quick={**spec.quick, **quick})


@pytest.fixture
def shrink():
    """shrink(spec, runs=None, **quick): an experiment spec cut down for a test."""
    return _shrink


@pytest.fixture
def faces():
    """faces(root, n, suffix): n random aligned-CelebA-sized (178 x 218) images in
    root/celeba/img_align_celeba, as CelebA's folder holds them."""
    import numpy as np
    from PIL import Image

    def write(root, n: int, suffix: str = ".png") -> None:
        folder = root / "celeba" / "img_align_celeba"
        folder.mkdir(parents=True)
        rng = np.random.default_rng(0)
        for i in range(n):
            Image.fromarray(rng.integers(0, 256, (218, 178, 3), dtype=np.uint8)).save(
                folder / f"{i + 1:06d}{suffix}")

    return write


@pytest.fixture
def preset_model():
    """preset_model(method, **options): the method's autoencoder with resolved ``options`` on
    an MLP for 10-D data, d_z = 3, a Gaussian likelihood of variance 0.5."""
    from wiseale.build import build_model
    from wiseale.likelihoods import FixedGaussian
    from wiseale.methods import get_method, resolve_options
    from wiseale.nets import build_nets

    def build(method: str, **options):
        m = get_method(method)
        enc, feat, dec = build_nets("mlp", (10,), 3)
        return build_model(m, resolve_options(m, options), enc, feat, dec, FixedGaussian(0.5), 3)

    return build

