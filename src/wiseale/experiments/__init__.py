"""Reproducible experiments: ``wiseale reproduce NAME``."""

from __future__ import annotations

from wiseale.experiments import (
    celeba,
    embedding,
    lv_fid,
    lv_iwae,
    lv_sweep,
    prior_constraint,
    sine,
    vcae_mnist2d,
    vcae_mog,
    vcae_overfit,
    vcae_shapes,
    vcae_table2,
)
from wiseale.experiments.common import Experiment

EXPERIMENTS: dict[str, Experiment] = {e.name: e for e in (
    sine.EXPERIMENT, embedding.EXPERIMENT, prior_constraint.EXPERIMENT, celeba.EXPERIMENT,
    vcae_mog.EXPERIMENT, vcae_overfit.EXPERIMENT, vcae_shapes.EXPERIMENT,
    vcae_table2.EXPERIMENT, vcae_mnist2d.EXPERIMENT, *lv_sweep.EXPERIMENTS,
    *lv_fid.EXPERIMENTS, lv_iwae.IWAE)}
