"""Reproducible experiments: ``wiseale reproduce NAME``. Each is a spec
(:class:`wiseale.experiments.spec.Spec`) run by :mod:`wiseale.experiments.runner`."""

from __future__ import annotations

from wiseale.experiments import paper001, paper003, paper004, prior_constraint
from wiseale.experiments.spec import Spec

SPECS: tuple[Spec, ...] = (*paper001.SPECS, prior_constraint.SPEC, *paper003.SPECS,
                           *paper004.SPECS)
EXPERIMENTS: dict[str, Spec] = {spec.name: spec for spec in SPECS}
