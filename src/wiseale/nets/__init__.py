"""The papers' network architectures, as (encoder backbone, feature size, decoder) triples.

A backbone maps x to features; the encoder-noise module adds its heads. A decoder maps z to
the likelihood's parameters with x's shape; 004's networks (``lv-mnist``, ``lv-celeba``) can
add a pixel-wise variance branch, whose decoder returns the mean and the variance
concatenated on the channels (``nets/lv.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from wiseale.nets.celeba import CELEBA_SHAPE, celeba_nets
from wiseale.nets.lv import LV_CELEBA_SHAPE, lv_nets
from wiseale.nets.mlp import mlp_nets
from wiseale.nets.mnist import MNIST_SHAPE, mnist_nets
from wiseale.nets.shapes import shapes_nets
from wiseale.nets.sine import SINE_LENGTH, sine_nets
from wiseale.nets.vcae import celeba_vcae_nets, mnist_vcae_nets
from wiseale.registry import Registry


@dataclass(frozen=True)
class Network:
    """A network of the papers: ``build(sample_shape, latent_dim, **kwargs)`` gives (encoder
    backbone, feature size, decoder). ``shape`` is the per-sample shape it takes (None: any;
    a None entry: any size there); it is the default network of the shapes in
    ``default_for``; ``variance_head``: it has 004's pixel-wise variance branch;
    ``channels_last``: on a CPU its convolutions run faster with their weights in
    channels-last layout (``wiseale.nets.layout``; measured in docs/performance.md,
    "Channels-last weights")."""

    name: str
    build: Callable[..., tuple[nn.Module, int, nn.Module]]
    source: str
    shape: tuple[int | None, ...] | None = None
    default_for: tuple[tuple[int, ...], ...] = ()
    variance_head: bool = False
    channels_last: bool = False

    def takes(self, shape: tuple[int, ...]) -> bool:
        """Whether samples of ``shape`` fit the network."""
        return self.shape is None or (len(shape) == len(self.shape) and all(
            want is None or want == got for want, got in zip(self.shape, shape, strict=True)))

    @property
    def shape_text(self) -> str:
        """The shape it takes, as errors write it: (1, 28, 28), or C x 64 x 64."""
        if self.shape is None or None not in self.shape:
            return str(self.shape)
        return " x ".join("C" if n is None else str(n) for n in self.shape)


NETWORKS: Registry[Network] = Registry("network")
for _network in (
        Network("sine-conv", sine_nets, "001 App. D.1", (1, SINE_LENGTH), ((1, SINE_LENGTH),),
                channels_last=True),
        Network("mnist-conv", mnist_nets, "001 App. D.2", MNIST_SHAPE, (MNIST_SHAPE,),
                channels_last=True),
        Network("celeba-conv", celeba_nets, "001 App. D.3", CELEBA_SHAPE, (CELEBA_SHAPE,)),
        Network("shapes-conv", shapes_nets, "003 Table 4 (3D Shapes)", (None, 64, 64),
                ((1, 64, 64),), channels_last=True),
        Network("mnist-vcae", mnist_vcae_nets, "003 Table 4", MNIST_SHAPE),
        Network("celeba-vcae", celeba_vcae_nets, "003 Table 4", CELEBA_SHAPE),
        Network("lv-mnist", lv_nets, "004 Supp. B.1", MNIST_SHAPE, variance_head=True),
        Network("lv-celeba", lv_nets, "004 Supp. B.2", LV_CELEBA_SHAPE, (LV_CELEBA_SHAPE,),
                variance_head=True),
        Network("mlp", mlp_nets, "a 512-256 MLP on the flattened sample")):
    NETWORKS.register(_network)
VARIANCE_NETS = tuple(name for name, network in NETWORKS.items() if network.variance_head)


def default_net(sample_shape: tuple[int, ...]) -> str:
    """The paper's network for data of this per-sample shape (1 x 256 signals: 001 App. D.1;
    1 x 28 x 28 images: App. D.2; 3 x 64 x 64 images: App. D.3; 1 x 64 x 64 images: 003
    Table 4's 3D Shapes network; 3 x 128 x 128 images: 004 Supplement B.2), an MLP on the
    flattened sample otherwise."""
    shape = tuple(sample_shape)
    return next((name for name, network in NETWORKS.items() if shape in network.default_for),
                "mlp")


def build_nets(name: str, sample_shape: tuple[int, ...], latent_dim: int, *,
               variance_head: bool = False) -> tuple[nn.Module, int, nn.Module]:
    """(encoder backbone, its feature size, decoder) of network ``name`` for this data;
    ``variance_head`` adds 004's pixel-wise variance branch (``VARIANCE_NETS`` only)."""
    if name not in NETWORKS:
        raise ValueError(f"unknown network {name!r}; use one of {', '.join(NETWORKS)}")
    network = NETWORKS[name]
    if variance_head and not network.variance_head:
        raise ValueError("the pixel-wise variance needs a network with a variance branch; "
                         f"use --net {' or '.join(VARIANCE_NETS)}, not {name}")
    shape = tuple(sample_shape)
    if not network.takes(shape):
        raise ValueError(f"the {name} network needs samples of shape {network.shape_text}, "
                         f"got {shape}; use --net mlp")
    if network.variance_head:
        return network.build(shape, latent_dim, variance_head=variance_head)
    return network.build(shape, latent_dim)
