"""Reproducible experiments: ``wiseale reproduce NAME``. Each is a spec
(:class:`wiseale.experiments.spec.Spec`) run by :mod:`wiseale.experiments.runner`;
``experiments.index`` names them with their summaries."""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    """``SPECS`` and ``EXPERIMENTS``, built on first use: listing the experiments
    (experiments.index) imports none of them, nor torch."""
    if name not in ("SPECS", "EXPERIMENTS"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from wiseale.experiments import paper001, paper003, paper004, prior_constraint

    specs = (*paper001.SPECS, prior_constraint.SPEC, *paper003.SPECS, *paper004.SPECS)
    globals().update(SPECS=specs, EXPERIMENTS={spec.name: spec for spec in specs})
    return globals()[name]
