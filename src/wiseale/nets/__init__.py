"""The papers' network architectures, as (encoder backbone, feature size, decoder) triples.

A backbone maps x to features; the encoder-noise module adds its heads. A decoder maps z to
the likelihood's parameters with x's shape.
"""

from __future__ import annotations

from torch import nn

from wiseale.nets.mlp import mlp_nets
from wiseale.nets.sine import SINE_LENGTH, sine_nets

NETS = {"sine-conv": sine_nets, "mlp": mlp_nets}


def default_net(sample_shape: tuple[int, ...]) -> str:
    """The network for data of this per-sample shape: the App. D.1 conv net for 1 x 256
    signals, an MLP on the flattened sample otherwise."""
    if tuple(sample_shape) == (1, SINE_LENGTH):
        return "sine-conv"
    return "mlp"


def build_nets(name: str, sample_shape: tuple[int, ...],
               latent_dim: int) -> tuple[nn.Module, int, nn.Module]:
    """(encoder backbone, its feature size, decoder) of network ``name`` for this data."""
    if name not in NETS:
        raise ValueError(f"unknown network {name!r}; use one of {', '.join(NETS)}")
    if name == "sine-conv" and tuple(sample_shape) != (1, SINE_LENGTH):
        raise ValueError(f"the sine-conv network needs samples of shape (1, {SINE_LENGTH}), "
                         f"got {tuple(sample_shape)}; use --net mlp")
    return NETS[name](tuple(sample_shape), latent_dim)

