"""Finished training runs shared between reproductions (``reproduce --reuse DIR``): a unit
that is not started yet, whose run another folder already holds finished (trained with the
same settings, units.differing_settings, on data with the same digests), is copied from
there instead of trained again. 004's experiments share runs this way: lv-iwae's lv-vae, VAE,
beta-VAE and DIP-VAE are lv-fid's, and lv-sweep's sigma^2 = 1 and 0.5 runs are lv-fid's
beta-VAE and VAE. The copy leaves out the source's lock, logs and measures (a measure of the
same name may differ between experiments), and lands by one rename, so a kill leaves the unit
new, never half copied.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from wiseale.experiments.units import Unit, differing_settings
from wiseale.storage import read_json, read_meta
from wiseale.training.run import CONFIG, EVALUATION, WEIGHTS

__all__ = ["reuse_finished"]

LEFT_BEHIND = ("writer.lock", "*.log", "measures.json", "*.tmp")


def _finished_runs(roots: Iterable[Path]) -> list[tuple[Path, dict[str, Any]]]:
    """Every finished run directory under ``roots`` (weights, evaluation and config.json
    written) with its saved config."""
    found = []
    for root in roots:
        for weights in sorted(Path(root).rglob(WEIGHTS)):
            run_dir = weights.parent
            if (run_dir / EVALUATION).is_file() and (run_dir / CONFIG).is_file():
                found.append((run_dir, read_json(run_dir / CONFIG)))
    return found


def _same_run(run_dir: Path, saved: dict[str, Any], unit: Unit,
              digests: dict[str, str]) -> bool:
    if differing_settings(saved, unit.config):
        return False
    return read_meta(run_dir / WEIGHTS).get("data") == digests


def _copy(source: Path, run_dir: Path) -> None:
    staging = run_dir.with_name(f"{run_dir.name}.reusing")
    shutil.rmtree(staging, ignore_errors=True)  # left by a copy that a kill stopped
    shutil.copytree(source, staging, ignore=shutil.ignore_patterns(*LEFT_BEHIND))
    if run_dir.is_dir():  # an empty folder of a unit that never saved a checkpoint
        run_dir.rmdir()
    os.replace(staging, run_dir)


def reuse_finished(units: Sequence[Unit], roots: Sequence[Path],
                   digests: dict[int, dict[str, str]]) -> list[tuple[Unit, Path]]:
    """Copy into each ``new`` unit a finished run under ``roots`` that is the same run, on
    the data of ``digests[seed]`` ({"train": ..., "test": ...}); returns (unit, source) for
    each unit copied."""
    candidates = _finished_runs(roots)
    reused = []
    for unit in units:
        if unit.state != "new" or (unit.run_dir.exists() and any(unit.run_dir.iterdir())):
            continue
        for run_dir, saved in candidates:
            if run_dir.resolve() != unit.run_dir.resolve() and _same_run(
                    run_dir, saved, unit, digests[unit.seed]):
                _copy(run_dir, unit.run_dir)
                reused.append((unit, run_dir))
                break
    return reused
