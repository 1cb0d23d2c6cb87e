"""The networks of 004 Supplement B (learned variance): ``lv-mnist`` (B.1, 1x28x28 MNIST and
Fashion MNIST) and ``lv-celeba`` (B.2, 3x128x128 CelebA), each with the paper's optional
pixel-wise variance branch.

The decoder returns the mean of p(x|z) [M, C, H, W]; with ``variance_head=True`` it returns
``torch.cat([mean, v], dim=1)`` [M, 2C, H, W], where v >= 0 is the variance branch's
one-channel output repeated over the C channels. The trunk up to the branch point is computed
once, and the branch leaves the mean unchanged.

TensorFlow's 'SAME' padding is exact everywhere: every stride-2 convolution here pads (1, 1)
(even sizes, 4x4 kernel) and every 3x3 convolution pads (1, 1); the 4x4 stride-4 transposed
convolutions need none and the 4x4 stride-2 one crops (1, 1) (``padding=1``).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from wiseale.nets.mnist import MNIST_SHAPE

LV_CELEBA_SHAPE = (3, 128, 128)
# 004 does not give the Leaky ReLU's slope; 0.2 is TensorFlow's ``tf.nn.leaky_relu`` default
# (docs/deviations.md).
LEAKY_SLOPE = 0.2


def symmetric_pad(x: Tensor, padding: tuple[int, int, int, int]) -> Tensor:
    """TensorFlow's ``tf.pad(mode="SYMMETRIC")`` (= ``numpy.pad(mode="symmetric")``) of the last
    two dimensions: a mirror image that includes the edge pixel (``abc`` padded by 2 is
    ``ba|abc|cb``). ``padding`` is (left, right, top, bottom), as for ``torch.nn.functional.pad``;
    PyTorch's ``reflect`` mode leaves the edge out and has no symmetric mode."""
    left, right, top, bottom = padding
    for dim, before, after in ((-1, left, right), (-2, top, bottom)):
        size = x.shape[dim]
        if min(before, after) < 0 or max(before, after) > size:
            raise ValueError(f"symmetric padding needs 0 <= padding <= {size}, "
                             f"got ({before}, {after})")
        x = torch.cat([x.narrow(dim, 0, before).flip(dim), x,
                       x.narrow(dim, size - after, after).flip(dim)], dim)
    return x


class SymmetricPad2d(nn.Module):
    """:func:`symmetric_pad` as a layer; an int pads every side by that many pixels."""

    def __init__(self, padding: int | tuple[int, int, int, int]):
        super().__init__()
        self.padding = (padding,) * 4 if isinstance(padding, int) else tuple(padding)

    def forward(self, x: Tensor) -> Tensor:
        return symmetric_pad(x, self.padding)

    def extra_repr(self) -> str:
        return f"padding={self.padding}"


class BranchedDecoder(nn.Module):
    """z -> ``trunk`` -> h; returns ``mean(h)``, or with a ``variance`` branch
    ``cat([mean(h), variance(h) repeated to the mean's channels], dim=1)``."""

    def __init__(self, trunk: nn.Module, mean: nn.Module, variance: nn.Module | None = None):
        super().__init__()
        # None stays a plain attribute, not a None child module: load_state_dict then reports
        # a variance branch's keys as unexpected
        self.trunk, self.mean, self.variance = trunk, mean, variance

    @property
    def variance_head(self) -> bool:
        return self.variance is not None

    def forward(self, z: Tensor) -> Tensor:
        h = self.trunk(z)
        mean = self.mean(h)
        if self.variance is None:
            return mean
        v = self.variance(h)
        return torch.cat([mean, v.expand(-1, mean.shape[1], -1, -1)], dim=1)


def _conv_same(c_in: int, c_out: int, kernel: int) -> nn.Conv2d:
    """A stride-1 convolution with TensorFlow 'SAME' size (odd kernel: symmetric padding)."""
    return nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2)


