"""The Adam that wiseale's training steps use: torch's own, fused where torch has the kernel.

``torch.optim.Adam(fused=True)`` computes the same update as torch's default Adam in one kernel
per parameter instead of one call per operation and parameter (to rounding): on the
sine network at batch 64 on a CPU its step is 3x faster and the whole training step about 6%
(docs/performance.md, "Fused Adam"). Its kernel walks a parameter and its state tensors as if
they were laid alike, so a loaded state must be laid like its parameters: :func:`lay_like_params`.
Its ``step`` is :class:`LeanAdam`'s: the same kernel on the same tensors without the
per-parameter Python around it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable

import torch
from torch import nn

__all__ = ["FUSED_DEVICES", "LeanAdam", "adam", "lay_like_params"]

FUSED_DEVICES = ("cpu", "cuda")  # device types torch 2.13 has a fused Adam kernel for


# The options under which LeanAdam's step is torch's fused step less its bookkeeping.
_PLAIN_GROUP = {"fused": True, "amsgrad": False, "maximize": False, "capturable": False,
                "differentiable": False, "decoupled_weight_decay": False}
_ONE = torch.ones(())  # a step counter's increment: add_(tensor), 2.3x faster than _foreach_add_


def _without_profile_hook(step: Callable) -> Callable:
    """torch's ``Adam.step`` as the class defines it (under its grad-mode decorator), without
    the hooks-and-profiler wrapper that ``Optimizer`` puts around it once an Adam exists: the
    wrapper around LeanAdam's own step already runs those."""
    return step.__wrapped__ if getattr(step, "hooked", False) else step


_torchs_adam_step = _without_profile_hook(torch.optim.Adam.step)


class LeanAdam(torch.optim.Adam):
    """``torch.optim.Adam`` whose fused step on a CPU, once every parameter of a group has a
    gradient and its state, calls torch's fused kernel itself: ``torch._fused_adam_`` on the
    same values, in the same order, with the same scalars, so the same bits
    (tests/test_optim.py), without ``Adam.step``'s per-parameter Python (``_init_group``, the
    grouping by device and dtype), with the step counters incremented one by one (torch's
    ``_foreach_add_`` has no fast path on a CPU) and with a channels-last parameter's tensors
    given as flat views (:func:`_flat_where_alike`), which the kernel would otherwise copy:
    about 0.13 ms of a 14 ms step on the sine network at batch 64 (docs/performance.md, "The
    optimiser's step"). Any other case (parameters moved to a GPU, a
    closure, the first step, a missing gradient, amsgrad, a tensor learning rate or beta, a
    gradient scaler's ``found_inf``, parameters of several dtypes, torch.compile) takes torch's own
    step; the step hooks and the profiler mark (``Optimizer.step#LeanAdam.step``) wrap both
    (``Optimizer.profile_hook_step``).
    ``zero_grad()`` sets the gradients to None in one loop, without torch's profiler mark
    (22 us against 4 us for 28 parameters)."""

    def zero_grad(self, set_to_none: bool = True) -> None:
        if not set_to_none:
            return super().zero_grad(set_to_none=False)
        for group in self.param_groups:
            for param in group["params"]:
                param.grad = None
        return None

    def step(self, closure=None):  # type: ignore[override]
        if closure is None and self._kernel_step():
            return None
        return _torchs_adam_step(self, closure)

    @torch.no_grad()
    def _kernel_step(self) -> bool:
        """torch's fused Adam step on every group, if each is the plain case; else False and
        nothing changed."""
        if (getattr(self, "grad_scale", None) is not None
                or getattr(self, "found_inf", None) is not None or torch.compiler.is_compiling()):
            return False
        calls = []
        for group in self.param_groups:
            params = group["params"]
            if not params:
                continue
            grads = [p.grad for p in params]
            states = [self.state.get(p) for p in params]
            if (any(group[key] != value for key, value in _PLAIN_GROUP.items())
                    or any(isinstance(v, torch.Tensor) for v in (group["lr"], *group["betas"]))
                    or any(grad is None for grad in grads)  # not `None in`: Tensor.__eq__
                    or not all(states) or not _one_kind(params)):
                return False
            calls.append((group, params, grads, states))
        for group, params, grads, states in calls:
            steps = [state["step"] for state in states]
            for step in steps:
                step.add_(_ONE)
            tensors = _flat_where_alike([list(params), grads,
                                         [state["exp_avg"] for state in states],
                                         [state["exp_avg_sq"] for state in states]])
            beta1, beta2 = group["betas"]
            torch._fused_adam_(*tensors, [], steps, amsgrad=False, lr=group["lr"], beta1=beta1,
                               beta2=beta2, weight_decay=group["weight_decay"],
                               eps=group["eps"], maximize=False, grad_scale=None,
                               found_inf=None)
        return True


def _flat_where_alike(tensors: list[list[torch.Tensor]]) -> list[list[torch.Tensor]]:
    """[params, grads, exp_avgs, exp_avg_sqs] with each parameter that is not contiguous (a
    channels-last weight) and its three tensors, where all four are laid alike and densely,
    replaced by flat views of their memory: Adam is elementwise and the kernel walks each
    tensor's memory as laid out, so the update is the same, and torch's CPU kernel then makes
    no contiguous copy of it (50 us of the sine network's step: docs/performance.md, "The
    optimiser's step")."""
    for index, param in enumerate(tensors[0]):
        if param.is_contiguous():
            continue
        stride = param.stride()
        if _dense(tuple(param.shape), stride) and all(t[index].stride() == stride
                                                     for t in tensors[1:]):
            for column in tensors:
                t = column[index]
                column[index] = t.as_strided((t.numel(),), (1,), t.storage_offset())
    return tensors


@functools.cache
def _dense(shape: tuple[int, ...], stride: tuple[int, ...]) -> bool:
    """Whether a tensor of this shape and stride covers its memory without gaps or overlaps
    (some order of its dimensions is contiguous)."""
    expected = 1
    for step, size in sorted(zip(stride, shape, strict=True)):
        if size == 1:
            continue
        if step != expected:
            return False
        expected *= size
    return True


def _one_kind(params: list[torch.Tensor]) -> bool:
    """All on the CPU, of one dtype: the one group torch's fused step would make there."""
    dtype = params[0].dtype
    return all(p.is_cpu and p.dtype is dtype for p in params)


def adam(params: Iterable[nn.Parameter], **options) -> torch.optim.Adam:
    """``torch.optim.Adam(params, **options)``, fused when every parameter is a floating-point
    tensor on a CPU or CUDA device (torch raises for any other), else torch's default; on a
    CPU a :class:`LeanAdam`, whose own step is CPU-only."""
    params = list(params)
    if not params or not all(p.is_floating_point() and p.device.type in FUSED_DEVICES
                             for p in params):
        return torch.optim.Adam(params, **options)
    kind = LeanAdam if all(p.is_cpu for p in params) else torch.optim.Adam
    return kind(params, fused=True, **options)


def lay_like_params(optimizer: torch.optim.Optimizer) -> None:
    """Give every state tensor of a parameter's shape that parameter's strides (a checkpoint
    gives them back contiguous; a channels-last parameter is not): torch 2.13's fused CPU Adam
    otherwise updates the wrong elements (docs/performance.md, "Fused Adam")."""
    for param, entries in optimizer.state.items():
        for key, value in entries.items():
            if (isinstance(value, torch.Tensor) and value.shape == param.shape
                    and value.stride() != param.stride()):
                entries[key] = torch.empty_like(param, dtype=value.dtype).copy_(value)
