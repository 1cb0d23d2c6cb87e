"""The pairwise term of the aggregate KL bound (001 Eq. 21-23): mean_i logsumexp_j a_ij with

    a_ij = -1/2 sum_k [(mu_ik - mu_jk)^2 / s_ijk + log s_ijk],  s_ijk = var_ik + var_jk,

the log of Eq. 21's product over k without its 2 pi, in tiles of the upper triangle only
(a_ij = a_ji) with a hand-written backward. Three kernels:

- ``native``: C++ built with the package (wiseale.pairwise_native): on the CPU, in float32 or
  float64, for M^2 <= KEPT_PAIRS_MAX; nothing to compile when a run starts.
- ``eager``: PyTorch operations on materialised [rows, columns, d] tiles
  (:class:`_SymmetricLogOverlap`: an online logsumexp per row, each tile recomputed in the
  backward, so the extra memory is O(M d) plus one tile); any device, no compiler.
- ``compiled``: tile functions fused by ``torch.compile`` (C++/OpenMP on CPU, Triton on GPU;
  :class:`_CompiledLogOverlap`): the [rows, columns, d] terms are never stored, the log
  overlaps of the upper triangle are, for the backward, up to M^2 = KEPT_PAIRS_MAX; one log
  per pair instead of d where d <= :func:`product_max_d` (:func:`tile_log_overlap`). The
  first shapes get kernels specialised to them, later new shapes one shape-generic kernel
  (torch.compile's automatic dynamic shapes), so a training run compiles a few times at
  most; docs/performance.md has the speed-ups.

``auto`` takes the native kernel where it runs (:func:`pairwise_native.fits`), else the
compiled one when M^2 d >= COMPILE_MIN_ELEMENTS (below that, compiling costs more than it
saves) and its first use on this device and dtype (forward and backward on a copy of the
input) compiled and ran (one warning and eager from then on where not), else eager.
``$WISEALE_COMPILE=0`` turns the compiled kernel off. ``native`` asked for by name falls back
to eager for inputs it does not take.
"""

from __future__ import annotations

import logging
import math
import os
import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from wiseale import pairwise_native
from wiseale.errors import WisealeError

log = logging.getLogger(__name__)  # progress of long steps (the CLI shows INFO)
KERNELS = ("auto", "native", "compiled", "eager")
TILE_ELEMENTS = 2**16  # eager: elements of each [rows, columns, d] tile (256 KB in float32)
COMPILED_TILE_ELEMENTS = 2**22  # compiled: rows x columns x d per call (only [rows, columns]
# is stored)
KEPT_PAIRS_MAX = 2**26  # compiled: the backward reuses the forward's a_ij up to M^2 = 2^26
# (M = 8192: (M^2 + M T) / 2 floats, 138-168 MB in float32), above that recomputes them (the
# memory is then O(M d) plus the tiles' partial logsumexps, M^2 / T floats)
PLANES_MAX_D = 32  # the eager kernel's layout: see _planes
COMPILE_MIN_ELEMENTS = 2**22  # M^2 d from which `auto` compiles (e.g. M = 1024, d = 4)
COMPILE_ENV = "WISEALE_COMPILE"
TILE_PROBE = 64  # the rows of the probe that checks, on resume, that the compiler works
# What a compile costs and saves on the development CPU (benchmarks/kernel_first_use.py,
# docs/performance.md): 12.5-13.8 s once per process with a cold inductor cache, 3.4-4.0 s with
# a warm one, against eager - compiled tiles of 2.9-3.4 ns per pair element M^2 d for a forward
# + backward with one thread and 1.4-1.7 ns for a forward alone.
COMPILE_SECONDS = 8.0
SAVED_SECONDS_PER_ELEMENT = {True: 3e-9, False: 1.4e-9}  # with backward -> s per element
# Where the compiled kernel is faster than the native one (forward + backward, one thread,
# docs/performance.md): 1.2-6.1 ns a pair more for the native kernel at M = 2048-4096, d <= 16
NATIVE_SLOWER_FROM_M, NATIVE_SLOWER_UP_TO_D = 2048, 16
NATIVE_EXTRA_SECONDS_PER_PAIR = 4e-9


def _planes(mu: Tensor) -> bool:
    """Whether the eager kernel lays a tile's [rows, columns, d] terms out as d planes of
    [rows, columns] (d <= PLANES_MAX_D): with d innermost, a small d leaves each elementwise
    pass too short to vectorise (2.25x faster forward + backward at M = 1024, d = 4; slower
    at d = 64: docs/performance.md, "The eager kernel's layout")."""
    return mu.shape[1] <= PLANES_MAX_D


