"""Claims as data: comparisons, the over-seeds t-test against scipy's, and the verdicts."""

import itertools

import pytest
from scipy import stats

from wiseale.experiments.claims import (
    Claim,
    Compare,
    Near,
    Q,
    Regime,
    Trend,
    at_least,
    below,
    chain,
    extreme,
    judge,
)


def _values(**runs):
    """run=(test value of 'm', train value of 'm') -> run -> split -> metric."""
    return {run: {"test": {"m": test}, "train": {"m": train}} for run, (test, train) in
            runs.items()}


def test_compare_near_and_their_margins():
    values = _values(a=(1.0, 5.0), b=(3.0, 2.0))
    assert Compare(Q("a", "m"), "<", Q("b", "m")).slack(values) == 2.0
    assert Compare(Q("a", "m"), ">", Q("b", "m")).slack(values) == -2.0
    assert Compare(Q("a", "m", "train"), ">", Q("b", "m", "train")).slack(values) == 3.0
    assert Compare(Q("a", "m"), "<", Q("b", "m"), margin=2.5).slack(values) == -0.5
    assert Compare(Q("a", "m"), ">", 0.5).slack(values) == 0.5
    assert Near(Q("b", "m"), 2.9, 0.1).slack(values) == pytest.approx(0.29 - 0.1)
    assert Near(Q("b", "m"), 2.0, 0.1).slack(values) == pytest.approx(0.2 - 1.0)
    assert Compare(Q("c", "m"), "<", Q("b", "m")).slack(values) is None  # missing run


def test_helpers_build_every_comparison():
    assert below("a", "m", ["b", "c"]) == (Compare(Q("a", "m"), "<", Q("b", "m")),
                                           Compare(Q("a", "m"), "<", Q("c", "m")))
    assert extreme("a", "m", ["a", "b"], lowest=False) == (Compare(Q("a", "m"), ">",
                                                                   Q("b", "m")),)
    rising = chain([Q("a", "m"), Q("b", "m"), Q("c", "m")], "<")
    assert [(c.left.run, c.right.run) for c in rising] == [("a", "b"), ("b", "c")]
    claim = Claim("x", "a lowest", "src", "paper", below("a", "m", ["b", "c"]))
    assert claim.holds(_values(a=(1, 0), b=(2, 0), c=(3, 0))) is True
    assert claim.holds(_values(a=(2.5, 0), b=(2, 0), c=(3, 0))) is False  # one fails
    assert claim.holds(_values(a=(1, 0), b=(2, 0))) is None


def test_judge_over_seeds_is_scipys_one_sided_paired_t_test():
    claim = Claim("x", "a below b and c", "src", "paper", below("a", "m", ["b", "c"]))
    a, b, c = [1.0, 1.2, 0.9, 1.1], [2.0, 1.9, 2.4, 1.5], [1.5, 1.1, 1.6, 1.4]
    seeds = [_values(a=(a[i], 0), b=(b[i], 0), c=(c[i], 0)) for i in range(4)]
    means = _values(a=(sum(a) / 4, 0), b=(sum(b) / 4, 0), c=(sum(c) / 4, 0))
    judged = judge(claim, seeds, means)
    p_b = stats.ttest_rel(b, a, alternative="greater").pvalue
    p_c = stats.ttest_rel(c, a, alternative="greater").pvalue
    assert judged["p_value"] == pytest.approx(max(p_b, p_c), rel=1e-9)
    assert judged["holds_per_seed"] == [True, False, True, True]  # c < a in seed 2
    assert (judged["holds_in"], judged["seeds"]) == (3, 4)
    assert judged["verdict"] == ("holds" if max(p_b, p_c) < 0.05 else "unclear")
    assert judged["quantities"] == ["a m", "b m", "c m"]


def test_verdicts():
    claim = Claim("x", "a below b", "src", "paper", below("a", "m", ["b"]))

    def verdict(a, b, deterministic=False):
        seeds = [_values(a=(x, 0), b=(y, 0)) for x, y in zip(a, b, strict=True)]
        return judge(claim, seeds, seeds[0], deterministic)

    clear = verdict([1.0, 1.1, 0.9], [2.0, 2.1, 2.0])
    assert clear["verdict"] == "holds" and clear["p_value"] < 0.05
    assert verdict([1.0, 3.0, 0.9], [2.0, 2.1, 2.0])["verdict"] == "unclear"
    assert verdict([3.0, 3.1, 2.9], [2.0, 2.1, 2.0])["verdict"] == "does NOT hold"
    assert verdict([1.0], [2.0])["verdict"] == "one seed: held"
    assert verdict([3.0], [2.0])["verdict"] == "one seed: did not hold"
    assert verdict([1.0], [2.0])["p_value"] is None
    assert verdict([1.0], [2.0], deterministic=True)["verdict"] == "holds (exact)"
    # constant margins: no spread, the sign decides
    assert verdict([1.0, 1.0], [2.0, 2.0])["p_value"] == 0.0
    missing = judge(claim, [_values(a=(1, 0))], _values(a=(1, 0)))
    assert missing["verdict"] == "not measured"


def _sequence(*xs):
    """runs r0, r1, ... with test values ``xs``."""
    return _values(**{f"r{i}": (x, 0.0) for i, x in enumerate(xs)})


