"""004 Supplement B's networks (lv-mnist, lv-celeba) and their pixel-wise variance branch."""

import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from wiseale.nets import NETWORKS, VARIANCE_NETS, build_nets, default_net
from wiseale.nets.lv import BranchedDecoder, SymmetricPad2d, lv_nets, symmetric_pad

SIZED = (nn.Conv2d, nn.ConvTranspose2d, nn.PixelShuffle, SymmetricPad2d, nn.Unflatten)


def _shapes(net: nn.Sequential, x: torch.Tensor) -> tuple[list[tuple[int, ...]], torch.Tensor]:
    """(C, H, W) after every layer that changes sizes, and the output."""
    shapes = []
    for layer in net:
        x = layer(x)
        if isinstance(layer, SIZED):
            shapes.append(tuple(x.shape[1:]))
    return shapes, x


def _kinds(net: nn.Sequential) -> list[str]:
    return [type(m).__name__ for m in net]


def _params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("size, pads", [
    ((1, 1, 28, 28), (2, 2, 2, 2)), ((2, 3, 5, 7), (1, 3, 0, 2)), ((1, 2, 4, 4), (4, 4, 4, 4))])
def test_symmetric_pad_is_numpys(size, pads):
    x = torch.randn(*size)
    left, right, top, bottom = pads
    expected = np.pad(x.numpy(), ((0, 0), (0, 0), (top, bottom), (left, right)), mode="symmetric")
    assert np.array_equal(symmetric_pad(x, pads).numpy(), expected)
    assert torch.equal(SymmetricPad2d(pads)(x), symmetric_pad(x, pads))
    # the edge pixel is repeated (TensorFlow's SYMMETRIC), unlike PyTorch's reflect
    row = symmetric_pad(torch.arange(3.0).view(1, 1, 1, 3), (2, 2, 0, 0)).flatten()
    assert row.tolist() == [1, 0, 0, 1, 2, 2, 1]
    with pytest.raises(ValueError, match="symmetric padding needs"):
        symmetric_pad(torch.zeros(1, 1, 3, 3), (4, 0, 0, 0))


def test_pixel_shuffle_is_tensorflows_depth_to_space_up_to_a_channel_permutation():
    """TensorFlow (NHWC): out[h r + i, w r + j, c] = in[h, w, (i r + j) C + c]; PixelShuffle:
    out[c, h r + i, w r + j] = in[c r^2 + i r + j, h, w]. A fixed permutation of the input
    channels, which the learned layer before it absorbs, turns one into the other."""
    r, c, h = 2, 3, 4
    x = torch.randn(2, r * r * c, h, h)
    nhwc = x.permute(0, 2, 3, 1).numpy()
    tf = nhwc.reshape(2, h, h, r, r, c).transpose(0, 1, 3, 2, 4, 5).reshape(2, h * r, h * r, c)
    perm = [k * c + ch for ch in range(c) for k in range(r * r)]
    ours = nn.PixelShuffle(r)(x[:, perm]).permute(0, 2, 3, 1).numpy()
    assert np.array_equal(ours, tf)
    assert not np.array_equal(nn.PixelShuffle(r)(x).permute(0, 2, 3, 1).numpy(), tf)


def test_lv_mnist_sizes_follow_supplement_b1():
    torch.manual_seed(0)
    enc, feat, dec = build_nets("lv-mnist", (1, 28, 28), 16, variance_head=True)
    shapes, h = _shapes(enc, torch.rand(2, 1, 28, 28))
    assert shapes == [(1, 32, 32), (16, 16, 16), (64, 8, 8), (256, 4, 4)]
    assert h.shape == (2, feat) == (2, 64)
    assert _kinds(enc) == ["SymmetricPad2d"] + ["Conv2d", "ReLU"] * 3 + ["Flatten", "Linear"]
    convs = [m for m in enc if isinstance(m, nn.Conv2d)]
    assert [(m.kernel_size, m.stride) for m in convs] == [((4, 4), (2, 2))] * 3

    assert isinstance(dec, BranchedDecoder) and dec.variance_head
    shapes, trunk = _shapes(dec.trunk, torch.randn(2, 16))
    assert shapes == [(4096, 1, 1), (256, 4, 4), (256, 4, 4), (64, 8, 8), (64, 8, 8)]
    assert isinstance(dec.trunk[-1], nn.ReLU)  # the branch point: Conv64 3x3 + ReLU
    shapes, mean = _shapes(dec.mean, trunk)
    assert shapes == [(16, 16, 16), (16, 16, 16), (4, 32, 32), (1, 28, 28)]
    assert isinstance(dec.mean[-1], nn.Sigmoid)
    shapes, v = _shapes(dec.variance, trunk)
    assert shapes == [(128, 8, 8), (32, 16, 16), (32, 16, 16), (8, 32, 32), (1, 28, 28)]
    assert isinstance(dec.variance[-1], nn.Sigmoid)
    assert [m.kernel_size for m in dec.modules() if isinstance(m, nn.Conv2d)] == [
        (3, 3)] * 3 + [(5, 5)] + [(3, 3)] * 2 + [(5, 5)]
    assert dec(torch.randn(2, 16)).shape == (2, 2, 28, 28)


