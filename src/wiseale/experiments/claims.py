"""A paper's claims as data: comparisons of measured quantities, judged per seed and over seeds.

A :class:`Claim` holds when all its comparisons hold. Each comparison has a signed *margin*
(positive when it holds): ``right - left - margin`` for "left < right", ``left - right -
margin`` for "left > right", ``tolerance |target| - |x - target|`` for "x near target". Over
K seeds the margins of one comparison are tested with a one-sided one-sample t-test of
H0: mean margin <= 0 (a paired test when both sides are measured, as both come from the same
seed); a claim's p-value is the largest of its comparisons' (the intersection-union test: it
holds only if every comparison does).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from scipy import stats

__all__ = ["ALPHA", "Claim", "Compare", "Near", "Q", "below", "chain", "extreme", "judge"]

ALPHA = 0.05  # the level of the over-seeds test
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

    def slack(self, values: Values) -> float | None:
        left = self.left.of(values)
        right = self.right.of(values) if isinstance(self.right, Q) else float(self.right)
        if left is None or right is None:
            return None
        gap = right - left if self.op == "<" else left - right
        return gap - self.margin


@dataclass(frozen=True)
class Near:
    """``quantity`` within ``tolerance`` (relative) of ``target``."""

    quantity: Q
    target: float
    tolerance: float

    def quantities(self) -> tuple[Q, ...]:
        return (self.quantity,)

    def slack(self, values: Values) -> float | None:
        value = self.quantity.of(values)
        if value is None:
            return None
        return self.tolerance * abs(self.target) - abs(value - self.target)


Comparison = Compare | Near


@dataclass(frozen=True)
class Claim:
    """One claim of a paper: ``text`` (what it says), ``source`` (seed file and table, figure
    or section), ``paper`` (the paper's value(s), as it states them) and the ``comparisons``
    that must all hold."""

    id: str
    text: str
    source: str
    paper: str
    comparisons: tuple[Comparison, ...]

    def quantities(self) -> list[Q]:
        found: list[Q] = []
        for comparison in self.comparisons:
            found += [q for q in comparison.quantities() if q not in found]
        return found

    def holds(self, values: Values) -> bool | None:
        """Whether every comparison holds on ``values`` (None: a quantity is missing)."""
        slacks = [c.slack(values) for c in self.comparisons]
        return None if any(s is None for s in slacks) else all(s > 0 for s in slacks)


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
    """Each quantity ``op`` the next: a monotone sequence."""
    items = list(quantities)
    return tuple(Compare(a, op, b) for a, b in zip(items, items[1:], strict=False))


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
    significant at ALPHA); with one seed, the single outcome, marked as such."""
    if any(h is None for h in held):
        return "not measured"
    if deterministic:
        return "holds (exact)" if all(held) else "does NOT hold (exact)"
    if len(held) == 1:
        return "holds (one seed)" if held[0] else "does NOT hold (one seed)"
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
    return {"id": claim.id, "text": claim.text, "source": claim.source, "paper": claim.paper,
            "quantities": [str(q) for q in claim.quantities()],
            "holds_per_seed": held, "holds_in": sum(bool(h) for h in held),
            "seeds": len(held), "holds_on_means": claim.holds(means), "p_value": p,
            "test": TEST_NAME if p is not None else None,
            "verdict": verdict(held, p, deterministic)}

