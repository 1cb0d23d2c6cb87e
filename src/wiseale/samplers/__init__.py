"""Latent samplers for generation: the prior N(0, I) or a flow fitted to the aggregate
posterior after training (003 Eq. 8-9, Table 5)."""

from wiseale.samplers.flow import (
    FLOW_FILE,
    FLOW_KINDS,
    FLOW_PRESETS,
    FlowSampler,
    fit_flow,
    latents_of,
    load_sampler,
    run_flow,
    save_sampler,
)
from wiseale.samplers.prior import LatentSampler, PriorSampler

SAMPLERS = ("prior", "flow")

__all__ = ["FLOW_FILE", "FLOW_KINDS", "FLOW_PRESETS", "SAMPLERS", "FlowSampler",
           "LatentSampler", "PriorSampler", "fit_flow", "latents_of", "load_sampler",
           "run_flow", "save_sampler"]
