"""Every claim of every experiment in one table (``wiseale claims``, ``reproduce all``):
the paper's value, ours over the seeds, the verdict, and for an experiment with no results
the command that runs it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from wiseale.errors import WisealeError
from wiseale.experiments.report import quantity_cell, table
from wiseale.experiments.spec import Spec
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


def _scale(results: dict[str, Any]) -> str:
    seeds = len(results["seeds"]) or "exact"
    data = results["data"] or "-"
    return f"{data}, {'quick' if results['quick'] else 'full'}, seeds: {seeds}"


def _command(spec: Spec) -> str:
    data = "" if spec.offline == "" or spec.offline is None else f" --data {spec.offline}"
    if spec.offline is None:
        data = " --data-dir PATH"
    return f"`wiseale reproduce {spec.name}{data} --seeds 3 --out runs/{spec.name}`"


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
                            "holds_in": "-", "verdict": "not run here",
                            "scale": _command(spec)})
            for folder, results in runs:
                judged = next((c for c in results["claims"] if c["id"] == claim.id), None)
                if judged is None:
                    continue
                p = "" if judged["p_value"] is None else f", p = {judged['p_value']:.2g}"
                out.append({"experiment": name, "id": claim.id, "claim": claim.text,
                            "source": claim.source, "paper": claim.paper,
                            "ours": _ours(results, judged),
                            "holds_in": f"{judged['holds_in']} of {judged['seeds']}{p}",
                            "verdict": judged["verdict"],
                            "scale": f"{_scale(results)} ({folder.name})"})
    return out


def _ours(results: dict[str, Any], judged: dict[str, Any]) -> str:
    return "; ".join(quantity_cell(results["methods"], q) for q in judged["quantities"])


def render(claim_rows: list[dict]) -> str:
    counts: dict[str, int] = {}
    for row in claim_rows:
        key = row["verdict"].split(" (")[0]
        counts[key] = counts.get(key, 0) + 1
    tally = ", ".join(f"{n} {verdict}" for verdict, n in sorted(counts.items()))
    body = table(["experiment", "claim", "paper", "ours (mean ± sd)", "holds in", "verdict",
                  "data, scale, seeds"],
                 [[r["experiment"], f"{r['claim']} ({r['source']}; `{r['id']}`)", r["paper"],
                   r["ours"], r["holds_in"], r["verdict"], r["scale"]] for r in claim_rows])
    return "\n".join(["# Claims of the papers, checked", "",
                      f"{len(claim_rows)} rows: {tally}.", "",
                      "Verdict: holds when a one-sided t-test of the claim's margin over the "
                      "seeds gives p < 0.05 (the largest p over the claim's comparisons); does "
                      "NOT hold when it holds in no seed; unclear otherwise; with one seed, "
                      "that seed's outcome; exact for a computation without training.", "",
                      body, ""])


def write_summary(directories: list[Path], specs: dict[str, Spec], out: Path) -> Path:
    """``out`` (markdown) and ``out`` with .json: every claim's row."""
    found = collect(directories, specs)
    try:
        claim_rows = rows(found, specs)
    except (KeyError, TypeError, IndexError, AttributeError) as exc:  # a hand-edited file
        raise WisealeError(f"a results.json in {', '.join(map(str, directories))} lacks what "
                           f"the claims table needs ({type(exc).__name__}: {exc}); run its "
                           "`wiseale reproduce` again to rewrite it") from None
    write_json(out.with_suffix(".json"), claim_rows)
    atomic_write_text(out, render(claim_rows))
    return out
