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

Images are kept as uint8 (202,599 images at 64x64x3 are 2.5 GB; at 128x128, 10 GB); ``limit``
keeps the first ``limit`` images of the split (in file-name order).

Decoding every JPEG takes minutes, so :func:`prepare_celeba` (``wiseale prepare celeba``) does
it once and writes each split as a uint8 .npy (``celeba-CROP-SIZE-SPLIT.npy``); the loader then
reads that file, memory-mapped when it is large (``storage``, data/arrays.py), instead of the
images. A file read batch by batch costs no CPU beside training, keeps the batch order a
function of the seed alone (exact resume), and needs no worker processes; a DataLoader that
decodes JPEGs in workers would spend the 2 cores of a small machine on every epoch again.
"""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from wiseale.data.arrays import NUMPY_READ_ERRORS, memory_mapped
from wiseale.data.dataset import SPLITS, Dataset
from wiseale.errors import WisealeError, positive_int
from wiseale.storage import TEMPORARY

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


def prepared_name(crop: int, size: int, split: str) -> str:
    return f"celeba-{crop}-{size}-{split}.npy"


def find_prepared(data_dir: str | Path | None, crop: int, size: int, split: str) -> Path | None:
    """The prepared file of ``split`` in the folders CelebA is looked for in, if any."""
    for directory in _candidates(data_dir):
        path = directory / prepared_name(crop, size, split)
        if path.is_file():
            return path
    return None


def prepare_celeba(data_dir: str | Path | None, out: str | Path | None = None,
                   crop: int = 178, size: int = 64, workers: int | None = None,
                   progress: bool = True) -> list[Path]:
    """Decode CelebA once into ``out/celeba-CROP-SIZE-{train,test}.npy`` (uint8
    [N, 3, size, size]; ``out`` defaults to the images' folder), with ``workers`` processes
    (default: one per CPU). Each file appears whole or not at all."""
    from tqdm import tqdm

    crop, size = positive_int(crop, "crop"), positive_int(size, "size")
    directory, files = find_celeba(data_dir)
    out = directory if out is None else Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for split in SPLITS:
        chosen = celeba_split(directory, files, split)
        path = out / prepared_name(crop, size, split)
        partial_path = out / f".{path.name}{TEMPORARY}"
        pixels = np.lib.format.open_memmap(partial_path, mode="w+", dtype=np.uint8,
                                           shape=(len(chosen), 3, size, size))
        try:
            with ProcessPoolExecutor(workers or os.cpu_count()) as pool:
                images = pool.map(partial(load_image, crop=crop, size=size), chosen,
                                  chunksize=64)
                for i, image in enumerate(tqdm(images, total=len(chosen), disable=not progress,
                                               desc=f"celeba {split}", mininterval=1.0)):
                    pixels[i] = image.transpose(2, 0, 1)
            pixels.flush()
            del pixels
            os.replace(partial_path, path)
        except BaseException:
            partial_path.unlink(missing_ok=True)
            raise
        written.append(path)
    return written


def _load_prepared(path: Path, split: str, size: int, storage: str) -> Dataset:
    mapped = memory_mapped(path, storage)
    try:
        pixels = np.load(path, mmap_mode="r" if mapped else None, allow_pickle=False)
    except NUMPY_READ_ERRORS as exc:
        raise WisealeError(f"cannot read {path} ({exc}); delete it and run wiseale prepare "
                           "celeba again") from None
    if pixels.dtype != np.uint8 or pixels.shape[1:] != (3, size, size):
        raise WisealeError(f"{path} holds {pixels.dtype} {pixels.shape}, not uint8 N x 3 x "
                           f"{size} x {size}; delete it and run wiseale prepare celeba again")
    return Dataset(f"celeba-{split}", pixels if mapped else torch.from_numpy(pixels),
                   divide_by=255.0)


def load_celeba(split: str = "train", data_dir: str | Path | None = None, crop: int = 178,
                size: int = 64, limit: int | None = None, storage: str = "auto") -> Dataset:
    """CelebA's ``split`` as x uint8 [N, 3, size, size] read as [0, 1] (no labels): the centre
    ``crop`` square (178: 001 Sec. 5; 140: seed 003 App. B.4) resized to ``size`` (64 in both
    papers). ``limit`` keeps the first ``limit`` images of the split. A prepared file
    (:func:`prepare_celeba`) is read instead of the images when there is one."""
    crop, size = positive_int(crop, "option crop"), positive_int(size, "option size")
    if limit is not None:
        limit = positive_int(limit, "option limit")
    prepared = find_prepared(data_dir, crop, size, split)
    if prepared is not None:
        data = _load_prepared(prepared, split, size, storage)
        return data if limit is None else data.head(limit)
    directory, files = find_celeba(data_dir)
    chosen = celeba_split(directory, files, split)[:limit]
    pixels = np.empty((len(chosen), size, size, 3), dtype=np.uint8)
    for i, path in enumerate(chosen):
        pixels[i] = load_image(path, crop, size)
    x = torch.from_numpy(pixels).permute(0, 3, 1, 2).contiguous()
    return Dataset(f"celeba-{split}", x, divide_by=255.0)
