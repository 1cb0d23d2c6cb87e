"""The VCAE (003) data sets: MoG toy, ReducedMNIST, dSprites, 3D Shapes and toy-shapes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from wiseale.data import DATASETS, Dataset, load
from wiseale.data.idx import FASHION_SYSTEM_DIR
from wiseale.data.mog import MEANS, STD, mog_projection
from wiseale.data.shapes import (
    DSPRITES_FILE,
    SHAPES3D_FILE,
    TOY_VALUES,
    factor_classes,
    render_squares,
    synthetic_shapes,
)
from wiseale.errors import WisealeError


def test_mog_shapes_labels_subspace_and_means() -> None:
    train = load("mog", "train", n_train=4000)
    test = load("mog", "test")
    assert train.floats().shape == (4000, 100) and train.x.dtype == torch.float32
    assert len(test) == 2000 and train.factors.shape == (4000, 2)
    assert set(train.y.tolist()) == {0, 1, 2, 3}
    # the 100-D data lie in a 2-D subspace: only two non-negligible singular values
    s = torch.linalg.svdvals(train.floats() - train.floats().mean(0))
    assert s[1] > 10 and s[2] < 1e-4 * s[0]
    # x = A s with orthonormal A: the source points are recovered exactly
    a = torch.from_numpy(mog_projection(0)).float()
    assert torch.allclose(a.T @ a, torch.eye(2), atol=1e-6)
    assert torch.allclose(train.floats() @ a, train.factors, atol=1e-5)
    for k in range(4):
        points = train.factors[train.y == k]
        assert torch.allclose(points.mean(0), torch.tensor(MEANS[k]).float(), atol=0.03)
        assert torch.allclose(points.std(0), torch.full((2,), STD), atol=0.03)
    # fixed: same seed same data, prefix-stable, train and test differ
    again = load("mog", "train", n_train=100)
    assert torch.equal(again.floats(), train.floats(slice(0, 100)))
    assert not torch.equal(test.floats(slice(0, 100)), train.floats(slice(0, 100)))
    assert not torch.equal(load("mog", "train", n_train=100, seed=1).floats(), again.floats())


def test_mog_bad_option_is_one_line() -> None:
    with pytest.raises(WisealeError) as info:
        load("mog", "train", n_train=0)
    assert "\n" not in str(info.value)


@pytest.mark.skipif(not (FASHION_SYSTEM_DIR / "train-images-idx3-ubyte.gz").is_file(),
                    reason="Fashion-MNIST is not installed")
def test_reduced_fashion_mnist() -> None:
    train, test = load("reduced-fashion-mnist", "train"), load("reduced-fashion-mnist", "test")
    assert train.floats().shape == (600, 1, 28, 28) and len(train.y) == 600
    assert len(test) == 10_000
    full = load("fashion-mnist", "train")
    assert torch.equal(train.floats(), full.floats(slice(0, 600)))
    assert torch.equal(train.y, full.y[:600])
    binary = load("reduced-fashion-mnist", "train", binarize=True)
    assert set(binary.floats().unique().tolist()) == {0.0, 1.0}
    assert "reduced-mnist" in DATASETS


def _write_dsprites(directory: Path, n: int = 200) -> np.ndarray:
    rng = np.random.default_rng(0)
    classes = np.stack([np.zeros(n, int), rng.integers(3, size=n), rng.integers(6, size=n),
                        rng.integers(40, size=n), rng.integers(32, size=n),
                        rng.integers(32, size=n)], 1)
    values = classes.astype(np.float64)
    values[:, 0] = 1.0  # the constant colour
    values[:, 1] += 1  # shapes 1..3
    values[:, 2] = 0.5 + 0.1 * classes[:, 2]
    imgs = np.zeros((n, 64 * 64), np.uint8)
    imgs[np.arange(n), np.arange(n)] = 1  # image i has its one lit pixel at flat index i
    imgs = imgs.reshape(n, 64, 64)
    directory.mkdir(parents=True, exist_ok=True)
    np.savez(directory / DSPRITES_FILE, imgs=imgs, latents_values=values, latents_classes=classes)
    return values


def test_dsprites_factors_split_and_limit(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("WISEALE_DATA", raising=False)
    values = _write_dsprites(tmp_path / "dsprites")
    train = load("dsprites", "train", data_dir=tmp_path)
    test = load("dsprites", "test", data_dir=tmp_path)
    assert train.floats().shape == (180, 1, 64, 64) and len(test) == 20 and train.y is None
    assert train.x.dtype == torch.uint8 and set(train.floats().unique().tolist()) == {0.0, 1.0}
    assert train.factors.shape == (180, 5)
    # the splits are a permutation of the file's rows; factors are its values without colour
    ids = torch.cat([train.floats(), test.floats()]).flatten(1).argmax(1).numpy()
    assert sorted(ids.tolist()) == list(range(200))
    factors = torch.cat([train.factors, test.factors])
    assert torch.equal(factors, torch.from_numpy(values[ids, 1:].astype(np.float32)))
    # limit: the first N of the same shuffled split; another seed gives another split
    small = load("dsprites", "train", data_dir=tmp_path, limit=7)
    assert torch.equal(small.floats(), train.floats(slice(0, 7)))
    assert torch.equal(small.factors, train.factors[:7])
    other = load("dsprites", "train", data_dir=tmp_path, limit=7, seed=1)
    assert not torch.equal(other.factors, small.factors)
    classes = factor_classes(train)
    assert classes.dtype == torch.int64 and classes.shape == (180, 5)
    assert classes[:, 0].max() == 2  # three shapes
    monkeypatch.setenv("WISEALE_DATA", str(tmp_path))  # found through $WISEALE_DATA too
    assert torch.equal(load("dsprites", "test").floats(), test.floats())


def test_dsprites_errors_are_one_line(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("WISEALE_DATA", raising=False)
    for name in ("dsprites", "3dshapes"):
        with pytest.raises(WisealeError, match="not found") as info:
            load(name, "train", data_dir=tmp_path)
        assert "\n" not in str(info.value) and "put it in" in str(info.value)
    np.savez(tmp_path / DSPRITES_FILE, imgs=np.zeros((4, 64, 64), np.uint8))
    with pytest.raises(WisealeError, match="lacks latents_values") as info:
        load("dsprites", "train", data_dir=tmp_path)
    (tmp_path / DSPRITES_FILE).write_bytes(b"PK\x03\x04 not a zip")
    with pytest.raises(WisealeError, match="cannot read") as info:
        load("dsprites", "train", data_dir=tmp_path)
    assert "\n" not in str(info.value)
    with pytest.raises(WisealeError, match="limit"):
        load("toy-shapes", "train", limit=3)  # not an option of toy-shapes


def test_3dshapes_loader(tmp_path: Path, monkeypatch) -> None:
    h5py = pytest.importorskip("h5py")
    monkeypatch.delenv("WISEALE_DATA", raising=False)
    n = 50
    rng = np.random.default_rng(0)
    labels = np.stack([rng.integers(10, size=n) / 10, rng.integers(10, size=n) / 10,
                       rng.integers(10, size=n) / 10, 0.75 + rng.integers(8, size=n) / 14,
                       rng.integers(4, size=n), np.linspace(-30, 30, 15)[rng.integers(15, size=n)]],
                      1)
    images = np.zeros((n, 64, 64, 3), np.uint8)
    images[:, 0, 0, 0] = np.arange(n) * 5  # image i is identified by its first red pixel
    images[:, 1, 1, 2] = 255
    (tmp_path / "3dshapes").mkdir()
    with h5py.File(tmp_path / "3dshapes" / SHAPES3D_FILE, "w") as h5:
        h5["images"], h5["labels"] = images, labels
    train = load("3dshapes", "train", data_dir=tmp_path)
    test = load("3dshapes", "test", data_dir=tmp_path)
    assert train.floats().shape == (45, 3, 64, 64) and len(test) == 5 and train.y is None
    assert float(train.floats().max()) == 1.0 and float(train.floats().min()) == 0.0
    ids = torch.cat([train.floats(), test.floats()])[:, 0, 0, 0].mul(255).round().long() // 5
    assert sorted(ids.tolist()) == list(range(n))  # a permutation of the file's rows
    assert torch.allclose(train.factors, torch.from_numpy(labels[ids[:45].numpy()]).float())
    small = load("3dshapes", "train", data_dir=tmp_path, limit=4)
    assert torch.equal(small.floats(), train.floats(slice(0, 4)))
    from wiseale.data.shapes import _take_rows
    with h5py.File(tmp_path / "3dshapes" / SHAPES3D_FILE, "r") as h5:
        idx = np.array([40, 3, 17, 0, 49])
        for block in (8, 1000):  # sparse and dense reading
            assert np.array_equal(_take_rows(h5["images"], idx, block), images[idx])


def test_3dshapes_without_h5py_is_one_line(tmp_path: Path, monkeypatch) -> None:
    import importlib

    from wiseale import extras

    (tmp_path / SHAPES3D_FILE).write_bytes(b"")
    real_import = importlib.import_module

    def no_h5py(name: str, *args, **kwargs):
        if name == "h5py":
            raise ImportError("no h5py")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(extras.importlib, "import_module", no_h5py)
    with pytest.raises(WisealeError,
                       match=r"needs h5py; install it: pip install 'wiseale\[shapes\]'") as info:
        load("3dshapes", "train", data_dir=tmp_path)
    assert "\n" not in str(info.value)


def test_toy_shapes_factors_are_discrete_and_determine_the_image() -> None:
    train = load("toy-shapes", "train", n_train=600)
    test = load("toy-shapes", "test", n_test=50)
    assert train.floats().shape == (600, 1, 64, 64) and len(test) == 50 and train.y is None
    assert train.factors.shape == (600, 4)
    for column, values in zip(train.factors.T, TOY_VALUES, strict=True):
        assert set(column.tolist()) == set(np.float32(values).tolist())
    classes = factor_classes(train)
    assert [int(c.max()) + 1 for c in classes.T] == [len(v) for v in TOY_VALUES]
    # identical factors -> identical images; different factors -> different images
    _, inverse = torch.unique(classes, dim=0, return_inverse=True)
    first = {}
    for i, key in enumerate(inverse.tolist()):
        if key in first:
            assert torch.equal(train.floats()[i], train.floats()[first[key]])
        first.setdefault(key, i)
    assert len(torch.unique(train.floats().flatten(1), dim=0)) == len(first)
    assert torch.equal(torch.from_numpy(render_squares(train.factors.numpy())), train.floats())
    # the square: side pixels wide, at the brightness
    x, factors = synthetic_shapes(3, seed=5)
    for image, (_, _, side, brightness) in zip(x, factors, strict=True):
        assert (image > 0).sum() == side * side
        assert np.isclose(image.max(), brightness)
    assert np.array_equal(synthetic_shapes(2, seed=5)[0], x[:2])


def test_factor_classes_needs_factors() -> None:
    with pytest.raises(WisealeError, match="no factors"):
        factor_classes(Dataset("plain", torch.zeros(2, 3)))
