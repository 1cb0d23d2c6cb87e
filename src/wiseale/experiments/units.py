"""A reproduction's work as units: planned first (each with its state and an estimate of its
cost), then dispatched by a launcher (wiseale.experiments.launchers), each unit writing only
its own run directory.

A training unit (:class:`Unit`) is one training run of one spec, run label and seed. Its run
directory holds its resolved options, a writer lock and its checkpoint, so a unit that was
stopped resumes, one that finished is not run again, and the same seed and thread count give
the same bits whichever process or machine ran it. A measure unit (:class:`MeasureUnit`)
takes one finished run's measures (flows, mixtures, FIDs) into its measures.json, after the
training units. The aggregation over seeds runs afterwards, in the reproducing process.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wiseale.config import RunConfig
from wiseale.data import Dataset
from wiseale.experiments.measures import measure_key, measures_to_take, saved_measures
from wiseale.methods import derive_defaults, get_method, resolve_options
from wiseale.nets import default_net
from wiseale.storage import read_json
from wiseale.training.run import CHECKPOINT, EVALUATION, METRICS, WEIGHTS, read_metrics

if TYPE_CHECKING:
    from wiseale.experiments.spec import Measure

__all__ = ["MeasureUnit", "Unit", "describe_plan", "finished_run", "run_measures", "run_unit"]

# Training samples per second of one torch thread on the development machine (2 cores): sine
# from `reproduce sine --quick --seeds 2 --jobs 2` on the idle machine (median 2,750), the
# others the medians of docs/claims.md's runs, made two at a time beside other work, so
# slower than an idle machine's (docs/performance.md, "Units on this machine"); celeba's from
# issue 25's measurements. A network not listed: no estimate.
SAMPLES_PER_S = {"mlp": 8_000, "sine-conv": 2_750, "mnist-conv": 3_000, "lv-mnist": 650,
                 "shapes-conv": 250, "mnist-vcae": 13, "celeba-conv": 1.5, "celeba-vcae": 1.0,
                 "lv-celeba": 1.0}
EVALUATION_SHARE = 0.15  # the final evaluation's time, as a share of the training time


@dataclass(frozen=True)
class Unit:
    """One training run of a reproduction: ``config`` (with the thread count it trains with)
    into ``run_dir``; ``n_train`` samples per epoch through network ``net``."""

    seed: int
    label: str
    run_dir: Path
    config: RunConfig
    n_train: int
    net: str

    @property
    def state(self) -> str:
        """``done`` (weights and evaluation written), ``resume`` (a checkpoint) or ``new``."""
        if (self.run_dir / WEIGHTS).exists() and (self.run_dir / EVALUATION).exists():
            return "done"
        return "resume" if (self.run_dir / CHECKPOINT).exists() else "new"

    @property
    def log(self) -> Path:
        """Where a launcher writes the unit's output: beside its run directory."""
        return self.run_dir.with_name(f"{self.run_dir.name}.log")

    def estimate_s(self) -> float | None:
        """Its training and evaluation time on a CPU from SAMPLES_PER_S (None: on a GPU or
        for a network without a measured speed)."""
        rate = SAMPLES_PER_S.get(self.net)
        if rate is None or self.config.device != "cpu":
            return None
        threads = self.config.threads or 1
        return self.config.epochs * self.n_train / (rate * threads) * (1 + EVALUATION_SHARE)

    def call(self) -> tuple[Callable[..., str], tuple[Any, ...]]:
        """What a launcher runs: :func:`run_unit` and its arguments (plain, they pickle)."""
        return run_unit, (self.config.to_dict(), str(self.run_dir), str(self.log))


@dataclass(frozen=True)
class MeasureUnit:
    """The ``measures`` of one finished run (label ``label`` of ``seed``, in ``run_dir``) not
    yet in its measures.json under ``settings`` and the seed; ``data`` is the config whose
    training and test data they are measured on, ``threads`` the torch threads (None: as
    the reproducing process chooses)."""

    seed: int
    label: str
    run_dir: Path
    measures: tuple[Measure, ...]
    data: RunConfig
    settings: dict[str, Any]
    threads: int | None = None

    @property
    def missing(self) -> list[Measure]:
        """Its measures that measures.json lacks under these settings and seed."""
        return measures_to_take(self.measures, self.label, saved_measures(self.run_dir),
                                measure_key(self.settings, self.seed))

    @property
    def state(self) -> str:
        """``done`` (every measure saved under these settings and seed) or ``new``."""
        return "new" if self.missing else "done"

    @property
    def log(self) -> Path:
        """Where a launcher writes its output: beside the run directory."""
        return self.run_dir.with_name(f"{self.run_dir.name}.measures.log")

    def call(self) -> tuple[Callable[..., str], tuple[Any, ...]]:
        """What a launcher runs: :func:`run_measures` and its arguments (the measures are
        module-level functions, so they pickle by name)."""
        return run_measures, (self.measures, self.data.to_dict(), str(self.run_dir),
                              self.label, self.settings, self.seed, self.threads,
                              str(self.log))


