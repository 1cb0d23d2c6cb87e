"""The MNIST and CelebA networks of 003 Table 4: Tolstikhin et al.'s WAE networks (their
``dcgan`` encoder and ``dcgan_mod`` decoder, with batch norm in both) with TensorFlow 'SAME'
output sizes.

``mnist-vcae`` is the network of 003 App. B.1-B.3, padded exactly as TensorFlow pads.
``celeba-vcae`` is 001 App. D.3's ``celeba-conv`` with batch norm in the encoder; its decoder
is ``celeba-conv``'s, whose 5x5 transposed convolutions split the padding one pixel
differently from TensorFlow (docs/deviations.md).
"""

from __future__ import annotations

from torch import nn

from wiseale.nets.celeba import _decoder as celeba_decoder
from wiseale.nets.mnist import MNIST_SHAPE


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow's 'SAME' padding (before, after) of one spatial dimension: the output has
    ceil(size / stride) positions and an odd total puts the extra pixel after."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def conv_bn_encoder(sample_shape: tuple[int, ...], widths: tuple[int, ...],
                    kernel: int) -> tuple[nn.Sequential, int]:
    """x [M, C, H, H] -> per width: Conv[width, kernel, stride 2] ('SAME'), BN, ReLU -> Flatten;
    returns the backbone and its feature size (003 Table 4's encoders without the final
    Dense[d_z], which is the encoder noise's head).

    The padding is explicit (``ZeroPad2d``) because 'SAME' pads unevenly, one pixel more after
    than before, whenever the total is odd (28 -> 14 -> 7 -> 4 -> 2 with 4x4 kernels; every
    step of 64 -> 4 with 5x5 kernels)."""
    channels, size = sample_shape[0], sample_shape[-1]
    layers: list[nn.Module] = []
    for width in widths:
        before, after = same_padding(size, kernel, 2)
        layers += [nn.ZeroPad2d((before, after, before, after)),
                   nn.Conv2d(channels, width, kernel, stride=2), nn.BatchNorm2d(width), nn.ReLU()]
        channels, size = width, -(-size // 2)
    return nn.Sequential(*layers, nn.Flatten()), channels * size * size


def _mnist_decoder(latent_dim: int) -> nn.Sequential:
    """z -> Dense[7x7x1024] -> ReLU -> TConv 512, 256 (4x4, stride 2) + BN + ReLU
    -> TConv 1 (4x4, stride 1) -> [M, 1, 28, 28] logits (003 Table 4, MNIST).

    The ReLU after the dense layer is not printed in Table 4; Tolstikhin et al.'s
    ``dcgan_decoder``, which the table follows, applies it (as 001 App. D.3 does), so it is kept
    (docs/deviations.md).

    The stride-2 layers use ``padding=1``: for a 4x4 kernel TensorFlow's 'SAME' crops one
    pixel on each side too, so the output is exactly twice the input, as in TensorFlow.

    The last layer is a stride-1 transposed convolution with 'SAME' size. Its transposed
    convolution is the gradient of a 'SAME' convolution, which pads (1, 2) for a 4x4 kernel,
    so TensorFlow crops 1 pixel before and 2 after the full (n + 3)-pixel output; PyTorch's
    ``ConvTranspose2d`` crops symmetrically and cannot do that. A stride-1 transposed
    convolution is a convolution with the kernel flipped, and cropping (1, 2) of its output
    is padding its input by (4 - 1 - 1, 4 - 1 - 2) = (2, 1): ``ZeroPad2d((2, 1, 2, 1))`` +
    ``Conv2d(256, 1, 4)`` computes the same functions with the same 4x4x256 + 1 parameters
    (tests/test_nets_vcae.py checks the equality with a copied kernel).
    """
    layers: list[nn.Module] = [nn.Linear(latent_dim, 7 * 7 * 1024), nn.ReLU(),
                               nn.Unflatten(1, (1024, 7, 7))]
    for c_in, c_out in ((1024, 512), (512, 256)):  # 7 -> 14 -> 28
        layers += [nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1),
                   nn.BatchNorm2d(c_out), nn.ReLU()]
    layers += [nn.ZeroPad2d((2, 1, 2, 1)), nn.Conv2d(256, MNIST_SHAPE[0], 4)]
    return nn.Sequential(*layers)


def mnist_vcae_nets(sample_shape: tuple[int, ...],
                    latent_dim: int) -> tuple[nn.Module, int, nn.Module]:
    """003 Table 4, MNIST: Conv 128, 256, 512, 1024 (4x4, stride 2) + BN + ReLU -> 2x2x1024
    features; the decoder of :func:`_mnist_decoder`."""
    encoder, features = conv_bn_encoder(sample_shape, (128, 256, 512, 1024), 4)
    return encoder, features, _mnist_decoder(latent_dim)


def celeba_vcae_nets(sample_shape: tuple[int, ...],
                     latent_dim: int) -> tuple[nn.Module, int, nn.Module]:
    """003 Table 4, CelebA: Conv 128, 256, 512, 1024 (5x5, stride 2) + BN + ReLU -> 4x4x1024
    features; the decoder is ``celeba-conv``'s (Dense[8x8x1024], ReLU, TConv 512, 256, 128 with
    BN + ReLU, TConv 3), which is the same as Table 4's. Unlike ``celeba-conv``'s encoder, this
    one pads as TensorFlow does (1 before, 2 after)."""
    encoder, features = conv_bn_encoder(sample_shape, (128, 256, 512, 1024), 5)
    return encoder, features, celeba_decoder(latent_dim)

