"""The configuration of one training run, with its checks (one-line errors)."""

from __future__ import annotations

import math
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any

from wiseale.errors import WisealeError

LR_SCHEDULES = ("constant", "cosine", "step")
PRECISIONS = ("fp32", "bf16")
DEVICES = ("cpu", "cuda")
ON_NONFINITE = ("stop", "skip")
STORAGES = ("auto", "memory", "mmap")  # where a file's samples are kept (data/arrays.py)


def _flag(help: str, **how: Any) -> dict[str, Any]:
    """A field's command-line flag (``wiseale train --FIELD-NAME``): its help and how it is
    read (``kind``: positive_int | positive_float | seed | path; ``choices``; ``registry``:
    (module, attribute) of the names it takes; ``nargs``; ``metavar``). The default is the
    field's own."""
    return {"help": help, **how}


@dataclass
class RunConfig:
    """Everything that determines a run; saved as ``config.json`` in the run directory.

    ``likelihood``, ``net`` and ``sample_shape`` of None are resolved from the data when the
    run starts.
    ``n_train``/``n_test`` of None use the whole split. ``micro_batch`` splits each batch for
    the networks while the regularisers see the whole batch (wiseale.training.micro_batch).
    ``eval_size`` test samples are evaluated after every epoch (all of them at the end of the run).
    ``on_nonfinite`` is what a non-finite training loss does: ``stop`` the run (the last
    checkpoint is kept) or ``skip`` that step's update (docs/reliability.md).
    """

    method: str = field(metadata=_flag("a method of `wiseale methods`"))
    data: str = field(metadata=_flag("a data set of `wiseale datasets` or a .npy/.npz path"))
    options: dict[str, Any] = field(default_factory=dict)  # -o KEY=VALUE (the CLI's own)
    likelihood: str | None = field(default=None, metadata=_flag(
        "default: the method's (lv-vae: learned), else bernoulli for 0/1 data and gaussian "
        "otherwise; learned / optimal: one sigma^2 by gradient / in closed form (004 Eq. "
        "9-10); pixel: 004 Eq. 11 (needs --net lv-mnist|lv-celeba)",
        registry=("wiseale.likelihoods", "LIKELIHOODS")))
    sigma2: float = field(default=0.5, metadata=_flag(
        "variance of the Gaussian likelihood", kind="positive_float"))
    net: str | None = field(default=None, metadata=_flag(
        "a network of wiseale.nets.NETS (default: chosen from the data's shape)",
        registry=("wiseale.nets", "NETS")))
    latent_dim: int = field(default=4, metadata=_flag("d_z", kind="positive_int"))
    epochs: int = field(default=10, metadata=_flag("passes over the training set",
                                                   kind="positive_int"))
    batch_size: int = field(default=64, metadata=_flag("samples per step", kind="positive_int"))
    micro_batch: int | None = field(default=None, metadata=_flag(
        "run the networks N samples at a time while the regularisers (e.g. WiSE-ALE's "
        "aggregate posterior) see the whole --batch-size", kind="positive_int",
        metavar="N"))
    lr: float = field(default=5e-4, metadata=_flag("Adam's learning rate",
                                                   kind="positive_float"))
    lr_schedule: str = field(default="constant", metadata=_flag(
        "step: x --lr-gamma at each of --lr-milestones (default 50%%, 75%%)",
        choices=LR_SCHEDULES))
    lr_milestones: list[int] | None = field(default=None, metadata=_flag(
        "the epochs of the step schedule's cuts", kind="positive_int", nargs="+",
        metavar="EPOCH"))
    lr_gamma: float | list[float] = field(default=0.1, metadata=_flag(
        "one factor for every milestone, or one per milestone (003 App. B.3: --lr-milestones "
        "30 50 --lr-gamma 0.5 0.2)", kind="positive_float", nargs="+", metavar="GAMMA"))
    seed: int = field(default=0, metadata=_flag("seeds the weights, data order and noise",
                                                kind="seed"))
    device: str = field(default="cpu", metadata=_flag("where to train", choices=DEVICES))
    threads: int | None = field(default=None, metadata=_flag(
        "torch CPU threads (default: $WISEALE_THREADS, else $OMP_NUM_THREADS, else half the "
        "CPUs; the count changes a run's last digits)", kind="positive_int", metavar="N"))
    precision: str = field(default="fp32", metadata=_flag(
        "bf16: the networks under bfloat16 autocast; the posterior heads, likelihood and "
        "regularisers stay float32", choices=PRECISIONS))
    n_train: int | None = field(default=None, metadata=_flag(
        "use the first N training samples", kind="positive_int", metavar="N"))
    n_test: int | None = field(default=None, metadata=_flag(
        "use the first N test samples", kind="positive_int", metavar="N"))
    eval_size: int = field(default=4096, metadata=_flag(
        "test samples evaluated after every epoch (all of them at the end)",
        kind="positive_int", metavar="N"))
    data_dir: str | None = field(default=None, metadata=_flag(
        "directory that relative data paths are in", kind="path"))
    data_options: dict[str, Any] = field(default_factory=dict)  # --data-option KEY=VALUE
    storage: str = field(default="auto", metadata=_flag(
        "where the samples of a .npy file (or prepared CelebA) are kept: memory, or mmap: on "
        "disk, read batch by batch (for data larger than memory); auto: mmap for a file larger "
        "than half the available memory", choices=STORAGES))
    sample_shape: list[int] | None = None  # resolved from the data
    on_nonfinite: str = field(default="stop", metadata=_flag(
        "a non-finite loss stops the run (the last checkpoint is kept) or skips that batch's "
        "update", choices=ON_NONFINITE))

    def validate(self) -> RunConfig:
        for name in ("latent_dim", "epochs", "batch_size", "eval_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise WisealeError(f"{name.replace('_', '-')} must be a positive integer, "
                                   f"got {value}")
        for name in ("n_train", "n_test", "micro_batch", "threads"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value <= 0):
                raise WisealeError(f"{name.replace('_', '-')} must be a positive integer, "
                                   f"got {value}")
        if not (isinstance(self.seed, int) and 0 <= self.seed < 2**31):
            raise WisealeError(f"seed must be an integer in [0, 2^31), got {self.seed}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise WisealeError(f"lr must be a finite positive number, got {self.lr}")
        if not (math.isfinite(self.sigma2) and self.sigma2 > 0):
            raise WisealeError(f"sigma2 must be a finite positive number, got {self.sigma2}")
        self._validate_lr_gamma()
        if self.lr_schedule not in LR_SCHEDULES:
            raise WisealeError(f"unknown lr schedule {self.lr_schedule!r}; use one of "
                               f"{', '.join(LR_SCHEDULES)}")
        if self.precision not in PRECISIONS:
            raise WisealeError(f"unknown precision {self.precision!r}; use fp32 or bf16")
        if self.device not in DEVICES:
            raise WisealeError(f"unknown device {self.device!r}; use cpu or cuda")
        if self.storage not in STORAGES:
            raise WisealeError(f"unknown storage {self.storage!r}; use one of "
                               f"{', '.join(STORAGES)}")
        if self.on_nonfinite not in ON_NONFINITE:
            raise WisealeError(f"unknown on-nonfinite {self.on_nonfinite!r}; use stop or skip")
        return self

    def _validate_lr_gamma(self) -> None:
        gammas = self.lr_gamma if isinstance(self.lr_gamma, list) else [self.lr_gamma]
        if not all(isinstance(g, (int, float)) and math.isfinite(g) and g > 0 for g in gammas):
            raise WisealeError(f"lr-gamma must be finite positive numbers, got {self.lr_gamma}")
        if isinstance(self.lr_gamma, list) and (
                self.lr_milestones is None or len(self.lr_milestones) != len(gammas)):
            raise WisealeError(f"{len(gammas)} lr-gamma values need as many lr-milestones, got "
                               f"{self.lr_milestones}; give one gamma, or one per milestone")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunConfig:
        if not isinstance(data, dict):
            raise WisealeError(f"a config must be a JSON object, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise WisealeError(f"config has unknown fields {sorted(unknown)}; it was written by "
                               "another version of wiseale")
        missing = {f.name for f in fields(cls) if f.default is MISSING
                   and f.default_factory is MISSING} - set(data)
        if missing:
            raise WisealeError(f"config lacks the fields {sorted(missing)}; it is corrupt")
        return cls(**data)


def learning_rate(config: RunConfig, epoch: int) -> float:
    """The learning rate of ``epoch`` (0-based): a pure function, so resuming is exact."""
    if config.lr_schedule == "cosine":
        return config.lr * 0.5 * (1.0 + math.cos(math.pi * epoch / config.epochs))
    if config.lr_schedule == "step":  # x lr_gamma at each milestone (default: 50%, 75%)
        milestones = config.lr_milestones or [config.epochs // 2, 3 * config.epochs // 4]
        gammas = (config.lr_gamma if isinstance(config.lr_gamma, list)
                  else [config.lr_gamma] * len(milestones))
        passed = [g for m, g in zip(milestones, gammas, strict=True) if epoch >= m]
        return config.lr * math.prod(passed)
    return config.lr