def plan(configs: dict[int, dict[str, RunConfig]], roots: dict[int, Path],
         data: dict[int, Dataset], threads: int | None) -> list[Unit]:
    """Every training run of every seed, in order: seed -> label -> config into
    ``roots[seed]/runs/LABEL``, on the seed's training ``data``; ``threads`` per unit (None:
    as train chooses)."""
    return [Unit(seed, label, roots[seed] / "runs" / label,
                 dataclasses.replace(config, threads=threads), len(data[seed]),
                 config.net or default_net(data[seed].sample_shape))
            for seed, by_label in configs.items() for label, config in by_label.items()]


def plan_measures(measures: tuple[Measure, ...], units: list[Unit],
                  data: dict[int, RunConfig], settings: dict[str, Any],
                  threads: int | None) -> list[MeasureUnit]:
    """A measure unit for each training unit that one of ``measures`` applies to; seed s's
    measures are taken on the data of ``data[s]``."""
    return [MeasureUnit(u.seed, u.label, u.run_dir, measures, data[u.seed], settings, threads)
            for u in units if any(m.takes(u.label) for m in measures)]


def differing_settings(saved: dict[str, Any], config: RunConfig) -> list[str]:
    """The settings in which a run's saved config.json (``saved``) differs from ``config``: a
    field that ``config`` sets, or the method's options once both are resolved (so a default
    that changed since the run was trained, such as cWAE's MMD scales, is a difference too)."""
    saved = RunConfig.from_dict(saved).to_dict()
    method = get_method(config.method)
    differ = sorted(k for k, v in dataclasses.asdict(config).items()
                    if v is not None and k != "options" and saved.get(k) != v)
    if derive_defaults(saved["options"], saved["latent_dim"]) != resolve_options(
            method, config.options, config.latent_dim):
        differ.append("options")
    return differ


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    minutes = seconds / 60
    return f"{seconds:.0f} s" if seconds < 90 else (
        f"{minutes:.0f} min" if minutes < 90 else f"{minutes / 60:.1f} h")


def describe_plan(units: list[Unit], out: Path) -> str:
    """The plan as printed: one line per unit (seed, label, network, epochs x samples, state,
    estimated time), then the time of what is left to run."""
    lines = []
    for unit in units:
        config = unit.config
        lines.append(f"  seed {unit.seed}  {unit.label:<22} {unit.net:<12} "
                     f"{config.epochs} x {unit.n_train:,}  {unit.state:<6}  "
                     f"~{_duration(unit.estimate_s())}  {unit.run_dir.relative_to(out)}")
    todo = [u for u in units if u.state != "done"]
    estimates = [u.estimate_s() for u in todo]
    total = None if None in estimates else sum(e for e in estimates if e is not None)
    return "\n".join([f"plan: {len(units)} training units, {len(todo)} to run "
                      f"(~{_duration(total)} of one unit after another)", *lines])


@contextlib.contextmanager
def _output_to(log: str | None) -> Iterator[None]:
    """This process's stdout and stderr (file descriptors 1 and 2) appended to ``log``
    inside the block, restored after it."""
    if log is None:
        yield
        return
    Path(log).parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(log, "a") as file:
        os.dup2(file.fileno(), 1)
        os.dup2(file.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


@contextlib.contextmanager
def _logged(log: str | None) -> Iterator[None]:
    """Output, and the traceback of an error (raised again), appended to ``log``."""
    with _output_to(log):
        try:
            yield
        except BaseException:
            traceback.print_exc()
            raise


def run_unit(config: dict[str, Any], run_dir: str, log: str | None = None) -> str:
    """Train one unit in this process (the function every launcher calls, with plain
    arguments that pickle): the config into ``run_dir``, resumed from its checkpoint when it
    has one; output (and the traceback of an error, which is raised again) appended to
    ``log``. Returns ``run_dir``."""
    from wiseale.training import train

    with _logged(log):
        train(RunConfig.from_dict(config), Path(run_dir),
              resume=(Path(run_dir) / CHECKPOINT).exists(), progress=False)
    return run_dir


def finished_run(run_dir: Path) -> dict[str, Any]:
    """A finished run as an experiment reads it: its config, train and test metrics (train
    with ``objective``, the method's own training objective at the last epoch, e.g.
    WiSE-ALE's Eq. 25-27) and per-epoch history."""
    evaluation, history = read_json(run_dir / EVALUATION), read_metrics(run_dir / METRICS)
    objective = {"objective": -history[-1]["loss"]} if history else {}
    return {"config": read_json(run_dir / "config.json"),
            "train": {**evaluation["train"], **objective}, "test": evaluation["test"],
            "history": history}


def run_measures(measures: tuple[Measure, ...], data: dict[str, Any], run_dir: str,
                 label: str, settings: dict[str, Any], seed: int, threads: int | None,
                 log: str | None = None) -> str:
    """Take one finished run's measures in this process (a measure unit, as a launcher calls
    it): those of ``measures`` that apply to ``label`` and are not saved under ``settings``
    and ``seed`` are taken on the data of config ``data`` with ``threads`` torch threads and
    saved in the run's measures.json; output appended to ``log``. Returns ``run_dir``."""
    from wiseale.build import load_split
    from wiseale.experiments.measures import MeasureContext, take_measures
    from wiseale.threads import choose_threads, using_threads

    with _logged(log), using_threads(choose_threads(threads)):
        config, path = RunConfig.from_dict(data), Path(run_dir)
        context = MeasureContext(label, path, load_split(config, "train"),
                                 load_split(config, "test"), settings, seed, False,
                                 finished_run(path))
        take_measures(measures, context)
    return run_dir
