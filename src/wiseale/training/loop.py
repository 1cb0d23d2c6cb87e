"""The one training loop (001 App. C, Algorithm 1): Adam on mini-batches sliced from
in-memory tensors, one row of metrics per epoch, an atomic checkpoint after every epoch and,
on SIGINT or SIGTERM, one mid-epoch. docs/reliability.md lists the faults it survives."""

from __future__ import annotations

import contextlib
import dataclasses
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from wiseale.build import CUSTOM_NET, load_split, model_from_config, resolve
from wiseale.config import RunConfig, learning_rate
from wiseale.data import DATASETS, Dataset
from wiseale.data.given import as_dataset
from wiseale.derived import remove_stale
from wiseale.errors import WisealeError, in_python_terms
from wiseale.folders import make_dirs, remove_empty, unmake
from wiseale.lock import exclusive
from wiseale.metrics import evaluate, evaluate_full
from wiseale.metrics.evaluation import AGGREGATE_SAMPLES
from wiseale.model import Autoencoder
from wiseale.optim import adam
from wiseale.pairwise import planned_kernel, run_kernel
from wiseale.storage import (
    atomic_write_text,
    check_writable,
    load_tensors,
    read_json,
    read_meta,
    remove_temporaries,
    save_tensors,
    strict_json,
    write_json,
)
from wiseale.threads import choose_threads, using_threads
from wiseale.training.batches import EpochBatches
from wiseale.training.callbacks import Callback
from wiseale.training.checkpoint import (
    EpochState,
    load_weights,
    restore,
    save_checkpoint,
    saved_parts,
    settings_that_differ,
)
from wiseale.training.distributed import (
    World,
    check_supported,
    finish,
    gather_posterior,
    init_world,
    mean_over_ranks,
    on_main,
)
from wiseale.training.guards import FiniteWatch, check_watch, stop_non_finite
from wiseale.training.interrupts import StopSignals, interrupted
from wiseale.training.progress import Progress
from wiseale.training.rng import rng_state, set_rng_state
from wiseale.training.run import CHECKPOINT, CONFIG, EVALUATION, METRICS, WEIGHTS, Run


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of an epoch's data order and noise: resuming at an epoch repeats it exactly."""
    return seed * 1_000_003 + epoch


def _prepare_dir(out: Path, resume: bool, held: contextlib.ExitStack) -> None:
    """Make ``out`` and take its writer's lock (wiseale.lock) into ``held``; refuse a run
    directory that holds a run unless resuming. A run that fails before its first checkpoint
    removes the folders it made (never one that was there before)."""
    try:
        made = make_dirs(out)
    except OSError as exc:
        raise WisealeError(f"cannot create {out}: {exc.strerror}; choose another --out") from None
    try:
        held.enter_context(exclusive(out))
    except BaseException:
        remove_empty(made)
        raise

    def undo(failure: type[BaseException] | None, *_: Any) -> None:
        if failure is not None:  # while the lock is held; a checkpoint makes the run resumable
            unmake(made, keep=(out / CHECKPOINT).exists() or (out / WEIGHTS).exists())

    held.push(undo)
    if resume and not (out / CHECKPOINT).exists():
        raise WisealeError(f"{out} has no {CHECKPOINT} to resume from; drop --resume")
    if not resume and ((out / CHECKPOINT).exists() or (out / WEIGHTS).exists()):
        raise WisealeError(f"{out} already holds a run; add --resume or choose another --out")
    check_writable(out)  # fails early, with a clear error, if unwritable
    remove_temporaries(out)  # left by writes that a kill stopped before their rename


def _optimizers(model: Autoencoder, lr: float) -> dict[str, torch.optim.Optimizer]:
    """Adam for the autoencoder, beside the optimisers its parts bring for the parameters
    they train themselves (the TC discriminator's), which the first one never updates."""
    own = model.own_optimizers()
    owned = {id(p) for optimizer in own.values() for group in optimizer.param_groups
             for p in group["params"]}
    return {"optim": adam([p for p in model.parameters() if id(p) not in owned], lr=lr),
            **own}


