"""Image loaders: IDX (MNIST, Fashion-MNIST), scikit-learn digits and CelebA folders.

Nothing here touches the network: MNIST's download function is replaced in every test that
could reach it, and all files are generated in ``tmp_path``.
"""

from __future__ import annotations

import gzip
import hashlib
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from wiseale.data import DATASETS, load
from wiseale.data import idx as idx_module
from wiseale.data.idx import FASHION_SYSTEM_DIR, read_idx
from wiseale.errors import WisealeError

IDX_NAMES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
             "t10k-labels-idx1-ubyte")


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No $WISEALE_DATA of the user's, a fresh home, and no network for MNIST."""
    monkeypatch.delenv("WISEALE_DATA", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))

    def no_network(url: str, timeout: float = 0.0) -> bytes:
        raise OSError("network is unreachable (test)")

    monkeypatch.setattr(idx_module, "fetch_url", no_network)


def idx_bytes(array: np.ndarray) -> bytes:
    """``array`` (uint8) in the IDX format."""
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim)
    header += struct.pack(f">{array.ndim}I", *array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def write_idx_set(directory: Path, n_train: int = 7, n_test: int = 5, gz: bool = True,
                  seed: int = 0) -> dict[str, np.ndarray]:
    """Four small IDX files of random 28x28 images and labels; returns their arrays."""
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for name, n in zip(IDX_NAMES, (n_train, n_train, n_test, n_test), strict=True):
        if "images" in name:
            arrays[name] = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        else:
            arrays[name] = rng.integers(0, 10, size=n, dtype=np.uint8)
        data = idx_bytes(arrays[name])
        if gz:
            (directory / f"{name}.gz").write_bytes(gzip.compress(data))
        else:
            (directory / name).write_bytes(data)
    return arrays


# ---------------------------------------------------------------- IDX reader and MNIST loaders


@pytest.mark.skipif(not FASHION_SYSTEM_DIR.is_dir(), reason="dataset-fashion-mnist not installed")
def test_fashion_mnist_from_the_debian_package():
    data = load("fashion-mnist", split="test")
    assert data.floats().shape == (10000, 1, 28, 28)
    assert data.x.dtype == torch.uint8 and data.divide_by == 255.0  # 4x less than float32
    assert float(data.floats().min()) >= 0.0 and float(data.floats().max()) <= 1.0
    assert float(data.floats().max()) == 1.0  # scaled by 255, not left as bytes
    assert data.y.dtype == torch.int64
    assert sorted(data.y.unique().tolist()) == list(range(10))
    assert torch.bincount(data.y).tolist() == [1000] * 10


@pytest.mark.parametrize("gz", [True, False])
def test_read_idx_gzipped_and_plain(tmp_path: Path, gz: bool):
    arrays = write_idx_set(tmp_path, gz=gz)
    suffix = ".gz" if gz else ""
    for name, array in arrays.items():
        read = read_idx(tmp_path / f"{name}{suffix}")
        assert read.dtype == np.uint8 and read.flags.writeable
        np.testing.assert_array_equal(read, array)


def test_read_idx_other_dtypes(tmp_path: Path):
    array = (np.arange(6).reshape(2, 3) - 3).astype(">i4")
    path = tmp_path / "ints.idx"
    path.write_bytes(struct.pack(">BBBBII", 0, 0, 0x0C, 2, 2, 3) + array.tobytes())
    np.testing.assert_array_equal(read_idx(path), array)


def test_mnist_loader_reads_the_published_layout(tmp_path: Path, monkeypatch):
    arrays = write_idx_set(tmp_path / "mnist", gz=True)  # the data_dir/mnist subfolder
    data = load("mnist", split="train", data_dir=tmp_path)
    assert data.name == "mnist-train"
    assert data.floats().shape == (7, 1, 28, 28) and data.x.dtype == torch.uint8
    expected = torch.from_numpy(arrays["train-images-idx3-ubyte"]).float()[:, None] / 255
    torch.testing.assert_close(data.floats(), expected)
    assert data.y.dtype == torch.int64
    assert data.y.tolist() == arrays["train-labels-idx1-ubyte"].tolist()
    # plain files straight in $WISEALE_DATA, test split
    write_idx_set(tmp_path / "env", gz=False, seed=1)
    monkeypatch.setenv("WISEALE_DATA", str(tmp_path / "env"))
    test = load("fashion-mnist", split="test")
    assert test.name == "fashion-mnist-test" and test.floats().shape == (5, 1, 28, 28)


def test_binarize_gives_zeros_and_ones(tmp_path: Path):
    arrays = write_idx_set(tmp_path, gz=True)
    data = load("mnist", split="test", data_dir=tmp_path, binarize=True)
    assert set(data.floats().unique().tolist()) <= {0.0, 1.0}
    expected = (arrays["t10k-images-idx3-ubyte"] >= 128).astype(np.float32)[:, None]
    np.testing.assert_array_equal(data.floats().numpy(), expected)
    with pytest.raises(WisealeError, match="binarize"):
        load("mnist", split="test", data_dir=tmp_path, binarize="yes")


def _corruptions(good: bytes) -> dict[str, bytes]:
    return {
        "truncated": good[:-10],
        "trailing": good + b"\0\0",
        "magic": b"\1\2" + good[2:],
        "dtype": good[:2] + b"\x42" + good[3:],
        "header": good[:6],
        "empty": b"",
        "gzip-truncated": gzip.compress(good)[:-20],
        "gzip-garbage": b"\x1f\x8b" + b"garbage" * 10,
    }


@pytest.mark.parametrize("kind", list(_corruptions(b"x" * 32)))
def test_corrupt_idx_raises_one_line_error_naming_the_file(tmp_path: Path, kind: str):
    good = idx_bytes(np.zeros((3, 28, 28), dtype=np.uint8))
    path = tmp_path / f"{kind}-images-idx3-ubyte"
    path.write_bytes(_corruptions(good)[kind])
    with pytest.raises(WisealeError) as info:
        read_idx(path)
    message = str(info.value)
    assert "\n" not in message and path.name in message


def test_truncated_file_in_a_loader_is_a_wiseale_error(tmp_path: Path):
    write_idx_set(tmp_path, gz=True)
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(gzip.decompress(path.read_bytes())[:-100]))
    with pytest.raises(WisealeError, match="t10k-images-idx3-ubyte.gz.*truncated"):
        load("mnist", split="test", data_dir=tmp_path)


