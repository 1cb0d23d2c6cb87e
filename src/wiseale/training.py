"""The one training loop (001 App. C, Algorithm 1): Adam on mini-batches sliced from
in-memory tensors, one row of metrics per epoch, an atomic checkpoint after every epoch and,
on SIGINT or SIGTERM, one mid-epoch. docs/reliability.md lists the faults it survives."""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

import torch
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from wiseale.build import load_split, model_from_config, resolve
from wiseale.config import RunConfig, learning_rate
from wiseale.data import Dataset
from wiseale.distributed import (
    World,
    barrier,
    check_supported,
    finish,
    gather_posterior,
    init_world,
    mean_over_ranks,
    reduce_min,
)
from wiseale.errors import WisealeError
from wiseale.metrics import evaluate, evaluate_full
from wiseale.model import Autoencoder, LossOutput
from wiseale.storage import (
    atomic_write_text,
    check_writable,
    load_tensors,
    optimizer_tensors,
    read_json,
    remove_temporaries,
    restore_optimizer,
    save_tensors,
    write_json,
)
from wiseale.wide import wide_batch_step

CONFIG, METRICS, CHECKPOINT, WEIGHTS, EVALUATION = (
    "config.json", "metrics.jsonl", "checkpoint.safetensors", "model.safetensors",
    "evaluation.json")