def _log_overlap(mu_i: Tensor, var_i: Tensor, mu: Tensor,
                 var: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """For rows i of a tile against its columns j: (a_ij, t_ijk, 1/s_ijk), t = (mu_i - mu_j)
    / s; t and 1/s as [rows, columns, d], or as [d, rows, columns] where :func:`_planes`."""
    if _planes(mu):  # [d, rows, 1] against [d, 1, columns]
        mu_i, var_i = mu_i.T.contiguous()[:, :, None], var_i.T.contiguous()[:, :, None]
        mu, var, dim = mu.T.contiguous()[:, None, :], var.T.contiguous()[:, None, :], 0
    else:  # [rows, 1, d] against [1, columns, d]
        mu_i, var_i, mu, var, dim = mu_i[:, None, :], var_i[:, None, :], mu[None], var[None], -1
    diff = mu_i - mu
    pair_var = var_i + var
    inv = pair_var.reciprocal()
    t = diff * inv
    a = -0.5 * diff.mul_(t).add_(pair_var.log_()).sum(dim=dim)  # in place: 3 fewer blocks
    return a, t, inv


def _row_and_column_sums(x: Tensor, planes: bool) -> tuple[Tensor, Tensor]:
    """(sum_j x_ijk [rows, d], sum_i x_ijk [columns, d]) of a tile's terms x, laid out as
    [d, rows, columns] where ``planes``, else [rows, columns, d]."""
    if planes:
        return x.sum(dim=2).T, x.sum(dim=1).T
    return x.sum(dim=1), x.sum(dim=0)


def product_max_d(dtype: torch.dtype) -> int:
    """The largest d for which a product of d factors in [1, 2] stays finite in ``dtype``
    (float32 and bfloat16: 126, float64: 1022, float16: 14)."""
    return math.frexp(torch.finfo(dtype).max)[1] - 2


def tile_log_overlap(mu_i: Tensor, var_i: Tensor, logvar_i: Tensor, prec_i: Tensor,
                     mu_j: Tensor, var_j: Tensor, logvar_j: Tensor,
                     prec_j: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(a_ij [rows, columns], its logsumexp over the columns, over the rows), compiled so the
    [rows, columns, d] terms are never stored. Where d <= :func:`product_max_d`, one log per
    pair instead of d: log s_ijk = max(log var_ik, log var_jk) + log(s_ijk min(1/var_ik,
    1/var_jk)), whose second factor lies in [1, 2], so its sum over k is the log of a finite
    product."""
    diff = mu_i[:, None, :] - mu_j[None]
    pair_var = var_i[:, None, :] + var_j[None]
    quad = diff * diff / pair_var
    if mu_i.shape[1] > product_max_d(var_i.dtype):  # the product is in var's dtype
        a = -0.5 * (quad + pair_var.log()).sum(-1)
    else:
        larger = torch.maximum(logvar_i[:, None, :], logvar_j[None])
        ratio = pair_var * torch.minimum(prec_i[:, None, :], prec_j[None])
        a = -0.5 * ((quad + larger).sum(-1) + ratio.prod(-1).log())
    return a, a.logsumexp(1), a.logsumexp(0)


def tile_grad(mu_i: Tensor, var_i: Tensor, a: Tensor, lse_i: Tensor, lse_j: Tensor,
              mu_j: Tensor, var_j: Tensor, scale: Tensor) -> tuple[Tensor, Tensor]:
    """Rows i's share of the gradients of ``scale * sum_i L_i`` from columns j, given a_ij:
    -sum_j c_ij t_ij and 1/2 sum_j c_ij (t_ij^2 - 1/s_ij) with c_ij = W_ij + W_ji (see
    _CompiledLogOverlap); compiled."""
    c = (((a - lse_i[:, None]).exp() + (a - lse_j[None, :]).exp()) * scale)[:, :, None]
    inv = (var_i[:, None, :] + var_j[None]).reciprocal()
    t = (mu_i[:, None, :] - mu_j[None]) * inv
    # c t^2 as (c t) t: t^2 alone may overflow where c = 0. (c t written twice, not named:
    # inductor stores a named [rows, columns, d] term that two reductions share, 5x slower.)
    return -(c * t).sum(1), 0.5 * ((c * t) * t - c * inv).sum(1)


TileOverlap = Callable[..., tuple[Tensor, Tensor, Tensor]]
TileGrad = Callable[..., tuple[Tensor, Tensor]]


class _CompiledLogOverlap(torch.autograd.Function):
    """mean_i L_i from compiled tiles of the upper triangle (a_ij = a_ji), kept for the
    backward where M^2 <= KEPT_PAIRS_MAX ((M^2 + M T) / 2 floats, 2.5 MB at M = 1024,
    d = 64), else recomputed there.

    a is symmetric, so with W_ij = exp(a_ij - L_i) the gradient of the mean is
    1/M sum_j (W_ij + W_ji) da_ij, and W_ji = exp(a_ij - L_j). Then d/dmu_i = -1/M sum_j
    c_ij t_ij and d/dvar_i = 1/(2M) sum_j c_ij (t_ij^2 - 1/s_ij), c_ij = W_ij + W_ji: each
    off-diagonal tile serves its rows, then (transposed) its columns.
    """

    @staticmethod
    def forward(ctx: Any, mu: Tensor, var: Tensor, tile: int, keep: bool,
                overlap_fn: TileOverlap, grad_fn: TileGrad) -> Tensor:
        mu, var = mu.detach(), var.detach()  # as in the probe: one compiled graph, not two
        stats = _tile_stats(mu, var)
        tiles = _tiles(mu.shape[0], tile)
        parts: list[list[Tensor]] = [[] for _ in range(0, mu.shape[0], tile)]
        overlaps = []
        for rows, cols in tiles:
            a, lse_rows, lse_cols = overlap_fn(*(x[rows] for x in stats),
                                               *(x[cols] for x in stats))
            overlaps.append(a if keep else None)
            parts[rows.start // tile].append(lse_rows)
            if cols != rows:
                parts[cols.start // tile].append(lse_cols)
        lse = torch.cat([torch.stack(p, dim=1).logsumexp(dim=1) for p in parts])
        ctx.save_for_backward(mu, var, lse, *overlaps)
        ctx.tile, ctx.overlap_fn, ctx.grad_fn = tile, overlap_fn, grad_fn
        return lse.mean()

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        mu, var, lse, *overlaps = ctx.saved_tensors
        grad_mu, grad_var = torch.zeros_like(mu), torch.zeros_like(var)
        scale = grad / mu.shape[0]
        stats = () if overlaps[0] is not None else _tile_stats(mu, var)
        for (rows, cols), a in zip(_tiles(mu.shape[0], ctx.tile), overlaps, strict=True):
            if a is None:  # M^2 > KEPT_PAIRS_MAX
                a = ctx.overlap_fn(*(x[rows] for x in stats), *(x[cols] for x in stats))[0]
            sides = [(rows, cols, a)] if cols == rows else [(rows, cols, a),
                                                            (cols, rows, a.T.contiguous())]
            for mine, other, overlap in sides:
                g_mu, g_var = ctx.grad_fn(mu[mine], var[mine], overlap, lse[mine], lse[other],
                                          mu[other], var[other], scale)
                grad_mu[mine] += g_mu
                grad_var[mine] += g_var
        return grad_mu, grad_var, None, None, None, None


def _tile_stats(mu: Tensor, var: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """mu, var, log var and 1/var for :func:`tile_log_overlap`; 1/var is NaN where it
    overflows (var < 1 / the dtype's largest, 2.9e-39 in float32), where the max / product
    split does not hold: the value is then NaN, as the eager kernel's is there."""
    return mu, var, var.log(), var.reciprocal().nan_to_num(posinf=math.nan)


def _tiles(m: int, tile: int) -> list[tuple[slice, slice]]:
    """The tiles (rows I, columns J) of the upper triangle of an [M, M] matrix, J >= I."""
    starts = range(0, m, tile)
    return [(slice(i, i + tile), slice(j, j + tile)) for i in starts for j in starts if j >= i]


def _add_to_lse(peak: Tensor, total: Tensor, rows: slice, a: Tensor) -> None:
    """Online logsumexp: fold the values a[r, :] into each row r's running max ``peak`` and
    sum of exp(value - peak) ``total``."""
    new_peak = torch.maximum(peak[rows], a.amax(dim=1))
    total[rows] = total[rows] * (peak[rows] - new_peak).exp() + \
        (a - new_peak[:, None]).exp().sum(dim=1)
    peak[rows] = new_peak


class _SymmetricLogOverlap(torch.autograd.Function):
    """mean_i L_i from the tiles of the upper triangle only: a_ij = a_ji, so a tile (I, J)
    gives rows I their terms in J and rows J theirs in I, half the work of full rows.

    Forward: an online logsumexp per row over the tiles. Backward: c_ij = W_ij + W_ji is
    symmetric and t_ij = -t_ji (see _CompiledLogOverlap), so a tile adds -sum_j c_ij t_ij to
    rows I and +sum_i c_ij t_ij to rows J, and sum c_ij (t_ij^2 - 1/s_ij) / 2 to both."""

    @staticmethod
    def forward(ctx: Any, mu: Tensor, var: Tensor, tile: int) -> Tensor:
        peak, total = torch.full_like(mu[:, 0], -torch.inf), torch.zeros_like(mu[:, 0])
        for rows, cols in _tiles(mu.shape[0], tile):
            a = _log_overlap(mu[rows], var[rows], mu[cols], var[cols])[0]
            _add_to_lse(peak, total, rows, a)
            if cols != rows:
                _add_to_lse(peak, total, cols, a.T)
        lse = peak + total.log()
        ctx.save_for_backward(mu, var, lse)
        ctx.tile = tile
        return lse.mean()

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        mu, var, lse = ctx.saved_tensors
        grad_mu, grad_var = torch.zeros_like(mu), torch.zeros_like(var)
        scale, planes = grad / mu.shape[0], _planes(mu)
        for rows, cols in _tiles(mu.shape[0], ctx.tile):
            a, t, inv = _log_overlap(mu[rows], var[rows], mu[cols], var[cols])
            c = ((a - lse[rows, None]).exp() + (a - lse[None, cols]).exp()) * scale
            c = c if planes else c[:, :, None]
            ct = t * c  # c t, then c t^2 = (c t) t: t^2 alone may overflow where c = 0
            w = inv.mul_(-c).addcmul_(ct, t)  # c (t^2 - 1/s)
            (mu_rows, mu_cols), (var_rows, var_cols) = (_row_and_column_sums(ct, planes),
                                                        _row_and_column_sums(w, planes))
            grad_mu[rows] -= mu_rows
            grad_var[rows] += 0.5 * var_rows
            if cols != rows:
                grad_mu[cols] += mu_cols
                grad_var[cols] += 0.5 * var_cols
        return grad_mu, grad_var, None


_compiled: tuple[TileOverlap, TileGrad] | None = None
_probed: dict[tuple[str, torch.dtype], bool] = {}


def _compiled_kernels() -> tuple[TileOverlap, TileGrad]:
    global _compiled
    if _compiled is None:
        _compiled = (torch.compile(tile_log_overlap), torch.compile(tile_grad))
    return _compiled


def compiles(mu: Tensor, var: Tensor, tile: int) -> bool:
    """Whether the compiled kernel builds and runs here, tried once per device type and dtype
    with a forward and backward on a copy of this input (which compiles its shapes); a
    failure warns once."""
    key = (mu.device.type, mu.dtype)
    if key not in _probed:
        log.info("compiling the aggregate-KL kernel for %s %s (4-14 s on a CPU, once per "
                 "process)", *key)
        try:
            with torch.enable_grad():  # the caller may be evaluating under no_grad
                trial = mu.detach().clone().requires_grad_()
                _CompiledLogOverlap.apply(trial, var.detach(), tile, _keeps(trial, var),
                                          *_compiled_kernels()).backward()
            _probed[key] = True
        except Exception as exc:  # any compiler or toolchain failure: fall back to eager
            _probed[key] = False
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            warnings.warn(f"torch.compile failed on {key[0]} {key[1]} ({first}); the "
                          "aggregate KL uses its eager kernel (set WISEALE_COMPILE=0 to skip "
                          "the attempt)", RuntimeWarning, stacklevel=3)
    return _probed[key]


def compile_pays(m: int, d: int, calls: int, backward: bool = True) -> bool:
    """Whether ``calls`` evaluations at batch ``m`` and latent size ``d`` save more time with
    the compiled kernel than its compile costs (COMPILE_SECONDS): a short run stays eager."""
    return calls * m * m * d * SAVED_SECONDS_PER_ELEMENT[backward] >= COMPILE_SECONDS


def planned_kernel(m: int, d: int, calls: int | None, backward: bool = True) -> str:
    """``auto`` where the compile pays for ``calls`` evaluations (or they are not known), else
    ``native`` where it was built (eager for inputs it does not take), else ``eager``."""
    if calls is None or compile_pays(m, d, calls, backward):
        return "auto"
    return "native" if pairwise_native.available() else "eager"


def run_kernel(m: int, d: int, calls: int, device: torch.device,
               backward: bool = True) -> str:
    """The kernel of a run's ``calls`` evaluations at batch ``m`` and latent size ``d``:
    native where it runs (:func:`pairwise_native.fits`) unless the compiled kernel pays its
    compile over it (:func:`_compiled_beats_native`); else compiled where ``auto`` would
    compile (``COMPILE_MIN_ELEMENTS``, $WISEALE_COMPILE), the compile pays
    (:func:`compile_pays`) and the compiler works here (:func:`compiles`); else native where
    it runs, else eager. The kernels round differently, so a run chooses once, at its start,
    and a resumed run keeps its choice (wiseale.training.run.Run.keep)."""
    mu = torch.zeros(m, d, device=device)
    var = torch.ones_like(mu)
    native = pairwise_native.fits(mu, var, KEPT_PAIRS_MAX)
    fallback = "native" if native else "eager"
    if native and not _compiled_beats_native(m, d, calls):
        return "native"
    if planned_kernel(m, d, calls, backward) != "auto" or not _use_compiled(mu, "auto"):
        return fallback
    return "compiled" if compiles(mu, var, _tile(mu, compiled=True)) else fallback


def _compiled_beats_native(m: int, d: int, calls: int) -> bool:
    """Whether ``calls`` evaluations save more with the compiled kernel than with the native
    one than the compile costs: only from M = NATIVE_SLOWER_FROM_M up to d =
    NATIVE_SLOWER_UP_TO_D, where the native kernel's passes over its [M, M] matrix (by
    torch, out of cache there) cost more than the compiled kernel's fused tiles."""
    return (m >= NATIVE_SLOWER_FROM_M and d <= NATIVE_SLOWER_UP_TO_D
            and calls * m * m * NATIVE_EXTRA_SECONDS_PER_PAIR >= COMPILE_SECONDS)


def kernel_works(kernel: str, device: torch.device) -> bool:
    """Whether a run's saved ``kernel`` runs on ``device`` here (a resumed run's)."""
    if kernel == "native":
        return device.type == "cpu" and pairwise_native.available()
    if kernel == "compiled":
        mu = torch.zeros(TILE_PROBE, 4, device=device)
        return _compile_allowed() and compiles(mu, torch.ones_like(mu), TILE_PROBE)
    return True


def _compile_allowed() -> bool:
    return os.environ.get(COMPILE_ENV, "1") != "0"


def _use_compiled(mu: Tensor, kernel: str) -> bool:
    if kernel == "compiled":
        return True
    if kernel == "eager" or not _compile_allowed():
        return False
    m, d = mu.shape
    return m * m * d >= COMPILE_MIN_ELEMENTS


def _tile(mu: Tensor, compiled: bool) -> int:
    """The tile side T of a kernel: T x T x d about COMPILED_TILE_ELEMENTS or TILE_ELEMENTS."""
    return max(1, math.isqrt((COMPILED_TILE_ELEMENTS if compiled else TILE_ELEMENTS)
                             // mu.shape[1]))


def mean_log_overlap(mu: Tensor, var: Tensor, chunk_size: int | None = None,
                     kernel: str = "auto") -> Tensor:
    """mean_i logsumexp_j a_ij for posteriors N(mu_j, diag(var_j)) [M, d], differentiable,
    with the ``kernel`` (one of KERNELS), in tiles of ``chunk_size`` x ``chunk_size`` pairs
    (default: about TILE_ELEMENTS elements of rows x columns x d for the eager kernel, the
    fastest of 2^15 to 2^18 at d = 4 on the development CPU, COMPILED_TILE_ELEMENTS for the
    compiled one)."""
    if kernel not in KERNELS:
        raise ValueError(f"unknown aggregate KL kernel {kernel!r}; use one of "
                         f"{', '.join(KERNELS)}")
    if kernel in ("auto", "native") and pairwise_native.fits(mu, var, KEPT_PAIRS_MAX):
        return pairwise_native.NativeLogOverlap.apply(mu, var)
    if kernel == "native" and not pairwise_native.available():
        raise WisealeError("the native aggregate-KL kernel was not built with this install "
                           "(no C++ compiler then): reinstall wiseale with g++ present (`make "
                           "install` installs it), or use kernel auto or eager")
    compiled = kernel != "native" and _use_compiled(mu, kernel)
    if compiled and kernel == "auto":
        compiled = compiles(mu, var, chunk_size or _tile(mu, compiled=True))
    tile = chunk_size or _tile(mu, compiled)
    if not compiled:
        return _SymmetricLogOverlap.apply(mu, var, tile)
    return _CompiledLogOverlap.apply(mu, var, tile, _keeps(mu, var), *_compiled_kernels())


def _keeps(mu: Tensor, var: Tensor) -> bool:
    """Whether the compiled kernel keeps its forward's a_ij: for a backward (gradients on,
    an input needs one) where M^2 <= KEPT_PAIRS_MAX."""
    return (torch.is_grad_enabled() and (mu.requires_grad or var.requires_grad)
            and mu.shape[0] ** 2 <= KEPT_PAIRS_MAX)
