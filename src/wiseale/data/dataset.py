"""The data set every loader returns, with its checks.

Samples are stored as they came: 8-bit images stay uint8 (4x less memory than float32) and a
large .npy file stays on disk, memory-mapped. :meth:`Dataset.floats` turns the samples a batch
needs into float32, on the device that asks for them.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from wiseale.errors import WisealeError

SPLITS = ("train", "test")
MAX_CLASSES = 100_000  # labels index one-hot votes and classifier heads: a bound on their size
STORED_DTYPES = (torch.float32, torch.uint8)
CHECK_CHUNK = 4096  # samples read at a time when a memory-mapped file is checked
CHECK_SAMPLES = 4096  # at most this many samples of a memory-mapped file are checked
DIGEST_SAMPLES = 256  # samples of a memory-mapped file that Dataset.digest reads


EIGHT_BIT = 255.0  # 8-bit samples are images: read as x / 255, in [0, 1]


def divisor(eight_bit: bool, divide_by: Any, what: str) -> float:
    """What a user's samples are divided by when read: ``divide_by`` when given (a data
    option: 1 keeps the raw values), else 255 for 8-bit samples, as the named image data
    sets are read, else 1."""
    if divide_by is None:
        return EIGHT_BIT if eight_bit else 1.0
    try:
        value = float(divide_by)
    except (TypeError, ValueError, OverflowError):
        value = math.nan
    if isinstance(divide_by, bool) or not (math.isfinite(value) and value > 0):
        raise WisealeError(f"{what}: divide_by must be a finite positive number, got "
                           f"{divide_by!r}; use divide_by=1 to keep the raw values")
    return value


def _spread(n: int, k: int) -> np.ndarray:
    """At most ``k`` positions of ``0 .. n - 1``, evenly spaced, the first and last among
    them."""
    return np.unique(np.linspace(0, n - 1, k).round().astype(np.int64))


@dataclass
class Dataset:
    """``x``: the samples [N, ...], a float32 or uint8 tensor, or a NumPy array (a memory-map of
    a .npy file) read batch by batch; a sample's values are ``x / divide_by`` (255 for 8-bit
    images); ``rows``: the rows of ``x`` this split uses, in order (None: all);
    ``y``: labels [N] or None; ``factors``: generative factors [N, K] or None (for the sine
    waves: frequency, phase, amplitude)."""

    name: str
    x: Tensor | np.ndarray
    y: Tensor | None = None
    factors: Tensor | None = None
    divide_by: float = 1.0
    rows: np.ndarray | None = None

    def __post_init__(self) -> None:
        if isinstance(self.x, Tensor) and self.x.dtype not in STORED_DTYPES:
            raise WisealeError(f"data set {self.name}: x must be float32 or uint8, got "
                               f"{self.x.dtype}")
        if self.x.ndim < 2:
            raise WisealeError(f"data set {self.name}: x must be [N, ...] with N samples, got "
                               f"shape {tuple(self.x.shape)}; reshape it to N x D")
        if len(self) == 0:
            raise WisealeError(f"data set {self.name} is empty; give it at least one sample")
        if int(np.prod(self.sample_shape)) == 0:
            raise WisealeError(f"data set {self.name} has samples of size 0 (shape "
                               f"{tuple(self.x.shape)}); give each sample at least one value")
        if self.y is not None and (len(self.y) != len(self) or self.y.dtype != torch.int64):
            raise WisealeError(f"data set {self.name}: labels must be {len(self)} integers, "
                               f"one per sample; got {len(self.y)} of type {self.y.dtype}")
        if self.y is not None:
            low, high = int(self.y.min()), int(self.y.max())
            if low < 0 or high >= MAX_CLASSES:
                raise WisealeError(f"data set {self.name}: labels must be class indices in "
                                   f"[0, {MAX_CLASSES}), got values from {low} to {high}; "
                                   "renumber the classes 0, 1, 2, ...")
        self._check_finite()

    def _check_finite(self) -> None:
        integers = not self.x.is_floating_point() if self.in_memory else np.issubdtype(
            self.x.dtype, np.integer)
        if integers:
            return
        for positions, chunk in self.check_batches(CHECK_CHUNK):
            finite = torch.isfinite(chunk).flatten(1).all(1)
            if not finite.all():
                bad = int(positions[(~finite).nonzero()[0]])
                raise WisealeError(f"data set {self.name} has NaN or Inf values (first in "
                                   f"sample {bad}; float32 overflows beyond 3.4e38); clean, "
                                   "rescale or drop those samples")

    def __len__(self) -> int:
        return self.x.shape[0] if self.rows is None else len(self.rows)

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return tuple(self.x.shape[1:])

    @property
    def in_memory(self) -> bool:
        return isinstance(self.x, Tensor)

    def floats(self, index: Tensor | slice = slice(None),
               device: torch.device | str | None = None) -> Tensor:
        """The samples at ``index`` (a slice, or a tensor of positions) as float32 values
        ``x / divide_by``, on ``device`` (default: where ``x`` is; the CPU for a file)."""
        if self.in_memory:
            values = self.x[index.to(self.x.device) if isinstance(index, Tensor) else index]
        else:
            if isinstance(index, Tensor):
                index = index.cpu().numpy()
            if self.rows is not None:
                index = self.rows[index]
            values = torch.from_numpy(np.array(self.x[index]))  # a copy: the map is read-only
        values = values.to(device=device, dtype=torch.float32)
        # out of place: for float32 data in memory, `to` returns the stored tensor itself
        return values / self.divide_by if self.divide_by != 1.0 else values

    def check_batches(self, size: int) -> Iterator[tuple[Tensor, Tensor]]:
        """(positions, samples as :meth:`floats`) in batches of ``size``, of the samples that
        checks before training read: every one in memory; of a memory-mapped file at most
        ``CHECK_SAMPLES``, evenly spaced with the first and last among them, so that no check
        reads a file larger than memory whole before the first step (a non-finite value
        elsewhere stops training at its batch: docs/reliability.md)."""
        whole = self.in_memory or len(self) <= CHECK_SAMPLES
        positions = torch.arange(len(self)) if whole else \
            torch.from_numpy(_spread(len(self), CHECK_SAMPLES))
        for start in range(0, len(positions), size):
            chosen = positions[start:start + size]
            yield chosen, self.floats(slice(start, start + size) if whole else chosen)

    def digest(self) -> str:
        """A SHA-256 of the samples as stored (values, dtype, shape), ``divide_by`` and the
        labels, prefixed by how it was taken: ``sha256:`` over every sample in memory;
        ``sampled-sha256:`` over ``DIGEST_SAMPLES`` evenly spaced samples (the first and last
        among them) of a memory-mapped file, which a full hash would read whole at every
        check: a replaced file is caught, a change to samples between those read is not."""
        sha = hashlib.sha256(f"{self.x.dtype} {tuple(self.x.shape)} {len(self)} "
                             f"{self.divide_by}".encode())
        if self.in_memory:
            kind, x = "sha256", self.x.detach().cpu().contiguous().numpy()
        else:
            picks = _spread(len(self), DIGEST_SAMPLES)
            kind = "sampled-sha256"
            x = np.ascontiguousarray(self.x[picks if self.rows is None else self.rows[picks]])
        sha.update(x.reshape(-1).view(np.uint8))
        if self.y is not None:
            sha.update(self.y.cpu().numpy().tobytes())
        return f"{kind}:{sha.hexdigest()}"

    def batches(self, size: int, device: torch.device | str | None = None) -> Iterator[Tensor]:
        """All samples as :meth:`floats`, in consecutive batches of ``size`` (the last may be
        smaller): a file is read a batch at a time."""
        for start in range(0, len(self), size):
            yield self.floats(slice(start, start + size), device)

    def head(self, n: int) -> Dataset:
        """The first ``n`` samples (with their labels and factors), without copying them."""
        if self.rows is not None:
            return self._with(rows=self.rows[:n], y=_first(self.y, n),
                              factors=_first(self.factors, n))
        return self._with(x=self.x[:n], y=_first(self.y, n), factors=_first(self.factors, n))

    def subset(self, positions: np.ndarray) -> Dataset:
        """The samples at ``positions`` (an int array): copied from memory, only indexed in a
        file."""
        chosen = torch.from_numpy(np.asarray(positions, dtype=np.int64))
        y = None if self.y is None else self.y[chosen]
        factors = None if self.factors is None else self.factors[chosen]
        if self.in_memory:
            return self._with(x=self.x[chosen.to(self.x.device)], y=y, factors=factors)
        rows = chosen.numpy() if self.rows is None else self.rows[chosen.numpy()]
        return self._with(rows=rows, y=y, factors=factors)

    def renamed(self, name: str) -> Dataset:
        return self._with(name=name)

    def to(self, device: torch.device | str) -> Dataset:
        """The data set with samples in memory moved to ``device`` (a file stays on disk)."""
        if not self.in_memory or self.x.device == torch.device(device):
            return self
        return self._with(x=self.x.to(device))

    def _with(self, **changes: object) -> Dataset:
        """A copy with ``changes`` to data already checked (no second pass over a file)."""
        copy = object.__new__(Dataset)
        copy.__dict__.update(self.__dict__, **changes)
        return copy


def _first(values: Tensor | None, n: int) -> Tensor | None:
    return None if values is None else values[:n]