RESUMABLE = ("epochs", "on_nonfinite")  # the settings a resumed run may change


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of an epoch's data order and noise: resuming at an epoch repeats it exactly."""
    return seed * 1_000_003 + epoch


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM stopped training once a checkpoint was saved; ``signum`` gives the
    conventional exit status 128 + signum (130 for SIGINT, 143 for SIGTERM)."""

    def __init__(self, signum: int, message: str) -> None:
        super().__init__(message)
        self.signum = signum


class StopSignals:
    """While training: the first SIGINT or SIGTERM only sets ``signum``, and the loop then
    saves a checkpoint at the next step boundary and raises :class:`Interrupted`; a second
    one interrupts at once (KeyboardInterrupt). Installed only in the main thread of a
    single-process run (torchrun's processes keep the default handlers)."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled and threading.current_thread() is threading.main_thread()
        self.signum: int | None = None
        self._previous: dict[int, object] = {}

    def __enter__(self) -> StopSignals:
        if self.enabled:
            self._previous = {sig: signal.signal(sig, self._handle) for sig in self.SIGNALS}
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum

    def check(self, out: Path, where: str) -> None:
        """Raise :class:`Interrupted` if a signal came; the checkpoint ``where`` is saved."""
        if self.signum is not None:
            name = signal.Signals(self.signum).name
            raise Interrupted(self.signum, f"{name}: stopped with the checkpoint {where} saved "
                              f"in {out}; continue with `wiseale train ... --resume`")


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


@dataclass
class _Run:
    """What every part of the loop uses: the resolved config, the run directory, the
    processes, the model (``step_model``: DDP's wrapper of it) and its optimisers."""

    config: RunConfig
    out: Path
    world: World
    device: torch.device
    model: Autoencoder
    optimizers: dict[str, torch.optim.Optimizer]
    step_model: torch.nn.Module
    gather: Callable | None = None

    @property
    def wide(self) -> bool:
        return self.config.micro_batch is not None and \
            self.config.micro_batch < self.config.batch_size

    def forward(self, x_batch: torch.Tensor) -> LossOutput:
        if self.wide:  # backward runs inside
            return wide_batch_step(self.model, x_batch, self.config.micro_batch)
        return (self.step_model(x_batch) if self.gather is None
                else self.step_model(x_batch, self.gather))

    def kept(self) -> str:
        """What a run that stops now leaves behind, for its error message."""
        return (f"the last checkpoint is kept in {self.out}"
                if (self.out / CHECKPOINT).exists() else "nothing was saved")


def _prepare_dir(out: Path, resume: bool) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise WisealeError(f"cannot create {out}: {exc.strerror}; choose another --out") from None
    if resume and not (out / CHECKPOINT).exists():
        raise WisealeError(f"{out} has no {CHECKPOINT} to resume from; drop --resume")
    if not resume and ((out / CHECKPOINT).exists() or (out / WEIGHTS).exists()):
        raise WisealeError(f"{out} already holds a run; add --resume or choose another --out")
    check_writable(out)  # fails early, with a clear error, if unwritable
    remove_temporaries(out)  # left by writes that a kill stopped before their rename


ADVERSARY_LR, ADVERSARY_BETAS = 1e-4, (0.5, 0.9)  # the FactorVAE discriminator (Kim & Mnih)


def _optimizers(model: Autoencoder, lr: float) -> dict[str, torch.optim.Optimizer]:
    """Adam for the autoencoder; a second Adam for adversaries (the TC discriminator), whose
    parameters the first one never updates."""
    adversary = [p for reg in model.adversaries() for p in reg.parameters()]
    owned = {id(p) for p in adversary}
    optimizers = {"optim": torch.optim.Adam([p for p in model.parameters()
                                             if id(p) not in owned], lr=lr)}
    if adversary:
        optimizers["adversary"] = torch.optim.Adam(adversary, lr=ADVERSARY_LR,
                                                   betas=ADVERSARY_BETAS)
    return optimizers


def _setup(config: RunConfig, out: Path, world: World) -> _Run:
    device = torch.device(config.device, torch.cuda.current_device()) \
        if config.device == "cuda" else torch.device("cpu")
    model = model_from_config(config).to(device)
    run = _Run(config, out, world, device, model, _optimizers(model, config.lr), model)
    if run.wide and world.distributed:
        raise WisealeError("--micro-batch runs in one process; with torchrun, raise the number "
                           "of processes instead")
    if world.distributed:
        check_supported(model)
        run.step_model, run.gather = DistributedDataParallel(model), gather_posterior
    return run


def _section(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The tensors named ``prefix/...``, without the prefix."""
    return {k[len(prefix) + 1:]: v for k, v in tensors.items() if k.startswith(f"{prefix}/")}


def _restore(run: _Run) -> tuple[EpochState, list[dict]]:
    """Load the run's checkpoint into the model and optimisers; the position it was saved at
    and the metrics rows of the epochs before it."""
    path = run.out / CHECKPOINT
    tensors, meta = load_tensors(path)
    try:
        saved = RunConfig.from_dict(meta["config"])
        state = EpochState(int(meta["epoch"]), int(meta.get("step", 0)),
                           skipped=[int(s) for s in meta.get("skipped", [])],
                           elapsed=float(meta.get("elapsed", 0.0)))
        groups = {prefix: meta["param_groups"][prefix] for prefix in run.optimizers}
    except (KeyError, TypeError, ValueError) as exc:
        raise WisealeError(f"{path} is not a training checkpoint (its metadata lacks or "
                           f"garbles {exc}); choose another --out") from None
    _check_resumable(run, saved, state, path)
    load_weights(run.model, _section(tensors, "model"), path)
    for prefix, optimizer in run.optimizers.items():
        restore_optimizer(optimizer, tensors, groups[prefix], prefix)
    state.totals = {k: v.to(run.device) for k, v in _section(tensors, "totals").items()}
    state.rng = _section(tensors, "rng")
    return state, _read_history(run.out, state.epoch)


def _check_resumable(run: _Run, saved: RunConfig, state: EpochState, path: Path) -> None:
    config, theirs = run.config, saved.to_dict()
    differ = sorted(k for k, v in config.to_dict().items() if k not in RESUMABLE
                    and theirs[k] != v)
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
    if state.step and run.world.distributed:
        raise WisealeError(f"{path} was saved mid-epoch by one process; resume it without "
                           "torchrun")


def _read_history(out: Path, epoch: int) -> list[dict]:
    """The metrics rows of the first ``epoch`` epochs (later ones were not checkpointed)."""
    path = out / METRICS
    if not path.exists():
        return []
    try:
        rows = [json.loads(line) for line in path.read_text().splitlines() if line]
        return [row for row in rows if row["epoch"] <= epoch]
    except (ValueError, KeyError, TypeError) as exc:
        raise WisealeError(f"{path} is corrupt ({exc}); delete it to resume without the "
                           "earlier epochs' metrics") from None


def load_weights(model: Autoencoder, state: dict[str, torch.Tensor], source: Path) -> None:
    """Load ``state`` into ``model``, refusing missing, extra or wrongly shaped tensors."""
    expected = model.state_dict()
    if set(state) != set(expected):
        missing, extra = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
        raise WisealeError(f"{source} does not match this model (missing {missing[:3]}, "
                           f"unexpected {extra[:3]}); it belongs to another method or network")
    for key, value in state.items():
        if value.shape != expected[key].shape:
            raise WisealeError(f"{source}: {key} has shape {tuple(value.shape)}, the model "
                               f"needs {tuple(expected[key].shape)}; check --latent-dim")
    model.load_state_dict(state)


def _summary(config: RunConfig, row: dict) -> str:
    shown = ["loss", *(k for k in row if k.startswith("test_") and row[k] is not None)]
    values = " ".join(f"{k}={row[k]:.4g}" for k in shown)
    return f"{config.method} epoch {row['epoch']}/{config.epochs}: {values} " \
        f"({row['samples_per_s']:.0f} samples/s)"


def _write_metrics(out: Path, rows: list[dict]) -> None:
    atomic_write_text(out / METRICS, "".join(json.dumps(row) + "\n" for row in rows))


def train(config: RunConfig, out: str | Path, resume: bool = False, progress: bool = True,
          train_data: Dataset | None = None, test_data: Dataset | None = None) -> Autoencoder:
    """Train ``config`` into the run directory ``out`` and return the model.

    Writes ``metrics.jsonl`` (one row per epoch), ``checkpoint.safetensors`` and
    ``config.json`` (after every epoch), and at the end ``model.safetensors`` and
    ``evaluation.json``. A run stopped before its first checkpoint leaves no run behind.
    SIGINT or SIGTERM saves a checkpoint at the next batch and raises :class:`Interrupted`.
    ``resume=True`` continues from the last checkpoint to the same weights as an
    uninterrupted run.
    """
    out = Path(out)
    config.validate()
    train_data = train_data or load_split(config, "train")
    test_data = test_data or load_split(config, "test")
    config = resolve(config, train_data)
    if config.device == "cuda" and not torch.cuda.is_available():
        raise WisealeError("--device cuda was asked for but no CUDA GPU is visible; use cpu")
    world = init_world(config.device)
    try:
        return _train(config, out, resume, progress, train_data, test_data, world)
    finally:
        finish(world)


def _train(config: RunConfig, out: Path, resume: bool, progress: bool, train_data: Dataset,
           test_data: Dataset, world: World) -> Autoencoder:
    """The loop of :func:`train`; with several processes (torchrun) each takes its slice of
    every global batch of world.size x batch_size samples and rank 0 writes the files."""
    run = _setup(config, out, world)  # first: a network that does not fit writes nothing
    if world.main:
        _prepare_dir(out, resume)
    barrier(world)
    state, history = _restore(run) if resume else (EpochState(0), [])
    x = train_data.x.to(run.device)
    x_eval = test_data.x[:config.eval_size].to(run.device)
    n_batches = _n_batches(len(x), config.batch_size, world)
    with StopSignals(enabled=not world.distributed) as signals:
        for epoch in range(state.epoch, config.epochs):
            row = _train_epoch(run, x, state, n_batches, signals, progress)
            if world.main:
                row.update({f"test_{k}": v for k, v in evaluate(run.model, x_eval).items()})
            row.update(run.model.end_epoch(epoch, row))
            history.append(row)
            state = EpochState(epoch + 1)
            if world.main:
                if progress:
                    tqdm.write(_summary(config, row))
                _write_metrics(out, history)
                _save_checkpoint(run, state)
            barrier(world)
            signals.check(out, state.where())
    if world.main:
        _save_results(run, train_data, test_data)
    barrier(world)
    return run.model


def _n_batches(n: int, batch: int, world: World) -> int:
    n_batches = n // (batch * world.size)  # the last partial global batch is dropped
    if n_batches == 0:
        raise WisealeError(f"{world.size} processes x batch-size {batch} is more than the "
                           f"{n} training samples; lower --batch-size")
    return n_batches


def _epoch_order(run: _Run, n: int, epoch: int) -> torch.Tensor:
    """The epoch's permutation of the training samples (the same on every rank), with the
    random generators then seeded for its encoder noise (each rank its own)."""
    seed = epoch_seed(run.config.seed, epoch)
    torch.manual_seed(seed)
    order = torch.randperm(n, device=run.device)
    if run.world.distributed:
        torch.manual_seed(seed + 7919 * (run.world.rank + 1))
    return order


def _rng_state(device: torch.device) -> dict[str, torch.Tensor]:
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict[str, torch.Tensor], device: torch.device) -> None:
    torch.set_rng_state(state["cpu"])
    if device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"], device)


def _train_epoch(run: _Run, x: torch.Tensor, state: EpochState, n_batches: int,
                 signals: StopSignals, progress: bool) -> dict:
    """Train epoch ``state.epoch`` from batch ``state.step`` on and return the metrics row
    of its steps. After a signal: a mid-epoch checkpoint, then :class:`Interrupted`."""
    config, epoch = run.config, state.epoch
    lr = learning_rate(config, epoch)
    for group in run.optimizers["optim"].param_groups:
        group["lr"] = lr
    x_epoch = x[_epoch_order(run, len(x), epoch)]
    if state.rng:  # resumed mid-epoch
        _set_rng_state(state.rng, run.device)
    watch = FiniteWatch(run.device, run.world,
                        lazy=False if config.on_nonfinite == "skip" else None)
    started = time.perf_counter() - state.elapsed
    bar = tqdm(range(state.step, n_batches), initial=state.step, total=n_batches,
               desc=f"{config.method} epoch {epoch + 1}/{config.epochs}",
               disable=None if progress and run.world.main else True, leave=False,
               mininterval=0.5)
    for step in bar:
        _train_step(run, x_epoch, state, watch, step)
        state.step = step + 1
        if signals.signum is not None:
            _check_watch(run, watch, epoch)
            state.elapsed, state.rng = time.perf_counter() - started, _rng_state(run.device)
            _save_checkpoint(run, state)
            signals.check(run.out, state.where())
    _check_watch(run, watch, epoch)
    if state.skipped and run.world.main:
        tqdm.write(f"wiseale: epoch {epoch + 1}: skipped {len(state.skipped)} batches with a "
                   f"non-finite loss ({', '.join(map(str, state.skipped[:10]))})",
                   file=sys.stderr)
    return _epoch_row(run, state, lr, n_batches, time.perf_counter() - started)


def _train_step(run: _Run, x_epoch: torch.Tensor, state: EpochState, watch: FiniteWatch,
                step: int) -> None:
    """One optimiser step on batch ``step``. A non-finite loss stops the run or, with
    ``on_nonfinite="skip"``, leaves the weights and optimisers as they were."""
    batch, world = run.config.batch_size, run.world
    first = step * batch * world.size + world.rank * batch
    optimizer, adversary = run.optimizers["optim"], run.optimizers.get("adversary")
    optimizer.zero_grad(set_to_none=True)
    with torch.autocast(run.device.type, torch.bfloat16, enabled=run.config.precision == "bf16"):
        output = run.forward(x_epoch[first:first + batch])
    watch.update(output.loss, step)
    if not watch.lazy and watch.first_bad() is not None:
        if run.config.on_nonfinite == "stop":
            _stop_non_finite(run, state.epoch, step)
        watch.clear()
        state.skipped.append(step)
        return
    if not run.wide:
        output.loss.backward()
    optimizer.step()
    if adversary is not None:  # after the autoencoder's step, on detached z
        adversary.zero_grad(set_to_none=True)
        adversary_loss = sum(reg.adversary_loss(output.z) for reg in run.model.adversaries())
        adversary_loss.backward()
        adversary.step()
        output.parts["adversary_loss"] = adversary_loss.detach()
    for key, value in output.parts.items():
        state.totals[key] = state.totals[key] + value if key in state.totals else value


def _epoch_row(run: _Run, state: EpochState, lr: float, n_batches: int,
               elapsed: float) -> dict:
    """The training part of an epoch's metrics row: means over the steps that were applied."""
    applied = n_batches - len(state.skipped)
    if applied == 0:
        raise WisealeError(f"every batch of epoch {state.epoch + 1} had a non-finite loss; "
                           f"{run.kept()}; lower --lr or check the data")
    totals = mean_over_ranks(state.totals) if run.world.distributed else state.totals
    row = {"epoch": state.epoch + 1, "lr": lr,
           "samples_per_s": n_batches * run.config.batch_size * run.world.size / elapsed,
           **{k: (v / applied).item() for k, v in totals.items()}}
    if run.config.on_nonfinite == "skip":
        row["skipped_steps"] = len(state.skipped)
    return row


class FiniteWatch:
    """Watches the step losses of an epoch for a non-finite value. On the CPU each step is
    checked at once (the step is not applied); on a GPU the first bad step's index is kept
    on the device and read once at the end of the epoch, so that no step waits for the host
    (``lazy``; that epoch's weights are then not saved). Across processes the verdict is
    shared, so all stop (or skip) together."""

    def __init__(self, device: torch.device, world: World, lazy: bool | None = None) -> None:
        self.lazy = device.type == "cuda" if lazy is None else lazy
        self.world = world
        self.bad = torch.full((), -1, dtype=torch.long, device=device)

    def update(self, loss: torch.Tensor, step: int) -> None:
        finite = torch.isfinite(loss.detach())
        self.bad = torch.where((self.bad < 0) & ~finite, step, self.bad)

    def clear(self) -> None:
        """Forget the bad step seen (after it was skipped)."""
        self.bad = torch.full_like(self.bad, -1)

    def first_bad(self) -> int | None:
        bad = self.bad
        if self.world.distributed:
            bad = torch.where(bad < 0, torch.iinfo(torch.long).max, bad)
            reduce_min(bad)
            bad = torch.where(bad == torch.iinfo(torch.long).max, -1, bad)
        value = int(bad)
        return None if value < 0 else value


def _check_watch(run: _Run, watch: FiniteWatch, epoch: int) -> None:
    bad = watch.first_bad()
    if bad is not None:
        _stop_non_finite(run, epoch, bad)


def _stop_non_finite(run: _Run, epoch: int, step: int) -> None:
    raise WisealeError(f"non-finite loss at epoch {epoch + 1}, batch {step}; {run.kept()}; "
                       "lower --lr, check the data or add --on-nonfinite skip")


def _check_finite_weights(run: _Run, state: EpochState) -> None:
    """Refuse to save non-finite weights (a finite loss can still have an infinite
    gradient): the previous checkpoint stays the last good one."""
    params = dict(run.model.named_parameters())
    if bool(torch.stack([torch.isfinite(p).all() for p in params.values()]).all()):
        return
    name = next(k for k, p in params.items() if not bool(torch.isfinite(p).all()))
    raise WisealeError(f"non-finite weights ({name}) before the checkpoint {state.where()}; "
                       f"{run.kept()}; lower --lr or check the data")


def _save_checkpoint(run: _Run, state: EpochState) -> None:
    """The model, the optimisers and the position ``state`` as checkpoint.safetensors, and
    config.json."""
    _check_finite_weights(run, state)
    tensors = {f"model/{k}": v for k, v in run.model.state_dict().items()}
    groups = {}
    for prefix, optimizer in run.optimizers.items():
        optimizer_state, groups[prefix] = optimizer_tensors(optimizer, prefix)
        tensors.update(optimizer_state)
    tensors.update({f"totals/{k}": v for k, v in state.totals.items()})
    tensors.update({f"rng/{k}": v for k, v in state.rng.items()})
    save_tensors(run.out / CHECKPOINT, tensors, {
        "epoch": state.epoch, "step": state.step, "skipped": state.skipped,
        "elapsed": state.elapsed, "config": run.config.to_dict(), "param_groups": groups})
    write_json(run.out / CONFIG, run.config.to_dict())


def _save_results(run: _Run, train_data: Dataset, test_data: Dataset) -> None:
    """model.safetensors and evaluation.json (every test sample, as many training ones)."""
    device, n = run.device, len(test_data)
    save_tensors(run.out / WEIGHTS, run.model.state_dict(), {"config": run.config.to_dict()})
    labels = (None if train_data.y is None else train_data.y[:n].to(device),
              None if test_data.y is None else test_data.y.to(device))
    write_json(run.out / EVALUATION, {
        "train": evaluate_full(run.model, train_data.x[:n].to(device), labels[0]),
        "test": evaluate_full(run.model, test_data.x.to(device), labels[1])})


def load_run(run_dir: str | Path) -> tuple[Autoencoder, RunConfig]:
    """The trained model of a run directory and its config, from safetensors and JSON only."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise WisealeError(f"{run_dir} is not a directory; give a run directory made by "
                           "`wiseale train`")
    if not (run_dir / WEIGHTS).is_file():
        raise WisealeError(f"{run_dir} has no {WEIGHTS}: not a finished wiseale run; finish it "
                           f"with `wiseale train --resume --out {run_dir} ...` or give another")
    tensors, meta = load_tensors(run_dir / WEIGHTS)
    config = RunConfig.from_dict(meta.get("config"))
    on_disk = RunConfig.from_dict(read_json(run_dir / CONFIG)).to_dict()  # older: defaults
    if on_disk != config.to_dict():
        raise WisealeError(f"{run_dir / CONFIG} does not match {WEIGHTS}; the run directory "
                           "was modified")
    model = model_from_config(config)
    load_weights(model, tensors, run_dir / WEIGHTS)
    return model.eval(), config
