"""Data-parallel training over several processes with PyTorch DDP.

``torchrun --nproc-per-node N -m wiseale train ...`` starts N processes; each trains on its
slice of every global batch of N x ``--batch-size`` samples and DDP averages the gradients.
The latent regularisers see the **global** batch: the posterior is all-gathered with
gradients (:func:`gather`), so WiSE-ALE's aggregate posterior (001 Eq. 10) is the
mixture over all N x M samples, as in one process on the concatenated batch. Every process
computes the same regulariser R; the gather's backward gives each its own dR/dz_local times
N, which DDP's average divides by N again: the gradients are those of the single process
(tests/test_distributed.py checks it with gloo on 2 CPU processes).
"""

from __future__ import annotations

import gc
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

from wiseale.errors import WisealeError
from wiseale.noises import Posterior


@dataclass(frozen=True)
class World:
    """This process's place among the training processes (rank 0 writes the files), and the
    process group of the small messages between them (:func:`init_world`)."""

    rank: int = 0
    size: int = 1
    control: Any = None  # a gloo group on the CPU; None: the default group (gloo already)

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def init_world(device: str) -> World:
    """The world torchrun describes in the environment (WORLD_SIZE, RANK, LOCAL_RANK), with
    its process group started (gloo on CPU, NCCL on CUDA); one process otherwise."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return World()
    if not dist.is_initialized():
        if device == "cuda":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group("nccl" if device == "cuda" else "gloo")
    # the stop agreement, rank 0's errors and a checkpoint's random states go over gloo on
    # the CPU: under NCCL they would wait for the GPU after every step
    control = dist.new_group(backend="gloo") if dist.get_backend() == "nccl" else None
    return World(dist.get_rank(), dist.get_world_size(), control)


class _GatherWithGrad(torch.autograd.Function):
    """Concatenate every rank's tensor along dim 0. Backward keeps this rank's slice of the
    gradient times the number of ranks: every rank computes the same regulariser R of the
    gathered batch, so the slice is dR/dz_local, and the factor undoes DDP's average for this
    term. No collective runs in the backward, where it could interleave with DDP's own."""

    @staticmethod
    def forward(ctx: Any, tensor: Tensor) -> Tensor:
        parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, tensor.contiguous())
        ctx.rank, ctx.rows, ctx.size = dist.get_rank(), tensor.shape[0], len(parts)
        return torch.cat(parts)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        return grad[ctx.rank * ctx.rows:(ctx.rank + 1) * ctx.rows] * ctx.size


def gather(tensor: Tensor) -> Tensor:
    """All ranks' ``tensor`` concatenated in rank order, differentiable (see module doc)."""
    return _GatherWithGrad.apply(tensor)


def gather_posterior(post: Posterior) -> Posterior:
    """The posterior of the global batch (every tensor of it gathered)."""
    return type(post)(**{name: gather(value) for name, value in post.tensors().items()})


def mean_over_ranks(values: dict[str, Tensor]) -> dict[str, Tensor]:
    """Each value averaged over the ranks (one all-reduce for all of them), matched by name:
    the ranks' dicts may hold their keys in other orders (a resumed checkpoint's)."""
    if not values:
        return values
    keys = sorted(values)
    stacked = torch.stack([values[k].detach().float() for k in keys])
    dist.all_reduce(stacked)
    return dict(zip(keys, stacked / dist.get_world_size(), strict=True))


def stacked_over_ranks(world: World, values: dict[str, Tensor]) -> dict[str, Tensor]:
    """Each value with every rank's copy stacked in rank order along a new first dimension
    (rank 0 saves them all in a mid-epoch checkpoint); the ranks hold the same names."""
    stacked = {}
    for key in sorted(values):
        value = values[key].detach().cpu().contiguous()
        parts = [torch.empty_like(value) for _ in range(world.size)]
        dist.all_gather(parts, value, group=world.control)
        stacked[key] = torch.stack(parts).to(values[key].device)
    return stacked


def largest_over_ranks(world: World, value: int) -> int:
    """The largest of the ranks' ``value`` (one all-reduce): how every process agrees to
    stop at the same step when any of them received a signal."""
    if not world.distributed:
        return value
    tensor = torch.tensor([value], dtype=torch.long)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX, group=world.control)
    return int(tensor)


def on_main(world: World, action: Callable[..., Any], *args: Any) -> None:
    """Run ``action(*args)`` on rank 0 only; if it fails, every other rank fails too, with
    its message (without this they would wait for rank 0 at their next collective)."""
    error: Exception | None = None
    if world.main:
        try:
            action(*args)
        except Exception as exc:  # noqa: BLE001 - re-raised below, on every rank
            error = exc
    if world.distributed:
        message = [None if error is None else str(error)]
        dist.broadcast_object_list(message, src=0, group=world.control)
        if not world.main and message[0] is not None:
            raise WisealeError(f"rank 0 stopped: {message[0]}")
    if error is not None:
        raise error


def reduce_min(tensor: Tensor) -> None:
    """In place: the minimum of ``tensor`` over the ranks."""
    dist.all_reduce(tensor, op=dist.ReduceOp.MIN)


def check_supported(model: torch.nn.Module) -> None:
    if model.own_optimizers():
        raise WisealeError("methods with a discriminator (factorvae, tc-*) train in one "
                           "process only; run without torchrun")


def finish(world: World) -> None:
    """Destroy the process group once what still refers to it is freed: a DDP wrapper lives in
    reference cycles, and freed only at interpreter exit it aborted the process now and then
    ("terminate called without an active exception"; docs/reliability.md)."""
    if world.distributed and dist.is_initialized():
        gc.collect()
        dist.destroy_process_group()
