"""A user's own data: a .npy array, or a .npz archive with ``x`` (and ``y``, ``x_test``,
``y_test``). Without a test array, a fixed 10% of the samples (seed 0) is the test split.

Values are stored as given; uint8 arrays stay uint8 in memory (4x less than float32), other
types become float32. 8-bit samples are read as images, x / 255 in [0, 1], as the named data
sets are; the data option ``divide_by`` gives another divisor (1: the raw values). A .npy
file can instead stay on disk, memory-mapped and read batch by batch in its own type
(``storage="mmap"``, still 8-bit); ``"auto"`` does so when the file is larger than half the
memory available (:data:`STORAGES`)."""

from __future__ import annotations

import os
import tokenize
import zipfile
import zlib
from pathlib import Path

import numpy as np
import torch

from wiseale.config import STORAGES
from wiseale.data.dataset import Dataset, divisor
from wiseale.errors import WisealeError, one_line

TEST_FRACTION = 0.1
# what np.load raises for a corrupt file (a damaged header reaches Python's tokenizer; one that
# claims a huge shape, the allocator)
NUMPY_READ_ERRORS = (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error, OverflowError,
                     tokenize.TokenError, SyntaxError, NotImplementedError, MemoryError)
MAGIC = {".npy": b"\x93NUMPY", ".npz": b"PK"}  # the first bytes of each format
AUTO_MMAP_FRACTION = 0.5  # auto: memory-map a .npy larger than this share of available memory


def available_memory() -> int:
    """Bytes of memory available to a new allocation (Linux MemAvailable, else all of it)."""
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def memory_mapped(path: Path, storage: str) -> bool:
    """Whether ``path`` is read from disk batch by batch (see the module docstring)."""
    if storage not in STORAGES:
        raise WisealeError(f"unknown storage {storage!r}; use one of {', '.join(STORAGES)}")
    if storage == "mmap" and path.suffix != ".npy":
        raise WisealeError(f"{path}: only a .npy file can be memory-mapped; save x with "
                           "numpy.save or use --storage memory")
    if storage == "auto":
        return path.suffix == ".npy" and \
            path.stat().st_size > AUTO_MMAP_FRACTION * available_memory()
    return storage == "mmap"


def real_dtype(dtype: np.dtype) -> bool:
    """Whether ``dtype`` holds real numbers (integers or floats, not complex, text or bool)."""
    return np.issubdtype(dtype, np.number) and not np.issubdtype(dtype, np.complexfloating)


def _check_magic(path: Path) -> None:
    """A one-line error for a file that does not even start like a .npy (or .npz: zip) file."""
    try:
        with path.open("rb") as handle:
            head = handle.read(len(MAGIC[path.suffix]))
    except OSError as exc:
        raise WisealeError(f"cannot read {path}: {exc.strerror or one_line(exc)}; check the "
                           "path and its permissions") from None
    if head != MAGIC[path.suffix]:
        what = "it is empty" if not head else f"not a {path.suffix} file (wrong magic bytes)"
        raise WisealeError(f"cannot read {path}: {what}; save your array with numpy.save or "
                           "numpy.savez")


def _read(path: Path) -> dict[str, np.ndarray]:
    """The arrays of the file at ``path``; a .npy's is memory-mapped (read when indexed)."""
    if not path.exists():
        raise WisealeError(f"data file {path} does not exist; check the path")
    if not path.is_file():  # a FIFO, device or socket would block or never end
        raise WisealeError(f"data file {path} is not a regular file; give a .npy or .npz file "
                           "saved on disk")
    if path.suffix not in MAGIC:
        raise WisealeError(f"{path} is not a .npy or .npz file; save your array with numpy.save "
                           "or numpy.savez")
    _check_magic(path)
    try:
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as archive:
                arrays = {key: archive[key] for key in archive.files}
        else:
            arrays = {"x": np.load(path, allow_pickle=False, mmap_mode="r")}
    except NUMPY_READ_ERRORS as exc:
        if "mmap length is greater than file size" in str(exc):  # numpy's word for it
            raise WisealeError(f"cannot read {path}: the file seems not fully written (shorter "
                               "than its header says); save it again") from None
        raise WisealeError(f"cannot read {path} as a NumPy array ({one_line(exc)}); save it "
                           "with numpy.save or numpy.savez, without object arrays") from None
    not_arrays = sorted(key for key, value in arrays.items() if not isinstance(value, np.ndarray))
    if not_arrays:
        raise WisealeError(f"{path}: entries {', '.join(not_arrays)} are not .npy arrays; save "
                           "the archive with numpy.savez")
    if "x" not in arrays:
        if len(arrays) != 1 or "x_test" in arrays:
            raise WisealeError(f"{path} holds {sorted(arrays)}; name the data array 'x'")
        arrays = {"x": next(iter(arrays.values()))}
    return arrays


