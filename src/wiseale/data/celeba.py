"""CelebA from a folder of aligned images (``img_align_celeba/*.jpg``; never downloaded).

Pre-processing: a centre crop of ``crop`` x ``crop`` pixels resized to ``size`` x ``size``
with Pillow's Lanczos filter. ``crop=178`` (default) is 001 Sec. 5 (218x178 images cropped to
178x178, resized to 64x64); ``crop=140`` is seed 003 App. B.4 and the WAE paper (140x140 centre
crop down-scaled to 64x64).

Split: with the official ``list_eval_partition.txt`` (lines ``000001.jpg 0``; 0 train,
1 validation, 2 test; the Kaggle ``.csv`` form is read too) in the image folder or its
parent, train is partition 0 and test partition 2 (validation is unused), restricted to the
images present. Without it, the images sorted by file name are split 90/10: the first 90% are
train, the last 10% test.

The full set is 202,599 images, which at 64x64x3 float32 are about 10 GB; ``limit`` loads only
the first ``limit`` images of the split (in file-name order) to keep memory in hand.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from wiseale.data.dataset import Dataset
from wiseale.errors import WisealeError, positive_int

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
PARTITION_FILES = ("list_eval_partition.txt", "list_eval_partition.csv")
PARTITIONS = {"train": 0, "test": 2}  # official: 0 train, 1 validation, 2 test
TEST_FRACTION = 0.1  # without the partition file: the last 10% by file name


def _images(directory: Path) -> list[Path]:
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir()
                  if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def _candidates(data_dir: str | Path | None) -> list[Path]:
    dirs = []
    if data_dir is not None:
        root = Path(data_dir).expanduser()
        dirs += [root / "celeba" / "img_align_celeba", root / "celeba", root / "img_align_celeba",
                 root]
    env = os.environ.get("WISEALE_DATA")
    if env:
        root = Path(env).expanduser() / "celeba"
        dirs += [root / "img_align_celeba", root]
    return dirs


def find_celeba(data_dir: str | Path | None = None) -> tuple[Path, list[Path]]:
    """The first folder holding images among ``data_dir/celeba/img_align_celeba``,
    ``data_dir/celeba``, ``data_dir/img_align_celeba``, ``data_dir``,
    ``$WISEALE_DATA/celeba/img_align_celeba`` and ``$WISEALE_DATA/celeba``, with its images."""
    searched = _candidates(data_dir)
    for directory in searched:
        files = _images(directory)
        if files:
            return directory, files
    places = ", ".join(str(p) for p in searched) or "nowhere (no --data-dir, no $WISEALE_DATA)"
    raise WisealeError(f"CelebA not found (looked in {places}): put the aligned images "
                       "(img_align_celeba/*.jpg, with list_eval_partition.txt for the official "
                       "split) in DIR/celeba and pass --data-dir DIR, or set $WISEALE_DATA=DIR")


def _read_partition(directory: Path) -> tuple[Path, dict[str, int]] | None:
    for folder in (directory, directory.parent):
        for name in PARTITION_FILES:
            path = folder / name
            if path.is_file():
                partition = {}
                for line in path.read_text(errors="replace").splitlines():
                    parts = line.replace(",", " ").split()
                    if len(parts) == 2 and parts[1] in ("0", "1", "2"):
                        partition[parts[0]] = int(parts[1])
                if not partition:
                    raise WisealeError(f"{path} has no lines like '000001.jpg 0'; fix or "
                                       "remove it")
                return path, partition
    return None


def celeba_split(directory: Path, files: list[Path], split: str) -> list[Path]:
    """The files of ``split`` (see the module docstring), in file-name order."""
    found = _read_partition(directory)
    if found is not None:
        path, partition = found
        chosen = [f for f in files if partition.get(f.name) == PARTITIONS[split]]
        if not chosen:
            raise WisealeError(f"{path} puts none of the images in {directory} in the {split} "
                               f"split (partition {PARTITIONS[split]}); add those images")
        return chosen
    if len(files) < 2:
        raise WisealeError(f"{directory} has {len(files)} image: too few for a train and a test "
                           "split; add images")
    n_test = min(max(int(round(TEST_FRACTION * len(files))), 1), len(files) - 1)
    return files[:-n_test] if split == "train" else files[-n_test:]


def load_image(path: Path, crop: int, size: int) -> np.ndarray:
    """One image: RGB, the centre ``crop`` x ``crop`` square resized to ``size`` x ``size``
    (Lanczos), uint8 [size, size, 3]."""
    try:
        with Image.open(path) as image:
            image = image.convert("RGB")
    except Exception as exc:  # Pillow raises many types (OSError, ValueError, ...) when damaged
        raise WisealeError(f"cannot read image {path} ({' '.join(str(exc).split())}); remove "
                           "or replace it") from None
    width, height = image.size
    if min(width, height) < crop:
        raise WisealeError(f"image {path} is {width}x{height}, smaller than the {crop}x{crop} "
                           "crop; use aligned CelebA images (178x218) or a smaller crop")
    left, top = (width - crop) // 2, (height - crop) // 2
    image = image.crop((left, top, left + crop, top + crop))
    if crop != size:
        image = image.resize((size, size), Image.Resampling.LANCZOS)
    return np.asarray(image, dtype=np.uint8)


def load_celeba(split: str = "train", data_dir: str | Path | None = None, crop: int = 178,
                size: int = 64, limit: int | None = None) -> Dataset:
    """CelebA's ``split`` as x float32 [N, 3, size, size] in [0, 1] (no labels): the centre
    ``crop`` square (178: 001 Sec. 5; 140: seed 003 App. B.4) resized to ``size`` (64 in both
    papers). ``limit`` keeps the first ``limit`` images of the split (the full set is ~10 GB
    as float32)."""
    crop, size = positive_int(crop, "option crop"), positive_int(size, "option size")
    if limit is not None:
        limit = positive_int(limit, "option limit")
    directory, files = find_celeba(data_dir)
    chosen = celeba_split(directory, files, split)[:limit]
    pixels = np.empty((len(chosen), size, size, 3), dtype=np.uint8)
    for i, path in enumerate(chosen):
        pixels[i] = load_image(path, crop, size)
    x = torch.from_numpy(pixels).permute(0, 3, 1, 2).contiguous().to(torch.float32).div_(255.0)
    return Dataset(f"celeba-{split}", x)
