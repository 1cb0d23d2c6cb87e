"""The CelebA network of 001 App. D.3 (the WAE network): 64x64x3 images."""

from __future__ import annotations

from torch import nn

CELEBA_SHAPE = (3, 64, 64)


def _encoder() -> nn.Sequential:
    """x [M, 3, 64, 64] -> Conv 128, 256, 512, 1024 (5x5, stride 2) + ReLU -> 4x4x1024 features
    (the mu and sigma heads are FC64 on these, as in App. D.3)."""
    layers: list[nn.Module] = []
    for c_in, c_out in ((3, 128), (128, 256), (256, 512), (512, 1024)):
        layers += [nn.Conv2d(c_in, c_out, 5, stride=2, padding=2), nn.ReLU()]
    return nn.Sequential(*layers, nn.Flatten())


def _decoder(latent_dim: int) -> nn.Sequential:
    """z -> FC 8x8x1024 -> ReLU -> TConv 512, 256, 128 (5x5, stride 2) + BN + ReLU
    -> TConv 3 (5x5, stride 1) -> [M, 3, 64, 64].

    App. D.3 prints 1 filter in the last layer; an RGB image needs 3 (docs/deviations.md).
    """
    layers: list[nn.Module] = [nn.Linear(latent_dim, 8 * 8 * 1024), nn.ReLU(),
                               nn.Unflatten(1, (1024, 8, 8))]
    for c_in, c_out in ((1024, 512), (512, 256), (256, 128)):  # 'SAME': size x 2
        layers += [nn.ConvTranspose2d(c_in, c_out, 5, stride=2, padding=2, output_padding=1),
                   nn.BatchNorm2d(c_out), nn.ReLU()]
    layers.append(nn.ConvTranspose2d(128, 3, 5, stride=1, padding=2))
    return nn.Sequential(*layers)


def celeba_nets(sample_shape: tuple[int, ...], latent_dim: int) -> tuple[nn.Module, int, nn.Module]:
    return _encoder(), 4 * 4 * 1024, _decoder(latent_dim)
