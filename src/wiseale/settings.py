"""Where ``wiseale train`` takes a run's settings from, later sources winning: RunConfig's
defaults, a TOML file (``--config run.toml``), the settings saved in the run's checkpoint
(``--resume``) and the flags given on the command line. Loads no torch but to resume."""

from __future__ import annotations

import sys
from dataclasses import fields
from pathlib import Path
from typing import Any

from wiseale.config import RunConfig
from wiseale.errors import WisealeError, one_line

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10 reads TOML with tomli (a dependency there)
    import tomli as tomllib

RESOLVED = ("sample_shape", "parts")  # filled from the data and the preset, not by hand
TABLES = ("options", "data_options")  # TOML tables: -o KEY=VALUE and --data-option KEY=VALUE
SETTINGS = tuple(f.name for f in fields(RunConfig) if f.name not in RESOLVED)


def read_toml(path: Path, what: str) -> dict[str, Any]:
    """The table of the TOML file ``path`` (``what`` names it in errors: "--config FILE")."""
    try:
        text = Path(path).read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise WisealeError(f"cannot read {what}: {one_line(exc)}; give a TOML file") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise WisealeError(f"{what} is not valid TOML ({one_line(exc)}); fix it") from None
    except RecursionError:  # arrays or tables nested thousands deep
        raise WisealeError(f"{what} nests arrays or tables too deeply to read; give "
                           "each setting a number, a string or a short list") from None


def read_config_file(path: Path) -> dict[str, Any]:
    """The settings of a TOML file: RunConfig's fields by name (``lr_schedule`` or
    ``lr-schedule``), ``[options]`` and ``[data_options]`` as tables."""
    data = read_toml(path, f"--config {path}")
    settings = {key.replace("-", "_"): value for key, value in data.items()}
    unknown = sorted(set(settings) - set(SETTINGS))
    if unknown:
        raise WisealeError(f"--config {path}: unknown settings {', '.join(unknown)}; use "
                           f"{', '.join(SETTINGS)}")
    for table in TABLES:
        if not isinstance(settings.get(table, {}), dict):
            raise WisealeError(f"--config {path}: {table} must be a table ([{table}] with "
                               "KEY = VALUE lines)")
    return settings


def saved_settings(out: Path) -> dict[str, Any]:
    """The settings a run directory was trained with, for --resume: those saved in its
    checkpoint, the one file that commits an epoch (config.json, written after it, may be
    missing or older after a kill between the two)."""
    from wiseale.storage import read_meta  # torch: only to resume

    path = out / "checkpoint.safetensors"
    if not path.exists():
        raise WisealeError(f"--resume: {out} holds no checkpoint (a run saves its first at the "
                           "end of its first epoch); start the run without --resume")
    try:
        return RunConfig.from_dict(read_meta(path).get("config")).to_dict()
    except WisealeError as exc:
        raise WisealeError(f"--resume: {one_line(exc)}; choose another --out") from None


def merged(*sources: dict[str, Any]) -> dict[str, Any]:
    """The sources' settings, later ones winning; their option tables merged key by key."""
    settings: dict[str, Any] = {}
    for source in sources:
        for key, value in source.items():
            if key in TABLES:
                settings[key] = {**settings.get(key, {}), **value}
            else:
                settings[key] = value
    missing = [name for name in ("method", "data") if name not in settings]
    if missing:
        flags = " and ".join(f"--{name}" for name in missing)
        raise WisealeError(f"give {flags} (or --config FILE, or --resume a run directory)")
    return settings
