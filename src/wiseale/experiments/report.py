"""report.md of an experiment, from its spec and results.json: the setting, the claims table,
the paper's values beside ours, the metrics (mean ± sd over seeds), the experiment's own
sections and the figures."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from wiseale.experiments.claims import ALPHA, TEST_NAME
from wiseale.storage import atomic_write_text

if TYPE_CHECKING:
    from wiseale.experiments.spec import Spec


def number(value: Any, sd: Any = None) -> str:
    """A value to 4 significant digits, with ± sd when there is one; n/a when missing."""
    if value is None:
        return "n/a"
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return str(value)
    return f"{value:.4g}" + ("" if sd is None else f" ± {sd:.2g}")


def table(header: list[str], rows: list[list[str]]) -> str:
    """A markdown table of formatted cells (a ``|`` in a cell escaped, so that every row
    keeps the header's number of cells)."""
    def line(cells: list[str]) -> str:
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

    return "\n".join([line(header), "|---" * len(header) + "|", *map(line, rows)])


def metric(methods: dict[str, Any], run: str, name: str, split: str = "test") -> str:
    """``run``'s ``name`` as mean ± sd over the seeds."""
    entry = methods.get(run, {})
    return number(entry.get(split, {}).get(name), entry.get("sd", {}).get(split, {}).get(name))


def metrics_table(methods: dict[str, Any], keys: list[str] | tuple[str, ...],
                  split: str = "test") -> str:
    """One row per run, one column per metric, mean ± sd over seeds."""
    return table(["run", *keys], [[name, *(metric(methods, name, k, split) for k in keys)]
                                  for name in methods])


def claims_table(results: dict[str, Any]) -> str:
    rows = []
    methods = results.get("methods", {})
    for claim in results["claims"]:
        ours = "; ".join(quantity_cell(methods, q) for q in claim["quantities"])
        p = "-" if claim["p_value"] is None else f"{claim['p_value']:.2g}"
        rows.append([f"{claim['text']} ({claim['source']})", claim["paper"], ours,
                     holds_in(claim), p, regime_cell(claim), claim["verdict"]])
    return table(["claim", "paper", "ours", "holds in", "p", "regime", "verdict"], rows)


def holds_in(claim: dict[str, Any]) -> str:
    """'k of n', with each trend's Kendall tau, p and steps per seed."""
    trends = "; ".join(", ".join(per_seed) for per_seed in claim.get("trends") or [])
    return f"{claim['holds_in']} of {claim['seeds']}" + (f" ({trends})" if trends else "")


def regime_cell(claim: dict[str, Any]) -> str:
    """'-' (the claim needs none), 'reached' or 'not reached: measured values'."""
    regime = claim.get("regime")
    if not regime:
        return "-"
    if regime["reached_in"] == claim["seeds"]:
        return f"reached ({regime['measured']})"
    return f"not reached in {claim['seeds'] - regime['reached_in']} of {claim['seeds']} " \
           f"seeds: {regime['measured']}"


def quantity_cell(methods: dict[str, Any], label: str) -> str:
    """'run metric [(split)]' -> 'run metric: mean ± sd'."""
    run, name, *rest = label.split(" ")
    split = "train" if rest == ["(train)"] else "test"
    return f"{label}: {metric(methods, run, name, split)}"


def paper_table(results: dict[str, Any]) -> str:
    rows = [[row["run"], row["metric"] + ("" if row["split"] == "test" else f" ({row['split']})"),
             f"{row['paper']:g} ({row['source']}, {row['paper_data']})",
             number(row["ours"], row["ours_sd"])] for row in results["paper"]]
    return table(["run", "metric", "paper", f"ours ({results['data']}, {results['scale']}, "
                  f"{len(results['seeds'])} seeds)"], rows)


def differences(results: dict[str, Any]) -> str:
    """What differs between the paper's numbers and ours: data, scale, FID features."""
    notes = []
    theirs = sorted({row["paper_data"] for row in results["paper"]})
    if [t.lower() for t in theirs] != [results["data"]]:
        notes.append(f"The paper measured on {', '.join(theirs)}; ours is {results['data']}.")
    if results["scale"] != "full":
        notes.append(f"Ours is the {results['scale']} scale (fewer epochs or images, and for "
                     "some experiments a smaller network: the setting above).")
    features = {e["test"].get("fid_features") for e in results["methods"].values()} - {None}
    if any(row["metric"].startswith("fid") for row in results["paper"]) and \
            features != {"inception"}:
        notes.append(f"Our FIDs are in {', '.join(sorted(features))} features, the paper's in "
                     "Inception's: only the order of the methods compares.")
    return " ".join(notes)


class _Fields(dict):
    """format_map's mapping: a missing key prints as itself, None as 'all', a count of a
    thousand or more with separators."""

    def __missing__(self, key: str) -> str:
        return "{" + key + "}"

    def __getitem__(self, key: str) -> Any:
        value = super().__getitem__(key)
        if value is None:
            return "all"
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 1000:
            return f"{value:,}"
        return value


def _fields(results: dict[str, Any]) -> _Fields:
    methods = results.get("methods") or {}
    config = next(iter(methods.values())).get("config", {}) if methods else {}
    return _Fields({**config, **results["settings"], "data": results["data"]})


def _seeds_text(results: dict[str, Any]) -> str:
    seeds = results["seeds"]
    if not seeds:
        return "computed exactly, no training"
    redrawn = ", data redrawn" if results.get("redraw_data") else ""
    return f"{len(seeds)} seed{'s' if len(seeds) > 1 else ''} ({', '.join(map(str, seeds))})" \
           f"{redrawn}"


CLAIMS_LEGEND = (
    f"ours: mean ± sd over the seeds. holds in: the seeds in which the claim holds (a trend: "
    f"Kendall's tau of the values against their order, its one-sided p and the steps that go "
    f"the claimed way, per seed). p: {TEST_NAME}; the largest over the claim's comparisons. "
    "regime: the measured precondition of a claim about a regime (the runs overfit, VCAE's "
    f"constraint is met). Verdict: holds when p < {ALPHA:g}, does NOT hold when it holds in "
    "no seed, unclear otherwise; not tested at this scale where a seed does not reach the "
    "claim's regime. A seed varies the initialisation, the data order and the noise; the "
    "data split and the evaluation subsets too where the seeds say 'data redrawn' "
    "(`--redraw-data`); never the FID classifier.")
ONE_SEED = (
    "One seed gives an outcome, not a verdict: the verdicts over seeds are in the project's "
    "docs/claims.md (`wiseale reproduce NAME --seeds 3 --redraw-data`).")


def render(spec: Spec, results: dict[str, Any]) -> str:
    fields = _fields(results)
    on = f" on {results['data']}" if results["data"] else ""
    lines = [f"# {spec.title}{on} ({results['scale']} scale; {_seeds_text(results)})", "",
             f"Paper {spec.source}. " + spec.setting.format_map(fields), ""]
    if results["claims"]:
        lines += ["## Claims", "", claims_table(results), "", CLAIMS_LEGEND, ""]
        if len(results["seeds"]) == 1:
            lines += [ONE_SEED, ""]
    if results["paper"]:
        lines += ["## The paper's numbers beside ours", "", paper_table(results), "",
                  differences(results), ""]
    if spec.metrics:
        lines += ["## Test metrics", "", metrics_table(results["methods"], spec.metrics), ""]
    if spec.notes:
        lines += [spec.notes.format_map(fields), ""]
    if spec.sections is not None:
        lines += [*spec.sections(results), ""]
    for figure in spec.figures:
        lines += [*(f"![{Path(name).stem}]({name})" for name in figure.files), "",
                  figure.caption, ""]
    return "\n".join(lines)


def write_report(spec: Spec, out: Path, results: dict[str, Any]) -> Path:
    report = out / "report.md"
    atomic_write_text(report, render(spec, results))
    return report
