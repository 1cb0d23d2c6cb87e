"""A training run (001 App. C, Algorithm 1): the files of its directory and :class:`Run`,
what every part of the loop uses."""

from __future__ import annotations

import contextlib
import json
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from wiseale.config import RunConfig
from wiseale.errors import WisealeError
from wiseale.model import Autoencoder, LossOutput
from wiseale.pairwise import COMPILE_ENV, kernel_works
from wiseale.training.callbacks import Callback
from wiseale.training.distributed import World
from wiseale.training.micro_batch import micro_batch_step

CONFIG, METRICS, CHECKPOINT, WEIGHTS, EVALUATION = (
    "config.json", "metrics.jsonl", "checkpoint.safetensors", "model.safetensors",
    "evaluation.json")


@dataclass
class Run:
    """What every part of the loop uses: the resolved config, the run directory, the
    processes, the model (``step_model``: DDP's wrapper of it), its optimisers, the
    callbacks (called on the main process only), the aggregate-KL kernels of its training
    steps and per-epoch evaluations (chosen at the run's start, kept on resume: ``keep``), the
    digests of its data splits (saved with the weights, so that readers refuse other data)
    and its number of optimiser steps."""

    config: RunConfig
    out: Path
    world: World
    device: torch.device
    model: Autoencoder
    optimizers: dict[str, torch.optim.Optimizer]
    step_model: torch.nn.Module
    gather: Callable | None = None
    callbacks: Sequence[Callback] = ()
    kernels: dict[str, str] = field(default_factory=dict)  # aggregate KL: train, eval
    data: dict[str, str] = field(default_factory=dict)  # split -> Dataset.digest()
    steps: int = 0  # the optimiser steps of the whole run (epochs x batches per epoch)

    def keep(self, part: str, choose: Callable[[], str]) -> str:
        """The aggregate-KL kernel of ``part`` (``train``: the steps; ``eval``: the per-epoch
        evaluations): ``choose()`` at the run's start, the saved choice on resume (the
        kernels round differently, docs/reliability.md), eager with a warning when the saved
        choice, native or compiled, does not run here (pairwise.kernel_works)."""
        if part not in self.kernels:  # a new run, or a checkpoint saved before kernels were kept
            self.kernels[part] = choose()
        elif not kernel_works(self.kernels[part], self.device):
            warnings.warn(f"this run's {part} steps used the {self.kernels[part]} aggregate-KL "
                          f"kernel, which does not run here (not built, or ${COMPILE_ENV}=0 or "
                          "no compiler for the compiled one); it goes on with the eager kernel, "
                          "so its last digits differ from an uninterrupted run's",
                          RuntimeWarning, stacklevel=3)
            self.kernels[part] = "eager"
        return self.kernels[part]

    @property
    def micro_batched(self) -> bool:
        return self.config.micro_batch is not None and \
            self.config.micro_batch < self.config.batch_size

    def loss_and_grads(self, x_batch: torch.Tensor) -> LossOutput:
        """The batch's loss, with its gradients accumulated into the parameters, in every
        mode: one process, torchrun (DDP averages them) or micro-batches
        (wiseale.training.micro_batch).
        The forward pass runs under bfloat16 autocast with ``precision="bf16"``."""
        bf16 = torch.autocast(self.device.type, torch.bfloat16) \
            if self.config.precision == "bf16" else contextlib.nullcontext()
        with bf16:
            if self.micro_batched:  # backward runs inside, one micro-batch at a time
                return micro_batch_step(self.model, x_batch, self.config.micro_batch)
            output = (self.step_model(x_batch) if self.gather is None
                      else self.step_model(x_batch, self.gather))
        output.loss.backward()
        return output

    def kept(self) -> str:
        """What a run that stops now leaves behind, for its error message."""
        return (f"the last checkpoint is kept in {self.out}"
                if (self.out / CHECKPOINT).exists() else "nothing was saved")


def read_metrics(path: Path, same_keys: bool = False) -> list[dict]:
    """The rows of a run's metrics.jsonl, each an object with an integer ``epoch`` (and, with
    ``same_keys``, at least the keys of the first row), in today's keys (a row of an older
    version is converted: :func:`_in_todays_keys`); a damaged line is a one-line error that
    names it."""
    rows: list[dict] = []
    for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = _in_todays_keys(json.loads(line))
        except (json.JSONDecodeError, RecursionError):
            row = None
        if not (isinstance(row, dict) and isinstance(row.get("epoch"), int)
                and (not same_keys or not rows or rows[0].keys() <= row.keys())):
            raise WisealeError(f"{path}: line {number} is not a metrics row like the others; "
                               "the file is damaged: fix or delete that line")
        rows.append(row)
    return rows


def _in_todays_keys(row: object) -> object:
    """A training row of a version before 2026-12-06 in today's keys: the training batches'
    squared error of the sampled z was ``recon_error`` (evaluation's name for the code's) and
    is ``sample_recon_error``; the prior KL was logged twice, as ``kl`` and ``kl_prior``, and
    is ``kl_prior`` alone."""
    if not isinstance(row, dict):
        return row
    if "recon_error" in row and "sample_recon_error" not in row:
        row["sample_recon_error"] = row.pop("recon_error")
    if "kl" in row and row["kl"] == row.get("kl_prior"):
        del row["kl"]
    return row