def test_mismatched_images_and_labels(tmp_path: Path):
    write_idx_set(tmp_path, gz=False)
    labels = np.zeros(4, dtype=np.uint8)  # 5 test images
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(idx_bytes(labels))
    with pytest.raises(WisealeError, match="one label for each"):
        load("mnist", split="test", data_dir=tmp_path)


def test_missing_mnist_with_failed_download_says_what_to_do(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("WISEALE_DATA", str(tmp_path / "data"))
    with pytest.raises(WisealeError) as info:
        load("mnist", split="train", data_dir=tmp_path / "empty")
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("MNIST not found")
    for name in IDX_NAMES:
        assert f"{name}.gz" in message
    assert str(tmp_path / "data" / "mnist") in message and "--data-dir" in message
    assert "network is unreachable" in message
    assert not (tmp_path / "data" / "mnist").exists()  # nothing half-written, no empty folder


def test_missing_mnist_without_wiseale_data_points_at_the_cache(tmp_path: Path):
    with pytest.raises(WisealeError) as info:
        load("mnist", split="test")
    assert str(tmp_path / "home" / ".cache" / "wiseale" / "mnist") in str(info.value)


def test_missing_fashion_mnist(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(idx_module, "FASHION_SYSTEM_DIR", tmp_path / "not-installed")
    with pytest.raises(WisealeError) as info:
        load("fashion-mnist", split="test", data_dir=tmp_path)
    assert "\n" not in str(info.value) and "dataset-fashion-mnist" in str(info.value)


def test_mnist_download_checks_sha256(tmp_path: Path, monkeypatch):
    """The download path with a fake mirror: good files are stored and loaded once; a file
    whose hash does not match is refused."""
    source = tmp_path / "mirror"
    arrays = write_idx_set(source, gz=True)
    served = {p.name: p.read_bytes() for p in source.iterdir()}
    monkeypatch.setattr(idx_module, "MNIST_SHA256", {
        name: hashlib.sha256(data).hexdigest() for name, data in served.items()})
    calls = []

    def fake_fetch(url: str, timeout: float = 0.0) -> bytes:
        calls.append(url)
        return served[url.rsplit("/", 1)[1]]

    monkeypatch.setattr(idx_module, "fetch_url", fake_fetch)
    monkeypatch.setenv("WISEALE_DATA", str(tmp_path / "data"))
    data = load("mnist", split="test")
    assert data.y.tolist() == arrays["t10k-labels-idx1-ubyte"].tolist()
    assert len(calls) == 4 and calls[0].startswith(idx_module.MNIST_MIRRORS[0])
    assert sorted(p.name for p in (tmp_path / "data" / "mnist").iterdir()) == sorted(served)
    load("mnist", split="train")
    assert len(calls) == 4  # found on disk the second time

    monkeypatch.setenv("WISEALE_DATA", str(tmp_path / "data2"))
    monkeypatch.setattr(idx_module, "fetch_url", lambda url, timeout=0.0: b"tampered")
    with pytest.raises(WisealeError, match="SHA-256 mismatch"):
        load("mnist", split="test")


def test_published_mnist_hashes_are_well_formed():
    assert sorted(idx_module.MNIST_SHA256) == sorted(f"{n}.gz" for n in IDX_NAMES)
    for digest in idx_module.MNIST_SHA256.values():
        assert len(digest) == 64 and int(digest, 16) >= 0


# ---------------------------------------------------------------- digits


def test_digits_shapes_and_split():
    train, test = load("digits", split="train"), load("digits", split="test")
    assert train.floats().shape == (1500, 1, 8, 8) and test.floats().shape == (297, 1, 8, 8)
    assert len(train) + len(test) == 1797
    assert float(train.floats().min()) == 0.0 and float(train.floats().max()) == 1.0
    assert train.y.dtype == torch.int64 and sorted(test.y.unique().tolist()) == list(range(10))
    from wiseale.data.digits import digits_split

    train_idx, test_idx = digits_split()
    assert not set(train_idx) & set(test_idx)
    assert len(set(train_idx) | set(test_idx)) == 1797
    again = load("digits", split="test")
    torch.testing.assert_close(again.floats(), test.floats())  # fixed split
    binary = load("digits", split="train", binarize=True)
    assert set(binary.floats().unique().tolist()) == {0.0, 1.0}


# ---------------------------------------------------------------- CelebA


def framed_image(inner: int, centre=(200, 40, 10), border=(0, 90, 250)) -> Image.Image:
    """A 178 (wide) x 218 (high) image whose centre ``inner`` x ``inner`` square is ``centre``
    and everything else ``border``."""
    pixels = np.empty((218, 178, 3), dtype=np.uint8)
    pixels[:] = border
    top, left = (218 - inner) // 2, (178 - inner) // 2
    pixels[top:top + inner, left:left + inner] = centre
    return Image.fromarray(pixels)


def uniform_image(value: int) -> Image.Image:
    return Image.fromarray(np.full((218, 178, 3), value, dtype=np.uint8))


@pytest.mark.parametrize("crop", [178, 140])
def test_celeba_crop_geometry(tmp_path: Path, crop: int):
    folder = tmp_path / "celeba" / "img_align_celeba"
    folder.mkdir(parents=True)
    for i in range(3):
        framed_image(crop).save(folder / f"{i + 1:06d}.png")
    data = load("celeba", split="train", data_dir=tmp_path, crop=crop)
    assert data.floats().shape == (2, 3, 64, 64) and data.x.dtype == torch.uint8
    centre = torch.tensor([200, 40, 10], dtype=torch.float32) / 255
    torch.testing.assert_close(data.floats(), centre[None, :, None, None].expand_as(data.floats()),
                               atol=1.5 / 255, rtol=0)
    other = 140 if crop == 178 else 178
    framed = load("celeba", split="train", data_dir=tmp_path, crop=other, size=32)
    assert framed.floats().shape == (2, 3, 32, 32)
    spread = (framed.floats().amax(dim=(2, 3)) - framed.floats().amin(dim=(2, 3))).max()
    if crop == 140:  # a 178 crop takes in the border
        assert float(spread) > 0.3
    else:  # a 140 crop lies inside the 178 centre
        assert float(spread) < 1.5 / 255


def test_celeba_without_partition_file_is_a_90_10_split_by_name(tmp_path: Path):
    for i in range(10):  # written out of order: the split sorts by name
        uniform_image(20 * i + 10).save(tmp_path / f"{9 - i:06d}.jpg", quality=95)
    train = load("celeba", split="train", data_dir=tmp_path)
    test = load("celeba", split="test", data_dir=tmp_path)
    assert len(train) == 9 and len(test) == 1
    means = (train.floats().mean(dim=(1, 2, 3)) * 255).round().tolist()
    assert means == pytest.approx([190 - 20 * i for i in range(9)], abs=2)
    assert float(test.floats().mean() * 255) == pytest.approx(10, abs=2)  # file 000009.jpg
    limited = load("celeba", split="train", data_dir=tmp_path, limit=3)
    torch.testing.assert_close(limited.floats(), train.floats(slice(0, 3)))


def test_celeba_with_the_official_partition_file(tmp_path: Path, monkeypatch):
    root = tmp_path / "celeba"
    folder = root / "img_align_celeba"
    folder.mkdir(parents=True)
    partition = {1: 0, 2: 0, 3: 1, 4: 2, 5: 2, 6: 0, 7: 2}  # image 7 is absent
    for i in range(1, 7):
        uniform_image(30 * i).save(folder / f"{i:06d}.png")
    (root / "list_eval_partition.txt").write_text(
        "".join(f"{i:06d}.png {p}\n" for i, p in partition.items()))
    monkeypatch.setenv("WISEALE_DATA", str(tmp_path))
    train, test = load("celeba", split="train"), load("celeba", split="test")
    assert (train.floats().mean(dim=(1, 2, 3)) * 255).round().tolist() == [30, 60, 180]
    assert (test.floats().mean(dim=(1, 2, 3)) * 255).round().tolist() == [120, 150]
    assert train.y is None


def test_celeba_errors(tmp_path: Path):
    with pytest.raises(WisealeError) as info:
        load("celeba", split="train", data_dir=tmp_path / "nowhere")
    message = str(info.value)
    assert "\n" not in message and message.startswith("CelebA not found")
    assert "img_align_celeba" in message and "--data-dir" in message
    Image.fromarray(np.zeros((100, 100, 3), dtype=np.uint8)).save(tmp_path / "a.png")
    Image.fromarray(np.zeros((100, 100, 3), dtype=np.uint8)).save(tmp_path / "b.png")
    with pytest.raises(WisealeError, match="smaller than the 178x178 crop"):
        load("celeba", split="train", data_dir=tmp_path)
    with pytest.raises(WisealeError, match="limit must be a positive integer"):
        load("celeba", split="train", data_dir=tmp_path, crop=64, limit=0)
    (tmp_path / "c.png").write_bytes(b"not an image")
    with pytest.raises(WisealeError, match="cannot read image"):
        load("celeba", split="test", data_dir=tmp_path, crop=64)


def test_image_data_sets_are_registered():
    for name in ("mnist", "fashion-mnist", "digits", "celeba"):
        entry = DATASETS[name]
        assert callable(entry.loader) and entry.summary and "\n" not in entry.summary