def _setup(config: RunConfig, out: Path, world: World, nets: tuple,
           callbacks: Sequence[Callback]) -> Run:
    device = torch.device(config.device, torch.cuda.current_device()) \
        if config.device == "cuda" else torch.device("cpu")
    model = model_from_config(config, *nets).to(device)
    step_model, gather = (DistributedDataParallel(model), gather_posterior) \
        if world.distributed else (model, None)
    run = Run(config, out, world, device, model, _optimizers(model, config.lr), step_model,
              gather, tuple(callbacks) if world.main else ())
    if run.micro_batched and world.distributed:
        raise WisealeError("--micro-batch runs in one process; with torchrun, raise the number "
                           "of processes instead")
    if (run.micro_batched or world.distributed) and model.likelihood.batch_dependent:
        raise WisealeError("the closed-form likelihood variance (004 Eq. 10) is one value per "
                           "batch, which --micro-batch or torchrun would compute per chunk; "
                           "train in one pass, or learn it (--likelihood learned)")
    if world.distributed:
        check_supported(model)
    return run


def _summary(config: RunConfig, row: dict) -> str:
    shown = ["loss", *(k for k in row if k.startswith("test_") and row[k] is not None)]
    values = " ".join(f"{k}={row[k]:.4g}" for k in shown)
    return f"{config.method} epoch {row['epoch']}/{config.epochs}: {values} " \
        f"({row['samples_per_s']:.0f} samples/s)"


def _evaluate_epoch(run: Run, row: dict, x_eval: torch.Tensor, kernel: str) -> None:
    """The test metrics of the epoch's end, into its row (rank 0 only: wiseale.training
    .distributed.on_main)."""
    row.update({f"test_{k}": v for k, v in evaluate(run.model, x_eval, kernel=kernel).items()})


def _save_epoch(run: Run, history: list[dict], state: EpochState, x_eval: torch.Tensor,
                progress: bool) -> None:
    """The callbacks and the summary line of the epoch's row, metrics.jsonl with it, then the
    checkpoint of the epoch's end (rank 0 only: wiseale.training.distributed.on_main)."""
    row = history[-1]
    for callback in run.callbacks:
        callback.on_epoch_end(row["epoch"], row, run.model, x_eval)
    if progress:
        tqdm.write(_summary(run.config, row))
    atomic_write_text(run.out / METRICS, "".join(strict_json(row) + "\n" for row in history))
    save_checkpoint(run, state)


@in_python_terms
def train(config: RunConfig, out: str | Path, resume: bool = False, progress: bool = True,
          train_data: Any = None, test_data: Any = None, encoder: torch.nn.Module | None = None,
          decoder: torch.nn.Module | None = None,
          callbacks: Sequence[Callback] = ()) -> Autoencoder:
    """Train ``config`` into the run directory ``out`` and return the model.

    Writes ``metrics.jsonl`` (one row per epoch), ``checkpoint.safetensors`` and
    ``config.json`` (after every epoch), and at the end ``model.safetensors`` and
    ``evaluation.json``. A run stopped before its first checkpoint leaves no run behind.
    SIGINT or SIGTERM saves a checkpoint at the next batch and raises
    :class:`~wiseale.training.interrupts.Interrupted`.
    ``resume=True`` continues from the last checkpoint to the same weights as an
    uninterrupted run.
    ``train_data`` / ``test_data`` replace the splits of ``config.data`` (then just a name):
    a numpy array, a tensor, an (x, y) pair, a torch Dataset or a path (data.given); without
    ``test_data`` the config's test split is used, or, when the name loads nothing, the
    training data (with a warning). ``encoder`` and ``decoder`` are your own networks
    (build.own_nets: x -> features [N, F], z -> the likelihood's parameters shaped like x),
    trained in place of ``config.net`` (saved as ``custom``; load the run with
    ``load_run(run_dir, encoder=..., decoder=...)``). ``callbacks``
    (wiseale.training.callbacks.Callback) are called on the main process at the start, after
    every step, at every epoch's end and at the end.
    """
    out = Path(out)
    config.validate()
    given = train_data is not None
    divide_by = config.data_options.get("divide_by")  # of data given from Python
    train_data = load_split(config, "train") if not given else \
        as_dataset(train_data, "train", config.data, config.storage, divide_by)
    if test_data is not None:
        test_data = as_dataset(test_data, "test", config.data, config.storage, divide_by)
    elif given and not (config.data in DATASETS
                        or Path(config.data_dir or ".", config.data).exists()):
        warnings.warn("no test_data was given: the per-epoch and final test metrics are "
                      "measured on the training data", stacklevel=2)
        test_data = train_data
    else:
        test_data = load_split(config, "test")
    if (encoder is None) != (decoder is None):
        raise WisealeError("give both your encoder and your decoder, or neither")
    if encoder is not None:
        if config.net not in (None, CUSTOM_NET):
            raise WisealeError(f"net={config.net!r} and your own encoder and decoder: leave net "
                               "unset")
        config = dataclasses.replace(config, net=CUSTOM_NET)
    if resume and config.parts is None:  # resume with the parts it was built from
        parts, options = saved_parts(out)
        if parts is not None:
            config = dataclasses.replace(config, parts=parts,
                                         options={**options, **config.options})
    config = dataclasses.replace(resolve(config, train_data),
                                 threads=choose_threads(config.threads))
    if config.device == "cuda" and not torch.cuda.is_available():
        raise WisealeError("--device cuda was asked for but no CUDA GPU is visible; use cpu")
    world = init_world(config.device)
    try:
        with using_threads(config.threads):
            if progress and world.main:
                tqdm.write(_start_line(config, train_data), file=sys.stderr)
            return _train(config, out, resume, progress, train_data, test_data, world,
                          (encoder, decoder), callbacks)
    finally:
        finish(world)


