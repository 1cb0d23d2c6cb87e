"""The one runner of every experiment spec: train each run for each seed, measure, average
over seeds, judge the claims, and write results.json, the figures and report.md.

Layout of ``out``: the first seed's runs in ``out/runs/LABEL``, seed s's (the others) in
``out/seeds/s/runs/LABEL``. Finished runs with the same config are reused and interrupted
ones resumed, and measured metrics are kept in each run (measures.json), so a reproduce run
again, resumed or given more seeds only does what is missing.
"""

from __future__ import annotations

import dataclasses
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wiseale.config import RunConfig
from wiseale.data import Dataset
from wiseale.errors import WisealeError, positive_int
from wiseale.experiments.claims import judge
from wiseale.experiments.measures import MeasureContext, take_measures
from wiseale.experiments.report import write_report
from wiseale.experiments.units import (
    MeasureUnit,
    Unit,
    describe_plan,
    differing_settings,
    finished_run,
    plan,
    plan_measures,
)
from wiseale.storage import read_json, write_json
from wiseale.training.run import CHECKPOINT, EVALUATION, WEIGHTS

if TYPE_CHECKING:
    from wiseale.experiments.launchers import Launcher
    from wiseale.experiments.spec import Spec

def seed_root(out: Path, seeds: list[int], seed: int) -> Path:
    """Where the runs of ``seed`` live: ``out`` for the first seed, else out/seeds/SEED."""
    return out if seed == seeds[0] else out / "seeds" / str(seed)


def read_results(out: Path, experiment: str) -> dict[str, Any]:
    """results.json of ``out``, checked to be from ``experiment``."""
    results = read_json(Path(out) / "results.json")
    if results.get("experiment") != experiment:
        raise WisealeError(f"{out} holds results of {results.get('experiment')!r}, not "
                           f"{experiment!r}")
    return results


def first_config(results: dict[str, Any]) -> RunConfig:
    """The config of the first run of an experiment's results (they share the data)."""
    config = next(iter(results["methods"].values()))["config"]
    known = {f.name for f in dataclasses.fields(RunConfig)}
    return RunConfig.from_dict({k: v for k, v in config.items() if k in known})


def _check_same_run(run_dir: Path, config: RunConfig) -> None:
    """Refuse a finished run whose saved config differs from ``config``
    (units.differing_settings)."""
    differ = differing_settings(read_json(run_dir / "config.json"), config)
    if differ:
        raise WisealeError(f"{run_dir} holds a run with other settings ({', '.join(differ)}); "
                           "use another --out")


def train_runs(configs: dict[str, RunConfig], root: Path, train_data: Dataset,
               test_data: Dataset, progress: bool = True) -> dict[str, Any]:
    """Train each config into ``root/runs/LABEL`` (finished runs with the same config reused,
    interrupted ones resumed); returns each run as :func:`units.finished_run` reads it."""
    from wiseale.training import train

    methods: dict[str, Any] = {}
    for name, config in configs.items():
        run_dir = root / "runs" / name
        if (run_dir / WEIGHTS).exists() and (run_dir / EVALUATION).exists():
            _check_same_run(run_dir, config)
        else:
            train(config, run_dir, resume=(run_dir / CHECKPOINT).exists(), progress=progress,
                  train_data=train_data, test_data=test_data)
        methods[name] = finished_run(run_dir)
    return methods


def _measure(spec: Spec, root: Path, methods: dict[str, Any], train_data: Dataset,
             test_data: Dataset, settings: dict[str, Any], seed: int, progress: bool) -> None:
    """Add every measure's metrics to the runs' test metrics (measures.take_measures: those
    already taken under the same settings and seed are read from the runs' measures.json)."""
    shared: dict[str, Any] = {}
    for name, entry in methods.items():
        take_measures(spec.measures, MeasureContext(name, root / "runs" / name, train_data,
                                                    test_data, settings, seed, progress,
                                                    entry, shared))