def _checked(path: Path, key: str, array: np.ndarray) -> np.ndarray:
    if not real_dtype(array.dtype):
        raise WisealeError(f"{path}:{key} has dtype {array.dtype}; store real numbers")
    if array.ndim not in (2, 3, 4):
        raise WisealeError(f"{path}:{key} has shape {array.shape}; use N x D vectors, N x C x L "
                           "signals or N x C x H x W images")
    if array.shape[0] == 0:
        raise WisealeError(f"{path}:{key} is empty; give it at least one sample")
    return array


def _in_memory(array: np.ndarray) -> torch.Tensor:
    """``array`` read into memory as a tensor: uint8 kept, the rest float32."""
    if array.dtype == np.uint8:
        return torch.from_numpy(np.ascontiguousarray(array))
    with np.errstate(over="ignore", invalid="ignore"):  # Dataset reports non-finite values
        return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))


def _labels(path: Path, key: str, arrays: dict[str, np.ndarray], n: int) -> torch.Tensor | None:
    labels = arrays.get(key)
    if labels is None:
        return None
    if not (np.issubdtype(labels.dtype, np.integer) or labels.dtype == bool) or \
            labels.shape != (n,):
        raise WisealeError(f"{path}:{key} must hold {n} integer labels, one per sample; got "
                           f"shape {labels.shape} of type {labels.dtype}")
    return torch.from_numpy(labels.astype(np.int64))


def load_array_file(path: str | Path, split: str = "train", storage: str = "auto",
                    divide_by: float | str | None = None) -> Dataset:
    """The ``split`` of the array file at ``path``, its samples read as x / ``divide_by``
    (default: 255 for uint8, else 1; see the module docstring)."""
    path = Path(path)
    arrays = _read(path)
    mapped = memory_mapped(path, storage)
    name = f"{path.stem}-{split}"
    scale = divisor(arrays["x"].dtype == np.uint8, divide_by, str(path))
    if "x_test" in arrays:
        if arrays["x_test"].shape[1:] != arrays["x"].shape[1:]:
            raise WisealeError(f"{path}: x_test has samples of shape {arrays['x_test'].shape[1:]}"
                               f" but x has {arrays['x'].shape[1:]}; they must match")
        key = "x" if split == "train" else "x_test"
        x = _in_memory(_checked(path, key, arrays[key]))
        return Dataset(name, x, _labels(path, "y" if split == "train" else "y_test", arrays,
                                        len(x)), divide_by=scale)
    x = _checked(path, "x", arrays["x"])
    y = _labels(path, "y", arrays, len(x))
    n_test = int(round(TEST_FRACTION * len(x)))
    if n_test == 0 or n_test == len(x):
        raise WisealeError(f"{path} has {len(x)} samples: too few to hold out a test split; "
                           "add samples or store x_test in a .npz")
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    index = order[n_test:] if split == "train" else order[:n_test]
    if mapped:
        return Dataset(name, x, y, divide_by=scale).subset(index.numpy())
    # only the split's rows are read into memory, never the whole file beside them
    return Dataset(name, _in_memory(x[index.numpy()]), None if y is None else y[index],
                   divide_by=scale)