def _mnist_encoder() -> nn.Sequential:
    """x [M, 1, 28, 28] -> symmetric padding -> 32x32 -> Conv 16, 64, 256 (4x4, stride 2,
    'SAME') + ReLU -> 16, 8, 4 -> flatten -> FC64 (linear; FC_dz mu and sigma heads follow in
    the encoder-noise module)."""
    layers: list[nn.Module] = [SymmetricPad2d(2)]
    for c_in, c_out in ((1, 16), (16, 64), (64, 256)):
        layers += [nn.Conv2d(c_in, c_out, 4, stride=2, padding=1), nn.ReLU()]
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(256 * 4 * 4, 64))


def _mnist_decoder(latent_dim: int, variance_head: bool) -> BranchedDecoder:
    """z -> FC4096 -> ReLU -> 1x1x4096 -> depth to space 4 -> 4x4x256 -> Conv256 3x3 + ReLU
    -> d2s 2 -> 8x8x64 -> Conv64 3x3 + ReLU [branch point] -> d2s 2 -> 16x16x16 -> Conv16 3x3
    + ReLU -> d2s 2 -> 32x32x4 -> Conv1 5x5 'valid' -> 28x28 -> Sigmoid: a mean in [0, 1]
    (not logits, unlike ``mnist-conv``).

    Variance branch, from the 8x8x64 output of Conv64 + ReLU (004 prints the branch at
    "8x8x64 (from decoder)", which the d2s output has too; docs/deviations.md): Conv128 3x3 +
    ReLU -> d2s 2 -> 16x16x32 -> Conv32 3x3 + ReLU -> d2s 2 -> 32x32x8 -> Conv1 5x5 'valid'
    -> Sigmoid -> v in [0, 1], 28x28.

    Depth to space is ``nn.PixelShuffle``. TensorFlow's ``depth_to_space`` (NHWC) takes the
    block offset as the major part of the channel index, PixelShuffle the output channel;
    the two differ by a fixed permutation of the input channels, which the learned layer
    before every d2s absorbs, so they give the same functions (tests/test_nets_lv.py).
    """
    trunk = nn.Sequential(nn.Linear(latent_dim, 4096), nn.ReLU(), nn.Unflatten(1, (4096, 1, 1)),
                          nn.PixelShuffle(4), _conv_same(256, 256, 3), nn.ReLU(),
                          nn.PixelShuffle(2), _conv_same(64, 64, 3), nn.ReLU())
    mean = nn.Sequential(nn.PixelShuffle(2), _conv_same(16, 16, 3), nn.ReLU(),
                         nn.PixelShuffle(2), nn.Conv2d(4, 1, 5), nn.Sigmoid())
    variance = nn.Sequential(_conv_same(64, 128, 3), nn.ReLU(), nn.PixelShuffle(2),
                             _conv_same(32, 32, 3), nn.ReLU(), nn.PixelShuffle(2),
                             nn.Conv2d(8, 1, 5), nn.Sigmoid())
    return BranchedDecoder(trunk, mean, variance if variance_head else None)


def _celeba_encoder() -> nn.Sequential:
    """x [M, 3, 128, 128] -> Conv 32, 64, 128, 256, 512 (4x4, stride 2, 'SAME') + Leaky ReLU
    -> 64, 32, 16, 8, 4 -> Conv1024 (4x4, stride 2, 'valid') + Leaky ReLU -> 1x1 -> flatten
    -> FC512 (linear; the FC_dz heads follow in the encoder-noise module)."""
    layers: list[nn.Module] = []
    for c_in, c_out in ((3, 32), (32, 64), (64, 128), (128, 256), (256, 512)):
        layers += [nn.Conv2d(c_in, c_out, 4, stride=2, padding=1), nn.LeakyReLU(LEAKY_SLOPE)]
    layers += [nn.Conv2d(512, 1024, 4, stride=2), nn.LeakyReLU(LEAKY_SLOPE)]
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(1024, 512))


