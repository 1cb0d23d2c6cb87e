"""A run's checkpoint (docs/reliability.md, "Resume, interrupts and exit status"): the model,
the optimisers and the position in the run, saved after every epoch and on a signal, and
restored by ``--resume`` so that the run goes on exactly."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import torch

from wiseale.config import RunConfig
from wiseale.errors import WisealeError
from wiseale.methods import derive_defaults
from wiseale.model import Autoencoder
from wiseale.parts import parts_of
from wiseale.storage import (
    load_tensors,
    optimizer_tensors,
    read_meta,
    restore_optimizer,
    save_tensors,
    write_json,
)
from wiseale.training.distributed import World, stacked_over_ranks
from wiseale.training.guards import check_finite_weights
from wiseale.training.run import CHECKPOINT, CONFIG, METRICS, Run, read_metrics

# the settings a resumed run may change (another thread count changes the last digits)
RESUMABLE = ("epochs", "on_nonfinite", "threads", "final_eval")


@dataclass
class EpochState:
    """How far epoch ``epoch`` (0-based) has got: ``step`` batches done, the sums of their
    logged parts, the skipped batches, the seconds spent and, mid-epoch, the random
    generators' states. A checkpoint saves it, so a resumed epoch goes on exactly."""

    epoch: int
    step: int = 0
    totals: dict[str, torch.Tensor] = field(default_factory=dict)
    skipped: list[int] = field(default_factory=list)
    elapsed: float = 0.0
    rng: dict[str, torch.Tensor] = field(default_factory=dict)

    def where(self) -> str:
        return (f"of epoch {self.epoch}" if self.step == 0
                else f"at epoch {self.epoch + 1}, batch {self.step}")

    def of_every_rank(self, world: World) -> EpochState:
        """This state with every process's partial sums and random states stacked in rank
        order (a collective under torchrun): what rank 0 saves mid-epoch, so that each
        process resumes with its own."""
        if not world.distributed:
            return self
        return dataclasses.replace(self, totals=stacked_over_ranks(world, self.totals),
                                   rng=stacked_over_ranks(world, self.rng))


