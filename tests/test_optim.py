"""The training Adam (wiseale.optim): fused where torch can, exact after a checkpoint's
round trip for a channels-last parameter, against Adam's update written out in float64, and
LeanAdam's own step bit for bit torch's fused step."""

import dataclasses

import pytest
import torch

from wiseale.optim import LeanAdam, _dense, _without_profile_hook, adam
from wiseale.storage import load_tensors, optimizer_tensors, restore_optimizer
from wiseale.training import loop, train

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
    assert on_cpu.defaults["fused"] is True and type(on_cpu) is LeanAdam
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


def _parameters(seed: int) -> list[torch.nn.Parameter]:
    generator = torch.Generator().manual_seed(seed)
    shapes = [(8, 4, 1, 3), (8,), (5, 7), (1,)]
    params = [torch.randn(shape, generator=generator) for shape in shapes]
    params[0] = params[0].contiguous(memory_format=torch.channels_last)
    inside = torch.randn(200, generator=generator)  # channels-last, 100 values into its memory
    params.append(inside.as_strided((8, 4, 1, 3), (12, 1, 12, 4), 100))
    return [torch.nn.Parameter(p) for p in params]


def _give_gradients(params: list[torch.nn.Parameter], grads_of, step: int) -> None:
    """Each parameter's gradient ``grads_of(step, index)`` laid like the parameter (as
    autograd lays it), or None where that is None."""
    for index, param in enumerate(params):
        grad = grads_of(step, index)
        param.grad = None if grad is None else torch.empty_like(param).copy_(grad)


def _count_calls(optimizer: torch.optim.Optimizer) -> dict[str, int]:
    """Counts, kept up to date, of the optimiser's step-hook calls and _init_group calls."""
    calls = {"hook": 0, "_init_group": 0}
    original = optimizer._init_group

    def counted(*args):
        calls["_init_group"] += 1
        return original(*args)

    optimizer._init_group = counted
    optimizer.register_step_pre_hook(lambda *_: calls.__setitem__("hook", calls["hook"] + 1))
    return calls


def _run_both(steps: int, groups, options: dict, grads_of, closure: bool = False,
              lr_type: type = float):
    """torch.optim.Adam (fused unless ``options`` say) and LeanAdam from the same start on
    the same gradients (``grads_of(step, index)``, None for no gradient), learning rates
    changed on the way (as ``lr_type``); both optimisers' parameters and states, the number of
    _init_group calls of LeanAdam's and the step hooks' calls of each."""
    results = []
    for kind in (torch.optim.Adam, LeanAdam):
        params = _parameters(0)
        optimizer = kind([{"params": [params[i] for i in g], **extra} for g, extra in groups],
                         **{"fused": True, **options})
        calls = _count_calls(optimizer)
        for step in range(steps):
            _give_gradients(params, grads_of, step)
            for group in optimizer.param_groups:
                group["lr"] = lr_type(1e-2 / (1 + step))
            optimizer.step((lambda: None) if closure else None)
        states = [optimizer.state[p] for p in params]
        results.append((params, states, calls["_init_group"], calls["hook"]))
    return results


def _gradients(seed: int = 1):
    generator = torch.Generator().manual_seed(seed)
    shapes = [p.shape for p in _parameters(0)]
    table = [[torch.randn(shape, generator=generator) for shape in shapes] for _ in range(6)]
    return lambda step, index: table[step][index]


@pytest.mark.parametrize("options", [{}, {"weight_decay": 0.1, "betas": (0.8, 0.99),
                                          "eps": 1e-6}])
def test_lean_adam_steps_are_torchs_fused_steps_bit_for_bit(options):
    """Two groups and an empty one, channels-last parameters (one of them inside a larger
    block of memory), the learning rate changed every step: the same bits as torch's fused
    Adam, with torch's bookkeeping (_init_group) run only at the first step, each step hook
    once per step."""
    groups = [([0, 1], {}), ([], {}), ([2, 3, 4], {"lr": 3e-3})]
    (torch_params, torch_states, _, torch_hooks), (lean_params, states, inits, hooks) = \
        _run_both(6, groups, options, _gradients())
    for a, b in zip(torch_params, lean_params, strict=True):
        assert torch.equal(a, b) and a.stride() == b.stride()
    for a, b in zip(torch_states, states, strict=True):
        assert a.keys() == b.keys() and all(torch.equal(a[key], b[key]) for key in a)
    assert inits == len(groups) and hooks == torch_hooks == 6


@pytest.mark.parametrize("case", ["a missing gradient", "amsgrad", "closure", "tensor betas",
                                  "a tensor learning rate", "not fused"])
