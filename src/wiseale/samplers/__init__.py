"""Latent samplers for generation: the prior N(0, I), or a flow (003 Eq. 8-9, Table 5) or a
Gaussian mixture (004 Eq. 12-13) fitted to the aggregate posterior after training.

Every sampler registers with :mod:`wiseale.samplers.io`, so one ``save_sampler`` /
``load_sampler`` handles them all.
"""

from wiseale.samplers.flow import (
    FLOW_FILE,
    FLOW_KINDS,
    FLOW_PRESETS,
    FlowSampler,
    fit_flow,
    run_flow,
)
from wiseale.samplers.io import (
    SAMPLER_CLASSES,
    latents_of,
    load_sampler,
    register_sampler,
    run_sampler,
    save_sampler,
)
from wiseale.samplers.mixture import (
    COVARIANCE_TYPES,
    MIXTURE_FILE,
    MixtureSampler,
    fit_mixture,
    run_mixture,
)
from wiseale.samplers.prior import LatentSampler, PriorSampler

__all__ = ["COVARIANCE_TYPES", "FLOW_FILE", "FLOW_KINDS", "FLOW_PRESETS", "MIXTURE_FILE",
           "SAMPLER_CLASSES", "FlowSampler", "LatentSampler", "MixtureSampler",
           "PriorSampler", "fit_flow", "fit_mixture", "latents_of", "load_sampler",
           "register_sampler", "run_flow", "run_mixture", "run_sampler", "save_sampler"]
