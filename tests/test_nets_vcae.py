"""003 Table 4's MNIST and CelebA networks (mnist-vcae, celeba-vcae)."""

import re

import pytest
import torch
from torch import nn

from wiseale.build import model_from_config, resolve
from wiseale.config import RunConfig
from wiseale.data.dataset import Dataset
from wiseale.errors import WisealeError
from wiseale.nets import NETWORKS, build_nets, default_net
from wiseale.nets.vcae import same_padding


def _sizes(net: nn.Sequential, x: torch.Tensor, kinds: tuple[type, ...]) -> list[int]:
    """The spatial size after every layer of one of ``kinds``."""
    sizes = []
    for layer in net:
        x = layer(x)
        if isinstance(layer, kinds):
            sizes.append(x.shape[-1])
    return sizes


def _followed_by_bn_relu(net: nn.Sequential, kinds: tuple[type, ...]) -> list[bool]:
    layers = list(net)
    return [isinstance(layers[i + 1], nn.BatchNorm2d) and isinstance(layers[i + 2], nn.ReLU)
            for i, layer in enumerate(layers[:-2]) if isinstance(layer, kinds)]


@pytest.mark.parametrize("size, kernel, stride, pads", [
    (28, 4, 2, (1, 1)), (14, 4, 2, (1, 1)), (7, 4, 2, (1, 2)), (4, 4, 2, (1, 1)),
    (64, 5, 2, (1, 2)), (8, 5, 2, (1, 2)), (28, 4, 1, (1, 2)), (8, 2, 2, (0, 0))])
def test_same_padding_is_tensorflows(size, kernel, stride, pads):
    assert same_padding(size, kernel, stride) == pads
    before, after = pads
    assert (size + before + after - kernel) // stride + 1 == -(-size // stride)


def test_mnist_vcae_follows_table_4():
    torch.manual_seed(0)
    enc, feat, dec = build_nets("mnist-vcae", (1, 28, 28), 16)
    x = torch.rand(2, 1, 28, 28)
    h = enc(x)
    assert h.shape == (2, feat) == (2, 2 * 2 * 1024)
    convs = [m for m in enc if isinstance(m, nn.Conv2d)]
    assert [(c.out_channels, c.kernel_size, c.stride) for c in convs] == [
        (128, (4, 4), (2, 2)), (256, (4, 4), (2, 2)), (512, (4, 4), (2, 2)),
        (1024, (4, 4), (2, 2))]
    assert _sizes(enc, x, (nn.Conv2d,)) == [14, 7, 4, 2]  # TensorFlow 'SAME', stride 2
    assert _followed_by_bn_relu(enc, (nn.Conv2d,)) == [True] * 4
    assert isinstance(enc[-1], nn.Flatten)

    out = dec(torch.randn(2, 16))
    assert out.shape == (2, 1, 28, 28)
    assert dec[0].out_features == 7 * 7 * 1024 and isinstance(dec[1], nn.ReLU)
    tconvs = [m for m in dec if isinstance(m, nn.ConvTranspose2d)]
    assert [(c.out_channels, c.kernel_size, c.stride) for c in tconvs] == [
        (512, (4, 4), (2, 2)), (256, (4, 4), (2, 2))]
    assert _followed_by_bn_relu(dec, (nn.ConvTranspose2d,)) == [True] * 2
    last = dec[-1]  # TConv[1, k4, s1] as an equivalent convolution (see the next test)
    assert isinstance(last, nn.Conv2d) and (last.out_channels, last.kernel_size,
                                            last.stride) == (1, (4, 4), (1, 1))
    z = torch.randn(2, 16)
    assert _sizes(dec, z, (nn.ConvTranspose2d, nn.Conv2d)) == [14, 28, 28]
    assert sum(isinstance(m, nn.BatchNorm2d) for m in dec) == 2


def test_mnist_vcae_last_layer_is_tensorflows_same_transposed_conv():
    """TensorFlow's conv2d_transpose is the gradient of conv2d; with 'SAME', stride 1 and a
    4x4 kernel that conv2d pads (1, 2). The decoder's pad + conv equals that gradient."""
    torch.manual_seed(1)
    _, _, dec = build_nets("mnist-vcae", (1, 28, 28), 16)
    pad, conv = dec[-2], dec[-1].double()  # float64: the sums of 4,096 products are ~70
    kernel = torch.randn(256, 1, 4, 4, dtype=torch.float64)  # TensorFlow's: 1 in, 256 out
    with torch.no_grad():
        conv.weight.copy_(kernel.transpose(0, 1).flip(-2, -1))
        conv.bias.zero_()
    y = torch.randn(2, 1, 28, 28, dtype=torch.float64, requires_grad=True)
    g = torch.randn(2, 256, 28, 28, dtype=torch.float64)
    forward = torch.nn.functional.conv2d(torch.nn.functional.pad(y, (1, 2, 1, 2)), kernel)
    assert forward.shape == (2, 256, 28, 28)
    (forward * g).sum().backward()
    with torch.no_grad():
        assert torch.allclose(conv(pad(g)), y.grad, rtol=1e-12, atol=1e-10)
        # and PyTorch's own transposed convolution, cropped (1 before, 2 after), agrees
        full = torch.nn.functional.conv_transpose2d(g, kernel)
        assert torch.allclose(full[..., 1:-2, 1:-2], y.grad, rtol=1e-12, atol=1e-10)


