"""The one training loop (001 App. C, Algorithm 1): Adam on mini-batches sliced from
in-memory tensors, one row of metrics per epoch, an atomic checkpoint after every epoch."""

from __future__ import annotations

import json
import time
from pathlib import Path

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
from wiseale.model import Autoencoder
from wiseale.storage import (
    atomic_write_text,
    load_tensors,
    optimizer_tensors,
    read_json,
    restore_optimizer,
    save_tensors,
    write_json,
)
from wiseale.wide import wide_batch_step

CONFIG, METRICS, CHECKPOINT, WEIGHTS, EVALUATION = (
    "config.json", "metrics.jsonl", "checkpoint.safetensors", "model.safetensors",
    "evaluation.json")


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of an epoch's data order and noise: resuming at an epoch repeats it exactly."""
    return seed * 1_000_003 + epoch


def _prepare_dir(out: Path, resume: bool) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise WisealeError(f"cannot create {out}: {exc.strerror}; choose another --out") from None
    if resume and not (out / CHECKPOINT).exists():
        raise WisealeError(f"{out} has no {CHECKPOINT} to resume from; drop --resume")
    if not resume and ((out / CHECKPOINT).exists() or (out / WEIGHTS).exists()):
        raise WisealeError(f"{out} already holds a run; add --resume or choose another --out")
    write_json(out / ".write-test", {})  # fails early, with a clear error, if unwritable
    (out / ".write-test").unlink()


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


def _restore(out: Path, config: RunConfig, model: Autoencoder,
             optimizers: dict[str, torch.optim.Optimizer]) -> tuple[int, list[dict]]:
    tensors, meta = load_tensors(out / CHECKPOINT)
    saved = RunConfig.from_dict(meta["config"]).to_dict()
    mine = config.to_dict()
    differ = sorted(k for k in mine if k != "epochs" and saved[k] != mine[k])
    if differ:
        raise WisealeError(f"{out} was trained with other settings ({', '.join(differ)}); "
                           "resume with the same options or choose another --out")
    if config.epochs < meta["epoch"]:
        raise WisealeError(f"{out} has already trained {meta['epoch']} epochs; --epochs must be "
                           "at least that to resume")
    if config.epochs != saved["epochs"] and config.lr_schedule != "constant":
        raise WisealeError(f"the {config.lr_schedule} schedule depends on --epochs; resume with "
                           f"--epochs {saved['epochs']} as the run was started")
    load_weights(model, {k[6:]: v for k, v in tensors.items() if k.startswith("model/")},
                 out / CHECKPOINT)
    for prefix, optimizer in optimizers.items():
        restore_optimizer(optimizer, tensors, meta["param_groups"][prefix], prefix)
    epoch = int(meta["epoch"])
    rows = [json.loads(line) for line in (out / METRICS).read_text().splitlines() if line] \
        if (out / METRICS).exists() else []
    return epoch, [row for row in rows if row["epoch"] <= epoch]


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
    if world.main:
        _prepare_dir(out, resume)
    barrier(world)
    device = torch.device(config.device, torch.cuda.current_device()) \
        if config.device == "cuda" else torch.device("cpu")
    model = model_from_config(config).to(device)
    optimizers = _optimizers(model, config.lr)
    optimizer, adversary = optimizers["optim"], optimizers.get("adversary")
    start, history = _restore(out, config, model, optimizers) if resume else (0, [])
    step_model, gather = model, None
    wide = config.micro_batch is not None and config.micro_batch < config.batch_size
    bf16 = config.precision == "bf16"
    if wide and world.distributed:
        raise WisealeError("--micro-batch runs in one process; with torchrun, raise the number "
                           "of processes instead")
    if world.distributed:
        check_supported(model)
        step_model = DistributedDataParallel(model)
        gather = gather_posterior

    x = train_data.x.to(device)
    x_eval = test_data.x[:config.eval_size].to(device)
    batch = config.batch_size
    global_batch = batch * world.size
    n_batches = len(x) // global_batch  # the last partial global batch is dropped
    if n_batches == 0:
        raise WisealeError(f"{world.size} processes x batch-size {batch} is more than the "
                           f"{len(x)} training samples; lower --batch-size")
    for epoch in range(start, config.epochs):
        lr = learning_rate(config, epoch)
        for group in optimizer.param_groups:
            group["lr"] = lr
        torch.manual_seed(epoch_seed(config.seed, epoch))
        x_epoch = x[torch.randperm(len(x), device=device)]  # the same order on every rank
        if world.distributed:  # then each rank its own encoder noise
            torch.manual_seed(epoch_seed(config.seed, epoch) + 7919 * (world.rank + 1))
        totals: dict[str, torch.Tensor] = {}
        watch = FiniteWatch(device, world)
        started = time.perf_counter()
        bar = tqdm(range(n_batches), desc=f"{config.method} epoch {epoch + 1}/{config.epochs}",
                   disable=None if progress and world.main else True, leave=False,
                   mininterval=0.5)
        for step in bar:
            first = step * global_batch + world.rank * batch
            x_batch = x_epoch[first:first + batch]
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast(device.type, torch.bfloat16, enabled=bf16):
                if wide:
                    output = wide_batch_step(model, x_batch, config.micro_batch)
                else:
                    output = (step_model(x_batch) if gather is None
                              else step_model(x_batch, gather))
            watch.update(output.loss, step)
            if not watch.lazy and watch.first_bad() is not None:
                _stop_non_finite(out, epoch, step)
            if not wide:
                output.loss.backward()
            optimizer.step()
            if adversary is not None:  # after the autoencoder's step, on detached z
                adversary.zero_grad(set_to_none=True)
                adversary_loss = sum(reg.adversary_loss(output.z) for reg in model.adversaries())
                adversary_loss.backward()
                adversary.step()
                output.parts["adversary_loss"] = adversary_loss.detach()
            for key, value in output.parts.items():
                totals[key] = totals[key] + value if key in totals else value
        if watch.lazy and watch.first_bad() is not None:  # one check per epoch on a GPU
            _stop_non_finite(out, epoch, watch.first_bad())
        if world.distributed:
            totals = mean_over_ranks(totals)
        elapsed = time.perf_counter() - started
        row = {"epoch": epoch + 1, "lr": lr,
               "samples_per_s": n_batches * global_batch / elapsed,
               **{k: (v / n_batches).item() for k, v in totals.items()}}
        if world.main:
            row.update({f"test_{k}": v for k, v in evaluate(model, x_eval).items()})
        row.update(model.end_epoch(epoch, row))
        history.append(row)
        if world.main:
            if progress:
                tqdm.write(_summary(config, row))
            _save_epoch(out, config, model, optimizers, history, epoch)
        barrier(world)
    if world.main:
        save_tensors(out / WEIGHTS, model.state_dict(), {"config": config.to_dict()})
        n = len(test_data)
        labels = (None if train_data.y is None else train_data.y[:n].to(device),
                  None if test_data.y is None else test_data.y.to(device))
        write_json(out / EVALUATION, {
            "train": evaluate_full(model, x[:n], labels[0]),
            "test": evaluate_full(model, test_data.x.to(device), labels[1])})
    barrier(world)
    return model


