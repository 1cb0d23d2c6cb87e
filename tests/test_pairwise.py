"""The aggregate KL's pairwise kernels (wiseale.pairwise): the native and compiled kernels
against the literal Eq. 21 in float64, and how ``auto`` chooses."""

import math
import warnings
from pathlib import Path

import pytest
import torch

from wiseale import pairwise, pairwise_native
from wiseale.errors import WisealeError
from wiseale.functional import aggregate_kl_upper_bound, aggregate_kl_upper_bound_reference


def _inputs(m: int, d: int, dtype: torch.dtype, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    mu = (2 * torch.randn(m, d, generator=g, dtype=torch.float64)).to(dtype)
    logvar = (torch.randn(m, d, generator=g, dtype=torch.float64) - 1).to(dtype)
    return mu.requires_grad_(), logvar.requires_grad_()


def _value_and_grads(fn, mu, logvar):
    value = fn(mu, logvar)
    grads = torch.autograd.grad(3.0 * value, (mu, logvar))
    return value.detach().double(), [g.double() for g in grads]


@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-10), (torch.float32, 2e-5)])
def test_compiled_kernel_equals_the_literal_formula(dtype, tol):
    """001 Eq. 21-24 through torch.compile: value and both gradients, tiles of 8 x 8 pairs
    over M = 37 (partial last tiles) and the default tile (one tile here)."""
    mu, logvar = _inputs(37, 5, dtype)
    ref, ref_grads = _value_and_grads(aggregate_kl_upper_bound_reference,
                                      *(t.detach().double().requires_grad_() for t in (mu, logvar)))
    for chunk in (8, None):
        value, grads = _value_and_grads(
            lambda a, b, c=chunk: aggregate_kl_upper_bound(a, b, c, kernel="compiled"),
            mu, logvar)
        assert torch.allclose(value, ref, rtol=tol, atol=0)
        for ours, theirs in zip(grads, ref_grads, strict=True):
            assert torch.allclose(ours, theirs, rtol=tol, atol=tol * theirs.abs().max())


def _log_space_brute_force(mu, logvar):
    """001 Eq. 21-24 with the product over k summed in log space over all [M, M, d] terms at
    once, autograd for the gradients (the literal product overflows at d = 1024)."""
    var = logvar.exp()
    pair_var = var[:, None] + var[None]
    a = -0.5 * ((mu[:, None] - mu[None]).square() / pair_var + pair_var.log()).sum(-1)
    m = mu.shape[0]
    return (torch.logsumexp(a, 1).mean() - math.log(m)
            + 0.5 * (var + mu.square()).sum(-1).mean())


@pytest.mark.parametrize("d", [5, pairwise.product_max_d(torch.float64) + 2])  # 1 or d logs
@pytest.mark.parametrize("tile", [3, 8, 64])
@pytest.mark.parametrize("kept_pairs_max", [2**26, 0])  # a_ij kept for the backward, or not
def test_compiled_kernels_tiles_equal_a_brute_force_over_wide_variances(
        d, tile, kept_pairs_max, monkeypatch):
    """The compiled kernel's tile functions, run uncompiled in float64, against Eq. 21 over
    all pairs at once: value and both gradients over M = 17 (partial tiles, a single tile),
    with variances from e^-20 to e^20 (the max / product split of sum_k log s_ijk), the
    forward's a_ij reused by the backward or recomputed there; at d = 5 also against the
    literal formula."""
    _uncompiled(monkeypatch)
    monkeypatch.setattr(pairwise, "KEPT_PAIRS_MAX", kept_pairs_max)
    g = torch.Generator().manual_seed(d + tile)
    mu = (3 * torch.randn(17, d, generator=g, dtype=torch.float64)).requires_grad_()
    logvar = (40 * torch.rand(17, d, generator=g, dtype=torch.float64) - 20).requires_grad_()
    value, grads = _value_and_grads(
        lambda a, b: aggregate_kl_upper_bound(a, b, tile, kernel="compiled"), mu, logvar)
    references = [_log_space_brute_force] + [aggregate_kl_upper_bound_reference] * (d < 10)
    for reference in references:
        ref, ref_grads = _value_and_grads(reference, mu, logvar)
        assert torch.allclose(value, ref, rtol=1e-10, atol=0)
        for ours, theirs in zip(grads, ref_grads, strict=True):
            assert torch.allclose(ours, theirs, rtol=1e-9, atol=1e-9 * theirs.abs().max())


