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

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

from wiseale.encoders import Posterior
from wiseale.errors import WisealeError


@dataclass(frozen=True)
class World:
    """This process's place among the training processes (rank 0 writes the files)."""

    rank: int = 0
    size: int = 1

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
    return World(dist.get_rank(), dist.get_world_size())


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
    """The posterior of the global batch (every field that is not None, gathered)."""
    return Posterior(*(None if value is None else gather(value)
                       for value in (post.mu, post.logvar, post.z, post.log_q)))


def mean_over_ranks(values: dict[str, Tensor]) -> dict[str, Tensor]:
    """Each value averaged over the ranks (one all-reduce for all of them), matched by name:
    the ranks' dicts may hold their keys in other orders (a resumed checkpoint's)."""
    if not values:
        return values
    keys = sorted(values)
    stacked = torch.stack([values[k].detach().float() for k in keys])
    dist.all_reduce(stacked)
    return dict(zip(keys, stacked / dist.get_world_size(), strict=True))


def reduce_min(tensor: Tensor) -> None:
    """In place: the minimum of ``tensor`` over the ranks."""
    dist.all_reduce(tensor, op=dist.ReduceOp.MIN)


def check_supported(model: torch.nn.Module) -> None:
    if model.adversaries():
        raise WisealeError("methods with a discriminator (factorvae, tc-*) train in one "
                           "process only; run without torchrun")


def barrier(world: World) -> None:
    if world.distributed:
        dist.barrier()


def finish(world: World) -> None:
    if world.distributed and dist.is_initialized():
        dist.destroy_process_group()