class FiniteWatch:
    """Watches the step losses of an epoch for a non-finite value. On the CPU each step is
    checked at once (the step is not applied); on a GPU the first bad step's index is kept
    on the device and read once at the end of the epoch, so that no step waits for the host
    (``lazy``; that epoch's weights are then not saved). Across processes the verdict is
    shared, so all stop together."""

    def __init__(self, device: torch.device, world: World, lazy: bool | None = None) -> None:
        self.lazy = device.type == "cuda" if lazy is None else lazy
        self.world = world
        self.bad = torch.full((), -1, dtype=torch.long, device=device)

    def update(self, loss: torch.Tensor, step: int) -> None:
        finite = torch.isfinite(loss.detach())
        self.bad = torch.where((self.bad < 0) & ~finite, step, self.bad)

    def first_bad(self) -> int | None:
        bad = self.bad
        if self.world.distributed:
            bad = torch.where(bad < 0, torch.iinfo(torch.long).max, bad)
            reduce_min(bad)
            bad = torch.where(bad == torch.iinfo(torch.long).max, -1, bad)
        value = int(bad)
        return None if value < 0 else value


def _stop_non_finite(out: Path, epoch: int, step: int) -> None:
    kept = (f"the checkpoint of epoch {epoch} is kept in {out}" if epoch > 0
            else "nothing was saved")
    raise WisealeError(f"non-finite loss at epoch {epoch + 1}, batch {step}; {kept}; "
                       "lower --lr or check the data")


def _save_epoch(out: Path, config: RunConfig, model: Autoencoder,
                optimizers: dict[str, torch.optim.Optimizer], history: list[dict],
                epoch: int) -> None:
    """metrics.jsonl, then the checkpoint (model and optimisers) and config.json."""
    _write_metrics(out, history)
    model_state = {f"model/{k}": v for k, v in model.state_dict().items()}
    optim_state, groups = {}, {}
    for prefix, opt in optimizers.items():
        tensors, groups[prefix] = optimizer_tensors(opt, prefix)
        optim_state.update(tensors)
    save_tensors(out / CHECKPOINT, {**model_state, **optim_state},
                 {"epoch": epoch + 1, "config": config.to_dict(), "param_groups": groups})
    write_json(out / CONFIG, config.to_dict())


def load_run(run_dir: str | Path) -> tuple[Autoencoder, RunConfig]:
    """The trained model of a run directory and its config, from safetensors and JSON only."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise WisealeError(f"{run_dir} is not a directory; give a run directory made by "
                           "`wiseale train`")
    tensors, meta = load_tensors(run_dir / WEIGHTS)
    config = RunConfig.from_dict(meta["config"])
    on_disk = RunConfig.from_dict(read_json(run_dir / CONFIG)).to_dict()  # older: defaults
    if on_disk != config.to_dict():
        raise WisealeError(f"{run_dir / CONFIG} does not match {WEIGHTS}; the run directory "
                           "was modified")
    model = model_from_config(config)
    load_weights(model, tensors, run_dir / WEIGHTS)
    return model.eval(), config