def test_the_product_of_a_compiled_tile_stays_finite_in_float32(monkeypatch):
    """At d = product_max_d(float32), variances from e^-20 to e^20: each of the d factors
    s_ijk min(1/var_ik, 1/var_jk) lies in [1, 2], so their product is finite, and the value
    and gradients stay within float32 rounding of float64's."""
    _uncompiled(monkeypatch)
    g = torch.Generator().manual_seed(1)
    d = pairwise.product_max_d(torch.float32)
    mu64 = 3 * torch.randn(24, d, generator=g, dtype=torch.float64)
    logvar64 = 40 * torch.rand(24, d, generator=g, dtype=torch.float64) - 20
    logvar64[:, :40] = 20.0  # pairs whose factors are all 2 in 40 dimensions
    results = []
    for dtype in (torch.float64, torch.float32):
        mu, logvar = (t.to(dtype).requires_grad_() for t in (mu64, logvar64))
        results.append(_value_and_grads(
            lambda a, b: aggregate_kl_upper_bound(a, b, 8, kernel="compiled"), mu, logvar))
    (ref, ref_grads), (value, grads) = results
    assert torch.isfinite(value) and torch.allclose(value, ref, rtol=2e-6, atol=0)
    for ours, theirs in zip(grads, ref_grads, strict=True):
        assert torch.allclose(ours, theirs, rtol=1e-4, atol=1e-4 * theirs.abs().max())


def _uncompiled(monkeypatch):
    """The compiled kernel's tile functions, run as plain PyTorch (no compiler needed)."""
    monkeypatch.setattr(pairwise, "_compiled_kernels",
                        lambda: (pairwise.tile_log_overlap, pairwise.tile_grad))


@pytest.mark.parametrize("kernel", ["compiled", "eager"])
def test_tiny_variances_give_finite_gradients_or_a_nan_value_never_a_wrong_one(kernel,
                                                                               monkeypatch):
    """float32, three of six posteriors with var = e^-50 and e^-80: value and gradients
    finite and within float32 rounding of float64's (t^2 alone overflows there while its
    weight c is 0); with var = e^-90 (below 1 / float32's largest, so 1/var overflows) the
    value is NaN, for the training guard to stop on, not a finite wrong number."""
    _uncompiled(monkeypatch)
    g = torch.Generator().manual_seed(3)
    mu64 = torch.randn(6, 4, generator=g, dtype=torch.float64)
    for tiny in (-50.0, -80.0, -90.0):
        logvar64 = 0.1 * torch.randn(6, 4, generator=g, dtype=torch.float64)
        logvar64[:3] = tiny
        results = [_value_and_grads(lambda a, b: aggregate_kl_upper_bound(a, b, 4, kernel),
                                    *(t.to(dtype).requires_grad_() for t in (mu64, logvar64)))
                   for dtype in (torch.float64, torch.float32)]
        (ref, ref_grads), (value, grads) = results
        if tiny == -90.0:
            assert torch.isnan(value) and torch.isfinite(ref)
            continue
        assert torch.allclose(value, ref, rtol=1e-6, atol=0)
        for ours, theirs in zip(grads, ref_grads, strict=True):
            assert torch.isfinite(ours).all()
            assert torch.allclose(ours, theirs, rtol=1e-4, atol=1e-4 * theirs.abs().max())


def test_the_compiled_tiles_take_the_product_in_the_variances_dtype(monkeypatch):
    """mu in float64, log-variances in float32 at d = 200 (more factors than a float32
    product holds): the value equals float64's, not -inf."""
    _uncompiled(monkeypatch)
    g = torch.Generator().manual_seed(4)
    mu = torch.randn(9, 200, generator=g, dtype=torch.float64)
    logvar = torch.full((9, 200), 20.0)  # every factor of the pairs' products is 2
    value = aggregate_kl_upper_bound(mu, logvar, 4, kernel="compiled")
    expected = _log_space_brute_force(mu, logvar.double())
    assert torch.allclose(value.double(), expected, rtol=1e-6, atol=0)