def describe_measures(units: list[MeasureUnit], where: str) -> str:
    """The measure units of the plan, taken ``where``: a line per seed and run with each
    measure ``done`` (in its measures.json under these settings and seed) or ``new``; empty
    when there are none."""
    lines, todo, total = [], 0, 0
    for unit in units:
        missing = unit.missing
        states = [(m.name, "new" if m in missing else "done")
                  for m in unit.measures if m.takes(unit.label)]
        todo += len(missing)
        total += len(states)
        lines.append(f"  seed {unit.seed}  {unit.label:<22} "
                     + ", ".join(f"{m} {state}" for m, state in states))
    if not lines:
        return ""
    return "\n".join([f"measures: {total}, {todo} to take ({where}, after the training units)",
                      *lines])


def _mean_sd(values: list[Any]) -> tuple[Any, float | None]:
    """Mean and sample standard deviation of numbers (None when any is missing or there is
    one); the first value for anything else."""
    numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
    if not numbers:
        return values[0], None
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, None
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def aggregate(per_seed: dict[int, dict[str, Any]]) -> dict[str, Any]:
    """The methods block of results.json: each run's config and history from the first seed,
    ``train``/``test`` as the mean over seeds, ``sd`` their standard deviations and
    ``seeds`` every seed's own values."""
    seeds = list(per_seed)
    first = per_seed[seeds[0]]
    methods: dict[str, Any] = {}
    for name, entry in first.items():
        block = {"config": entry["config"], "history": entry["history"], "sd": {}}
        for split in ("train", "test"):
            block[split], block["sd"][split] = {}, {}
            for metric in entry[split]:
                mean, sd = _mean_sd([per_seed[s][name][split].get(metric) for s in seeds])
                block[split][metric] = mean
                if sd is not None:
                    block["sd"][split][metric] = sd
        block["seeds"] = {str(s): {split: per_seed[s][name][split] for split in
                                   ("train", "test")} for s in seeds}
        methods[name] = block
    return methods


def _values(methods: dict[str, Any], seed: str | None = None) -> dict[str, Any]:
    """run -> split -> metric: the means (``seed`` None) or one seed's values."""
    if seed is None:
        return {name: {s: e[s] for s in ("train", "test")} for name, e in methods.items()}
    return {name: e["seeds"][seed] for name, e in methods.items()}


def judge_claims(spec: Spec, methods: dict[str, Any], deterministic: bool) -> list[dict]:
    """Every claim of the spec on every seed and over the seeds (claims.judge)."""
    if deterministic:
        per_seed = [_values(methods)]
    else:
        per_seed = [_values(methods, s) for s in next(iter(methods.values()))["seeds"]]
    return [judge(claim, per_seed, _values(methods), deterministic) for claim in spec.claims]


def paper_rows(spec: Spec, data: str, methods: dict[str, Any]) -> list[dict[str, Any]]:
    """The paper's values beside ours (mean, sd, seeds) for this data set."""
    rows = []
    for paper in spec.paper_values(data):
        entry = methods.get(paper.run, {})
        rows.append({"run": paper.run, "metric": paper.metric, "split": paper.split,
                     "paper": paper.value, "source": paper.source,
                     "paper_data": paper.paper_data,
                     "ours": entry.get(paper.split, {}).get(paper.metric),
                     "ours_sd": entry.get("sd", {}).get(paper.split, {}).get(paper.metric)})
    return rows


