"""Every claim of every experiment in one table (``wiseale claims``, ``reproduce all``):
the paper's value, ours over the seeds, the verdict, and for an experiment with no results
the command that runs it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from wiseale.errors import WisealeError
from wiseale.experiments.claims import NOT_TESTED
from wiseale.experiments.report import CLAIMS_LEGEND, holds_in, quantity_cell, regime_cell, table
from wiseale.experiments.spec import Spec
from wiseale.settings import read_toml
from wiseale.storage import atomic_write_text, read_json, write_json


def collect(directories: list[Path], specs: dict[str, Spec]) -> dict[str, list[tuple[Path, dict]]]:
    """experiment -> [(directory, results.json)] of every directory holding a results.json
    of a known experiment (one level down too, as ``reproduce all`` writes them)."""
    found: dict[str, list[tuple[Path, dict]]] = {}
    for directory in directories:
        candidates = [directory, *sorted(p for p in directory.iterdir() if p.is_dir())] \
            if directory.is_dir() else []
        if not candidates:
            raise WisealeError(f"{directory} is not a directory; give experiment output folders")
        for folder in candidates:
            path = folder / "results.json"
            if path.is_file():
                results = read_json(path)
                if isinstance(results, dict) and results.get("experiment") in specs \
                        and isinstance(results.get("claims"), list):
                    found.setdefault(results["experiment"], []).append((folder, results))
    return found


def _data(results: dict[str, Any]) -> str:
    seeds = len(results["seeds"]) or "exact"
    redrawn = ", data redrawn" if results.get("redraw_data") else ""
    return f"{results['data'] or '-'}, seeds: {seeds}{redrawn}"


def _command(spec: Spec) -> str:
    data = "" if spec.offline == "" or spec.offline is None else f" --data {spec.offline}"
    if spec.offline is None:
        data = " --data-dir PATH"
    scale = "" if spec.medium is None else " --scale medium"
    return f"`wiseale reproduce {spec.name}{data}{scale} --seeds 3 --redraw-data --out " \
           f"runs/{spec.name}`"


def rows(found: dict[str, list[tuple[Path, dict]]], specs: dict[str, Spec]) -> list[dict]:
    """One row per claim and result set; a claim of an experiment without results gets one
    'not run here' row with the command that runs it."""
    out = []
    for name, spec in specs.items():
        runs = found.get(name, [])
        for claim in spec.claims:
            if not runs:
                out.append({"experiment": name, "id": claim.id, "claim": claim.text,
                            "source": claim.source, "paper": claim.paper, "ours": "-",
                            "holds_in": "-", "regime": "-",
                            "verdict": "not run here" if spec.offline is None else "not run",
                            "scale": "-", "data": _command(spec)})
            for folder, results in runs:
                judged = next((c for c in results["claims"] if c["id"] == claim.id), None)
                if judged is None:
                    continue
                p = "" if judged["p_value"] is None else f", p = {judged['p_value']:.2g}"
                out.append({"experiment": name, "id": claim.id, "claim": claim.text,
                            "source": claim.source, "paper": claim.paper,
                            "ours": _ours(results, judged),
                            "holds_in": f"{holds_in(judged)}{p}",
                            "regime": regime_cell(judged), "verdict": judged["verdict"],
                            "scale": results["scale"],
                            "scale_note": _closed_form_note(results, judged),
                            "data": f"{_data(results)} ({folder.name})"})
    return out


def _closed_form(config: dict[str, Any]) -> bool:
    """Whether a run set its learned likelihood variance in closed form (004 Eq. 10)."""
    return config.get("likelihood") == "optimal" or \
        config.get("options", {}).get("stage1_variance") == "closed-form"


def _closed_form_note(results: dict[str, Any], judged: dict[str, Any]) -> str:
    """Where a claim's runs set the learned sigma^2 in closed form, which runs ('' if none)."""
    runs = dict.fromkeys(label.split(" ")[0] for label in judged["quantities"])
    closed = [run for run in runs
              if _closed_form(results["methods"].get(run, {}).get("config", {}))]
    return f" ({', '.join(closed)}: sigma^2 in closed form, 004 Eq. 10)" if closed else ""


def _ours(results: dict[str, Any], judged: dict[str, Any]) -> str:
    return "; ".join(quantity_cell(results["methods"], q) for q in judged["quantities"])


