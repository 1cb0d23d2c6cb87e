"""wiseale.nets.layout: 1-D convolutions computed as channels-last 2-D ones, against torch's
own nn.Conv1d / nn.ConvTranspose1d in float64 (values and all gradients)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from wiseale.nets.layout import (
    Conv1d,
    ConvTranspose1d,
    is_channels_last_1d,
    to_channels_last,
)

CONV_CASES = [  # (in, out, kernel, keyword arguments)
    (1, 16, 16, {"stride": 2, "padding": 7}),  # the sine encoder's first layer
    (16, 128, 1, {}),  # its decoder's 1x1 convolution
    (6, 4, 5, {"dilation": 2, "groups": 2, "bias": False}),
    (3, 5, 5, {"padding": "same"}),
    (3, 5, 3, {"padding": 2, "padding_mode": "reflect"}),
    (3, 5, 3, {"padding": 1, "padding_mode": "circular", "stride": 3}),
]
TRANSPOSED_CASES = [
    (128, 64, 8, {"stride": 4, "padding": 2}),  # the sine decoder's
    (16, 1, 16, {"stride": 4, "padding": 6}),
    (4, 6, 3, {"stride": 2, "padding": 1, "output_padding": 1, "groups": 2, "dilation": 2}),
]


def _pair(reference: type[nn.Module], ours: type[nn.Module], args: tuple, kwargs: dict
          ) -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(0)
    torch_module = reference(*args, **kwargs).double()
    module = ours(*args, **kwargs).double()
    module.load_state_dict(torch_module.state_dict())
    return torch_module, to_channels_last(module)


def _assert_same(torch_module: nn.Module, module: nn.Module, x: torch.Tensor,
                 **call: object) -> None:
    outputs, grads = [], []
    for m in (torch_module, module):
        xi = x.clone().requires_grad_()
        out = m(xi, **call)
        out.backward(torch.linspace(-1, 1, out.numel(), dtype=x.dtype).reshape(out.shape))
        outputs.append(out)
        grads.append([xi.grad] + [p.grad for p in m.parameters()])
    torch.testing.assert_close(outputs[1], outputs[0], rtol=1e-12, atol=1e-12)
    for ours, theirs in zip(grads[1], grads[0], strict=True):
        torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(("c_in", "c_out", "k", "kwargs"), CONV_CASES)
def test_channels_last_conv1d_equals_torchs(c_in, c_out, k, kwargs):
    torch_module, module = _pair(nn.Conv1d, Conv1d, (c_in, c_out, k), kwargs)
    x = torch.randn(5, c_in, 24, dtype=torch.float64)
    assert is_channels_last_1d(module.weight)
    _assert_same(torch_module, module, x)
    assert module(x).stride(1) == 1 or c_out == 1  # it did run as a channels-last 2-D conv


@pytest.mark.parametrize(("c_in", "c_out", "k", "kwargs"), TRANSPOSED_CASES)
def test_channels_last_conv_transpose1d_equals_torchs(c_in, c_out, k, kwargs):
    torch_module, module = _pair(nn.ConvTranspose1d, ConvTranspose1d, (c_in, c_out, k), kwargs)
    x = torch.randn(3, c_in, 7, dtype=torch.float64)
    _assert_same(torch_module, module, x)
    length = torch_module(x).shape[-1]
    other_length = length - 1 if kwargs.get("output_padding") else length + 1
    _assert_same(torch_module, module, x, output_size=[other_length])
    assert module(x).stride(1) == 1 or c_out == 1


def test_unbatched_input_takes_torchs_path():
    torch_module, module = _pair(nn.Conv1d, Conv1d, (3, 4, 3), {"padding": 1})
    _assert_same(torch_module, module, torch.randn(3, 10, dtype=torch.float64))


@pytest.mark.parametrize("shape", [(8, 16, 1), (16, 1, 16), (4, 3, 5)])
def test_only_a_restrided_weight_counts_as_channels_last(shape):
    """Torch's default layout never does (not even with 1 channel or a kernel of 1, where
    some strides are ambiguous), the layout to_channels_last gives always does. (With both 1
    channel and a kernel of 1 the two layouts are the same memory.)"""
    weight = torch.randn(*shape)
    module = Conv1d(shape[1], shape[0], shape[2])
    module.weight.data = weight
    assert not is_channels_last_1d(module.weight)
    assert is_channels_last_1d(to_channels_last(module).weight)
    assert torch.equal(module.weight, weight)


def test_layout_round_trip_keeps_the_values_and_the_default_layout_is_torchs():
    """to_channels_last and back leaves every value; in the default layout the modules
    compute with torch's conv1d (outputs in the default layout)."""
    torch.manual_seed(0)
    model = nn.Sequential(Conv1d(1, 16, 16, stride=2, padding=7), nn.ReLU(),
                          ConvTranspose1d(16, 1, 16, stride=2, padding=7))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(2, 1, 32)
    hidden = model[0](x)
    assert not is_channels_last_1d(model[0].weight) and hidden.is_contiguous()
    to_channels_last(model)
    assert all(is_channels_last_1d(m.weight) for m in (model[0], model[2]))
    assert model[0](x).stride(1) == 1
    to_channels_last(model, channels_last=False)
    assert not any(is_channels_last_1d(m.weight) for m in (model[0], model[2]))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert model[0](x).is_contiguous()
