"""The configuration of one training run, with its checks (one-line errors)."""

from __future__ import annotations

import math
import os
import reprlib
from collections.abc import Callable
from dataclasses import MISSING, Field, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from wiseale.errors import WisealeError

LR_SCHEDULES = ("constant", "cosine", "step")
PRECISIONS = ("fp32", "bf16")
DEVICES = ("cpu", "cuda")
ON_NONFINITE = ("stop", "skip")
FINAL_EVALS = ("full", "fast", "none")  # the evaluation at a run's end (training/loop.py)
STORAGES = ("auto", "memory", "mmap")  # where a file's samples are kept (data/arrays.py)
MOST = 2**31 - 1  # the largest count or seed: every size stays within torch's and NumPy's
MOST_THREADS = 1024  # torch threads or worker processes: more would only exhaust the machine


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)  # True is no count


def _is_finite(value: Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an int beyond a float's range
        return False


@dataclass(frozen=True)
class Kind:
    """A kind of setting and its one check, shared by its flag (the CLI reads the text with
    ``parse``) and every other source: a TOML --config, a run's config.json, Python."""

    parse: Callable[[str], Any]
    accept: Callable[[Any], bool]
    wanted: str  # what to give, e.g. "a positive integer"
    most: int | None = None

    def problem(self, value: Any) -> str | None:
        """None for a value of this kind, else what it must be ("must be ...")."""
        if isinstance(value, (str, os.PathLike)) and "\0" in str(value):
            return "must not hold a NUL character"
        if not self.accept(value):
            return f"must be {self.wanted}"
        if self.most is not None and value > self.most:
            return f"must be at most {self.most}"
        return None


KINDS = {
    "positive_int": Kind(int, lambda v: _is_int(v) and v > 0, "a positive integer", MOST),
    "threads": Kind(int, lambda v: _is_int(v) and v > 0, "a positive integer", MOST_THREADS),
    "positive_float": Kind(float, lambda v: _is_finite(v) and v > 0,
                           "a finite positive number"),
    "seed": Kind(int, lambda v: _is_int(v) and 0 <= v <= MOST,
                 "an integer between 0 and 2^31 - 1"),
    "path": Kind(Path, lambda v: isinstance(v, (str, os.PathLike)), "a path (a string)"),
    "text": Kind(str, lambda v: isinstance(v, str), "a string"),
}


def shown(value: Any) -> str:
    """``value`` for an error message: short, however long or deeply nested it is."""
    return reprlib.repr(value)


def _flag(help: str, **how: Any) -> dict[str, Any]:
    """A field's command-line flag (``wiseale train --FIELD-NAME``): its help and how it is
    read and checked (``kind``: a name of KINDS; ``choices``; ``registry``: (module,
    attribute) of the names it takes; ``nargs``: "+" for a list, which a field whose default
    is one number also takes as that number; ``metavar``). The default is the field's own."""
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

    method: str = field(metadata=_flag("a method of `wiseale methods`", kind="text"))
    data: str = field(metadata=_flag("a data set of `wiseale datasets` or a .npy/.npz path",
                                     kind="text"))
    options: dict[str, Any] = field(default_factory=dict)  # -o KEY=VALUE (the CLI's own)
    likelihood: str | None = field(default=None, metadata=_flag(
        "default: the method's (lv-vae: learned), else bernoulli for 0/1 data and gaussian "
        "otherwise; learned / optimal: one sigma^2 by gradient / in closed form (004 Eq. "
        "9-10); pixel: 004 Eq. 11 (needs --net lv-mnist|lv-celeba)",
        kind="text", registry=("wiseale.likelihoods", "LIKELIHOOD_CLASSES")))
    sigma2: float = field(default=0.5, metadata=_flag(
        "variance of the Gaussian likelihood", kind="positive_float"))
    net: str | None = field(default=None, metadata=_flag(
        "a network of wiseale.nets.NETWORKS (default: chosen from the data's shape)",
        kind="text", registry=("wiseale.nets", "NETWORKS")))
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
    data_seed: int | None = field(default=None, metadata=_flag(
        "redraw the data with this seed: a seeded random choice of the --n-train / --n-test "
        "samples (so of the evaluation subset too), generated sets generated with it "
        "(default: the first samples; the generated sets' fixed seed)", kind="seed"))
    device: str = field(default="cpu", metadata=_flag("where to train", choices=DEVICES))
    threads: int | None = field(default=None, metadata=_flag(
        "torch CPU threads (default: $WISEALE_THREADS, else $OMP_NUM_THREADS, else half the "
        "CPUs; the count changes a run's last digits)", kind="threads", metavar="N"))
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
    parts: dict[str, Any] | None = None  # resolved from the method's preset (wiseale.parts)
    on_nonfinite: str = field(default="stop", metadata=_flag(
        "a non-finite loss stops the run (the last checkpoint is kept) or skips that batch's "
        "update", choices=ON_NONFINITE))
    final_eval: str = field(default="full", metadata=_flag(
        "the evaluation at the end: full (every test sample and as many training ones: IWAE, "
        "Monte Carlo KL, kNN...), fast (the per-epoch metrics on --eval-size samples of each "
        "split: seconds) or none (no evaluation.json)", choices=FINAL_EVALS))

    def validate(self) -> RunConfig:
        """Check every field as its flag is checked (KINDS), whoever set it: a one-line
        WisealeError that names the setting and what to give."""
        for f in fields(self):
            _check_field(f, getattr(self, f.name))
        for name in ("options", "data_options"):
            value = getattr(self, name)
            if not (isinstance(value, dict) and all(isinstance(k, str) for k in value)):
                raise WisealeError(f"{name} must be a table of KEY = VALUE settings, got "
                                   f"{shown(value)}")
        shape = self.sample_shape
        if shape is not None and not (isinstance(shape, (list, tuple))
                                      and all(KINDS["positive_int"].problem(n) is None
                                              for n in shape)):
            raise WisealeError(f"sample-shape must be a list of positive integers, got "
                               f"{shown(shape)}; leave it out (it is read from the data)")
        if isinstance(self.lr_gamma, list) and (
                self.lr_milestones is None or len(self.lr_milestones) != len(self.lr_gamma)):
            raise WisealeError(f"{len(self.lr_gamma)} lr-gamma values need as many "
                               f"lr-milestones, got {self.lr_milestones}; give one gamma, or "
                               "one per milestone")
        return self

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
        return cls(**data).validate()


def _check_field(f: Field, value: Any) -> None:
    """One field's value against its flag's kind or choices; None where the default is."""
    how, name = f.metadata, f.name.replace("_", "-")
    if "help" not in how or (value is None and f.default is None):
        return
    if "choices" in how and value not in how["choices"]:
        raise WisealeError(f"unknown {name} {shown(value)}; use one of "
                           f"{', '.join(how['choices'])}")
    if "kind" not in how:
        return
    kind = KINDS[how["kind"]]
    if how.get("nargs") == "+" and (isinstance(value, list) or f.default is None):
        if not isinstance(value, list) or not value:
            raise WisealeError(f"{name} must be a list, each {kind.wanted}, got {shown(value)}")
        values = value
    else:
        values = [value]
    for one in values:
        problem = kind.problem(one)
        if problem is not None:
            raise WisealeError(f"{name} {problem}, got {shown(one)}")


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
