"""The stopping rule of timing cells (issue 12, part 2): how many samples a cell takes."""

from __future__ import annotations

import itertools
import math
import random

import pytest

from lab.runner.util import median_interval, precision_of, sample_until, summarize


def binomial_tail(n: int, k: int) -> float:
    """P(Binomial(n, 1/2) <= k)."""
    return sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n


@pytest.mark.parametrize("n", range(1, 40))
def test_median_interval_has_the_promised_coverage_and_no_more_width_than_needed(n):
    values = list(range(n))
    interval = median_interval(values, 0.9)
    if n < 5:  # 2 * (1/2)^n > 0.1: no pair of order statistics covers the median at 90 %
        assert interval is None
        return
    lo, hi = interval
    rank = lo + 1  # values are 0..n-1, so x(l) = l - 1
    assert hi == n - rank  # symmetric: x(n + 1 - l)
    assert 2 * binomial_tail(n, rank - 1) <= 0.1  # coverage >= 90 %
    assert 2 * binomial_tail(n, rank) > 0.1  # one rank further in would break it


def test_median_interval_covers_the_true_median_nine_times_in_ten():
    rng = random.Random(7)
    hits = 0
    for _ in range(2000):
        lo, hi = median_interval([rng.expovariate(1.0) for _ in range(9)])
        hits += lo <= math.log(2) <= hi  # the exponential's median
    assert 0.9 <= hits / 2000 <= 0.99


def test_summarize_carries_the_interval_and_its_precision():
    s = summarize([1.0, 1.01, 0.99, 1.02, 0.98])
    assert s["ci"] == [0.98, 1.02]
    assert s["precision"] == pytest.approx(0.02)
    assert summarize([1.0, 2.0])["ci"] is None and summarize([1.0])["precision"] is None


class Clock:
    def __init__(self, step: float):
        self.now, self.step = 0.0, step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


def series(values):
    it = iter(values)
    rounds = []

    def take(i):
        rounds.append(i)
        return {"x": next(it)}

    return take, rounds


def test_a_steady_measurement_stops_at_the_minimum():
    take, rounds = series(itertools.repeat(1.0))
    got, how = sample_until(take, ["x"], precision=0.03, min_n=5, clock=Clock(0.01))
    assert how["stop"] == "precise" and how["n"] == 5 and len(got["x"]) == 5
    assert rounds == [0, 1, 2, 3, 4, 5]  # round 0 is the warm-up, not kept
    assert how["precision"]["x"] == 0.0


def test_a_noisy_measurement_takes_samples_until_its_median_is_precise():
    rng = random.Random(1)
    # Mostly 1.0 +- 1 %, one sample in four far off: the median narrows as samples come in.
    values = [1.0 + rng.uniform(-0.01, 0.01) if i % 4 else 1.5 for i in range(100)]
    take, _ = series(values)
    got, how = sample_until(take, ["x"], precision=0.03, max_n=50, budget_s=1e9,
                            clock=Clock(0.01))
    assert how["stop"] == "precise" and 5 < how["n"] < 50
    assert precision_of(got["x"]) <= 0.03
    assert precision_of(got["x"][:-1]) > 0.03  # it stopped at the first round that sufficed


def test_the_cap_and_the_budget_stop_a_measurement_that_never_settles():
    wild = itertools.cycle([1.0, 2.0, 3.0])
    take, _ = series(wild)
    _, how = sample_until(take, ["x"], precision=0.03, max_n=12, budget_s=1e9, clock=Clock(0.01))
    assert how["stop"] == "max_samples" and how["n"] == 12 and how["precision"]["x"] > 0.03
    take, _ = series(itertools.cycle([1.0, 2.0, 3.0]))
    _, how = sample_until(take, ["x"], precision=0.03, max_n=100, budget_s=1.0,
                          clock=Clock(0.1))
    assert how["stop"] == "budget" and how["n"] < 12 and how["spent_s"] >= 1.0


def test_the_budget_never_cuts_below_the_minimum_and_every_key_must_be_precise():
    take, _ = series(itertools.cycle([1.0, 2.0]))
    _, how = sample_until(take, ["x"], precision=0.03, min_n=5, budget_s=0.0, clock=Clock(1))
    assert how["stop"] == "budget" and how["n"] == 5

    def two(i):
        return {"steady": 1.0, "wild": [1.0, 3.0][i % 2]}

    _, how = sample_until(two, ["steady", "wild"], precision=0.03, max_n=9, budget_s=1e9,
                          clock=Clock(0.01))
    assert how["stop"] == "max_samples"


def test_quick_lowers_the_precision_target_not_the_samples():
    from lab.runner.util import PRECISION, QUICK_PRECISION, CellContext

    assert CellContext("x", None, {"quick": True}, "/dev/null").precision == QUICK_PRECISION
    assert CellContext("x", None, {}, "/dev/null").precision == PRECISION < QUICK_PRECISION
    # 5 % noise: precise enough for --quick at the minimum, not for a full run.
    values = [1.0, 1.05, 0.95, 1.02, 0.98] * 20
    take, _ = series(values)
    _, quick = sample_until(take, ["x"], precision=QUICK_PRECISION, clock=Clock(0.01))
    take, _ = series(values)
    _, full = sample_until(take, ["x"], precision=PRECISION, budget_s=1e9, clock=Clock(0.01))
    assert quick["n"] == 5 < full["n"]
