"""A multi-layer perceptron for flat data (or any data, flattened)."""

from __future__ import annotations

import math

from torch import nn

HIDDEN = (512, 256)


def mlp_nets(sample_shape: tuple[int, ...], latent_dim: int) -> tuple[nn.Module, int, nn.Module]:
    """Encoder D -> 512 -> 256 (ReLU); decoder z -> 256 -> 512 -> D, reshaped to the sample."""
    d = math.prod(sample_shape)
    encoder = nn.Sequential(nn.Flatten(), nn.Linear(d, HIDDEN[0]), nn.ReLU(),
                            nn.Linear(HIDDEN[0], HIDDEN[1]), nn.ReLU())
    decoder = nn.Sequential(nn.Linear(latent_dim, HIDDEN[1]), nn.ReLU(),
                            nn.Linear(HIDDEN[1], HIDDEN[0]), nn.ReLU(),
                            nn.Linear(HIDDEN[0], d), nn.Unflatten(1, tuple(sample_shape)))
    return encoder, HIDDEN[1], decoder
