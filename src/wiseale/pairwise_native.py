"""The ``native`` kernel of the aggregate KL's pairwise term (wiseale.pairwise): C++ built with
the package (src/wiseale/native/log_overlap.cpp, setup.py), called through ctypes, on the CPU.

Forward: a_ij for the tiles of the upper triangle, into an [M, M] matrix, then its row
logsumexps. Backward: W_ij = exp(a_ij - L_i) from that matrix, then one pass over the pairs
i < j with c_ij = W_ij + W_ji (see pairwise._CompiledLogOverlap), vectorised over the
dimensions, leaving out the pairs whose two weights are below e^EXP_FLOOR. Nothing is
compiled when a run starts; the [M, M] matrix bounds it to M^2 <= pairwise.KEPT_PAIRS_MAX.
The library uses torch's thread count (OpenMP), and for a given count its sums are the same
bits from run to run.
"""

from __future__ import annotations

import ctypes
import functools
import math
import warnings
from typing import Any

import torch
from torch import Tensor

ABI = 2  # the arguments of the library's functions (log_overlap.cpp's wiseale_abi)
TILE = 64  # the kernels' tile side (log_overlap.cpp)
VECTOR_BYTES = 64  # their vector: the backward's dimensions are padded to a multiple of it
EXP_FLOOR = -60.0  # W_ij below e^-60 (8.7e-27) counts as e^-60, and a pair whose two weights
# both do adds nothing to the gradient: its share is below 1e-26 of the largest
DTYPES = {torch.float32: ("f32", ctypes.c_float), torch.float64: ("f64", ctypes.c_double)}


@functools.cache
def library() -> ctypes.CDLL | None:
    """The built kernels, or None where the package was installed without them (no C++
    compiler then) or they were built from other sources (a warning: reinstall)."""
    try:
        from wiseale import _log_overlap  # type: ignore[attr-defined]
    except ImportError:
        return None
    lib = ctypes.CDLL(_log_overlap.__file__)
    built = lib.wiseale_abi() if hasattr(lib, "wiseale_abi") else 1
    if built != ABI:
        warnings.warn(f"{_log_overlap.__file__} was built from other sources (ABI {built}, "
                      f"this wiseale needs {ABI}); the aggregate KL uses its other kernels "
                      "until you reinstall wiseale (`make install` or `pip install -e .`)",
                      RuntimeWarning, stacklevel=2)
        return None
    size, ptr = ctypes.c_int64, ctypes.c_void_p
    for suffix, real in DTYPES.values():
        getattr(lib, f"log_overlap_{suffix}").argtypes = [ptr] * 8 + [size, size, ptr,
                                                                     ctypes.c_int]
        getattr(lib, f"log_overlap_grad_{suffix}").argtypes = [ptr, ptr, ptr, real, real, size,
                                                              size, size, ptr, ctypes.c_int]
    return lib


def available() -> bool:
    return library() is not None


def fits(mu: Tensor, var: Tensor, max_pairs: int) -> bool:
    """Whether the kernel takes these posteriors: on the CPU, float32 or float64, M^2 <=
    ``max_pairs``, and 1/var finite (where it overflows the max / product split of the log
    fails: the eager kernel then gives its NaN)."""
    return (mu.device.type == "cpu" and mu.dtype in DTYPES and var.dtype == mu.dtype
            and mu.shape[0] ** 2 <= max_pairs and available()
            and bool(torch.isfinite(var.reciprocal()).all()))


def _exp(x: Tensor) -> Tensor:
    """exp(max(x, EXP_FLOOR)), in place, for x <= 0: torch's exp runs 12x slower where its
    result nears underflow (1,024^2 values below -87 took 15.8 ms against 1.3 ms, one thread),
    and a logsumexp's sum of terms <= 1 that holds exp(0) = 1 does not see e^-60 each."""
    return x.clamp_(min=EXP_FLOOR).exp_()


def _ptr(t: Tensor) -> ctypes.c_void_p:
    return ctypes.c_void_p(t.data_ptr())


def _round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


def _padded(x: Tensor, rows: int, columns: int, fill: float) -> Tensor:
    """x [m, d] in the top left of a contiguous [rows, columns] filled with ``fill``."""
    out = x.new_full((rows, columns), fill)
    out[:x.shape[0], :x.shape[1]] = x
    return out


class NativeLogOverlap(torch.autograd.Function):
    """mean_i L_i, L_i = logsumexp_j a_ij, from the native kernels (``fits`` must hold)."""

    @staticmethod
    def forward(ctx: Any, mu: Tensor, var: Tensor) -> Tensor:
        mu, var = mu.detach(), var.detach()
        (m, d), (suffix, _) = mu.shape, DTYPES[mu.dtype]
        mp = _round_up(m, TILE)  # padded rows: mu 0, var 1, their pairs cut off below
        rows = [_padded(x, mp, d, fill) for x, fill in
                ((mu, 0.0), (var, 1.0), (var.log(), 0.0), (var.reciprocal(), 1.0))]
        columns = [x.T.contiguous() for x in rows]
        a = mu.new_empty(mp, mp)
        getattr(library(), f"log_overlap_{suffix}")(
            *map(_ptr, rows), *map(_ptr, columns), mp, d, _ptr(a), torch.get_num_threads())
        a = a[:m, :m]
        peak = a.amax(dim=1)
        lse = peak + _exp(a - peak[:, None]).sum(dim=1).log_()
        ctx.save_for_backward(mu, var, a, lse)
        return lse.mean()

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, Tensor]:
        mu, var, a, lse = ctx.saved_tensors
        (m, d), (suffix, real) = mu.shape, DTYPES[mu.dtype]
        mp = _round_up(m, TILE)
        # padded dimensions: mu 0, var 1, their sums cut off
        dp = _round_up(d, VECTOR_BYTES // mu.element_size())
        weights = _exp(a - lse[:, None])  # W_ij, [m, m]
        threads = torch.get_num_threads()
        sums = mu.new_zeros(threads, 2, mp, dp)
        scale, negligible = float(grad) / m, 2 * math.exp(EXP_FLOOR)
        padded = _padded(mu, mp, dp, 0.0), _padded(var, mp, dp, 1.0)  # alive for the call
        getattr(library(), f"log_overlap_grad_{suffix}")(
            *map(_ptr, padded), _ptr(weights), real(scale), real(negligible), m, mp, dp,
            _ptr(sums), threads)
        grad_mu, grad_var = sums.sum(dim=0)[:, :m, :d]
        # the diagonal: a_ii = -1/2 sum_k log(2 var_ik), d/dvar_ik = -1 / (2 var_ik)
        return grad_mu, 0.5 * grad_var - scale * weights.diagonal()[:, None] / (2 * var)
