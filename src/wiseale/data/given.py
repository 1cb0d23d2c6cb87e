"""Data handed over from Python: a numpy array or torch tensor of samples (with labels, as an
``(x, y)`` pair), a torch ``Dataset`` of samples or (sample, label) items, a path to a
.npy/.npz file, or a :class:`Dataset`, each as a :class:`Dataset`.

Values are stored as the .npy/.npz loader stores them (data/arrays.py): uint8 samples stay
uint8, the others become float32; 8-bit samples are read as images, x / 255, unless the data
option ``divide_by`` says otherwise (1: the raw values)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from wiseale.data.arrays import load_array_file, real_dtype
from wiseale.data.dataset import Dataset, divisor
from wiseale.errors import WisealeError

KINDS = "a numpy array, a torch tensor, an (x, y) pair, a torch Dataset, a path or a Dataset"


def _samples(x: Any, what: str) -> Tensor:
    if isinstance(x, np.ndarray):
        if not real_dtype(x.dtype):
            raise WisealeError(f"{what} has dtype {x.dtype}; give real numbers")
        x = torch.from_numpy(np.ascontiguousarray(x))
    if not isinstance(x, Tensor):
        raise WisealeError(f"{what} must be {KINDS}; got {type(x).__name__}")
    if x.is_complex() or x.dtype == torch.bool:
        raise WisealeError(f"{what} has dtype {x.dtype}; give real numbers")
    x = x.detach().cpu()
    return x if x.dtype == torch.uint8 else x.to(torch.float32)


def _labels(y: Any, what: str) -> Tensor | None:
    if y is None:
        return None
    y = torch.as_tensor(np.asarray(y)) if not isinstance(y, Tensor) else y
    if y.is_floating_point() or y.is_complex() or y.dim() != 1:
        raise WisealeError(f"the labels of {what} must be one integer per sample; got "
                           f"{tuple(y.shape)} of {y.dtype}")
    return y.detach().cpu().to(torch.int64)


def _stacked(data: torch.utils.data.Dataset, what: str) -> tuple[Tensor, Tensor | None]:
    """All items of a map-style torch Dataset: samples, or (sample, label) pairs."""
    try:
        items = [data[i] for i in range(len(data))]  # type: ignore[arg-type]
    except TypeError:
        raise WisealeError(f"{what} must have a length and items by index (a map-style torch "
                           "Dataset)") from None
    if not items:
        raise WisealeError(f"{what} is empty; give it at least one sample")
    pairs = isinstance(items[0], (tuple, list))
    x = torch.stack([_samples(item[0] if pairs else item, what) for item in items])
    y = _labels([int(item[1]) for item in items], what) if pairs else None
    return x, y


def as_dataset(data: Any, split: str, name: str = "given", storage: str = "auto",
               divide_by: float | str | None = None) -> Dataset:
    """``data`` (see the module docstring) as the ``split`` of a data set named ``name``
    (``storage``: where a .npy file's samples are kept, data/arrays.py), its samples read
    as x / ``divide_by`` (default: 255 for uint8, else 1)."""
    what = f"the {split} data"
    if isinstance(data, Dataset):
        return data
    if isinstance(data, (str, Path)):
        return load_array_file(data, split, storage, divide_by)
    if isinstance(data, tuple) and len(data) == 2:
        x, y = _samples(data[0], what), _labels(data[1], what)
    elif isinstance(data, torch.utils.data.Dataset):
        x, y = _stacked(data, what)
    else:
        x, y = _samples(data, what), None
    return Dataset(f"{name}-{split}", x, y,
                   divide_by=divisor(x.dtype == torch.uint8, divide_by, what))
