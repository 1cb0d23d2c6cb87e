"""The papers' network architectures, as (encoder backbone, feature size, decoder) triples.

A backbone maps x to features; the encoder-noise module adds its heads. A decoder maps z to
the likelihood's parameters with x's shape.
"""

from __future__ import annotations

from torch import nn

from wiseale.nets.celeba import CELEBA_SHAPE, celeba_nets
from wiseale.nets.mlp import mlp_nets
from wiseale.nets.mnist import MNIST_SHAPE, mnist_nets
from wiseale.nets.shapes import shapes_nets
from wiseale.nets.sine import SINE_LENGTH, sine_nets
from wiseale.nets.vcae import celeba_vcae_nets, mnist_vcae_nets

NETS = {"sine-conv": sine_nets, "mnist-conv": mnist_nets, "celeba-conv": celeba_nets,
        "shapes-conv": shapes_nets, "mnist-vcae": mnist_vcae_nets,
        "celeba-vcae": celeba_vcae_nets, "mlp": mlp_nets}
SHAPES = {"sine-conv": (1, SINE_LENGTH), "mnist-conv": MNIST_SHAPE, "celeba-conv": CELEBA_SHAPE,
          "mnist-vcae": MNIST_SHAPE, "celeba-vcae": CELEBA_SHAPE}
# Spelled out, not derived from SHAPES: several networks take the same shape (003 Table 4's
# mnist-vcae and celeba-vcae are chosen with --net only).
DEFAULTS = {(1, SINE_LENGTH): "sine-conv", MNIST_SHAPE: "mnist-conv", CELEBA_SHAPE: "celeba-conv",
            (1, 64, 64): "shapes-conv"}


def default_net(sample_shape: tuple[int, ...]) -> str:
    """The paper's network for data of this per-sample shape (1 x 256 signals: 001 App. D.1;
    1 x 28 x 28 images: App. D.2; 3 x 64 x 64 images: App. D.3; 1 x 64 x 64 images: 003
    Table 4's 3D Shapes network), an MLP on the flattened sample otherwise."""
    return DEFAULTS.get(tuple(sample_shape), "mlp")


def build_nets(name: str, sample_shape: tuple[int, ...],
               latent_dim: int) -> tuple[nn.Module, int, nn.Module]:
    """(encoder backbone, its feature size, decoder) of network ``name`` for this data."""
    if name not in NETS:
        raise ValueError(f"unknown network {name!r}; use one of {', '.join(NETS)}")
    shape = tuple(sample_shape)
    if (name in SHAPES and shape != SHAPES[name]) or (
            name == "shapes-conv" and (len(shape) != 3 or shape[1:] != (64, 64))):
        needs = SHAPES.get(name, "C x 64 x 64")
        raise ValueError(f"the {name} network needs samples of shape {needs}, got {shape}; "
                         "use --net mlp")
    return NETS[name](shape, latent_dim)
