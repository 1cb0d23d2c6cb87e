"""Samples kept as they came (issue 15): 8-bit data stays uint8, and a .npy file can stay on
disk, memory-mapped, read batch by batch; either way training gives the same weights."""

import dataclasses

import numpy as np
import pytest
import torch

from wiseale.config import RunConfig
from wiseale.data import Dataset, load
from wiseale.data import arrays as arrays_module
from wiseale.errors import WisealeError
from wiseale.model import Autoencoder
from wiseale.storage import load_tensors
from wiseale.training import train
from wiseale.training.interrupts import Interrupted


def _images(path, dtype):
    """300 random 1 x 8 x 8 images, saved as .npy in ``dtype`` (uint8 on 0..255)."""
    values = np.random.default_rng(0).integers(0, 256, size=(300, 1, 8, 8))
    np.save(path, values.astype(dtype) if dtype == np.uint8 else (values / 255).astype(dtype))
    return path


def _weights(run_dir):
    return load_tensors(run_dir / "model.safetensors")[0]


def _config(path, storage):
    return RunConfig(method="wise-ale", data=str(path), net="mlp", epochs=2, batch_size=32,
                     eval_size=16, storage=storage)


@pytest.mark.parametrize("dtype", [np.uint8, np.float32, np.float64])
def test_a_memory_mapped_file_gives_the_samples_and_split_of_the_loaded_one(tmp_path, dtype):
    path = _images(tmp_path / "x.npy", dtype)
    for split in ("train", "test"):
        mapped, held = (load(str(path), split, storage=s) for s in ("mmap", "memory"))
        assert isinstance(mapped.x, np.memmap) and isinstance(held.x, torch.Tensor)
        assert held.x.dtype == (torch.uint8 if dtype == np.uint8 else torch.float32)
        assert len(mapped) == len(held) == (270 if split == "train" else 30)
        index = torch.tensor([5, 0, len(held) - 1, 5])
        assert torch.equal(mapped.floats(index), held.floats(index))
        assert torch.equal(mapped.floats(), held.floats())
        assert torch.equal(mapped.head(7).floats(), held.floats(slice(0, 7)))
    if dtype == np.uint8:  # read as images, x / 255; divide_by=1 keeps 0..255
        assert held.floats().max() == 1.0 and held.floats().dtype == torch.float32
        raw = load(str(path), "train", storage="mmap", divide_by="1")
        assert raw.floats().max() == 255.0


def test_8_bit_data_of_a_user_trains_as_images_from_the_cli_and_python(tmp_path, capsys):
    """A uint8 .npy, memory-mapped, with a Gaussian likelihood: test mse below 1 (values in
    [0, 1]), the start line says x / 255; --data-option divide_by=1 trains on 0..255 as before
    (mse in the thousands). A uint8 array from Python is read the same way."""
    import json

    from wiseale.cli import main

    path = _images(tmp_path / "x.npy", np.uint8)
    args = ["train", "--method", "vae", "--data", str(path), "--storage", "mmap", "--likelihood",
            "gaussian", "--net", "mlp", "--epochs", "1", "--batch-size", "32"]
    assert main([*args, "--out", str(tmp_path / "images")]) == 0
    assert "(memory-mapped, values x / 255)" in capsys.readouterr().err
    assert main([*args, "--data-option", "divide_by=1", "--out", str(tmp_path / "raw"),
                 "--no-progress"]) == 0
    mse = {name: json.loads((tmp_path / name / "evaluation.json").read_text())["test"]["mse"]
           for name in ("images", "raw")}
    assert mse["images"] < 1 < 1000 < mse["raw"], mse
    x = np.load(path)
    model = train(RunConfig(method="vae", data="mine", likelihood="gaussian", epochs=1,
                            batch_size=32), tmp_path / "python", train_data=x[:270],
                  test_data=x[270:], progress=False)
    evaluation = json.loads((tmp_path / "python/evaluation.json").read_text())
    assert evaluation["test"]["mse"] < 1 and model is not None
    with pytest.raises(WisealeError, match="divide_by must be a finite positive number"):
        load(str(path), "train", divide_by="zero")


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_training_from_a_memory_mapped_file_gives_the_weights_of_the_loaded_one(tmp_path, dtype):
    path = _images(tmp_path / "x.npy", dtype)
    for storage in ("memory", "mmap"):
        train(_config(path, storage), tmp_path / storage, progress=False)
    held, mapped = _weights(tmp_path / "memory"), _weights(tmp_path / "mmap")
    assert all(torch.equal(held[k], mapped[k]) for k in held)


def test_a_streamed_run_stopped_mid_epoch_resumes_exactly(tmp_path, monkeypatch):
    """SIGTERM at epoch 2, batch 3 of a memory-mapped run; --resume ends as the run that
    was never stopped."""
    import os
    import signal

    path = _images(tmp_path / "x.npy", np.uint8)
    config = dataclasses.replace(_config(path, "mmap"), epochs=3)
    train(config, tmp_path / "straight", progress=False)
    real_forward, calls = Autoencoder.forward, {"n": 0}

    def forward(self, x, *args):
        calls["n"] += 1
        if calls["n"] == 11:  # 8 batches an epoch: epoch 2, batch 3
            os.kill(os.getpid(), signal.SIGTERM)
        return real_forward(self, x, *args)

    monkeypatch.setattr(Autoencoder, "forward", forward)
    with pytest.raises(Interrupted, match="at epoch 2, batch 3"):
        train(config, tmp_path / "run", progress=False)
    monkeypatch.setattr(Autoencoder, "forward", real_forward)
    train(config, tmp_path / "run", resume=True, progress=False)
    straight, resumed = _weights(tmp_path / "straight"), _weights(tmp_path / "run")
    assert all(torch.equal(straight[k], resumed[k]) for k in straight)


