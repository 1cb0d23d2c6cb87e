"""The 3D Shapes network of 003 Table 4 (after Kim & Mnih 2018), for C x 64 x 64 images."""

from __future__ import annotations

from torch import nn


def _encoder(channels: int) -> nn.Sequential:
    """x [M, C, 64, 64] -> Conv 32, 32, 64, 64 (4x4, stride 2) + ReLU -> Dense256 (features;
    the heads are Dense[d_z] as in Table 4)."""
    layers: list[nn.Module] = []
    for c_in, c_out in ((channels, 32), (32, 32), (32, 64), (64, 64)):
        layers += [nn.Conv2d(c_in, c_out, 4, stride=2, padding=1), nn.ReLU()]
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(64 * 4 * 4, 256))


def _decoder(latent_dim: int, channels: int) -> nn.Sequential:
    """z -> Dense256 -> ReLU -> Dense 4x4x64 -> ReLU -> TConv 64, 32, 32 (4x4, stride 2) + ReLU
    -> TConv C (4x4, stride 2) -> [M, C, 64, 64]. Table 4 lists the first three transposed
    convolutions; the fourth, to the image's channels, is the one that reaches 64x64."""
    layers: list[nn.Module] = [nn.Linear(latent_dim, 256), nn.ReLU(),
                               nn.Linear(256, 4 * 4 * 64), nn.ReLU(), nn.Unflatten(1, (64, 4, 4))]
    for c_in, c_out in ((64, 64), (64, 32), (32, 32)):
        layers += [nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1), nn.ReLU()]
    layers.append(nn.ConvTranspose2d(32, channels, 4, stride=2, padding=1))
    return nn.Sequential(*layers)


def shapes_nets(sample_shape: tuple[int, ...], latent_dim: int) -> tuple[nn.Module, int, nn.Module]:
    channels = sample_shape[0]
    return _encoder(channels), 256, _decoder(latent_dim, channels)
