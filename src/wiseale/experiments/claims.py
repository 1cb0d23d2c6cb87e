"""A paper's claims as data: comparisons of measured quantities, judged per seed and over seeds.

A :class:`Claim` holds when all its comparisons hold. Each comparison has a signed *margin*
(positive when it holds): ``right - left - margin`` for "left < right", ``left - right -
margin`` for "left > right" (a negative margin makes "at least as well, within the margin", a
non-inferiority test: :func:`at_least`), ``tolerance |target| - |x - target|`` for "x near
target", and Kendall's tau of a sequence against its order for a :class:`Trend`. Over
K seeds the margins of one comparison are tested with a one-sided one-sample t-test of
H0: mean margin <= 0 (a paired test when both sides are measured, as both come from the same
seed); a claim's p-value is the largest of its comparisons' (the intersection-union test: it
holds only if every comparison does).

A claim may state the :class:`Regime` it is about as measured preconditions (the runs
overfit, VCAE's constraint is met): where a seed does not reach it, the claim is "not tested
at this scale", never "does NOT hold".
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from scipy import stats

__all__ = ["ALPHA", "NOT_TESTED", "Claim", "Compare", "Near", "Q", "Regime", "Trend",
           "at_least", "below", "chain", "extreme", "judge"]

ALPHA = 0.05  # the level of the over-seeds test
NOT_TESTED = "not tested at this scale"  # the verdict where a seed misses the claim's regime
TEST_NAME = "one-sided t-test of the margin over seeds (paired: both sides share a seed)"

# run -> split -> metric -> value: the numbers of one seed (or the means over seeds)
Values = Mapping[str, Mapping[str, Mapping[str, Any]]]


@dataclass(frozen=True)
class Q:
    """A measured quantity: ``metric`` of run ``run`` on the ``split`` (train or test)."""

    run: str
    metric: str
    split: str = "test"

    def of(self, values: Values) -> float | None:
        value = values.get(self.run, {}).get(self.split, {}).get(self.metric)
        return None if value is None else float(value)

    def __str__(self) -> str:
        split = "" if self.split == "test" else f" ({self.split})"
        return f"{self.run} {self.metric}{split}"


@dataclass(frozen=True)
class Compare:
    """``left < right`` (op "<") or ``left > right`` (op ">"), by more than ``margin``; the
    right side is a quantity or a number."""

    left: Q
    op: str
    right: Q | float
    margin: float = 0.0

    def quantities(self) -> tuple[Q, ...]:
        return (self.left, self.right) if isinstance(self.right, Q) else (self.left,)

    def holds(self, values: Values) -> bool | None:
        slack = self.slack(values)
        return None if slack is None else slack > 0

    def slack(self, values: Values) -> float | None:
        left = self.left.of(values)
        right = self.right.of(values) if isinstance(self.right, Q) else float(self.right)
        if left is None or right is None:
            return None
        gap = right - left if self.op == "<" else left - right
        return gap - self.margin


@dataclass(frozen=True)
class Near:
    """``quantity`` within ``tolerance`` (relative) of ``target``, a number or a quantity."""

    quantity: Q
    target: float | Q
    tolerance: float

    def quantities(self) -> tuple[Q, ...]:
        return (self.quantity, self.target) if isinstance(self.target, Q) else (self.quantity,)

    def holds(self, values: Values) -> bool | None:
        slack = self.slack(values)
        return None if slack is None else slack > 0

    def slack(self, values: Values) -> float | None:
        value = self.quantity.of(values)
        target = self.target.of(values) if isinstance(self.target, Q) else self.target
        if value is None or target is None:
            return None
        return self.tolerance * abs(target) - abs(value - target)


@dataclass(frozen=True)
class Trend:
    """``items`` rise (op "<") or fall (op ">") in the order given: a trend, judged by
    Kendall's tau of the values against their order, not a strict chain (one wobbling step
    of six is still a trend). A seed holds it when tau's one-sided p-value
    (scipy.stats.kendalltau: exact without ties) is below ALPHA; its margin is tau in the
    claimed direction, tested over seeds like any other."""

    items: tuple[Q, ...]
    op: str

    def quantities(self) -> tuple[Q, ...]:
        return self.items

    def tau(self, values: Values) -> tuple[float, float] | None:
        """(tau in the claimed direction, its one-sided p-value); None if a value is missing."""
        xs = [q.of(values) for q in self.items]
        if any(x is None for x in xs):
            return None
        sign = 1.0 if self.op == "<" else -1.0
        result = stats.kendalltau(range(len(xs)), [sign * x for x in xs],
                                  alternative="greater")
        if math.isnan(result.statistic):  # every value equal: no trend
            return 0.0, 1.0
        return float(result.statistic), float(result.pvalue)

    def steps(self, values: Values) -> tuple[int, int] | None:
        """(the steps between neighbours that go the claimed way, all steps)."""
        xs = [q.of(values) for q in self.items]
        if any(x is None for x in xs):
            return None
        held = sum((b > a) if self.op == "<" else (b < a) for a, b in zip(xs, xs[1:], strict=False))
        return held, len(xs) - 1

    def holds(self, values: Values) -> bool | None:
        found = self.tau(values)
        return None if found is None else found[0] > 0 and found[1] < ALPHA

    def slack(self, values: Values) -> float | None:
        found = self.tau(values)
        return None if found is None else found[0]

    def describe(self, values: Values) -> str:
        (tau, p), (held, steps) = self.tau(values), self.steps(values)
        return f"tau {tau:.2f} (p {p:.2g}), {held} of {steps} steps"


Comparison = Compare | Near | Trend


@dataclass(frozen=True)
class Regime:
    """The regime a claim is about (``text``), as measured preconditions that must all hold
    in a seed for the claim to be judged there."""

    text: str
    comparisons: tuple[Comparison, ...]

    def reached(self, values: Values) -> bool | None:
        held = [c.holds(values) for c in self.comparisons]
        return None if any(h is None for h in held) else all(held)

    def measured(self, values: Values) -> str:
        found = []
        for comparison in self.comparisons:
            found += [q for q in comparison.quantities() if q not in found]
        return ", ".join(f"{q} {_number(q.of(values))}" for q in found)


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}"


@dataclass(frozen=True)
class Claim:
    """One claim of a paper: ``text`` (what it says), ``source`` (seed file and table, figure
    or section), ``paper`` (the paper's value(s), as it states them) and the ``comparisons``
    that must all hold; ``regime``: the regime the claim is about, if it needs one."""

    id: str
    text: str
    source: str
    paper: str
    comparisons: tuple[Comparison, ...]
    regime: Regime | None = None

    def quantities(self) -> list[Q]:
        found: list[Q] = []
        for comparison in self.comparisons:
            found += [q for q in comparison.quantities() if q not in found]
        return found

    def holds(self, values: Values) -> bool | None:
        """Whether every comparison holds on ``values`` (None: a quantity is missing)."""
        held = [c.holds(values) for c in self.comparisons]
        return None if any(h is None for h in held) else all(held)


def below(run: str, metric: str, others: Iterable[str], split: str = "test") -> tuple[Compare, ...]:
    """``run``'s ``metric`` is lower than each of ``others``'."""
    return tuple(Compare(Q(run, metric, split), "<", Q(o, metric, split)) for o in others)


def extreme(run: str, metric: str, among: Iterable[str], lowest: bool = True,
            split: str = "test") -> tuple[Compare, ...]:
    """``run`` has the lowest (or highest) ``metric`` of ``among`` (``run`` may be in it)."""
    op = "<" if lowest else ">"
    return tuple(Compare(Q(run, metric, split), op, Q(o, metric, split)) for o in among
                 if o != run)


def chain(quantities: Iterable[Q], op: str) -> tuple[Compare, ...]:
    """Each quantity ``op`` the next: a strict monotone sequence (for three items, where no
    trend test can reach ALPHA in one seed; longer sequences: :class:`Trend`)."""
    items = list(quantities)
    return tuple(Compare(a, op, b) for a, b in zip(items, items[1:], strict=False))


def at_least(run: str, metric: str, others: Iterable[str], margin: float,
             higher: bool = True, split: str = "test") -> tuple[Compare, ...]:
    """``run``'s ``metric`` is at least as good as each of ``others``' within ``margin`` (in
    the metric's units; ``higher``: larger is better): a non-inferiority comparison."""
    op = ">" if higher else "<"
    return tuple(Compare(Q(run, metric, split), op, Q(o, metric, split), -margin)
                 for o in others)


def _t_test(margins: list[float]) -> float | None:
    """One-sided p-value of H0: mean margin <= 0 (None with fewer than two seeds)."""
    if len(margins) < 2:
        return None
    mean = sum(margins) / len(margins)
    sd = math.sqrt(sum((m - mean) ** 2 for m in margins) / (len(margins) - 1))
    if sd == 0:
        return 0.0 if mean > 0 else 1.0
    return float(stats.t.sf(mean / (sd / math.sqrt(len(margins))), df=len(margins) - 1))


def verdict(held: list[bool | None], p: float | None, deterministic: bool = False) -> str:
    """'holds', 'does NOT hold', or 'unclear' (it holds in some seeds but the test is not
    significant at ALPHA); with one seed no verdict, that seed's outcome."""
    if any(h is None for h in held):
        return "not measured"
    if deterministic:
        return "holds (exact)" if all(held) else "does NOT hold (exact)"
    if len(held) == 1:
        return "one seed: held" if held[0] else "one seed: did not hold"
    if not any(held):
        return "does NOT hold"
    return "holds" if p is not None and p < ALPHA else "unclear"


def judge(claim: Claim, per_seed: list[Values], means: Values,
          deterministic: bool = False) -> dict[str, Any]:
    """The claim evaluated on every seed and over seeds: the outcome per seed, how many hold,
    the t-test's p-value (the largest over the comparisons) and the verdict."""
    held = [claim.holds(values) for values in per_seed]
    p = None
    if len(per_seed) > 1 and all(h is not None for h in held):
        ps = [_t_test([c.slack(v) for v in per_seed]) for c in claim.comparisons]
        p = max(x for x in ps if x is not None)
    judged = verdict(held, p, deterministic)
    regime = None
    if claim.regime is not None:
        reached = [claim.regime.reached(values) for values in per_seed]
        regime = {"text": claim.regime.text, "reached_in": sum(bool(r) for r in reached),
                  "measured": claim.regime.measured(means)}
        if not all(reached) and judged != "not measured":
            judged = (f"{NOT_TESTED} ({claim.regime.text}: reached in "
                      f"{regime['reached_in']} of {len(reached)} seeds; {regime['measured']})")
    trends = [[c.describe(values) for values in per_seed] for c in claim.comparisons
              if isinstance(c, Trend) and all(c.tau(v) is not None for v in per_seed)]
    return {"id": claim.id, "text": claim.text, "source": claim.source, "paper": claim.paper,
            "quantities": [str(q) for q in claim.quantities()],
            "holds_per_seed": held, "holds_in": sum(bool(h) for h in held),
            "seeds": len(held), "holds_on_means": claim.holds(means), "p_value": p,
            "test": TEST_NAME if p is not None else None, "regime": regime,
            "trends": trends, "verdict": judged}

