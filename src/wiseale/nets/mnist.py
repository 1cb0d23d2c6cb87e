"""The MNIST network of 001 App. D.2: a convolutional encoder and a fully connected decoder."""

from __future__ import annotations

from torch import nn

MNIST_SHAPE = (1, 28, 28)


def _encoder() -> nn.Sequential:
    """x [M, 1, 28, 28] -> Conv 16, 32, 64 (4x4, stride 2, 'SAME') + ReLU -> FC32.

    'SAME' halves 28 -> 14 -> 7 -> 4; the last step needs TensorFlow's uneven padding
    (1 before, 2 after), so padding is explicit.
    """
    layers: list[nn.Module] = []
    for c_in, c_out, pad in ((1, 16, (1, 1, 1, 1)), (16, 32, (1, 1, 1, 1)),
                             (32, 64, (1, 2, 1, 2))):
        layers += [nn.ZeroPad2d(pad), nn.Conv2d(c_in, c_out, 4, stride=2), nn.ReLU()]
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(64 * 4 * 4, 32))


def _decoder(latent_dim: int) -> nn.Sequential:
    """z -> FC16 -> ReLU -> FC128 -> ReLU -> FC784 -> [M, 1, 28, 28].

    The paper's final sigmoid belongs to the likelihood here: the Bernoulli likelihood takes
    these outputs as logits (docs/deviations.md).
    """
    return nn.Sequential(nn.Linear(latent_dim, 16), nn.ReLU(), nn.Linear(16, 128), nn.ReLU(),
                         nn.Linear(128, 784), nn.Unflatten(1, MNIST_SHAPE))


def mnist_nets(sample_shape: tuple[int, ...], latent_dim: int) -> tuple[nn.Module, int, nn.Module]:
    return _encoder(), 32, _decoder(latent_dim)