def test_auto_storage_maps_a_file_larger_than_half_the_available_memory(tmp_path, monkeypatch):
    path = _images(tmp_path / "x.npy", np.uint8)
    size = path.stat().st_size
    monkeypatch.setattr(arrays_module, "available_memory", lambda: 2 * size - 2)
    assert isinstance(load(str(path), storage="auto").x, np.memmap)
    monkeypatch.setattr(arrays_module, "available_memory", lambda: 2 * size + 2)
    assert isinstance(load(str(path), storage="auto").x, torch.Tensor)


def test_only_a_npy_file_can_be_memory_mapped(tmp_path):
    path = tmp_path / "x.npz"
    np.savez(path, x=np.zeros((20, 3), np.float32))
    with pytest.raises(WisealeError, match="only a .npy file can be memory-mapped"):
        load(str(path), storage="mmap")


def test_a_memory_mapped_file_with_a_nan_is_refused_with_its_sample(tmp_path):
    values = np.zeros((10_000, 3), np.float32)
    values[9_000, 1] = np.nan  # beyond the first chunk read
    np.save(tmp_path / "x.npy", values)
    with pytest.raises(WisealeError, match="first in sample 9000"):
        load(str(tmp_path / "x.npy"), storage="mmap")


def test_prepared_celeba_is_read_memory_mapped_with_the_decoded_images(tmp_path, capsys):
    """`wiseale prepare celeba` writes uint8 .npy splits; the celeba loader then reads them
    (memory-mapped with storage=mmap) and gives the pixels decoding the images gives."""
    from PIL import Image

    from wiseale.cli import main

    folder = tmp_path / "celeba" / "img_align_celeba"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(10):
        Image.fromarray(rng.integers(0, 256, (218, 178, 3), dtype=np.uint8)).save(
            folder / f"{i + 1:06d}.png")
    decoded = {split: load("celeba", split, data_dir=tmp_path, size=16) for split in
               ("train", "test")}
    assert main(["prepare", "celeba", "--data-dir", str(tmp_path), "--out",
                 str(tmp_path / "prepared"), "--size", "16", "--workers", "2",
                 "--no-progress"]) == 0
    assert capsys.readouterr().out.count("prepared:") == 2
    assert not list((tmp_path / "prepared").glob(".*"))  # no partial file left
    for split, images in decoded.items():
        mapped = load("celeba", split, data_dir=tmp_path / "prepared", size=16, storage="mmap")
        assert isinstance(mapped.x, np.memmap) and mapped.name == images.name
        assert torch.equal(mapped.floats(), images.floats())
    limited = load("celeba", "train", data_dir=tmp_path / "prepared", size=16, limit=3)
    assert isinstance(limited.x, torch.Tensor) and len(limited) == 3  # auto: small, in memory
    assert torch.equal(limited.floats(), decoded["train"].floats(slice(0, 3)))


def test_evaluating_a_data_set_batch_by_batch_equals_evaluating_its_tensor(tmp_path):
    """evaluate_full on a memory-mapped data set (read 1,024 at a time) gives the numbers it
    gives on all its samples as one tensor."""
    from wiseale.metrics import evaluate_full
    from wiseale.training import load_run

    path = _images(tmp_path / "x.npy", np.uint8)
    np.save(path, np.concatenate([np.load(path)] * 9))  # 2,700 samples: three batches
    train(dataclasses.replace(_config(path, "mmap"), epochs=1), tmp_path / "run",
          progress=False)
    model, config = load_run(tmp_path / "run")
    data = load(str(path), "train", storage="mmap")
    assert evaluate_full(model, data) == evaluate_full(model, data.floats())


def test_checks_read_a_bounded_sample_of_a_memory_mapped_file(tmp_path, monkeypatch):
    """Before training, a memory-mapped file is checked on CHECK_SAMPLES evenly spaced
    samples (first and last among them), not read whole: a NaN in a checked sample is found
    by its position, one between them is left to training's non-finite guard; data in memory
    is checked whole."""
    from wiseale.data import dataset as dataset_module

    monkeypatch.setattr(dataset_module, "CHECK_SAMPLES", 10)
    x = np.random.default_rng(0).random((1000, 4), dtype=np.float32)
    x[999, 2] = np.nan  # the last sample: checked
    np.save(tmp_path / "last.npy", x)
    with pytest.raises(WisealeError, match="first in sample 999"):
        Dataset("last", np.load(tmp_path / "last.npy", mmap_mode="r"))
    x[999, 2], x[500, 1] = 0.5, np.nan  # between two checked samples (444 and 555)
    np.save(tmp_path / "inner.npy", x)
    mapped = Dataset("inner", np.load(tmp_path / "inner.npy", mmap_mode="r"))
    read = [int(p) for positions, _ in mapped.check_batches(4) for p in positions]
    assert read == [0, 111, 222, 333, 444, 555, 666, 777, 888, 999]
    with pytest.raises(WisealeError, match="first in sample 500"):
        Dataset("inner", torch.from_numpy(x))
