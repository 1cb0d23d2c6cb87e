"""What every experiment shares: train a set of methods into one directory, collect
``results.json``, and write a report."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wiseale.build import load_split
from wiseale.config import RunConfig
from wiseale.data import Dataset
from wiseale.errors import WisealeError
from wiseale.methods import get_method, resolve_options
from wiseale.run import CHECKPOINT, EVALUATION, METRICS, WEIGHTS, read_metrics
from wiseale.storage import read_json, write_json
from wiseale.training import train


@dataclass(frozen=True)
class Experiment:
    """``run(out, quick=, seed=, data=, progress=, data_dir=, device=)`` trains and writes
    results.json, the figures and report.md; ``plot(out)`` redraws the figures from what
    ``run`` wrote."""

    name: str
    summary: str
    run: Callable[..., Path]
    plot: Callable[[Path], list[Path]]


def choose_data(experiment: str, data: str | None, allowed: tuple[str, ...]) -> str:
    """The data set an experiment runs on: ``data``, or the first of ``allowed`` by default."""
    chosen = data or allowed[0]
    if chosen not in allowed:
        raise WisealeError(f"the {experiment} experiment runs on {' | '.join(allowed)} data "
                           f"only, not {data!r}")
    return chosen


def read_results(out: Path, experiment: str) -> dict[str, Any]:
    """results.json of ``out``, checked to be from ``experiment``."""
    results = read_json(Path(out) / "results.json")
    if results.get("experiment") != experiment:
        raise WisealeError(f"{out} holds results of {results.get('experiment')!r}, not "
                           f"{experiment!r}")
    return results


def first_config(results: dict[str, Any]) -> RunConfig:
    """The config of the first method of an experiment's results (they share the data)."""
    config = next(iter(results["methods"].values()))["config"]
    known = {f.name for f in dataclasses.fields(RunConfig)}  # experiments may add keys
    return RunConfig.from_dict({k: v for k, v in config.items() if k in known})


def _check_same_run(run_dir: Path, config: RunConfig) -> None:
    """Refuse a finished run whose saved config differs from ``config``: in a field that
    ``config`` sets, or in the method's options once both are resolved (so a default that
    changed since the run was trained, such as cWAE's MMD scales, is a difference too)."""
    saved = RunConfig.from_dict(read_json(run_dir / "config.json")).to_dict()
    method = get_method(config.method)
    differ = sorted(k for k, v in dataclasses.asdict(config).items()
                    if v is not None and k != "options" and saved.get(k) != v)
    if saved["options"] != resolve_options(method, config.options):
        differ.append("options")
    if differ:
        raise WisealeError(f"{run_dir} holds a run with other settings ({', '.join(differ)}); "
                           "use another --out")


def train_methods(configs: dict[str, RunConfig], out: Path, train_data: Dataset,
                  test_data: Dataset, progress: bool = True) -> dict[str, Any]:
    """Train each config into ``out/runs/NAME``; finished runs with the same config are
    reused and interrupted ones resumed, so an experiment can be run again after a kill.
    Returns the ``methods`` block of results.json, with each run's per-epoch history."""
    methods: dict[str, Any] = {}
    for name, config in configs.items():
        run_dir = out / "runs" / name
        finished = (run_dir / WEIGHTS).exists() and (run_dir / EVALUATION).exists()
        if finished:
            _check_same_run(run_dir, config)
        else:
            train(config, run_dir, resume=(run_dir / CHECKPOINT).exists(), progress=progress,
                  train_data=train_data, test_data=test_data)
        evaluation = read_json(run_dir / EVALUATION)
        history = read_metrics(run_dir / METRICS)
        methods[name] = {"config": read_json(run_dir / "config.json"),
                         "train": evaluation["train"], "test": evaluation["test"],
                         "history": history}
    return methods


def add_sample_fids(out: Path, methods: dict[str, Any], train_data: Dataset,
                    test_data: Dataset,
                    fitted: Callable[[str, Path, Any], tuple[str, Any] | None] | None = None,
                    ) -> None:
    """Add ``fid_prior`` (metrics.sample_fid) to every method's test metrics, and
    ``fid_<kind>`` where ``fitted(name, run_dir, model)`` returns a (kind, sampler) fitted to
    that run's aggregate posterior (a flow, a mixture; None: none for this run), with
    ``fid_features`` naming the features they are measured in and ``fid_n`` the number of
    test (and sampled) images each FID compares."""
    from wiseale.metrics import sample_features, sample_fid
    from wiseale.metrics.evaluation import fid_count
    from wiseale.training import load_run

    features = sample_features(train_data)
    for name in methods:
        model = load_run(out / "runs" / name)[0]
        test = methods[name]["test"]
        test["fid_features"], test["fid_n"] = features.name, fid_count(test_data)
        test["fid_prior"] = sample_fid(model, train_data, test_data, features=features)
        found = None if fitted is None else fitted(name, out / "runs" / name, model)
        if found is not None:
            kind, sampler = found
            test[f"fid_{kind}"] = sample_fid(model, train_data, test_data, sampler=sampler,
                                             features=features)


def write_results(out: Path, experiment: str, quick: bool, methods: dict[str, Any]) -> None:
    write_json(out / "results.json", {"experiment": experiment, "quick": quick,
                                      "methods": methods})


def compare_methods(experiment: str, out: Path, plans: dict[str, RunConfig], quick: bool,
                    progress: bool, prior_fid: bool = False) -> dict[str, Any]:
    """The common body of a comparison: load the data of the first config (all share it),
    train every method, optionally add ``fid_prior``, and write results.json."""
    first = next(iter(plans.values()))
    train_data, test_data = load_split(first, "train"), load_split(first, "test")
    methods = train_methods(plans, out, train_data, test_data, progress=progress)
    if prior_fid:
        add_sample_fids(out, methods, train_data, test_data)
    write_results(out, experiment, quick, methods)
    return methods


def metrics_table(methods: dict[str, Any], keys: list[str], split: str = "test") -> str:
    """A markdown table: one row per method, one column per metric."""
    lines = ["| method | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
    for name, entry in methods.items():
        cells = [("n/a" if entry[split].get(k) is None else f"{entry[split][k]:.4g}")
                 for k in keys]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
