"""Claims as data: comparisons, the over-seeds t-test against scipy's, and the verdicts."""

import pytest
from scipy import stats

from wiseale.experiments.claims import Claim, Compare, Near, Q, below, chain, extreme, judge


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
    assert verdict([1.0], [2.0])["verdict"] == "holds (one seed)"
    assert verdict([3.0], [2.0])["verdict"] == "does NOT hold (one seed)"
    assert verdict([1.0], [2.0])["p_value"] is None
    assert verdict([1.0], [2.0], deterministic=True)["verdict"] == "holds (exact)"
    # constant margins: no spread, the sign decides
    assert verdict([1.0, 1.0], [2.0, 2.0])["p_value"] == 0.0
    missing = judge(claim, [_values(a=(1, 0))], _values(a=(1, 0)))
    assert missing["verdict"] == "not measured"
