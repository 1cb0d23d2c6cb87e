"""Data sets with known generative factors: dSprites, 3D Shapes (003 Sec. 6.4, App. B.5, after
Kim & Mnih 2018) and ``toy-shapes``, a small generated stand-in for offline and quick runs.

Files (never downloaded), looked for in ``data_dir/<name>``, ``data_dir``,
``$WISEALE_DATA/<name>`` and ``$WISEALE_DATA``: dSprites'
``dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz`` (``imgs`` 0/1 uint8 [737280, 64, 64],
``latents_values`` [737280, 6]) and 3D Shapes' ``3dshapes.h5`` (``images`` uint8
[480000, 64, 64, 3], ``labels`` [480000, 6]; read with h5py).

Split: a permutation of all images seeded by ``seed`` (default 0, independent of the training
seed); its first 90% is train, the last 10% test. ``limit`` keeps the first ``limit`` images of
that shuffled split (the full sets are 3 GB and 6 GB as uint8). x is uint8 [N, C, 64, 64] read
as [0, 1], y is None, ``factors`` holds the factor *values* (float32 [N, K]);
:func:`factor_classes` turns them into the integer classes the FactorVAE score needs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from wiseale.data.arrays import NUMPY_READ_ERRORS, real_dtype
from wiseale.data.dataset import Dataset
from wiseale.data.idx import _candidates
from wiseale.errors import WisealeError, one_line, positive_int, seed_int
from wiseale.extras import require

DSPRITES_FILE = "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz"
SHAPES3D_FILE = "3dshapes.h5"
TOY_VALUES = (np.array([16.0, 24.0, 32.0, 40.0, 48.0]), np.array([16.0, 24.0, 32.0, 40.0, 48.0]),
              np.array([8.0, 12.0, 16.0, 20.0]), np.array([0.4, 0.7, 1.0]))
TEST_FRACTION = 0.1
SIZE = 64


def factor_classes(data: Dataset | Tensor) -> Tensor:
    """Integer classes int64 [N, K] of a data set's factor values: in each column, the rank of
    the value among the distinct values present (for a full dSprites or 3D Shapes this equals
    the published class index; for a subset only equality between rows is kept)."""
    factors = data.factors if isinstance(data, Dataset) else data
    if factors is None:
        raise WisealeError(f"data set {data.name} has no factors; use dsprites, 3dshapes or "
                           "toy-shapes")
    return torch.stack([torch.unique(c, return_inverse=True)[1] for c in factors.T], 1).long()


def shuffled_split(n_total: int, split: str, seed: int = 0,
                   limit: int | None = None) -> np.ndarray:
    """Indices of ``split`` (see the module docstring), in shuffled order, at most ``limit``."""
    if n_total < 2:
        raise WisealeError(f"a data set of {n_total} image cannot be split; add images")
    perm = np.random.default_rng(seed).permutation(n_total)
    n_test = max(int(n_total * TEST_FRACTION), 1)
    return (perm[:n_total - n_test] if split == "train" else perm[n_total - n_test:])[:limit]


def _find(name: str, file_name: str, data_dir: str | Path | None) -> Path:
    searched = _candidates(name, data_dir)
    for directory in searched:
        if (directory / file_name).is_file():
            return directory / file_name
    places = ", ".join(str(p) for p in searched) or "nowhere (no --data-dir, no $WISEALE_DATA)"
    raise WisealeError(f"{file_name} not found (looked in {places}): put it in DIR/{name} and "
                       "pass --data-dir DIR, or set $WISEALE_DATA=DIR")


def _take_rows(source: Any, idx: np.ndarray, block: int = 16_384) -> np.ndarray:
    """``source[idx]`` for a NumPy array or an h5py data set (read block by block, in order)."""
    if isinstance(source, np.ndarray):
        return source[idx]
    order = np.argsort(idx)
    rows = idx[order]
    out = np.empty((len(idx), *source.shape[1:]), source.dtype)
    for start in range(0, source.shape[0], block):
        lo, hi = np.searchsorted(rows, [start, start + block])
        if hi > lo:
            part = rows[lo:hi]
            dense = hi - lo > block // 16  # many rows: read the block; few: pick them
            out[order[lo:hi]] = source[start:start + block][part - start] if dense else source[part]
    return out


def _real_array(source: Any) -> bool:
    """Whether ``source`` is a NumPy array or h5py data set of real numbers."""
    dtype = getattr(source, "dtype", None)
    return hasattr(source, "shape") and isinstance(dtype, np.dtype) and real_dtype(dtype)


def _check(path: Path, images: Any, factors: Any, ndim: int) -> None:
    if not (_real_array(images) and _real_array(factors)):
        raise WisealeError(f"{path}: its images and factors must be arrays of real numbers; use "
                           "the published file")
    if images.ndim != ndim or tuple(images.shape[1:3]) != (SIZE, SIZE) or factors.ndim != 2 \
            or factors.shape[0] != images.shape[0] or factors.shape[1] != 6:
        raise WisealeError(f"{path} holds images {tuple(images.shape)} and factors "
                           f"{tuple(factors.shape)}, not N x 64 x 64 images with N x 6 factors; "
                           "use the published file")


def _stored(pixels: np.ndarray) -> Tensor:
    """8-bit pixels as they are (uint8); any other real type as float32."""
    return torch.from_numpy(pixels if pixels.dtype == np.uint8 else pixels.astype(np.float32))


def _options(limit: int | None, seed: int) -> int | None:
    seed_int(seed, "option seed")
    return None if limit is None else positive_int(limit, "option limit")


def load_dsprites(split: str = "train", data_dir: str | Path | None = None,
                  limit: int | None = None, seed: int = 0) -> Dataset:
    """dSprites (Matthey et al. 2017; Kim & Mnih's benchmark): x [N, 1, 64, 64]; factors
    shape, scale, orientation, x, y (``latents_values`` without the constant colour)."""
    limit = _options(limit, seed)
    path = _find("dsprites", DSPRITES_FILE, data_dir)
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = {"imgs", "latents_values"} - set(npz.files)
            if missing:
                raise WisealeError(f"{path} lacks {', '.join(sorted(missing))}; use the "
                                   "published dSprites .npz")
            images, values = npz["imgs"], npz["latents_values"]
    except NUMPY_READ_ERRORS as exc:
        raise WisealeError(f"cannot read {path} ({one_line(exc)}); download it again") from None
    _check(path, images, values, 3)
    idx = shuffled_split(len(images), split, seed, limit)
    x = _stored(_take_rows(images, idx)).unsqueeze(1)
    factors = torch.from_numpy(values[idx, 1:].astype(np.float32))
    # the published file is 0/1; a 0..255 copy is accepted
    return Dataset(f"dsprites-{split}", x, None, factors, divide_by=255.0 if x.max() > 1 else 1.0)


def load_3dshapes(split: str = "train", data_dir: str | Path | None = None,
                  limit: int | None = None, seed: int = 0) -> Dataset:
    """3D Shapes (Burgess & Kim 2018; 003 Sec. 6.4): x [N, 3, 64, 64]; factors floor hue, wall
    hue, object hue, scale, shape, orientation (``labels``)."""
    limit = _options(limit, seed)
    path = _find("3dshapes", SHAPES3D_FILE, data_dir)
    h5py = require("h5py", "reading 3dshapes.h5")
    try:
        with h5py.File(path, "r") as h5:
            if "images" not in h5 or "labels" not in h5:
                raise WisealeError(f"{path} lacks the data sets 'images' and 'labels'; use the "
                                   "published 3dshapes.h5")
            images, labels = h5["images"], h5["labels"]
            _check(path, images, labels, 4)
            idx = shuffled_split(images.shape[0], split, seed, limit)
            pixels, values = _take_rows(images, idx), labels[()][idx]
    except (OSError, KeyError, RuntimeError, ValueError) as exc:  # what h5py raises when corrupt
        raise WisealeError(f"cannot read {path} ({one_line(exc)}); download it again") from None
    x = _stored(pixels).permute(0, 3, 1, 2).contiguous()
    return Dataset(f"3dshapes-{split}", x, None, torch.from_numpy(values.astype(np.float32)),
                   divide_by=255.0)


def render_squares(factors: np.ndarray) -> np.ndarray:
    """Images float32 [n, 1, 64, 64] of a square on black for factor values [n, 4]: centre x,
    centre y, side (pixels) and brightness; the factors alone determine the image."""
    cx, cy, side, brightness = np.asarray(factors, dtype=np.float64).T
    centres = np.arange(SIZE) + 0.5
    in_x = np.abs(centres[None, :] - cx[:, None]) < side[:, None] / 2
    in_y = np.abs(centres[None, :] - cy[:, None]) < side[:, None] / 2
    images = (in_y[:, :, None] & in_x[:, None, :]) * brightness[:, None, None]
    return images.astype(np.float32)[:, None]


def synthetic_shapes(n: int, seed: int = 0, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """``n`` toy-shapes images [n, 1, 64, 64] and factor values [n, 4] (x and y in 5 values,
    side in 4, brightness in 3: 300 combinations, drawn uniformly); the train and test splits
    use independent streams and sample k is the same whatever ``n`` is."""
    unit = np.random.default_rng([seed, 0 if split == "train" else 1]).random((n, 4))
    classes = np.floor(unit * [len(v) for v in TOY_VALUES]).astype(np.int64)
    factors = np.stack([v[c] for v, c in zip(TOY_VALUES, classes.T, strict=True)], 1)
    return render_squares(factors), factors.astype(np.float32)


def load_toy_shapes(split: str = "train", data_dir: object = None, n_train: int = 5_000,
                    n_test: int = 1_000, seed: int = 0) -> Dataset:
    """The generated stand-in for dSprites / 3D Shapes (``data_dir`` is ignored)."""
    n = positive_int(n_train if split == "train" else n_test,
                     "option n_train" if split == "train" else "option n_test")
    x, factors = synthetic_shapes(n, seed, split)
    return Dataset(f"toy-shapes-{split}", torch.from_numpy(x), None, torch.from_numpy(factors))
