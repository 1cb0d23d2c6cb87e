"""Data sets: ``load(name_or_path, split)`` returns a :class:`Dataset` (samples as stored:
float32, uint8 or a memory-mapped file; ``Dataset.floats`` reads them as float32)."""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from wiseale.data.arrays import load_array_file
from wiseale.data.dataset import SPLITS, Dataset
from wiseale.dataset_index import DATASETS
from wiseale.errors import WisealeError

__all__ = ["DATASETS", "Dataset", "load"]

COUNTS = ("n_train", "n_test", "limit")  # sample counts of a named set
MAX_COUNT = 10_000_000  # more samples than any data set here holds


def _requirement(key: str, value: Any, default: Any) -> str | None:
    """What an option ``key`` with this ``default`` must be, or None if ``value`` is fine."""
    is_int = isinstance(value, int) and not isinstance(value, bool)
    if isinstance(default, bool):
        return None if isinstance(value, bool) else "true or false"
    if isinstance(default, float):
        finite = (is_int or isinstance(value, float)) and math.isfinite(value)
        return None if finite else "a finite number"
    if key in COUNTS:
        fine = (value is None and default is None) or (is_int and 0 < value <= MAX_COUNT)
        return None if fine else f"a positive integer (at most {MAX_COUNT:,})"
    if key == "seed":
        return None if is_int and value >= 0 else "a non-negative integer"
    if isinstance(default, int):
        return None if is_int else "an integer"
    return None


def _check_options(name: str, loader: Callable[..., Dataset], options: dict[str, Any]) -> None:
    """Each option must be one of the loader's and have its default's type (counts and seeds
    in range): a one-line error here instead of a NumPy exception deep in the loader."""
    params = inspect.signature(loader).parameters
    known = [key for key in params if key not in ("split", "data_dir", "storage")]
    unknown = [key for key in options if key not in known]
    if unknown:
        raise WisealeError(f"data set {name} does not take these options: {', '.join(unknown)}; "
                           f"its options: {', '.join(known) or 'none'} (--data-option KEY=VALUE)")
    for key, value in options.items():
        need = _requirement(key, value, params[key].default)
        if need is not None:
            flag = f"--{key.replace('_', '-')}" if key in COUNTS[:2] else f"--data-option {key}"
            raise WisealeError(f"data set {name}: option {key} must be {need}, got {value!r}; "
                               f"fix {flag}")


def _call(what: str, loader: Callable[..., Dataset], *args: Any, **kwargs: Any) -> Dataset:
    try:
        return loader(*args, **kwargs)
    except MemoryError:
        raise WisealeError(f"not enough memory to load {what}; lower --n-train / --n-test or "
                           "the limit option, or use a smaller file") from None


def load(name_or_path: str, split: str = "train", data_dir: str | Path | None = None,
         storage: str = "auto", **options: Any) -> Dataset:
    """A named data set (``wiseale datasets`` lists them) or a .npy / .npz file of yours.

    Every named loader is called as ``loader(split=..., data_dir=..., **options)`` (and
    ``storage=`` if it takes it); loaders of generated data ignore ``data_dir``. Relative file
    paths are looked up in ``data_dir``. ``storage``: see data/arrays.py.
    """
    if split not in SPLITS:
        raise WisealeError(f"unknown split {split!r}; use 'train' or 'test'")
    if not name_or_path.strip():
        raise WisealeError(f"no data set given; use one of {', '.join(DATASETS)} or a path to "
                           "a .npy/.npz file")
    if name_or_path in DATASETS:
        loader = DATASETS[name_or_path].loader
        _check_options(name_or_path, loader, options)
        if "storage" in inspect.signature(loader).parameters:
            options["storage"] = storage
        return _call(f"{name_or_path} ({split})", loader, split=split, data_dir=data_dir,
                     **options)
    divide_by = options.pop("divide_by", None)
    if options:
        raise WisealeError(f"a data file takes one option, divide_by; got {', '.join(options)}")
    if data_dir is not None and not Path(name_or_path).is_absolute():
        name_or_path = str(Path(data_dir) / name_or_path)
    path = Path(name_or_path)
    if path.suffix in (".npy", ".npz") or path.exists():
        return _call(str(path), load_array_file, path, split=split, storage=storage,
                     divide_by=divide_by)
    raise WisealeError(f"unknown data set {name_or_path!r}; use one of {', '.join(DATASETS)} "
                       "or a path to a .npy/.npz file")