def test_lean_adam_takes_torchs_step_where_its_own_does_not_apply(case):
    """A parameter without a gradient at a step (torch skips it), amsgrad, a closure, betas or
    a learning rate as tensors, a group that is not fused (as a state saved by torch's
    default Adam loads): torch's own step under its no-grad mode, the same bits, its hooks
    once per step."""
    grads = _gradients()
    grads_of = (lambda step, index: None if (step, index) == (3, 2) else grads(step, index)) \
        if case == "a missing gradient" else grads
    options = {"amsgrad": {"amsgrad": True}, "not fused": {"fused": None},
               "tensor betas": {"betas": (torch.tensor(0.9), torch.tensor(0.999))}}.get(case, {})
    (torch_params, _, _, torch_hooks), (lean_params, _, inits, hooks) = _run_both(
        6, [([0, 1, 2, 3, 4], {})], options, grads_of, closure=case == "closure",
        lr_type=torch.tensor if case == "a tensor learning rate" else float)
    for a, b in zip(torch_params, lean_params, strict=True):
        assert torch.equal(a, b)
    assert inits == (2 if case == "a missing gradient" else 6) and hooks == torch_hooks == 6


def test_torchs_own_step_is_found_under_its_profile_hook():
    """Whether a torch Adam was made before wiseale.optim was imported (Adam.step wrapped by
    the hooks and profiler mark) or not, the fallback is torch's step under its grad-mode
    decorator, without a second hook wrapper."""
    torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))])  # wraps Adam.step, if not yet
    wrapped = torch.optim.Adam.step
    assert getattr(wrapped, "hooked", False)
    assert _without_profile_hook(wrapped) is wrapped.__wrapped__
    assert _without_profile_hook(wrapped.__wrapped__) is wrapped.__wrapped__
    assert not getattr(wrapped.__wrapped__, "hooked", False)


def test_a_run_trains_to_the_same_weights_with_torchs_fused_adam(tmp_path, tiny_sine,
                                                               monkeypatch):
    """The whole loop, LeanAdam's steps against torch.optim.Adam(fused=True)'s: the same
    weights and optimiser state, tensor for tensor."""
    train(dataclasses.replace(tiny_sine, epochs=1), tmp_path / "lean", progress=False)
    monkeypatch.setattr(loop, "adam", lambda params, **options: torch.optim.Adam(
        params, fused=True, **options))
    train(dataclasses.replace(tiny_sine, epochs=1), tmp_path / "torch", progress=False)
    for name in ("model.safetensors", "checkpoint.safetensors"):
        lean, torchs = (load_tensors(tmp_path / run / name)[0] for run in ("lean", "torch"))
        assert lean.keys() == torchs.keys()
        assert all(torch.equal(lean[key], torchs[key]) for key in lean)


def test_lean_adam_leaves_a_step_with_an_inf_found_by_a_grad_scaler_to_torch():
    """found_inf set (a gradient scaler found an overflow): torch's step, which skips the
    update."""
    results, grads_of = [], _gradients()
    for kind in (torch.optim.Adam, LeanAdam):
        params = _parameters(0)
        optimizer = kind(params, lr=1e-2, fused=True)
        for step in range(3):
            _give_gradients(params, grads_of, step)
            if step == 2:
                optimizer.grad_scale, optimizer.found_inf = torch.ones(()), torch.ones(())
            optimizer.step()
        results.append(params)
    for a, b in zip(*results, strict=True):
        assert torch.equal(a, b)


def test_lean_adams_zero_grad_drops_every_gradient_or_zeroes_it_in_place():
    params = _parameters(0)
    optimizer = LeanAdam([{"params": params[:2]}, {"params": params[2:]}], lr=1e-2, fused=True)
    for param in params:
        param.grad = torch.ones_like(param)
    kept = params[3].grad
    optimizer.zero_grad(set_to_none=False)
    assert params[3].grad is kept and all(not p.grad.any() for p in params)
    optimizer.zero_grad()
    assert all(p.grad is None for p in params)


@pytest.mark.parametrize(("shape", "stride", "dense"), [
    ((8, 4, 1, 3), (12, 1, 12, 4), True),  # channels-last
    ((16, 16, 16), (256, 1, 16), True),  # a 1-D convolution's weight, channels last
    ((3, 4), (4, 1), True), ((3, 4), (1, 3), True),  # contiguous, transposed
    ((5, 7), (14, 2), False),  # every other column: gaps
    ((2, 2), (1, 1), False),  # overlapping
    ((2, 1, 3), (3, 99, 1), True),  # a size-1 dimension's stride does not matter
])
def test_dense_layouts_are_told_from_gaps_and_overlaps(shape, stride, dense):
    """The layouts whose memory LeanAdam may walk as one flat run of values."""
    assert _dense(shape, stride) is dense


def test_lean_adam_gives_the_kernel_flat_views_of_its_channels_last_parameters(monkeypatch):
    """The flat path is taken: from the second step on, the kernel gets the channels-last
    parameters (0 and 4) as 1-D views, the others as they are."""
    kernel, dims = torch._fused_adam_, []

    def spy(params, *args, **kwargs):
        dims.append([p.dim() for p in params])
        return kernel(params, *args, **kwargs)

    monkeypatch.setattr(torch, "_fused_adam_", spy)
    params, grads_of = _parameters(0), _gradients()
    optimizer = LeanAdam(params, lr=1e-2, fused=True)
    for step in range(2):
        _give_gradients(params, grads_of, step)
        optimizer.step()
    assert dims == [[4, 1, 2, 1, 4], [1, 1, 2, 1, 1]]
