"""The sine-wave network of 001 App. D.1 (1-D convolutions, 'SAME' padding); its
convolutions are wiseale.nets.layout's, torch's own until built channels-last on a CPU."""

from __future__ import annotations

from torch import nn

from wiseale.nets.layout import Conv1d, ConvTranspose1d

SINE_LENGTH = 256


def _encoder() -> nn.Sequential:
    """x [M, 1, 256] -> 5 strided Conv1d (16,16,32,32 filters of 16; 64 of 8) -> FC64."""
    layers: list[nn.Module] = []
    channels = [(1, 16, 16), (16, 16, 16), (16, 32, 16), (32, 32, 16), (32, 64, 8)]
    for c_in, c_out, k in channels:  # stride 2 with TF 'SAME' padding halves the length
        layers += [Conv1d(c_in, c_out, k, stride=2, padding=(k - 2) // 2), nn.ReLU()]
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(64 * 8, 64))


def _decoder(latent_dim: int) -> nn.Sequential:
    """z -> FC16 -> ReLU -> 1x1 conv 128 -> 4 transposed convs of stride 4 -> x_hat [M, 1, 256].

    The paper ends with a ReLU, which cannot output the negative half of a sine wave; the
    last layer here is linear (docs/deviations.md).
    """
    layers: list[nn.Module] = [nn.Linear(latent_dim, 16), nn.ReLU(), nn.Unflatten(1, (16, 1)),
                               Conv1d(16, 128, 1), nn.ReLU()]
    channels = [(128, 64, 8), (64, 32, 16), (32, 16, 16), (16, 1, 16)]
    for index, (c_in, c_out, k) in enumerate(channels):  # 'SAME': length x 4 at each layer
        layers.append(ConvTranspose1d(c_in, c_out, k, stride=4, padding=(k - 4) // 2))
        if index < len(channels) - 1:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def sine_nets(sample_shape: tuple[int, ...], latent_dim: int) -> tuple[nn.Module, int, nn.Module]:
    return _encoder(), 64, _decoder(latent_dim)
