"""Reproducible experiments: ``wiseale reproduce NAME``. Each is a spec
(:class:`wiseale.experiments.spec.Spec`) run by :mod:`wiseale.experiments.runner`;
``experiments.index`` lists them with their modules and summaries."""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    """``SPECS`` and ``EXPERIMENTS``, built on first use: listing the experiments
    (experiments.index) imports none of them, nor torch."""
    if name not in ("SPECS", "EXPERIMENTS"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    from wiseale.experiments.index import INDEX
    from wiseale.registry import Registry

    found = {}
    for module in dict.fromkeys(listing.module for listing in INDEX.values()):
        found.update((spec.name, spec) for spec in
                     importlib.import_module(f"wiseale.experiments.{module}").SPECS)
    experiments: Registry = Registry("experiment")
    for listed in INDEX:
        experiments.register(found.pop(listed))
    if found:
        raise ImportError(f"experiments without a line in experiments.index: {', '.join(found)}")
    globals().update(SPECS=tuple(experiments.values()), EXPERIMENTS=experiments)
    return globals()[name]