def render(claim_rows: list[dict], arguments: list[str], specs: dict[str, Spec]) -> str:
    """claims.md: the legend, the experiments without a medium scale and one row per claim;
    ``arguments`` are the `wiseale claims` arguments that made it."""
    counts: dict[str, int] = {}
    for row in claim_rows:
        verdict = row["verdict"]
        if verdict.startswith(NOT_TESTED):  # tallied without its regime's values
            verdict = NOT_TESTED
        counts[verdict] = counts.get(verdict, 0) + 1
    tally = ", ".join(f"{n} {verdict}" for verdict, n in sorted(counts.items()))
    body = table(["experiment", "claim", "paper", "ours (mean ± sd)", "holds in", "scale",
                  "regime", "verdict", "diagnosis", "data, seeds"],
                 [[r["experiment"], f"{r['claim']} ({r['source']}; `{r['id']}`)", r["paper"],
                   r["ours"], r["holds_in"], r["scale"] + r.get("scale_note", ""), r["regime"],
                   r["verdict"],
                   r["diagnosis"], r["data"]] for r in claim_rows])
    return "\n".join(["# Claims of the papers, checked", "",
                      f"Generated by `wiseale claims {' '.join(arguments)} --out FILE` from "
                      "the experiment folders below (docs/experiments.md describes the "
                      f"claims and their test). {len(claim_rows)} rows: {tally}.", "",
                      CLAIMS_LEGEND + " One seed gives that seed's outcome, not a verdict; "
                      "exact: a computation without training. "
                      "\"not run here\": the experiment needs data this machine does not "
                      "have (the command runs it at full scale from your copy); \"not run\": "
                      "it runs offline but was not run for this table.", "",
                      "Rows on fashion-mnist, reduced-fashion-mnist and toy-shapes use the "
                      "offline stand-ins of the papers' MNIST and 3D Shapes; `wiseale "
                      "reproduce NAME --data mnist|reduced-mnist|3dshapes --data-dir PATH` "
                      "runs the papers' own data.", "",
                      "No medium scale (`Spec.no_medium`): " + "; ".join(
                          f"{name}: {spec.no_medium}" for name, spec in specs.items()
                          if spec.medium is None) + ".", "",
                      body, ""])


def read_diagnoses(path: Path | None) -> dict[str, str]:
    """``"CLAIM-ID@SCALE" = "one line"`` pairs of a TOML file (none without a path)."""
    if path is None:
        return {}
    table = read_toml(path, f"--diagnoses {path}")
    bad = [key for key, value in table.items() if "@" not in key or not isinstance(value, str)]
    if bad:
        raise WisealeError(f"{path}: {bad[0]!r} is not a \"CLAIM-ID@SCALE\" = \"why\" line")
    return table


def diagnose(claim_rows: list[dict], diagnoses: dict[str, str]) -> None:
    """Give every row its diagnosis: the file's line for its claim and scale; for a claim
    that does not hold without one, a note that it has none yet."""
    for row in claim_rows:
        text = diagnoses.get(f"{row['id']}@{row['scale']}")
        if text is None and row["verdict"] == "does NOT hold":
            text = "no diagnosis yet"
        row["diagnosis"] = text or "-"


def write_summary(directories: list[Path], specs: dict[str, Spec], out: Path,
                  diagnoses: Path | None = None) -> Path:
    """``out`` (markdown) and ``out`` with .json: every claim's row, with the ``diagnoses``
    (:func:`read_diagnoses`) of those that do not hold."""
    found = collect(directories, specs)
    lines = read_diagnoses(diagnoses)
    try:
        claim_rows = rows(found, specs)
        diagnose(claim_rows, lines)
    except (KeyError, TypeError, IndexError, AttributeError) as exc:  # a hand-edited file
        raise WisealeError(f"a results.json in {', '.join(map(str, directories))} lacks what "
                           f"the claims table needs ({type(exc).__name__}: {exc}); run its "
                           "`wiseale reproduce` again to rewrite it") from None
    write_json(out.with_suffix(".json"), claim_rows)
    command = [str(d) for d in directories] + (
        [] if diagnoses is None else ["--diagnoses", str(diagnoses)])
    atomic_write_text(out, render(claim_rows, command, specs))
    return out