def _start_line(config: RunConfig, train_data: Dataset) -> str:
    """What a run was given and chose by itself, before its first step."""
    storage = "in memory" if train_data.in_memory else "memory-mapped"
    values = "as stored" if train_data.divide_by == 1 else f"x / {train_data.divide_by:g}"
    return (f"wiseale: {config.method} on {config.data}: {len(train_data):,} training samples "
            f"({storage}, values {values}), likelihood {config.likelihood}, net {config.net}, d_z "
            f"{config.latent_dim}, batch {config.batch_size}, {config.epochs} epochs, device "
            f"{config.device}, {config.threads} threads")


def _train(config: RunConfig, out: Path, resume: bool, progress: bool, train_data: Dataset,
           test_data: Dataset, world: World, nets: tuple,
           callbacks: Sequence[Callback]) -> Autoencoder:
    """The loop of :func:`train`; with several processes (torchrun) each takes its slice of
    every global batch of world.size x batch_size samples and rank 0 writes the files."""
    run = _setup(config, out, world, nets, callbacks)  # a net that does not fit writes nothing
    try:
        with contextlib.ExitStack() as held:
            on_main(world, _prepare_dir, out, resume, held)
            return _loop(run, resume, progress, train_data, test_data)
    finally:  # DDP's wrapper goes before its process group, even when run stays referenced
        run.step_model = run.model


def _loop(run: Run, resume: bool, progress: bool, train_data: Dataset,
          test_data: Dataset) -> Autoencoder:
    config, out, world = run.config, run.out, run.world
    run.data = {"train": train_data.digest(), "test": test_data.digest()}
    state, history = restore(run) if resume else (EpochState(0), [])
    data = train_data.to(run.device)  # in memory: moved once; a file: read batch by batch
    x_eval = test_data.floats(slice(0, config.eval_size), run.device)
    n_batches = _n_batches(len(data), config.batch_size, world)
    run.steps = config.epochs * n_batches
    for part in (*run.model.hooks(), *run.callbacks):  # the aggregate KL's kernel, ...
        part.setup(run)
    eval_kernel = _eval_kernel(run, len(x_eval))
    for callback in run.callbacks:
        callback.on_train_start(config, out, state.epoch)
    first_epoch = state.epoch  # the run's time is estimated in the first epoch it trains
    with StopSignals(world) as signals:
        for epoch in range(state.epoch, config.epochs):
            row = _train_epoch(run, data, state, n_batches, signals, progress,
                               estimate=epoch == first_epoch)
            on_main(world, _evaluate_epoch, run, row, x_eval, eval_kernel)
            for part in run.model.hooks():  # may add values to the row (wiseale.hooks)
                part.on_epoch_end(epoch + 1, row, run.model, x_eval)
            history.append(row)
            state = EpochState(epoch + 1)
            on_main(world, _save_epoch, run, history, state, x_eval, progress)
            signals.check(out, state.where())
    on_main(world, _save_results, run, train_data, test_data, progress)
    return run.model


def _eval_kernel(run: Run, n_eval: int) -> str:
    """The aggregate-KL kernel of the per-epoch evaluations (forward only, ``n_eval`` samples
    up to AGGREGATE_SAMPLES): compiled where the compile pays over the run's epochs
    (pairwise.run_kernel), else eager; kept on resume (Run.keep)."""
    config = run.config
    return run.keep("eval", lambda: run_kernel(min(n_eval, AGGREGATE_SAMPLES),
                                               config.latent_dim, config.epochs, run.device,
                                               backward=False))