def reproduce(spec: Spec, out: Path, scale: str = "full", seed: int = 0, seeds: int = 1,
              data: str | None = None, progress: bool = True, data_dir: str | None = None,
              device: str = "cpu", redraw_data: bool = False, launcher: Launcher | None = None,
              threads: int | None = None, dry_run: bool = False,
              reuse: tuple[Path, ...] = ()) -> Path | None:
    """Run ``spec`` at ``scale`` with ``seeds`` seeds (seed, seed + 1, ...); with
    ``redraw_data`` each seed also draws its own data split and evaluation subsets (RunConfig
    ``data_seed``). The training runs and then each run's measures are planned as units
    (experiments.units) and the plan printed; ``launcher`` runs the unfinished ones
    (``threads`` torch threads each) before the runs are read and aggregated; without one
    they train and are measured here, one after another. ``reuse``: folders whose finished
    runs are copied into the units they are the same run as (experiments.reuse), before the
    plan. ``dry_run``: the plan only (returns None). See the module docstring."""
    from wiseale.build import load_split

    positive_int(seeds, "--seeds")
    data = spec.choose_data(data)
    settings = spec.settings(data, scale)
    out.mkdir(parents=True, exist_ok=True)
    if spec.analysis is not None:  # computed, not trained: one exact result
        if dry_run:
            print("plan: no training units (the experiment is computed)", file=sys.stderr)
            return None
        results = {"experiment": spec.name, "scale": scale, "data": data,
                   **spec.analysis(out, settings)}
        results["seeds"] = []
        deterministic = True
    else:
        seed_list = [seed + i for i in range(seeds)]
        configs = {s: spec.configs(data, scale, s, data_dir, device,
                                   s if redraw_data else None) for s in seed_list}
        splits: dict[int, tuple[Dataset, Dataset]] = {}
        for s in seed_list:
            first = next(iter(configs[s].values()))
            if s == seed or redraw_data:
                train_data, test_data = load_split(first, "train"), load_split(first, "test")
                if spec.check is not None:
                    spec.check(settings, train_data)  # fails now, not after hours of training
            splits[s] = train_data, test_data
        roots = {s: seed_root(out, seed_list, s) for s in seed_list}
        unit_threads = threads if launcher is not None else None
        units = plan(configs, roots, {s: split[0] for s, split in splits.items()}, unit_threads)
        if reuse and not dry_run:
            _reuse(units, reuse, splits)
        measure_units = plan_measures(spec.measures, units, {
            s: next(iter(configs[s].values())) for s in seed_list}, settings, unit_threads)
        print(describe_plan(units, out), file=sys.stderr)
        measures = describe_measures(measure_units, "here" if launcher is None else
                                     f"as units, by {launcher.name}")
        if measures:
            print(measures, file=sys.stderr)
        if dry_run:
            return None
        if launcher is not None:
            dispatch(launcher, units)
            dispatch(launcher, measure_units, "measure units")
        per_seed = {}
        for s in seed_list:
            per_seed[s] = train_runs(configs[s], roots[s], *splits[s], progress)
            _measure(spec, roots[s], per_seed[s], *splits[s], settings, s, progress)
        results = {"experiment": spec.name, "scale": scale, "data": data, "seeds": seed_list,
                   "redraw_data": redraw_data, "methods": aggregate(per_seed)}
        deterministic = False
    results["settings"] = {k: v for k, v in settings.items() if not callable(v)}
    results["claims"] = judge_claims(spec, results["methods"], deterministic)
    results["paper"] = paper_rows(spec, data, results["methods"])
    write_json(out / "results.json", results)
    draw_figures(spec, out)
    return write_report(spec, out, read_results(out, spec.name))


def _reuse(units: list[Unit], roots: tuple[Path, ...],
           splits: dict[int, tuple[Dataset, Dataset]]) -> None:
    """Copy the finished runs under ``roots`` that are the same runs as units not started."""
    from wiseale.experiments.reuse import reuse_finished

    digests = {s: {"train": train.digest(), "test": test.digest()}
               for s, (train, test) in splits.items()}
    for unit, source in reuse_finished(units, roots, digests):
        print(f"wiseale: reused {source} as {unit.run_dir}", file=sys.stderr)


def dispatch(launcher: Launcher, units: Sequence[Unit | MeasureUnit],
             kind: str = "units") -> None:
    """Run the units that are not finished with ``launcher``; when any fails, after the
    others have finished, a one-line error naming each with its log."""
    todo = [unit for unit in units if unit.state != "done"]
    if not todo:
        return
    print(f"wiseale: {len(todo)} {kind} to {launcher.name}", file=sys.stderr)
    failed = launcher.run(todo)
    if failed:
        others = "; the others finished" if len(failed) < len(todo) else ""
        raise WisealeError(f"{len(failed)} of {len(todo)} {kind} failed: "
                           f"{'; '.join(map(str, failed))}{others}; fix the cause and run the "
                           "same command again: it runs only what is missing")


def draw_figures(spec: Spec, out: Path) -> list[Path]:
    """Every figure of the spec, from results.json and the first seed's runs."""
    results = read_results(out, spec.name)
    paths = []
    for figure in spec.figures:
        figure.draw(out, results)
        paths += [out / name for name in figure.files]
    return paths
