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

import contextlib
import ctypes
import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from pathlib import Path
from types import FrameType

import numpy as np
import torch
from PIL import Image

from wiseale.data.arrays import NUMPY_READ_ERRORS, memory_mapped
from wiseale.data.dataset import SPLITS, Dataset
from wiseale.errors import WisealeError, positive_int
from wiseale.folders import make_dirs, remove_empty, unmake
from wiseale.lock import exclusive
from wiseale.storage import TEMPORARY, atomic_path

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
PARTITION_FILES = ("list_eval_partition.txt", "list_eval_partition.csv")
PARTITIONS = {"train": 0, "test": 2}  # official: 0 train, 1 validation, 2 test
TEST_FRACTION = 0.1  # without the partition file: the last 10% by file name
PR_SET_PDEATHSIG = 1  # Linux prctl(2): the signal a process gets when its parent dies


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
    (default: one per CPU). Each file appears whole or not at all, fsynced before its rename
    (storage.atomic_path). One prepare writes a folder at a time (its writer.lock); it first
    removes the partial files that a killed prepare left. SIGINT or SIGTERM stops the workers,
    removes the partial file and raises :class:`PrepareStopped`; the workers also die with
    this process when it is killed (SIGKILL)."""
    crop, size = positive_int(crop, "crop"), positive_int(size, "size")
    directory, files = find_celeba(data_dir)
    out = directory if out is None else Path(out)
    try:
        made = make_dirs(out)
    except OSError as exc:
        raise WisealeError(f"cannot create {out}: {exc.strerror}; choose another --out") from None
    written: list[Path] = []
    try:
        with exclusive(out):
            try:
                with _signals_stop():
                    _prepare_splits(directory, files, out, crop, size, workers, progress,
                                    written)
            except BaseException:  # a folder it made goes, unless a file was finished
                unmake(made, keep=bool(written))
                raise
    except BaseException:
        remove_empty(made)  # e.g. another prepare holds the folder
        raise
    return written


def _prepare_splits(directory: Path, files: list[Path], out: Path, crop: int, size: int,
                    workers: int | None, progress: bool, written: list[Path]) -> None:
    """Remove a killed prepare's partial files, then decode each split into ``out``,
    appending the finished files to ``written``."""
    for path in out.glob(f".celeba-*.npy*{TEMPORARY}"):
        path.unlink(missing_ok=True)
    for split in SPLITS:
        chosen = celeba_split(directory, files, split)
        path = out / prepared_name(crop, size, split)
        try:
            with atomic_path(path) as partial_path:
                _decode(chosen, partial_path, crop, size, workers, progress, split)
        except OSError as exc:
            raise WisealeError(f"cannot write {path}: {exc.strerror or exc}; check the "
                               "folder's permissions and free space") from None
        written.append(path)


def _decode(files: list[Path], path: Path, crop: int, size: int, workers: int | None,
            progress: bool, split: str) -> None:
    """The images of ``files`` decoded by ``workers`` processes into the .npy ``path``."""
    from tqdm import tqdm

    pixels = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8,
                                       shape=(len(files), 3, size, size))
    pool = ProcessPoolExecutor(workers or os.cpu_count(), initializer=_die_with_parent)
    try:
        images = pool.map(partial(load_image, crop=crop, size=size), files, chunksize=64)
        for i, image in enumerate(tqdm(images, total=len(files), disable=not progress,
                                       desc=f"celeba {split}", mininterval=1.0)):
            pixels[i] = image.transpose(2, 0, 1)
        pixels.flush()
    except BaseException:
        _stop_now(pool)
        raise
    finally:
        del pixels
    pool.shutdown()


class PrepareStopped(KeyboardInterrupt):
    """SIGINT or SIGTERM stopped ``wiseale prepare``; ``signum`` gives the exit status
    128 + signum."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"{signal.Signals(signum).name}: prepare stopped; no partial file is "
                         "left (files finished before are kept); run it again to finish")
        self.signum = signum


@contextlib.contextmanager
def _signals_stop() -> Iterator[None]:
    """SIGINT and SIGTERM raise :class:`PrepareStopped` in the block (main thread only), so
    the workers are stopped and the partial file removed; a second signal acts at once."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    signals = (signal.SIGINT, signal.SIGTERM)

    def stop(signum: int, frame: FrameType | None) -> None:
        for sig in signals:  # the cleanup runs under the defaults
            signal.signal(sig, signal.SIG_DFL)
        raise PrepareStopped(signum)

    previous = {sig: signal.signal(sig, stop) for sig in signals}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)


def _die_with_parent() -> None:
    """A decoding worker's start: SIGINT (a terminal's Ctrl-C reaches the whole process
    group) is left to the parent, which stops the workers; SIGTERM has its default; and the
    worker dies with its parent, even one killed by SIGKILL: at once on Linux
    (prctl PR_SET_PDEATHSIG), and elsewhere as soon as the parent's end of their pipe
    closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if sys.platform.startswith("linux"):
        with contextlib.suppress(AttributeError, OSError):
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    parent = multiprocessing.parent_process()
    if parent is not None:  # also covers a parent that died before the prctl above
        threading.Thread(target=_exit_with, args=(parent.sentinel,), daemon=True).start()


def _exit_with(sentinel: int) -> None:
    multiprocessing.connection.wait([sentinel])  # readable once the parent is gone
    os._exit(1)


def _stop_now(pool: ProcessPoolExecutor) -> None:
    """Cancel the images not yet decoded and end the workers now, not after their chunks."""
    processes = list((getattr(pool, "_processes", None) or {}).values())  # no public way
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        process.kill()
    for process in processes:
        process.join(timeout=30)


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