def _brute_force_tau(xs):
    """Kendall's tau of ``xs`` against 0, 1, 2, ... and its exact one-sided p-value, by
    counting concordant pairs over every permutation (no ties)."""
    def tau(values):
        pairs = list(itertools.combinations(range(len(values)), 2))
        return sum(1 if values[j] > values[i] else -1 for i, j in pairs) / len(pairs)

    observed = tau(xs)
    taus = [tau(order) for order in itertools.permutations(range(len(xs)))]
    return observed, sum(t >= observed - 1e-12 for t in taus) / len(taus)


@pytest.mark.parametrize("xs", [(1.0, 2.0, 3.0, 4.0), (1.0, 3.0, 2.0, 4.0),
                                (30.75, 25.1, 21.0, 19.2, 16.92, 16.98),
                                (5.0, 1.0, 4.0, 2.0, 3.0), (0.094, 0.132, 0.328, 0.812, 2.143)])
def test_trend_is_kendalls_tau_with_its_exact_p_value(xs):
    rising = Trend(tuple(Q(f"r{i}", "m") for i in range(len(xs))), "<")
    falling = Trend(rising.items, ">")
    values = _sequence(*xs)
    tau, p = _brute_force_tau(xs)
    assert rising.tau(values) == pytest.approx((tau, p), rel=1e-9)
    assert falling.tau(values) == pytest.approx(_brute_force_tau([-x for x in xs]), rel=1e-9)
    assert rising.holds(values) == (tau > 0 and p < 0.05)
    assert rising.slack(values) == pytest.approx(tau)


def test_a_trend_survives_one_wobbling_step_that_a_chain_fails():
    """003 Table 7's falling variances with the last step reversed (16.92 -> 16.98): the
    trend holds (tau 0.87, p 0.0083), the strict chain did not."""
    xs = (30.75, 25.1, 21.0, 19.2, 16.92, 16.98)
    items = tuple(Q(f"r{i}", "m") for i in range(len(xs)))
    values = _sequence(*xs)
    trend = Claim("t", "falls", "src", "paper", (Trend(items, ">"),))
    assert trend.holds(values) is True
    assert Claim("c", "falls", "src", "paper", chain(items, ">")).holds(values) is False
    assert Trend(items, ">").steps(values) == (4, 5)
    assert Trend(items, ">").describe(values) == "tau 0.87 (p 0.0083), 4 of 5 steps"
    assert Trend(items[:4], ">").holds(_sequence(1.0, 1.0, 1.0, 1.0)) is False  # flat
    judged = judge(trend, [values, values], values)
    assert judged["trends"] == [["tau 0.87 (p 0.0083), 4 of 5 steps"] * 2]


def test_at_least_is_non_inferiority_within_the_margin():
    claim = Claim("n", "a at least as good as b", "src", "paper",
                  at_least("a", "m", ["b"], 0.02))
    assert claim.holds(_values(a=(0.640, 0), b=(0.655, 0))) is True  # 0.015 below: within
    assert claim.holds(_values(a=(0.630, 0), b=(0.655, 0))) is False  # 0.025 below
    lower = Claim("n", "a's error at most b's", "src", "paper",
                  at_least("a", "m", ["b"], 1.0, higher=False))
    assert lower.holds(_values(a=(10.5, 0), b=(10.0, 0))) is True
    assert lower.holds(_values(a=(11.5, 0), b=(10.0, 0))) is False


def test_near_a_quantity_is_relative_to_its_value():
    values = _values(a=(78.4, 0), b=(79.9, 0), c=(73.1, 0))
    assert Near(Q("a", "m"), Q("b", "m"), 0.02).holds(values) is True  # 1.9% apart
    assert Near(Q("c", "m"), Q("b", "m"), 0.02).holds(values) is False  # 8.5% apart


def test_a_claim_outside_its_regime_is_not_tested_never_refuted():
    """The regime (here: run g's gap above 10) not reached in one of three seeds: the claim,
    which fails in every seed, is 'not tested at this scale' with the measured value, not
    'does NOT hold'; reached in every seed, the same runs give 'does NOT hold'."""
    regime = Regime("g overfits", (Compare(Q("g", "m"), ">", 10.0),))
    claim = Claim("r", "a below b", "src", "paper", below("a", "m", ["b"]), regime)

    def seeds(*gaps):
        return [_values(a=(3.0, 0), b=(2.0, 0), g=(gap, 0)) for gap in gaps]

    outside = judge(claim, seeds(12.0, 4.0, 15.0), _values(g=(10.33, 0)))
    assert outside["verdict"] == ("not tested at this scale (g overfits: reached in 2 of 3 "
                                  "seeds; g m 10.33)")
    assert outside["regime"] == {"text": "g overfits", "reached_in": 2, "measured": "g m 10.33"}
    inside = judge(claim, seeds(12.0, 14.0, 15.0), _values(g=(13.67, 0)))
    assert inside["verdict"] == "does NOT hold"
    assert judge(Claim("r", "a below b", "src", "paper", below("a", "m", ["b"])),
                 seeds(1.0), seeds(1.0)[0])["regime"] is None


def test_a_cell_with_a_bar_keeps_the_tables_columns():
    from wiseale.experiments.report import table

    rendered = table(["claim", "verdict"], [["KL(q(z|batch) || p) falls", "holds"]])
    assert all(line.replace("\\|", "").count("|") == 3 for line in rendered.splitlines())
