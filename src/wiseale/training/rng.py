"""The random generators' states, saved and restored: for a mid-epoch checkpoint, and for
the second pass of wiseale.training.micro_batch, which must draw the first pass's posterior
noise again."""

from __future__ import annotations

import torch


def rng_state(device: torch.device) -> dict[str, torch.Tensor]:
    """The CPU generator's state, and the device's on CUDA."""
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict[str, torch.Tensor], device: torch.device) -> None:
    """Restore what :func:`rng_state` returned, or one row of several processes' states
    stacked (copied first: torch 2.13's set_rng_state segfaulted on the second row of a
    stacked tensor, a view)."""
    torch.set_rng_state(state["cpu"].clone())
    if device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"].clone(), device)
