"""The papers' network architectures, as (encoder backbone, feature size, decoder) triples.

A backbone maps x to features; the encoder-noise module adds its heads. A decoder maps z to
the likelihood's parameters with x's shape.
"""

from __future__ import annotations

from torch import nn

from wiseale.nets.celeba import CELEBA_SHAPE, celeba_nets
from wiseale.nets.mlp import mlp_nets
from wiseale.nets.mnist import MNIST_SHAPE, mnist_nets
from wiseale.nets.sine import SINE_LENGTH, sine_nets

NETS = {"sine-conv": sine_nets, "mnist-conv": mnist_nets, "celeba-conv": celeba_nets,
        "mlp": mlp_nets}
SHAPES = {"sine-conv": (1, SINE_LENGTH), "mnist-conv": MNIST_SHAPE, "celeba-conv": CELEBA_SHAPE}


def default_net(sample_shape: tuple[int, ...]) -> str:
    """The paper's network for data of this per-sample shape (1 x 256 signals: App. D.1;
    1 x 28 x 28 images: App. D.2; 3 x 64 x 64 images: App. D.3), an MLP on the flattened
    sample otherwise."""
    for name, shape in SHAPES.items():
        if tuple(sample_shape) == shape:
            return name
    return "mlp"


def build_nets(name: str, sample_shape: tuple[int, ...],
               latent_dim: int) -> tuple[nn.Module, int, nn.Module]:
    """(encoder backbone, its feature size, decoder) of network ``name`` for this data."""
    if name not in NETS:
        raise ValueError(f"unknown network {name!r}; use one of {', '.join(NETS)}")
    if name in SHAPES and tuple(sample_shape) != SHAPES[name]:
        raise ValueError(f"the {name} network needs samples of shape {SHAPES[name]}, "
                         f"got {tuple(sample_shape)}; use --net mlp")
    return NETS[name](tuple(sample_shape), latent_dim)