def test_the_compiled_kernel_keeps_its_log_overlaps_only_for_a_backward_that_fits(
        monkeypatch):
    """The forward's a_ij are kept for the backward where M^2 <= KEPT_PAIRS_MAX and a
    gradient is wanted; else none are (recomputed by a backward, not needed under
    no_grad)."""
    _uncompiled(monkeypatch)
    mu, logvar = _inputs(17, 3, torch.float64)
    var = logvar.exp()

    def kept(limit: int) -> list[bool]:
        monkeypatch.setattr(pairwise, "KEPT_PAIRS_MAX", limit)
        out = pairwise.mean_log_overlap(mu, var, 8, kernel="compiled")
        return [t is not None for t in out.grad_fn.saved_tensors[3:]]

    assert kept(17 * 17) == [True] * 6  # 3 diagonal and 3 off-diagonal tiles
    assert kept(17 * 17 - 1) == [False] * 6
    monkeypatch.setattr(pairwise, "KEPT_PAIRS_MAX", 17 * 17)
    with torch.no_grad():
        assert not pairwise._keeps(mu, var)
        assert torch.isfinite(pairwise.mean_log_overlap(mu, var, 8, kernel="compiled"))


def test_auto_compiles_only_large_batches(monkeypatch):
    mu = torch.zeros(64, 4)
    assert not pairwise._use_compiled(mu, "auto")  # 64^2 * 4 < COMPILE_MIN_ELEMENTS
    monkeypatch.setattr(pairwise, "COMPILE_MIN_ELEMENTS", 64 * 64 * 4)
    assert pairwise._use_compiled(mu, "auto") and not pairwise._use_compiled(mu, "eager")
    monkeypatch.setenv("WISEALE_COMPILE", "0")
    assert not pairwise._use_compiled(mu, "auto") and pairwise._use_compiled(mu, "compiled")
    with pytest.raises(ValueError, match="unknown aggregate KL kernel 'fused'; use one of auto"):
        aggregate_kl_upper_bound(mu, mu, kernel="fused")


@pytest.fixture
def without_native(monkeypatch):
    """An install without the native kernel (no C++ compiler then): ``auto`` chooses between
    the compiled and eager kernels."""
    monkeypatch.setattr(pairwise_native, "available", lambda: False)


def test_a_failing_compiler_warns_once_and_falls_back_to_eager(monkeypatch, without_native):
    def broken(*args):
        raise RuntimeError("no C++ compiler found\nsecond line")

    monkeypatch.setattr(pairwise, "_compiled", (broken, broken))
    monkeypatch.setattr(pairwise, "_probed", {})
    monkeypatch.setattr(pairwise, "COMPILE_MIN_ELEMENTS", 1)
    mu, logvar = _inputs(6, 3, torch.float32)
    with pytest.warns(RuntimeWarning, match=r"torch.compile failed on cpu torch.float32 \(no C"):
        value = aggregate_kl_upper_bound(mu, logvar)
    expected = aggregate_kl_upper_bound(mu, logvar, kernel="eager")
    assert torch.equal(value, expected)
    assert pairwise._probed == {("cpu", torch.float32): False}


def test_auto_probes_the_compiler_under_no_grad_too(monkeypatch, without_native):
    """Evaluation runs under no_grad: the probe (a forward and backward) must still work, and
    the value equal the eager kernel's."""
    monkeypatch.setattr(pairwise, "_probed", {})
    monkeypatch.setattr(pairwise, "COMPILE_MIN_ELEMENTS", 1)
    mu, logvar = (t.detach() for t in _inputs(37, 5, torch.float32, seed=2))
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("error")
        value = aggregate_kl_upper_bound(mu, logvar)
    assert pairwise._probed == {("cpu", torch.float32): True}
    expected = aggregate_kl_upper_bound(mu, logvar, kernel="eager")
    assert torch.allclose(value, expected, rtol=1e-5)


def test_compile_pays_only_for_enough_calls():
    """The compile (about 8 s) is paid only where the eager kernel's extra time over the run
    exceeds it: 24 steps at M = 1024, d = 4 stay eager, 10,000 compile, M = 2048, d = 64
    compiles for 10 steps, not for 9."""
    from wiseale.pairwise import compile_pays, planned_kernel

    assert not compile_pays(1024, 4, 24) and compile_pays(1024, 4, 10_000)
    assert compile_pays(2048, 64, 10) and not compile_pays(2048, 64, 9)
    assert not compile_pays(4096, 4, 12, backward=False)  # 12 evaluations, forward only
    assert planned_kernel(1024, 4, None) == "auto" and planned_kernel(1024, 4, 24) == "native"