def _n_batches(n: int, batch: int, world: World) -> int:
    n_batches = n // (batch * world.size)  # the last partial global batch is dropped
    if n_batches == 0:
        raise WisealeError(f"{world.size} processes x batch-size {batch} is more than the "
                           f"{n} training samples; lower --batch-size")
    return n_batches


def _epoch_order(run: Run, n: int, epoch: int) -> torch.Tensor:
    """The epoch's permutation of the training samples (the same on every rank), with the
    random generators then seeded for its encoder noise (each rank its own)."""
    seed = epoch_seed(run.config.seed, epoch)
    torch.manual_seed(seed)
    order = torch.randperm(n, device=run.device)
    if run.world.distributed:
        torch.manual_seed(seed + 7919 * (run.world.rank + 1))
    return order


def _train_epoch(run: Run, data: Dataset, state: EpochState, n_batches: int,
                 signals: StopSignals, progress: bool, estimate: bool = False) -> dict:
    """Train epoch ``state.epoch`` from batch ``state.step`` on and return the metrics row
    of its steps. After a signal: a mid-epoch checkpoint, then
    :class:`~wiseale.training.interrupts.Interrupted`."""
    config, epoch = run.config, state.epoch
    lr = learning_rate(config, epoch)
    for group in run.optimizers["optim"].param_groups:
        group["lr"] = lr
    batches = EpochBatches(data, _epoch_order(run, len(data), epoch), config.batch_size,
                           n_batches, run.world, run.device)
    if state.rng:  # resumed mid-epoch
        set_rng_state(state.rng, run.device)
    watch = FiniteWatch(run.device, run.world,
                        lazy=False if config.on_nonfinite == "skip" else None)
    started = time.perf_counter() - state.elapsed
    shown = Progress(f"{config.method} epoch {epoch + 1}/{config.epochs}", n_batches,
                     state.step, config.batch_size * run.world.size,
                     enabled=progress and run.world.main,
                     later_steps=(config.epochs - epoch - 1) * n_batches if estimate else None,
                     on_cpu=run.device.type == "cpu")
    try:
        for step in range(state.step, n_batches):
            run_step = epoch * n_batches + step
            parts = _train_step(run, batches, state, watch, step, run_step)
            for callback in run.callbacks if parts is not None else ():
                callback.on_step_end(run_step, parts)
            state.step = step + 1
            shown.update(state.step, None if parts is None else parts["loss"])
            stop = signals.agreed()  # under torchrun: the same verdict on every process
            if stop is not None:
                check_watch(run, watch, epoch)
                state.elapsed, state.rng = time.perf_counter() - started, rng_state(run.device)
                saved = state.of_every_rank(run.world)
                on_main(run.world, save_checkpoint, run, saved)
                raise interrupted(stop, run.out, state.where())
    finally:
        shown.close()
    check_watch(run, watch, epoch)
    if state.skipped and run.world.main:
        tqdm.write(f"wiseale: epoch {epoch + 1}: skipped {len(state.skipped)} batches with a "
                   f"non-finite loss ({', '.join(map(str, state.skipped[:10]))})",
                   file=sys.stderr)
    return _epoch_row(run, state, lr, n_batches, time.perf_counter() - started)


def _train_step(run: Run, batches: EpochBatches, state: EpochState, watch: FiniteWatch,
                step: int, run_step: int) -> dict[str, torch.Tensor] | None:
    """One optimiser step on the epoch's batch ``step`` (step ``run_step`` of the run), then
    the model's parts' ``on_step_end``; its loss parts, or None when skipped. A non-finite
    loss stops the run or, with ``on_nonfinite="skip"``, leaves the weights and optimisers as
    they were."""
    optimizer = run.optimizers["optim"]
    optimizer.zero_grad(set_to_none=True)
    output = run.loss_and_grads(batches[step])
    watch.update(output.loss, step)
    if not watch.lazy and watch.first_bad() is not None:
        if run.config.on_nonfinite == "stop":
            stop_non_finite(run, state.epoch, step)
        watch.clear()
        state.skipped.append(step)
        return None
    optimizer.step()
    for part in run.model.hooks():  # the TC discriminator's step (wiseale.hooks)
        part.on_step_end(run_step, output.parts)
    for key, value in output.parts.items():
        state.totals[key] = state.totals[key] + value if key in state.totals else value
    return output.parts


