"""The Adam that wiseale's training steps use: torch's own, fused where torch has the kernel.

``torch.optim.Adam(fused=True)`` computes the same update as torch's default Adam in one kernel
per parameter instead of one call per operation and parameter (to rounding): on the
sine network at batch 64 on a CPU its step is 3x faster and the whole training step about 6%
(docs/performance.md, "Fused Adam"). Its kernel walks a parameter and its state tensors as if
they were laid alike, so a loaded state must be laid like its parameters: :func:`lay_like_params`.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

__all__ = ["FUSED_DEVICES", "adam", "lay_like_params"]

FUSED_DEVICES = ("cpu", "cuda")  # device types torch 2.13 has a fused Adam kernel for


def adam(params: Iterable[nn.Parameter], **options) -> torch.optim.Adam:
    """``torch.optim.Adam(params, **options)``, fused when every parameter is a floating-point
    tensor on a CPU or CUDA device (torch raises for any other), else torch's default."""
    params = list(params)
    fused = bool(params) and all(p.is_floating_point() and p.device.type in FUSED_DEVICES
                                 for p in params)
    return torch.optim.Adam(params, fused=fused or None, **options)


def lay_like_params(optimizer: torch.optim.Optimizer) -> None:
    """Give every state tensor of a parameter's shape that parameter's strides (a checkpoint
    gives them back contiguous; a channels-last parameter is not): torch 2.13's fused CPU Adam
    otherwise updates the wrong elements (docs/performance.md, "Fused Adam")."""
    for param, entries in optimizer.state.items():
        for key, value in entries.items():
            if (isinstance(value, torch.Tensor) and value.shape == param.shape
                    and value.stride() != param.stride()):
                entries[key] = torch.empty_like(param, dtype=value.dtype).copy_(value)