def test_a_short_run_does_not_compile_the_aggregate_kl(monkeypatch, without_native):
    """A run of few steps gets the eager kernel without building the compiled one; a long
    run at this size gets the compiled kernel (built and probed once)."""
    built = []

    def compiled_kernels():
        built.append(1)
        return pairwise.tile_log_overlap, pairwise.tile_grad  # stand-ins: no compiler needed

    monkeypatch.delenv(pairwise.COMPILE_ENV, raising=False)
    monkeypatch.setattr(pairwise, "_compiled_kernels", compiled_kernels)
    monkeypatch.setattr(pairwise, "_probed", {})
    cpu = torch.device("cpu")
    assert pairwise.run_kernel(1024, 4, 24, cpu) == "eager"
    assert built == []
    assert pairwise.run_kernel(1024, 4, 100_000, cpu) == "compiled"
    assert built
    assert pairwise.run_kernel(16, 4, 100_000, cpu) == "eager"  # below COMPILE_MIN_ELEMENTS


def test_training_sets_the_kernel_it_chose_on_the_regularisers(tmp_path, tiny_sine,
                                                                monkeypatch):
    """Native where it was built; else, for 8 steps (256 / 32, 2 epochs), eager."""
    from wiseale.training import train

    model = train(tiny_sine, tmp_path / "run", progress=False)
    assert [term.pairwise_kernel for term in model.regularizers] == ["native"]
    monkeypatch.setattr(pairwise_native, "available", lambda: False)
    model = train(tiny_sine, tmp_path / "without", progress=False)
    assert [term.pairwise_kernel for term in model.regularizers] == ["eager"]


def test_the_native_kernel_was_built():
    """`make install` builds it (setup.py; optional there, so that an install without a
    compiler goes on): here it must have been."""
    assert pairwise_native.available()


@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-10), (torch.float32, 2e-5)])
@pytest.mark.parametrize("m, d", [(1, 1), (5, 3), (37, 5), (64, 64), (70, 130), (129, 17)])
def test_native_kernel_equals_a_brute_force(m, d, dtype, tol):
    """Value and both gradients against Eq. 21 over all pairs in float64: one row, partial and
    whole tiles of 64 rows, dimensions padded to the vector in the backward (17), more than one
    product of 64 factors (130)."""
    mu, logvar = _inputs(m, d, dtype, seed=m + d)
    ref, ref_grads = _value_and_grads(_log_space_brute_force,
                                      *(t.detach().double().requires_grad_() for t in (mu, logvar)))
    overlap = pairwise.mean_log_overlap(mu, logvar.exp(), kernel="native")
    assert overlap.grad_fn.name() == "NativeLogOverlapBackward"
    value, grads = _value_and_grads(lambda a, b: aggregate_kl_upper_bound(a, b, kernel="native"),
                                    mu, logvar)
    assert torch.allclose(value, ref, rtol=tol, atol=0)
    for ours, theirs in zip(grads, ref_grads, strict=True):
        assert torch.allclose(ours, theirs, rtol=tol, atol=tol * theirs.abs().max())


@pytest.fixture
def instruction_sets():
    """Runs the native kernel on each instruction set this CPU has (AVX-512, AVX2, base); puts
    back the one it chose."""
    lib = pairwise_native.library()
    chosen = lib.wiseale_instruction_set()
    yield [lib.wiseale_use_instruction_set(wanted) for wanted in (0, 1, 2)], lib
    lib.wiseale_use_instruction_set(chosen)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_the_native_kernels_instruction_sets_and_runs_give_the_same_bits(dtype,
                                                                        instruction_sets):
    """With contraction off, the AVX-512, AVX2 and base builds round alike; two threads' sums
    are the same bits from call to call, and within rounding of one thread's."""
    sets, lib = instruction_sets
    mu, logvar = _inputs(150, 21, dtype, seed=5)

    def run():
        return _value_and_grads(lambda a, b: aggregate_kl_upper_bound(a, b, kernel="native"),
                                mu, logvar)

    results = []
    for wanted in sorted(set(sets)):
        lib.wiseale_use_instruction_set(wanted)
        results.append(run())
    for value, grads in results[1:]:
        assert torch.equal(value, results[0][0])
        assert all(torch.equal(a, b) for a, b in zip(grads, results[0][1], strict=True))
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        (first, first_grads), (second, second_grads) = run(), run()
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(first, second)
    assert all(torch.equal(a, b) for a, b in zip(first_grads, second_grads, strict=True))
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    assert torch.allclose(first, results[0][0], rtol=tol)
    for ours, theirs in zip(first_grads, results[0][1], strict=True):
        assert torch.allclose(ours, theirs, rtol=tol, atol=tol * theirs.abs().max())