def _section(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The tensors named ``prefix/...``, without the prefix."""
    return {k[len(prefix) + 1:]: v for k, v in tensors.items() if k.startswith(f"{prefix}/")}


def restore(run: Run) -> tuple[EpochState, list[dict]]:
    """Load the run's checkpoint into the model and optimisers; the position it was saved at
    and the metrics rows of the epochs before it."""
    path = run.out / CHECKPOINT
    tensors, meta = load_tensors(path)
    try:
        saved = RunConfig.from_dict(meta["config"])
        state = EpochState(int(meta["epoch"]), int(meta.get("step", 0)),
                           skipped=[int(s) for s in meta.get("skipped", [])],
                           elapsed=float(meta.get("elapsed", 0.0)))
        ranks = int(meta.get("ranks", 1))  # older checkpoints: one process
        run.kernels = dict(meta.get("kernels", {}))  # older: chosen again
        data = meta.get("data", run.data)  # older: not checked
        groups = {prefix: meta["param_groups"][prefix] for prefix in run.optimizers}
    except (KeyError, TypeError, ValueError) as exc:
        raise WisealeError(f"{path} is not a training checkpoint (its metadata lacks or "
                           f"garbles {exc}); choose another --out") from None
    _check_resumable(run, saved, state, path, ranks)
    changed = sorted(split for split, digest in data.items() if run.data.get(split) != digest)
    if changed:
        raise WisealeError(f"the {' and '.join(changed)} data of {run.out} changed since it was "
                           f"trained ({saved.data}); resume with the data it was trained on, or "
                           "train a new run")
    load_weights(run.model, _section(tensors, "model"), path)
    for prefix, optimizer in run.optimizers.items():
        restore_optimizer(optimizer, tensors, groups[prefix], prefix)
    own = (lambda v: v[run.world.rank]) if ranks > 1 else (lambda v: v)  # this rank's row
    state.totals = {k: own(v).to(run.device) for k, v in _section(tensors, "totals").items()}
    state.rng = {k: own(v) for k, v in _section(tensors, "rng").items()}
    return state, _read_history(run.out, state.epoch)


def settings_that_differ(config: RunConfig, saved: RunConfig) -> list[str]:
    """The settings of ``config`` that make it another run than ``saved``: all but those a
    resume may change (``RESUMABLE``), with the options' derived defaults resolved on both
    sides (configs saved before they were hold None) and the parts of a config saved before
    runs recorded them converted from its preset."""
    ours, theirs = config.to_dict(), saved.to_dict()
    ours["options"] = derive_defaults(config.options, config.latent_dim)
    theirs["options"] = derive_defaults(saved.options, saved.latent_dim)
    ours["parts"], theirs["parts"] = parts_of(config), parts_of(saved)  # saved before: converted
    return sorted(k for k, v in ours.items() if k not in RESUMABLE and theirs[k] != v)


def _check_resumable(run: Run, saved: RunConfig, state: EpochState, path: Path,
                     ranks: int) -> None:
    config = run.config
    differ = settings_that_differ(config, saved)
    if differ:
        raise WisealeError(f"{run.out} was trained with other settings ({', '.join(differ)}); "
                           "resume with the same options or choose another --out")
    needed = state.epoch + (state.step > 0)
    if config.epochs < needed:
        raise WisealeError(f"{run.out} has already trained {state.epoch} epochs"
                           f"{' and part of the next' if state.step else ''}; --epochs must be "
                           f"at least {needed} to resume")
    if config.epochs != saved.epochs and config.lr_schedule != "constant":
        raise WisealeError(f"the {config.lr_schedule} schedule depends on --epochs; resume with "
                           f"--epochs {saved.epochs} as the run was started")
    if state.step and ranks != run.world.size:
        how = "without torchrun" if ranks == 1 else f"with torchrun --nproc-per-node {ranks}"
        raise WisealeError(f"{path} was saved mid-epoch by {ranks} process"
                           f"{'es' if ranks > 1 else ''}, each with its own random state; "
                           f"resume it {how}")


def _read_history(out: Path, epoch: int) -> list[dict]:
    """The metrics rows of the first ``epoch`` epochs (later ones were not checkpointed)."""
    path = out / METRICS
    return [row for row in read_metrics(path) if row["epoch"] <= epoch] if path.exists() else []


def load_weights(model: Autoencoder, state: dict[str, torch.Tensor], source: Path) -> None:
    """Load ``state`` into ``model``, refusing missing, extra or wrongly shaped tensors."""
    expected = model.state_dict()
    if any(key.endswith(".log_sigma2") for key in state):
        raise WisealeError(f"{source} stores the learned variance as log sigma^2, as wiseale "
                           "did before it followed 004 Alg. 1 (sigma); train the run again")
    if set(state) != set(expected):
        missing, extra = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
        raise WisealeError(f"{source} does not match this model (missing {missing[:3]}, "
                           f"unexpected {extra[:3]}); it belongs to another method or network")
    for key, value in state.items():
        if value.shape != expected[key].shape:
            raise WisealeError(f"{source}: {key} has shape {tuple(value.shape)}, the model "
                               f"needs {tuple(expected[key].shape)}; check --latent-dim")
    model.load_state_dict(state)


def save_checkpoint(run: Run, state: EpochState) -> None:
    """The model, the optimisers and the position ``state`` as checkpoint.safetensors, and
    config.json; under torchrun rank 0 saves ``state.of_every_rank``."""
    check_finite_weights(run, state.where())
    tensors = {f"model/{k}": v for k, v in run.model.state_dict().items()}
    groups = {}
    for prefix, optimizer in run.optimizers.items():
        optimizer_state, groups[prefix] = optimizer_tensors(optimizer, prefix)
        tensors.update(optimizer_state)
    tensors.update({f"totals/{k}": v for k, v in state.totals.items()})
    tensors.update({f"rng/{k}": v for k, v in state.rng.items()})
    save_tensors(run.out / CHECKPOINT, tensors, {
        "epoch": state.epoch, "step": state.step, "skipped": state.skipped,
        "elapsed": state.elapsed, "config": run.config.to_dict(), "param_groups": groups,
        "ranks": run.world.size, "kernels": run.kernels, "data": run.data})
    write_json(run.out / CONFIG, run.config.to_dict())


def saved_parts(out: Path) -> tuple[dict | None, dict]:
    """The parts and the method options saved in ``out``'s checkpoint (None and {}: no
    checkpoint; None: one written before runs recorded their parts)."""
    path = Path(out) / CHECKPOINT
    if not path.exists():
        return None, {}
    saved = read_meta(path).get("config") or {}
    return saved.get("parts"), saved.get("options") or {}