def test_lv_celeba_sizes_follow_supplement_b2():
    torch.manual_seed(0)
    enc, feat, dec = build_nets("lv-celeba", (3, 128, 128), 256, variance_head=True)
    with torch.no_grad():
        shapes, h = _shapes(enc, torch.rand(2, 3, 128, 128))
        assert shapes == [(32, 64, 64), (64, 32, 32), (128, 16, 16), (256, 8, 8), (512, 4, 4),
                          (1024, 1, 1)]
        assert h.shape == (2, feat) == (2, 512)
        shapes, trunk = _shapes(dec.trunk, torch.randn(2, 256))
        assert shapes == [(256, 1, 1), (4096, 1, 1), (1024, 1, 1), (512, 4, 4)]
        shapes, _ = _shapes(dec.mean, trunk)
        assert shapes == [(256, 16, 16), (128, 64, 64), (3, 128, 128)]
        shapes, v = _shapes(dec.variance, trunk)
        assert shapes == [(256, 16, 16), (128, 64, 64), (1, 128, 128)]
    convs = [m for m in enc if isinstance(m, nn.Conv2d)]
    assert [(m.kernel_size, m.stride, m.padding) for m in convs] == [
        ((4, 4), (2, 2), (1, 1))] * 5 + [((4, 4), (2, 2), (0, 0))]  # the last one 'valid'
    assert sum(isinstance(m, nn.LeakyReLU) for m in enc) == 6
    assert all(m.negative_slope == 0.2 for m in dec.modules() if isinstance(m, nn.LeakyReLU))
    assert _kinds(dec.trunk)[-3:] == ["ConvTranspose2d", "BatchNorm2d", "LeakyReLU"]
    assert _kinds(dec.mean) == ["ConvTranspose2d", "BatchNorm2d", "LeakyReLU"] * 2 + [
        "ConvTranspose2d"]  # no output activation: the mean is unbounded
    assert _kinds(dec.variance) == ["ConvTranspose2d", "LeakyReLU"] * 2 + [
        "ConvTranspose2d", "Softplus"]  # no batch norm in the branch, as printed


def test_celeba_tconv1024_on_1x1_is_a_1x1_transposed_conv():
    """TensorFlow's TConv (4x4, stride 1, 'SAME') is the gradient of a 'SAME' convolution,
    which pads (1, 2); on a 1x1 input only the kernel's tap (1, 1) reaches the output."""
    torch.manual_seed(0)
    kernel = torch.randn(6, 5, 4, 4)  # the forward convolution: 5 channels in, 6 out
    y = torch.randn(2, 5, 1, 1, requires_grad=True)
    g = torch.randn(2, 6, 1, 1)
    (F.conv2d(F.pad(y, (1, 2, 1, 2)), kernel) * g).sum().backward()
    assert torch.allclose(F.conv_transpose2d(g, kernel[:, :, 1:2, 1:2]), y.grad, atol=1e-6)
    _, _, dec = lv_nets((3, 128, 128), 8)
    layer = dec.trunk[4]
    assert isinstance(layer, nn.ConvTranspose2d) and layer.weight.shape == (4096, 1024, 1, 1)


