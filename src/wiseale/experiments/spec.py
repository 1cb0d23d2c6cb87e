"""An experiment as data: what to train, what to measure, what the paper reports and claims.

Specs are frozen dataclass instances, not TOML files: a spec names the functions that draw
its figures and measure what training does not (a flow's FID, an IWAE bound), and Python
checks those references, the claim types and the RunConfig fields when the package is
imported; a TOML file would need a registry of names for each of them and could only be
checked when it is read. docs/experiments.md describes the form.

One runner (:mod:`wiseale.experiments.runner`) trains, measures, judges the claims and writes
results.json and report.md for every spec.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wiseale.config import RunConfig
from wiseale.errors import WisealeError
from wiseale.experiments.claims import Claim
from wiseale.experiments.index import INDEX, SCALES

if TYPE_CHECKING:
    from wiseale.experiments.measures import MeasureContext

__all__ = ["SCALES", "Figure", "Measure", "PaperValue", "RunSpec", "Spec"]

CONFIG_FIELDS = frozenset(f.name for f in dataclasses.fields(RunConfig))


@dataclass(frozen=True)
class RunSpec:
    """One trained model of an experiment: its ``label`` (the key in results.json), method,
    method options, RunConfig ``fields`` of its own, and fields that apply only at one scale
    (``medium`` falls back on ``full``'s where it sets none)."""

    label: str
    method: str
    options: Mapping[str, Any] = field(default_factory=dict)
    fields: Mapping[str, Any] = field(default_factory=dict)
    quick: Mapping[str, Any] = field(default_factory=dict)
    full: Mapping[str, Any] = field(default_factory=dict)
    medium: Mapping[str, Any] | None = None

    def at(self, scale: str) -> Mapping[str, Any]:
        """The fields of this run that apply at ``scale``."""
        if scale == "medium" and self.medium is not None:
            return self.medium
        return self.quick if scale == "quick" else self.full


@dataclass(frozen=True)
class PaperValue:
    """A number the paper reports for one of our runs: ``value`` of ``metric`` for ``run``,
    from ``source`` (seed file and table or figure), measured by the paper on ``paper_data``;
    ``data`` lists the data sets of ours it stands beside (empty: all)."""

    run: str
    metric: str
    value: float
    source: str
    paper_data: str
    split: str = "test"
    data: tuple[str, ...] = ()


@dataclass(frozen=True)
class Measure:
    """A metric measured after training: ``fn(context)`` returns test metrics of one run;
    for the runs ``runs`` (empty: every run). Its values are saved in the run directory
    (measures.json) with the settings they were measured under and reused."""

    name: str
    fn: Callable[[MeasureContext], dict[str, Any]]
    runs: tuple[str, ...] = ()

    def takes(self, run: str) -> bool:
        """Whether it is measured on the run labelled ``run``."""
        return not self.runs or run in self.runs


@dataclass(frozen=True)
class Figure:
    """``draw(out, results)`` writes ``files`` (in ``out``) from the first seed's runs."""

    files: tuple[str, ...]
    draw: Callable[[Path, dict[str, Any]], None]
    caption: str


@dataclass(frozen=True)
class Spec:
    """One experiment. ``base`` holds the RunConfig fields of every run; ``quick``, ``medium``
    and ``full`` the scale's fields and settings (keys that are not RunConfig fields, such as
    ``flow_epochs``, are settings that measures read); ``by_data`` overrides them for a data set
    (keys ``quick``, ``medium``, ``full`` for one scale). ``medium`` is None where no scale
    between quick and full reaches the claims' regimes on a CPU: ``no_medium`` says why, with
    the full scale's time on one GPU. ``setting`` and ``notes`` are the report's text, formatted
    with the settings and the first run's config fields. ``sections(results)`` adds report lines
    specific to the experiment; ``check(settings, train)`` fails before training when something
    it needs is missing; ``analysis(out, settings)`` computes the runs' metrics of an experiment
    that trains nothing (it returns results.json's blocks, with ``methods``)."""

    name: str
    title: str
    source: str
    data: tuple[str, ...]
    base: Mapping[str, Any]
    quick: Mapping[str, Any]
    full: Mapping[str, Any]
    medium: Mapping[str, Any] | None = None
    no_medium: str = ""
    runs: tuple[RunSpec, ...] = ()
    by_data: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    measures: tuple[Measure, ...] = ()
    metrics: tuple[str, ...] = ()
    claims: tuple[Claim, ...] = ()
    paper: tuple[PaperValue, ...] = ()
    figures: tuple[Figure, ...] = ()
    setting: str = ""
    notes: str = ""
    sections: Callable[[dict[str, Any]], list[str]] | None = None
    check: Callable[[dict[str, Any], Any], None] | None = None
    analysis: Callable[[Path, dict[str, Any]], dict[str, Any]] | None = None
    offline: str | None = ""  # the data `reproduce all` uses ('': the default; None: none)

    @property
    def summary(self) -> str:
        """Its line in ``wiseale experiments`` (experiments.index)."""
        return INDEX[self.name].summary

    def __post_init__(self) -> None:
        labels = [run.label for run in self.runs]
        if len(set(labels)) != len(labels):
            raise ValueError(f"{self.name}: run labels repeat: {labels}")
        for claim in self.claims:
            unknown = {q.run for q in claim.quantities()} - set(labels)
            if self.runs and unknown:
                raise ValueError(f"{self.name}: claim {claim.id} names unknown runs {unknown}")

    def choose_data(self, data: str | None) -> str:
        """The data set to run on: ``data``, or the first allowed one by default ('' for an
        experiment that uses none)."""
        if not self.data:
            if data is not None:
                raise WisealeError(f"the {self.name} experiment uses no data set, not {data!r}")
            return ""
        chosen = data or self.data[0]
        if chosen not in self.data:
            raise WisealeError(f"the {self.name} experiment runs on {' | '.join(self.data)} "
                               f"data only, not {data!r}")
        return chosen

    def check_scale(self, scale: str) -> None:
        """Fail on a scale that is not one of SCALES or that this experiment does not have."""
        if scale not in SCALES:
            raise WisealeError(f"scale {scale!r} is not one of {' | '.join(SCALES)}")
        if scale == "medium" and self.medium is None:
            raise WisealeError(f"the {self.name} experiment has no medium scale: "
                               f"{self.no_medium}")

    def settings(self, data: str, scale: str) -> dict[str, Any]:
        """The base, the scale and the data set's overrides, merged (later ones win)."""
        self.check_scale(scale)
        merged = {**self.base, **getattr(self, scale)}
        for key, value in self.by_data.get(data, {}).items():
            if key in SCALES:
                if key == scale:
                    merged.update(value)
            else:
                merged[key] = value
        return merged

    def configs(self, data: str, scale: str, seed: int, data_dir: str | None = None,
                device: str = "cpu", data_seed: int | None = None) -> dict[str, RunConfig]:
        """Every run's RunConfig at this scale, data set and seed (``data_seed``: see
        RunConfig)."""
        settings = self.settings(data, scale)
        shared = {k: v for k, v in settings.items() if k in CONFIG_FIELDS}
        configs = {}
        for run in self.runs:
            fields_ = {**shared, **run.fields, **run.at(scale)}
            options = {**fields_.pop("options", {}), **run.options}
            configs[run.label] = RunConfig(**{**fields_, "method": run.method, "data": data,
                                              "data_dir": data_dir, "seed": seed,
                                              "data_seed": data_seed, "device": device,
                                              "options": options})
        return configs

    def paper_values(self, data: str) -> list[PaperValue]:
        return [p for p in self.paper if not p.data or data in p.data]

    def run(self, out: str | Path, scale: str = "full", seed: int = 0, seeds: int = 1,
            data: str | None = None, progress: bool = True, data_dir: str | None = None,
            device: str = "cpu", redraw_data: bool = False, **dispatch: Any) -> Path | None:
        """Train, measure, judge the claims, and write results.json, figures and report.md
        in ``out`` (:func:`wiseale.experiments.runner.reproduce`, which also takes the
        ``dispatch`` arguments ``launcher``, ``threads``, ``dry_run`` and ``reuse``); returns
        the report (None for a dry run)."""
        from wiseale.experiments.runner import reproduce

        return reproduce(self, Path(out), scale=scale, seed=seed, seeds=seeds, data=data,
                         progress=progress, data_dir=data_dir, device=device,
                         redraw_data=redraw_data, **dispatch)

    def plot(self, out: str | Path) -> list[Path]:
        """Redraw the figures from what :meth:`run` wrote in ``out``."""
        from wiseale.experiments.runner import draw_figures

        return draw_figures(self, Path(out))
