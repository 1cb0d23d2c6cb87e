"""Channels-last convolution weights, the faster layout on a CPU for some of the papers'
networks (``Network.channels_last``; docs/performance.md, "Channels-last weights").

2-D convolutions take it from ``Module.to(memory_format=torch.channels_last)``. A 1-D
convolution weight [A, B, k] has no such layout in torch, and torch's ``conv1d`` computes
as a 2-D convolution of height 1 in the default layout. :class:`Conv1d` and
:class:`ConvTranspose1d` are ``nn.Conv1d`` and ``nn.ConvTranspose1d`` that, when their
weight has the strides of a channels-last [A, B, 1, k] (:func:`to_channels_last`), compute
as that channels-last 2-D convolution instead; in the default layout they are torch's own.
Their parameters, state dict and values are those of torch's modules.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def is_channels_last_1d(weight: Tensor) -> bool:
    """Whether a 1-D convolution weight [A, B, k] has a channels-last [A, B, 1, k]'s strides."""
    return weight.dim() == 3 and weight.stride(1) == 1 and weight.stride(2) == weight.shape[1]


def _channels_last_1d(weight: Tensor) -> Tensor:
    return weight.unsqueeze(2).to(memory_format=torch.channels_last).squeeze(2)


class Conv1d(nn.Conv1d):
    """``nn.Conv1d``, computed as a channels-last 2-D convolution of height 1 when its weight
    is laid out so (:func:`is_channels_last_1d`)."""

    def _conv_forward(self, input: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        if input.dim() != 3 or not is_channels_last_1d(weight):
            return super()._conv_forward(input, weight, bias)
        padding: str | tuple[int, ...] = (self.padding if isinstance(self.padding, str)
                                          else (0, *self.padding))
        if self.padding_mode != "zeros":
            input = F.pad(input, self._reversed_padding_repeated_twice, mode=self.padding_mode)
            padding = (0, 0)
        return F.conv2d(input.unsqueeze(2), weight.unsqueeze(2), bias, (1, *self.stride),
                        padding, (1, *self.dilation), self.groups).squeeze(2)


class ConvTranspose1d(nn.ConvTranspose1d):
    """``nn.ConvTranspose1d``, computed as a channels-last transposed 2-D convolution of
    height 1 when its weight is laid out so (:func:`is_channels_last_1d`)."""

    def forward(self, input: Tensor, output_size: list[int] | None = None) -> Tensor:
        if input.dim() != 3 or not is_channels_last_1d(self.weight):
            return super().forward(input, output_size)
        output_padding = self._output_padding(input, output_size, list(self.stride),
                                              list(self.padding), list(self.kernel_size), 1,
                                              list(self.dilation))
        return F.conv_transpose2d(input.unsqueeze(2), self.weight.unsqueeze(2), self.bias,
                                  (1, *self.stride), (0, *self.padding), (0, *output_padding),
                                  self.groups, (1, *self.dilation)).squeeze(2)


def to_channels_last(model: nn.Module, channels_last: bool = True) -> nn.Module:
    """``model`` in place with its 2-D and 1-D convolution weights channels-last (or, with
    ``channels_last=False``, in torch's default layout); the values are unchanged."""
    layout = torch.channels_last if channels_last else torch.contiguous_format
    model.to(memory_format=layout)
    for module in model.modules():
        if isinstance(module, (Conv1d, ConvTranspose1d)):
            weight = module.weight.data
            module.weight.data = (_channels_last_1d(weight) if channels_last
                                  else weight.clone(memory_format=torch.contiguous_format))
    return model