def test_mnist_vcae_parameter_counts():
    enc, _, dec = build_nets("mnist-vcae", (1, 28, 28), 16)
    first = next(m for m in enc if isinstance(m, nn.Conv2d))
    assert sum(p.numel() for p in first.parameters()) == 1 * 128 * 4 * 4 + 128 == 2_176
    assert sum(p.numel() for p in dec[0].parameters()) == 16 * 50_176 + 50_176 == 852_992
    # 4 convs (c_in * c_out * 16 + c_out) + 4 batch norms (2 * c_out)
    convs = 2_176 + 524_544 + 2_097_664 + 8_389_632
    assert sum(p.numel() for p in enc.parameters()) == convs + 2 * (128 + 256 + 512 + 1024)
    last = dec[-1]
    assert sum(p.numel() for p in last.parameters()) == 4 * 4 * 256 + 1


def test_celeba_vcae_follows_table_4():
    torch.manual_seed(0)
    enc, feat, dec = build_nets("celeba-vcae", (3, 64, 64), 64)
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        assert enc(x).shape == (2, feat) == (2, 4 * 4 * 1024)
        assert _sizes(enc, x, (nn.Conv2d,)) == [32, 16, 8, 4]
        assert dec(torch.randn(2, 64)).shape == (2, 3, 64, 64)
    convs = [m for m in enc if isinstance(m, nn.Conv2d)]
    assert [(c.out_channels, c.kernel_size, c.stride) for c in convs] == [
        (w, (5, 5), (2, 2)) for w in (128, 256, 512, 1024)]
    assert _followed_by_bn_relu(enc, (nn.Conv2d,)) == [True] * 4
    assert [m.padding for m in enc if isinstance(m, nn.ZeroPad2d)] == [(1, 2, 1, 2)] * 4
    assert _followed_by_bn_relu(dec, (nn.ConvTranspose2d,)) == [True] * 3
    # the decoder is celeba-conv's (001 App. D.3 = 003 Table 4)
    _, _, conv_dec = build_nets("celeba-conv", (3, 64, 64), 64)
    assert [(type(m), tuple(p.shape for p in m.parameters())) for m in dec] == [
        (type(m), tuple(p.shape for p in m.parameters())) for m in conv_dec]
    assert dec[0].out_features == 8 * 8 * 1024


@pytest.mark.parametrize("name, good, bad", [
    ("mnist-vcae", (1, 28, 28), (1, 32, 32)), ("mnist-vcae", (1, 28, 28), (784,)),
    ("celeba-vcae", (3, 64, 64), (1, 64, 64))])
def test_wrong_sample_shape_is_refused(name, good, bad):
    message = f"the {name} network needs samples of shape {good}, got {bad}; use --net mlp"
    with pytest.raises(ValueError, match=re.escape(message)):
        build_nets(name, bad, 16)


def test_registered_but_not_default():
    assert {"mnist-vcae", "celeba-vcae"} <= set(NETWORKS)
    assert NETWORKS["mnist-vcae"].shape == (1, 28, 28)
    assert NETWORKS["celeba-vcae"].shape == (3, 64, 64)
    assert default_net((1, 28, 28)) == "mnist-conv" and default_net((3, 64, 64)) == "celeba-conv"
    assert default_net((1, 256)) == "sine-conv" and default_net((1, 64, 64)) == "shapes-conv"


def test_vcae_model_on_mnist_vcae_trains_a_step():
    torch.manual_seed(0)
    train = Dataset("random", torch.rand(4, 1, 28, 28))
    config = resolve(RunConfig(method="vcae", data="random", net="mnist-vcae", latent_dim=16,
                               batch_size=2), train)
    model = model_from_config(config)
    assert model.noise.mu_head.in_features == 2 * 2 * 1024 and model.latent_dim == 16
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == 6
    out = model(train.floats(slice(0, 2)))
    assert torch.isfinite(out.loss)
    out.loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    model.eval()  # batch norm's running statistics
    assert model.reconstruct(train.floats(slice(0, 1))).shape == (1, 1, 28, 28)
    with pytest.raises(WisealeError, match="needs samples of shape"):
        model_from_config(RunConfig(method="vcae", data="random", net="mnist-vcae",
                                    options=config.options, sample_shape=[1, 32, 32]))
