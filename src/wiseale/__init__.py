"""wiseale: autoencoders that regularise the aggregate posterior (WiSE-ALE and baselines).

The names below are imported on first use (PEP 562), so ``import wiseale`` and the command
line's start load no torch."""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"
_EXPORTS = {"METHODS": "wiseale.methods", "RunConfig": "wiseale.config",
            "WisealeError": "wiseale.errors", "evaluate": "wiseale.metrics",
            "load": "wiseale.data", "load_run": "wiseale.training", "train": "wiseale.training"}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'wiseale' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)


def __dir__() -> list[str]:
    return [*__all__, "__version__"]
