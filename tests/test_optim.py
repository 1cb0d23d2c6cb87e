"""The training Adam (wiseale.optim): fused where torch can, and exact after a checkpoint's
round trip for a channels-last parameter, against Adam's update written out in float64."""

import dataclasses

import torch

from wiseale.optim import adam
from wiseale.storage import load_tensors, optimizer_tensors, restore_optimizer
from wiseale.training import train

LR, BETAS, EPS = 1e-2, (0.9, 0.999), 1e-8


def adam_by_hand(param, grads):
    """Kingma & Ba's Algorithm 1 with torch's defaults, one step per gradient, in float64."""
    value, m, v = param.clone(), torch.zeros_like(param), torch.zeros_like(param)
    for t, g in enumerate(grads, start=1):
        m = BETAS[0] * m + (1 - BETAS[0]) * g
        v = BETAS[1] * v + (1 - BETAS[1]) * g * g
        m_hat, v_hat = m / (1 - BETAS[0] ** t), v / (1 - BETAS[1] ** t)
        value = value - LR * m_hat / (v_hat.sqrt() + EPS)
    return value


def test_adam_is_fused_on_a_cpu_and_torchs_default_where_no_kernel_exists():
    on_cpu = adam([torch.nn.Parameter(torch.zeros(3))], lr=LR)
    on_meta = adam([torch.nn.Parameter(torch.zeros(3, device="meta"))], lr=LR)
    integers = adam([torch.nn.Parameter(torch.zeros(3)), torch.zeros(2, dtype=torch.long)], lr=LR)
    assert on_cpu.defaults["fused"] is True
    assert on_meta.defaults["fused"] is None and integers.defaults["fused"] is None


def test_a_resumed_channels_last_parameter_takes_adams_update():
    """A checkpoint gives the state back contiguous; the fused kernel then needs it re-laid
    like its channels-last parameter, or it updates the wrong elements."""
    generator = torch.Generator().manual_seed(0)
    start = torch.randn(8, 4, 1, 3, dtype=torch.float64, generator=generator)
    grads = [torch.randn(8, 4, 1, 3, dtype=torch.float64, generator=generator) for _ in range(3)]

    def trained(steps, optimizer=None, param=None):
        if param is None:
            param = torch.nn.Parameter(start.to(memory_format=torch.channels_last))
            optimizer = adam([param], lr=LR)
        for g in steps:
            param.grad = g.contiguous(memory_format=torch.channels_last)
            optimizer.step()
        return param, optimizer

    param, optimizer = trained(grads[:2])
    tensors, groups = optimizer_tensors(optimizer)
    resumed = torch.nn.Parameter(param.detach().clone(memory_format=torch.channels_last))
    fresh = adam([resumed], lr=LR)
    restore_optimizer(fresh, {k: v.contiguous() for k, v in tensors.items()}, groups)
    resumed, _ = trained(grads[2:], fresh, resumed)

    assert fresh.defaults["fused"] is True
    assert resumed.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(resumed.detach(), adam_by_hand(start, grads), rtol=0, atol=1e-12)


def test_a_cpu_run_trains_with_the_fused_adam_and_saves_it(tmp_path, tiny_sine):
    """So that tests/test_resume.py's exact resumes cover the fused kernel, the TC
    discriminator's Adam included."""
    for method in ("wise-ale", "factorvae"):
        train(dataclasses.replace(tiny_sine, method=method, epochs=1), tmp_path / method,
              progress=False)
        groups = load_tensors(tmp_path / method / "checkpoint.safetensors")[1]["param_groups"]
        assert all(group["fused"] is True for prefix in groups for group in groups[prefix])
    assert set(groups) == {"optim", "adversary"}
