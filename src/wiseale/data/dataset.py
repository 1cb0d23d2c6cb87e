"""The in-memory data set every loader returns, with its checks."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from wiseale.errors import WisealeError

SPLITS = ("train", "test")
MAX_CLASSES = 100_000  # labels index one-hot votes and classifier heads: a bound on their size


@dataclass
class Dataset:
    """``x``: float32 [N, ...]; ``y``: labels [N] or None; ``factors``: generative factors
    [N, K] or None (for the sine waves: frequency, phase, amplitude)."""

    name: str
    x: Tensor
    y: Tensor | None = None
    factors: Tensor | None = None

    def __post_init__(self) -> None:
        if self.x.dtype != torch.float32:
            raise WisealeError(f"data set {self.name}: x must be float32, got {self.x.dtype}")
        if self.x.dim() < 2:
            raise WisealeError(f"data set {self.name}: x must be [N, ...] with N samples, got "
                               f"shape {tuple(self.x.shape)}; reshape it to N x D")
        if self.x.shape[0] == 0:
            raise WisealeError(f"data set {self.name} is empty; give it at least one sample")
        if self.x[0].numel() == 0:
            raise WisealeError(f"data set {self.name} has samples of size 0 (shape "
                               f"{tuple(self.x.shape)}); give each sample at least one value")
        if self.y is not None and (len(self.y) != len(self.x) or self.y.dtype != torch.int64):
            raise WisealeError(f"data set {self.name}: labels must be {len(self.x)} integers, "
                               f"one per sample; got {len(self.y)} of type {self.y.dtype}")
        if self.y is not None and len(self.y):
            low, high = int(self.y.min()), int(self.y.max())
            if low < 0 or high >= MAX_CLASSES:
                raise WisealeError(f"data set {self.name}: labels must be class indices in "
                                   f"[0, {MAX_CLASSES}), got values from {low} to {high}; "
                                   "renumber the classes 0, 1, 2, ...")
        if not torch.isfinite(self.x).all():
            bad = int((~torch.isfinite(self.x)).flatten(1).any(1).nonzero()[0])
            raise WisealeError(f"data set {self.name} has NaN or Inf values (first in sample "
                               f"{bad}; float32 overflows beyond 3.4e38); clean, rescale or drop "
                               "those samples")

    def __len__(self) -> int:
        return self.x.shape[0]

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return tuple(self.x.shape[1:])