def _tconv_bn_lrelu(c_in: int, c_out: int, batch_norm: bool = True) -> list[nn.Module]:
    """TConv[c_out, 4x4, stride 4] ('SAME': size x 4, no cropping) [+ BN] + Leaky ReLU."""
    return [nn.ConvTranspose2d(c_in, c_out, 4, stride=4),
            *([nn.BatchNorm2d(c_out)] if batch_norm else []), nn.LeakyReLU(LEAKY_SLOPE)]


def _celeba_decoder(latent_dim: int, variance_head: bool) -> BranchedDecoder:
    """z -> FC256 -> Leaky ReLU -> 1x1x256 -> Conv4096 1x1 -> TConv1024 (4x4, stride 1) + BN +
    Leaky ReLU -> 1x1x1024 -> TConv512 (4x4, stride 4) + BN + LReLU -> 4x4x512 [branch point]
    -> TConv256 (s4) + BN + LReLU -> 16x16 -> TConv128 (s4) + BN + LReLU -> 64x64 -> TConv3
    (4x4, stride 2, ``padding=1``) -> 128x128x3, the mean (unbounded: no output activation,
    as in 004; 004 prints 64x64x3, a typo).

    Variance branch from the 4x4x512 point: TConv256 (s4) + LReLU -> TConv128 (s4) + LReLU
    -> TConv1 (4x4, s2) -> softplus -> v > 0, 128x128 (004 has no output activation, which
    would allow a negative variance; docs/deviations.md).

    The TConv1024 (4x4, stride 1, 'SAME') acts on a 1x1 map. TensorFlow's transposed
    convolution is the gradient of a 'SAME' convolution, which pads (1, 2) for a 4x4 kernel,
    so on a 1x1 input only the kernel's tap (1, 1) reaches the 1x1 output: the layer is a
    1x1 transposed convolution, and is built as one (the same functions; 4096 x 1024 + 1024
    parameters instead of 16 x 4096 x 1024 + 1024, whose other 15 taps never get a gradient;
    tests/test_nets_lv.py, docs/deviations.md). The Conv4096 1x1 before it has no activation,
    as printed.
    """
    trunk = nn.Sequential(nn.Linear(latent_dim, 256), nn.LeakyReLU(LEAKY_SLOPE),
                          nn.Unflatten(1, (256, 1, 1)), nn.Conv2d(256, 4096, 1),
                          nn.ConvTranspose2d(4096, 1024, 1), nn.BatchNorm2d(1024),
                          nn.LeakyReLU(LEAKY_SLOPE), *_tconv_bn_lrelu(1024, 512))
    mean = nn.Sequential(*_tconv_bn_lrelu(512, 256), *_tconv_bn_lrelu(256, 128),
                         nn.ConvTranspose2d(128, 3, 4, stride=2, padding=1))
    variance = nn.Sequential(*_tconv_bn_lrelu(512, 256, batch_norm=False),
                             *_tconv_bn_lrelu(256, 128, batch_norm=False),
                             nn.ConvTranspose2d(128, 1, 4, stride=2, padding=1), nn.Softplus())
    return BranchedDecoder(trunk, mean, variance if variance_head else None)


def lv_nets(sample_shape: tuple[int, ...], latent_dim: int,
            variance_head: bool = False) -> tuple[nn.Module, int, nn.Module]:
    """004 Supplement B's (encoder backbone, feature size, decoder) for 1x28x28 (B.1) or
    3x128x128 (B.2) samples; ``variance_head`` adds the pixel-wise variance branch to the
    decoder (see the module docstring for its output)."""
    shape = tuple(sample_shape)
    if shape == MNIST_SHAPE:
        return _mnist_encoder(), 64, _mnist_decoder(latent_dim, variance_head)
    if shape == LV_CELEBA_SHAPE:
        return _celeba_encoder(), 512, _celeba_decoder(latent_dim, variance_head)
    raise ValueError(f"004's networks take samples of shape {MNIST_SHAPE} or {LV_CELEBA_SHAPE}, "
                     f"got {shape}")
