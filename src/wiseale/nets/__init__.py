"""The papers' network architectures, as (encoder backbone, feature size, decoder) triples.

A backbone maps x to features; the encoder-noise module adds its heads. A decoder maps z to
the likelihood's parameters with x's shape; 004's networks (``lv-mnist``, ``lv-celeba``) can
add a pixel-wise variance branch, whose decoder returns the mean and the variance
concatenated on the channels (``nets/lv.py``).
"""

from __future__ import annotations

from torch import nn

from wiseale.nets.celeba import CELEBA_SHAPE, celeba_nets
from wiseale.nets.lv import LV_CELEBA_SHAPE, lv_nets
from wiseale.nets.mlp import mlp_nets
from wiseale.nets.mnist import MNIST_SHAPE, mnist_nets
from wiseale.nets.shapes import shapes_nets
from wiseale.nets.sine import SINE_LENGTH, sine_nets
from wiseale.nets.vcae import celeba_vcae_nets, mnist_vcae_nets

NETS = {"sine-conv": sine_nets, "mnist-conv": mnist_nets, "celeba-conv": celeba_nets,
        "shapes-conv": shapes_nets, "mnist-vcae": mnist_vcae_nets,
        "celeba-vcae": celeba_vcae_nets, "lv-mnist": lv_nets, "lv-celeba": lv_nets,
        "mlp": mlp_nets}
SHAPES = {"sine-conv": (1, SINE_LENGTH), "mnist-conv": MNIST_SHAPE, "celeba-conv": CELEBA_SHAPE,
          "mnist-vcae": MNIST_SHAPE, "celeba-vcae": CELEBA_SHAPE, "lv-mnist": MNIST_SHAPE,
          "lv-celeba": LV_CELEBA_SHAPE}
# Spelled out, not derived from SHAPES: several networks take the same shape (003 Table 4's
# mnist-vcae and celeba-vcae and 004's lv-mnist are chosen with --net only).
DEFAULTS = {(1, SINE_LENGTH): "sine-conv", MNIST_SHAPE: "mnist-conv", CELEBA_SHAPE: "celeba-conv",
            (1, 64, 64): "shapes-conv", LV_CELEBA_SHAPE: "lv-celeba"}
# The networks with 004's pixel-wise variance branch (build_nets' variance_head).
VARIANCE_NETS = ("lv-mnist", "lv-celeba")


def default_net(sample_shape: tuple[int, ...]) -> str:
    """The paper's network for data of this per-sample shape (1 x 256 signals: 001 App. D.1;
    1 x 28 x 28 images: App. D.2; 3 x 64 x 64 images: App. D.3; 1 x 64 x 64 images: 003
    Table 4's 3D Shapes network; 3 x 128 x 128 images: 004 Supplement B.2), an MLP on the
    flattened sample otherwise."""
    return DEFAULTS.get(tuple(sample_shape), "mlp")


def build_nets(name: str, sample_shape: tuple[int, ...], latent_dim: int, *,
               variance_head: bool = False) -> tuple[nn.Module, int, nn.Module]:
    """(encoder backbone, its feature size, decoder) of network ``name`` for this data;
    ``variance_head`` adds 004's pixel-wise variance branch (``VARIANCE_NETS`` only)."""
    if name not in NETS:
        raise ValueError(f"unknown network {name!r}; use one of {', '.join(NETS)}")
    if variance_head and name not in VARIANCE_NETS:
        raise ValueError("the pixel-wise variance needs a network with a variance branch; "
                         f"use --net {' or '.join(VARIANCE_NETS)}, not {name}")
    shape = tuple(sample_shape)
    if (name in SHAPES and shape != SHAPES[name]) or (
            name == "shapes-conv" and (len(shape) != 3 or shape[1:] != (64, 64))):
        needs = SHAPES.get(name, "C x 64 x 64")
        raise ValueError(f"the {name} network needs samples of shape {needs}, got {shape}; "
                         "use --net mlp")
    if name in VARIANCE_NETS:
        return NETS[name](shape, latent_dim, variance_head=variance_head)
    return NETS[name](shape, latent_dim)
