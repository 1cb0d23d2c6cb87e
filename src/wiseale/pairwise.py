"""The pairwise term of the aggregate KL bound (001 Eq. 21-23): mean_i logsumexp_j a_ij with

    a_ij = -1/2 sum_k [(mu_ik - mu_jk)^2 / s_ijk + log s_ijk],  s_ijk = var_ik + var_jk,

the log of Eq. 21's product over k without its 2 pi, in blocks with a hand-written backward
that recomputes each block, so the extra memory is O(M d) plus one block.

Two kernels evaluate the same terms (:func:`_log_overlap`):

- ``eager``: PyTorch operations on materialised [rows, columns, d] tiles of the upper
  triangle only, since a_ij = a_ji (:class:`_SymmetricLogOverlap`: half the pairs, an online
  logsumexp per row); any device, no compiler.
- ``compiled``: block functions of rows against all M (:class:`_PairwiseLogOverlap`) fused by
  ``torch.compile`` (C++/OpenMP on CPU, Triton on GPU): the [rows, M, d] terms are never
  stored, only [rows, M]. The first shapes get kernels specialised to them (at d = 4 about 3x
  faster than shape-generic ones), later new shapes one shape-generic kernel (torch.compile's
  automatic dynamic shapes), so a training run compiles a few times at most;
  docs/performance.md has the speed-ups.

``auto`` takes the compiled kernel when M^2 d >= COMPILE_MIN_ELEMENTS (below that, compiling
costs more than it saves) and its first use on this device and dtype (forward and backward on
a copy of the input) compiled and ran; else one warning and eager from then on.
``$WISEALE_COMPILE=0`` turns it off.
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

log = logging.getLogger(__name__)  # progress of long steps (the CLI shows INFO)
KERNELS = ("auto", "compiled", "eager")
TILE_ELEMENTS = 2**16  # eager: elements of each [rows, columns, d] tile (256 KB in float32)
COMPILED_BLOCK_ELEMENTS = 2**24  # compiled: rows x M x d per call (only [rows, M] is stored)
PLANES_MAX_D = 32  # the eager kernel's layout: see _planes
COMPILE_MIN_ELEMENTS = 2**22  # M^2 d from which `auto` compiles (e.g. M = 1024, d = 4)
COMPILE_ENV = "WISEALE_COMPILE"
# What a compile costs and saves on the development CPU (benchmarks/kernel_first_use.py,
# docs/performance.md): 11.5 s once per process with a cold inductor cache, 6.2 s with a warm
# one, against eager (symmetric tiles) - compiled of 0.05-1.6 ns per pair element M^2 d for a
# forward + backward with one thread, 2.0-2.4 ns with two, and 1.1-1.6 ns for a forward alone.
COMPILE_SECONDS = 8.0
SAVED_SECONDS_PER_ELEMENT = {True: 1e-9, False: 1e-9}  # with backward -> s per element

BlockLse = Callable[[Tensor, Tensor, Tensor, Tensor], Tensor]
BlockGrad = Callable[..., tuple[Tensor, Tensor]]


def _planes(mu: Tensor) -> bool:
    """Whether the eager kernel lays a block's [rows, M, d] terms out as d planes of [rows, M]
    (d <= PLANES_MAX_D): with d innermost, a small d leaves each elementwise pass too short to
    vectorise (2.25x faster forward + backward at M = 1024, d = 4; slower at d = 64:
    docs/performance.md, "The eager kernel's layout"). The compiled kernel never stores the
    terms and keeps rows of d."""
    return mu.shape[1] <= PLANES_MAX_D and not torch.compiler.is_compiling()


def _log_overlap(mu_i: Tensor, var_i: Tensor, mu: Tensor,
                 var: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """For rows i of a block against all j: (a_ij, t_ijk, 1/s_ijk), t = (mu_i - mu_j) / s;
    t and 1/s as [rows, M, d], or as [d, rows, M] where :func:`_planes`."""
    if _planes(mu):  # [d, rows, 1] against [d, 1, M]
        mu_i, var_i = mu_i.T.contiguous()[:, :, None], var_i.T.contiguous()[:, :, None]
        mu, var, dim = mu.T.contiguous()[:, None, :], var.T.contiguous()[:, None, :], 0
    else:  # [rows, 1, d] against [1, M, d]
        mu_i, var_i, mu, var, dim = mu_i[:, None, :], var_i[:, None, :], mu[None], var[None], -1
    diff = mu_i - mu
    pair_var = var_i + var
    inv = pair_var.reciprocal()
    t = diff * inv
    a = -0.5 * diff.mul_(t).add_(pair_var.log_()).sum(dim=dim)  # in place: 3 fewer blocks
    return a, t, inv


def _row_sums(c: Tensor, t: Tensor, planes: bool) -> Tensor:
    """sum_j c_ij t_ijk, [rows, d] (t as [d, rows, columns] where ``planes``): one fused
    reduction when compiled."""
    return (t * c).sum(dim=2).T if planes else (c[:, :, None] * t).sum(dim=1)


def _row_and_column_sums(c: Tensor, t: Tensor, planes: bool) -> tuple[Tensor, Tensor]:
    """(sum_j c_ij t_ijk [rows, d], sum_i c_ij t_ijk [columns, d]) of a tile, from one
    product written over t."""
    if planes:  # t: [d, rows, columns]
        t.mul_(c)
        return t.sum(dim=2).T, t.sum(dim=1).T
    t.mul_(c[:, :, None])
    return t.sum(dim=1), t.sum(dim=0)


def block_lse(mu_i: Tensor, var_i: Tensor, mu: Tensor, var: Tensor) -> Tensor:
    """L_i = logsumexp_j a_ij for the rows i of a block."""
    return torch.logsumexp(_log_overlap(mu_i, var_i, mu, var)[0], dim=1)


def block_grad(mu_i: Tensor, var_i: Tensor, lse_i: Tensor, mu: Tensor, var: Tensor,
               lse: Tensor, scale: Tensor) -> tuple[Tensor, Tensor]:
    """Gradients of ``scale * sum_i L_i`` for the rows i of a block (see _PairwiseLogOverlap)."""
    a, t, inv = _log_overlap(mu_i, var_i, mu, var)
    c = ((a - lse_i[:, None]).exp() + (a - lse[None, :]).exp()) * scale
    planes = _planes(mu)
    return -_row_sums(c, t, planes), 0.5 * _row_sums(c, inv.neg_().addcmul_(t, t), planes)


class _PairwiseLogOverlap(torch.autograd.Function):
    """mean_i L_i with a blockwise backward.

    a is symmetric, so with W_ij = exp(a_ij - L_i) the gradient of the mean is
    1/M sum_j (W_ij + W_ji) da_ij, and W_ji = exp(a_ij - L_j): each block of rows needs only
    L (saved, [M]) and its own recomputed a, t, 1/s. Then d/dmu_i = -1/M sum_j c_ij t_ij and
    d/dvar_i = 1/(2M) sum_j c_ij (t_ij^2 - 1/s_ij) with c_ij = W_ij + W_ji.
    """

    @staticmethod
    def forward(ctx: Any, mu: Tensor, var: Tensor, chunk_size: int, lse_fn: BlockLse,
                grad_fn: BlockGrad) -> Tensor:
        lse = torch.cat([lse_fn(mu[r:r + chunk_size], var[r:r + chunk_size], mu, var)
                         for r in range(0, mu.shape[0], chunk_size)])
        ctx.save_for_backward(mu, var, lse)
        ctx.chunk_size, ctx.grad_fn = chunk_size, grad_fn
        return lse.mean()

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        mu, var, lse = ctx.saved_tensors
        m, chunk_size = mu.shape[0], ctx.chunk_size
        grad_mu, grad_var = torch.empty_like(mu), torch.empty_like(var)
        scale = grad / m
        for r in range(0, m, chunk_size):
            rows = slice(r, r + chunk_size)
            grad_mu[rows], grad_var[rows] = ctx.grad_fn(mu[rows], var[rows], lse[rows], mu, var,
                                                        lse, scale)
        return grad_mu, grad_var, None, None, None


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
    symmetric and t_ij = -t_ji (see _PairwiseLogOverlap), so a tile adds -sum_j c_ij t_ij to
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
            w = inv.neg_().addcmul_(t, t)  # t^2 - 1/s, before t is overwritten
            (mu_rows, mu_cols), (var_rows, var_cols) = (_row_and_column_sums(c, t, planes),
                                                        _row_and_column_sums(c, w, planes))
            grad_mu[rows] -= mu_rows
            grad_var[rows] += 0.5 * var_rows
            if cols != rows:
                grad_mu[cols] += mu_cols
                grad_var[cols] += 0.5 * var_cols
        return grad_mu, grad_var, None


_compiled: tuple[BlockLse, BlockGrad] | None = None
_probed: dict[tuple[str, torch.dtype], bool] = {}


def _compiled_kernels() -> tuple[BlockLse, BlockGrad]:
    global _compiled
    if _compiled is None:
        _compiled = (torch.compile(block_lse), torch.compile(block_grad))
    return _compiled


def compiles(mu: Tensor, var: Tensor, chunk_size: int) -> bool:
    """Whether the compiled kernel builds and runs here, tried once per device type and dtype
    with a forward and backward on a copy of this input (which compiles its shapes); a
    failure warns once."""
    key = (mu.device.type, mu.dtype)
    if key not in _probed:
        log.info("compiling the aggregate-KL kernel for %s %s (6-12 s on a CPU, once per "
                 "process)", *key)
        try:
            with torch.enable_grad():  # the caller may be evaluating under no_grad
                trial = mu.detach().clone().requires_grad_()
                _PairwiseLogOverlap.apply(trial, var.detach(), chunk_size,
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
    """``auto`` where the compile pays for ``calls`` evaluations (or they are not known),
    else ``eager``."""
    return "auto" if calls is None or compile_pays(m, d, calls, backward) else "eager"


def run_kernel(m: int, d: int, calls: int, device: torch.device,
               backward: bool = True) -> str:
    """The kernel, ``compiled`` or ``eager``, of a run's ``calls`` evaluations at batch ``m``
    and latent size ``d``: compiled where ``auto`` would compile (``COMPILE_MIN_ELEMENTS``,
    $WISEALE_COMPILE), the compile pays (:func:`compile_pays`) and the compiler works here
    (:func:`compiles`), else eager. The kernels round differently, so a run chooses once, at
    its start, and a resumed run keeps its choice (wiseale.training.loop)."""
    if planned_kernel(m, d, calls, backward) == "eager":
        return "eager"
    mu = torch.zeros(m, d, device=device)
    if not _use_compiled(mu, "auto"):
        return "eager"
    return "compiled" if compiles(mu, torch.ones_like(mu), _chunk(mu)) else "eager"


def _use_compiled(mu: Tensor, kernel: str) -> bool:
    if kernel == "compiled":
        return True
    if kernel == "eager" or os.environ.get(COMPILE_ENV, "1") == "0":
        return False
    m, d = mu.shape
    return m * m * d >= COMPILE_MIN_ELEMENTS


def _chunk(mu: Tensor) -> int:
    """The compiled kernel's rows per block."""
    return max(1, COMPILED_BLOCK_ELEMENTS // mu.numel())


def _tile(mu: Tensor) -> int:
    """The eager kernel's tile side T: T x T x d about TILE_ELEMENTS."""
    return max(1, math.isqrt(TILE_ELEMENTS // mu.shape[1]))


def mean_log_overlap(mu: Tensor, var: Tensor, chunk_size: int | None = None,
                     kernel: str = "auto") -> Tensor:
    """mean_i logsumexp_j a_ij for posteriors N(mu_j, diag(var_j)) [M, d], differentiable,
    with the ``kernel`` (one of KERNELS), in eager tiles of ``chunk_size`` x ``chunk_size``
    pairs (default: about TILE_ELEMENTS elements of rows x columns x d, the fastest of 2^15 to
    2^18 at d = 4 on the development CPU) or compiled blocks of ``chunk_size`` rows against all
    M (default: about COMPILED_BLOCK_ELEMENTS elements)."""
    if kernel not in KERNELS:
        raise ValueError(f"unknown aggregate KL kernel {kernel!r}; use one of "
                         f"{', '.join(KERNELS)}")
    compiled = _use_compiled(mu, kernel)
    if compiled and kernel == "auto":
        compiled = compiles(mu, var, chunk_size or _chunk(mu))
    if not compiled:
        return _SymmetricLogOverlap.apply(mu, var, chunk_size or _tile(mu))
    return _PairwiseLogOverlap.apply(mu, var, chunk_size or _chunk(mu),
                                     *_compiled_kernels())