def _epoch_row(run: Run, state: EpochState, lr: float, n_batches: int,
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


def _save_results(run: Run, train_data: Dataset, test_data: Dataset, progress: bool) -> None:
    """model.safetensors and evaluation.json (``config.final_eval``; ``none``: no file)."""
    save_tensors(run.out / WEIGHTS, run.model.state_dict(), {"config": run.config.to_dict(),
                                                             "data": run.data})
    remove_stale(run.out)  # figures and samplers made from former weights (derived.py)
    evaluation = _final_evaluation(run, train_data, test_data, progress)
    if evaluation is None:
        (run.out / EVALUATION).unlink(missing_ok=True)  # it would describe former weights
    else:
        write_json(run.out / EVALUATION, evaluation)
    for callback in run.callbacks:
        callback.on_train_end(run.model, evaluation)


def _final_evaluation(run: Run, train_data: Dataset, test_data: Dataset,
                      progress: bool) -> dict[str, dict] | None:
    """The evaluation of the run's end: ``full``, every test sample and as many training ones
    (metrics.evaluate_full: IWAE, Monte Carlo KL, kNN); ``fast``, the per-epoch metrics
    (metrics.evaluate) on the first ``eval_size`` samples of each split; ``none``: None."""
    config, device = run.config, run.device
    if config.final_eval == "none":
        return None
    if config.final_eval == "fast":
        head = slice(0, config.eval_size)
        return {split: evaluate(run.model, data.floats(head, device), kernel=run.kernels["eval"])
                for split, data in (("train", train_data), ("test", test_data))}
    n = len(test_data)
    if progress:
        tqdm.write(f"wiseale: final evaluation of {n:,} test and as many training samples "
                   "(--final-eval fast: the per-epoch metrics, in seconds)", file=sys.stderr)
    labels = (None if train_data.y is None else train_data.y[:n].to(device),
              None if test_data.y is None else test_data.y.to(device))
    kernel = planned_kernel(min(n, AGGREGATE_SAMPLES), config.latent_dim, 2, backward=False)
    return {"train": evaluate_full(run.model, train_data.head(n), labels[0], kernel),
            "test": evaluate_full(run.model, test_data, labels[1], kernel)}


@in_python_terms
def load_run_data(run_dir: str | Path, config: RunConfig, split: str,
                  changed_ok: bool = False) -> Dataset:
    """The ``split`` of a finished run's data (``load_run``'s config), refused in one line when
    its digest differs from the one the run saved with its weights (the file was replaced or
    edited), unless ``changed_ok``. Runs saved before digests are not checked."""
    data = load_split(config, split)
    saved = read_meta(Path(run_dir) / WEIGHTS).get("data", {}).get(split)
    if saved is not None and not changed_ok and data.digest() != saved:
        raise WisealeError(f"the {split} data of {run_dir} ({config.data}) is not the data it "
                           "was trained on (its digest changed); restore that data, or pass "
                           "--allow-changed-data to use it as it is")
    return data


@in_python_terms
def load_run(run_dir: str | Path, encoder: torch.nn.Module | None = None,
             decoder: torch.nn.Module | None = None) -> tuple[Autoencoder, RunConfig]:
    """The trained model of a run directory and its config, from safetensors and JSON only;
    a run trained with your own networks needs the same ``encoder`` and ``decoder`` again."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise WisealeError(f"{run_dir} is not a directory; give a run directory made by "
                           "`wiseale train`")
    if not (run_dir / WEIGHTS).is_file():
        raise WisealeError(f"{run_dir} has no {WEIGHTS}: not a finished wiseale run; finish it "
                           f"with `wiseale train --resume --out {run_dir} ...` or give another")
    tensors, meta = load_tensors(run_dir / WEIGHTS)
    config = RunConfig.from_dict(meta.get("config"))
    on_disk = RunConfig.from_dict(read_json(run_dir / CONFIG))  # older: defaults
    if settings_that_differ(on_disk, config):  # a resume that extends the run may be writing
        raise WisealeError(f"{run_dir / CONFIG} does not match {WEIGHTS}; the run directory "
                           "was modified")
    model = model_from_config(config, encoder, decoder)
    load_weights(model, tensors, run_dir / WEIGHTS)
    return model.eval(), config