@pytest.mark.parametrize("name, shape", [("lv-mnist", (1, 28, 28)), ("lv-celeba", (3, 128, 128))])
def test_decoder_outputs_and_the_branch_leaves_the_mean_alone(name, shape):
    torch.manual_seed(0)
    _, _, both = build_nets(name, shape, 8, variance_head=True)
    _, _, mean_only = build_nets(name, shape, 8)
    assert not mean_only.variance_head and mean_only.variance is None
    result = mean_only.load_state_dict(both.state_dict(), strict=False)
    assert not result.missing_keys
    assert result.unexpected_keys and all(k.startswith("variance.")
                                          for k in result.unexpected_keys)
    z = torch.randn(2, 8)
    with torch.no_grad():
        out, mean = both(z), mean_only(z)
    c = shape[0]
    assert mean.shape == (2, *shape) and out.shape == (2, 2 * c, *shape[1:])
    assert torch.allclose(out[:, :c], mean, atol=1e-6)
    v = out[:, c:]
    assert (v >= 0).all() and torch.equal(v, v[:, :1].expand_as(v))
    if name == "lv-mnist":
        assert ((mean >= 0) & (mean <= 1)).all()


def test_variance_parameters_learn_from_the_variance_channels_only():
    torch.manual_seed(0)
    _, _, dec = build_nets("lv-mnist", (1, 28, 28), 4, variance_head=True)
    out = dec(torch.randn(2, 4))
    out[:, :1].sum().backward(retain_graph=True)  # the mean channel
    assert all(p.grad is None or not p.grad.any() for p in dec.variance.parameters())
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in dec.mean.parameters())
    assert all(p.grad is not None for p in dec.trunk.parameters())
    dec.zero_grad(set_to_none=True)
    out[:, 1:].sum().backward()  # the variance channel
    assert all(p.grad is None or not p.grad.any() for p in dec.mean.parameters())
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in dec.variance.parameters())
    assert all(p.grad is not None for p in dec.trunk.parameters())


def test_parameter_counts_by_hand():
    enc, _, dec = lv_nets((1, 28, 28), 16, variance_head=True)
    assert _params(enc[1]) == 1 * 16 * 4 * 4 + 16 == 272
    assert _params(enc[-1]) == 256 * 4 * 4 * 64 + 64 == 262_208
    assert _params(dec.trunk[0]) == 16 * 4096 + 4096 == 69_632
    assert _params(dec.variance[0]) == 64 * 128 * 3 * 3 + 128 == 73_856
    assert _params(dec.mean[-2]) == 4 * 1 * 5 * 5 + 1 == 101
    enc, _, dec = lv_nets((3, 128, 128), 256)
    assert _params(enc[10]) == 512 * 1024 * 4 * 4 + 1024 == 8_389_632
    assert _params(dec.mean[-1]) == 128 * 3 * 4 * 4 + 3 == 6_147


@pytest.mark.parametrize("name, bad", [
    ("lv-mnist", (1, 32, 32)), ("lv-mnist", (784,)), ("lv-celeba", (3, 64, 64))])
def test_wrong_sample_shape_is_refused(name, bad):
    for variance_head in (False, True):
        with pytest.raises(ValueError, match=re.escape(
                f"the {name} network needs samples of shape {NETWORKS[name].shape}, "
                f"got {bad}")):
            build_nets(name, bad, 16, variance_head=variance_head)
    with pytest.raises(ValueError, match="004's networks take samples of shape"):
        lv_nets(bad, 16)


@pytest.mark.parametrize("name", ["mnist-conv", "mnist-vcae", "celeba-conv", "mlp"])
def test_variance_head_needs_a_network_with_a_variance_branch(name):
    message = ("the pixel-wise variance needs a network with a variance branch; "
               "use --net lv-mnist or lv-celeba")
    with pytest.raises(ValueError, match=re.escape(message)):
        build_nets(name, NETWORKS[name].shape or (1, 28, 28), 16, variance_head=True)
    build_nets(name, NETWORKS[name].shape or (1, 28, 28), 16)  # existing callers keep working


def test_registered_defaults_unchanged_but_128_celeba():
    assert set(VARIANCE_NETS) == {"lv-mnist", "lv-celeba"} and set(VARIANCE_NETS) <= set(NETWORKS)
    assert NETWORKS["lv-mnist"].shape == (1, 28, 28)
    assert NETWORKS["lv-celeba"].shape == (3, 128, 128)
    assert default_net((1, 28, 28)) == "mnist-conv" and default_net((3, 64, 64)) == "celeba-conv"
    assert default_net((3, 128, 128)) == "lv-celeba" and default_net((1, 64, 64)) == "shapes-conv"