def test_native_falls_back_to_eager_where_it_does_not_fit(monkeypatch):
    """1/var overflowing (var = e^-90 in float32: the eager kernel's NaN, not a wrong finite
    value), M^2 above KEPT_PAIRS_MAX, or float16: the eager kernel's value; ``native`` named
    without the library: a one-line error."""
    mu, logvar = _inputs(6, 4, torch.float32)
    tiny = logvar.detach().clone()
    tiny[:3] = -90.0
    assert torch.isnan(aggregate_kl_upper_bound(mu, tiny, kernel="native"))
    monkeypatch.setattr(pairwise, "KEPT_PAIRS_MAX", 35)
    overlap = pairwise.mean_log_overlap(mu, logvar.exp(), kernel="native")
    assert overlap.grad_fn.name() == "_SymmetricLogOverlapBackward"
    assert torch.equal(overlap, pairwise.mean_log_overlap(mu, logvar.exp(), kernel="eager"))
    monkeypatch.setattr(pairwise, "KEPT_PAIRS_MAX", 36)
    assert not pairwise_native.fits(mu.half(), logvar.half().exp(), 36)
    assert pairwise_native.fits(mu, logvar.exp(), 36)
    monkeypatch.setattr(pairwise_native, "available", lambda: False)
    with pytest.raises(WisealeError, match="native aggregate-KL kernel was not built"):
        aggregate_kl_upper_bound(mu, logvar, kernel="native")


def test_the_native_kernel_uses_the_best_instruction_set_of_this_cpu(instruction_sets):
    """AVX-512 where /proc/cpuinfo lists it, else AVX2 (with FMA), else the base build."""
    flags = next((line.split(":", 1)[1].split() for line in
                  Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags")),
                 [])
    best = 2 if {"avx512f", "avx512dq", "avx512vl", "avx512bw"} <= set(flags) else \
        1 if {"avx2", "fma"} <= set(flags) else 0
    _, lib = instruction_sets
    assert lib.wiseale_use_instruction_set(2) == best


def test_long_runs_at_wide_batches_and_small_d_compile_rather_than_run_native(monkeypatch):
    """From M = 2048 at d <= 16 the compiled kernel is faster per call than the native one:
    a run long enough to pay the compile over the difference compiles; a short one, a larger
    d or a smaller M stays native, and so does a run where the compiler fails."""
    monkeypatch.delenv(pairwise.COMPILE_ENV, raising=False)
    monkeypatch.setattr(pairwise, "compiles", lambda *args: True)
    cpu = torch.device("cpu")
    assert pairwise.run_kernel(4096, 4, 10_000, cpu) == "compiled"
    assert pairwise.run_kernel(4096, 4, 100, cpu) == "native"  # 100 x 16.8M x 4 ns < 8 s
    assert pairwise.run_kernel(4096, 64, 10**6, cpu) == "native"
    assert pairwise.run_kernel(1024, 4, 10**6, cpu) == "native"
    monkeypatch.setattr(pairwise, "compiles", lambda *args: False)
    assert pairwise.run_kernel(4096, 4, 10_000, cpu) == "native"


def test_a_native_library_built_from_other_sources_is_refused(monkeypatch):
    """A library whose functions take other arguments (built before a change, not rebuilt) is
    never called: a warning says to reinstall, and the other kernels take over."""
    monkeypatch.setattr(pairwise_native, "ABI", pairwise_native.ABI + 1)
    with pytest.warns(RuntimeWarning, match="was built from other sources .* reinstall"):
        assert pairwise_native.library.__wrapped__() is None
