"""Margins: how far a timing cell can be trusted, and the readers of its statistics.

A timing cell records how many CPUs *other* processes used while it ran (``contention``) and
its own spread (interquartile range over median, at least MIN_SPREAD); the verdicts compare an
effect with what those two could produce (``parallel_floor``, ``serial_ceiling``). See
``lab/report/verdicts.py`` for how each claim uses them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lab.results import Cell
from lab.runner import measurements as M
from lab.runner.util import quantile  # the statistics the runner summarizes with

CONTENDED = 0.15  # CPUs other processes used during a timing cell: the report flags it
MIN_SPREAD = 0.05  # relative noise assumed even when a cell's few samples agree closely
PAIRED_MARGIN = 0.05  # a per-round ratio this close to 1 is what a user would not act on


def contention(c: Cell) -> float | None:
    """CPUs that other processes on the machine used on average while the cell ran.

    Unknown for a forkserver cell measured by its rusage (a host interpreter): the server and
    its workers are never reaped by the cell, so their CPU would count as someone else's.
    """
    cpu = c.cpu or {}
    if cpu.get("own_scope") == "process" and c.start_method == "forkserver":
        return None
    value = cpu.get("others_cpus")
    return float(value) if isinstance(value, int | float) else None


def get(d: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(d, dict):
            return None
        d = d.get(key)
    return d


def num(x: Any) -> float | None:
    return float(x) if isinstance(x, int | float) and not isinstance(x, bool) else None


def parallel_floor(cpus: float, others: float, spread: float) -> float:
    """The lowest speedup 2 workers that really run in parallel could show."""
    return max(0.0, min(2.0, cpus - others)) * (1 - spread)


def serial_ceiling(cpus: float, others: float, spread: float) -> float:
    """The highest speedup work without parallelism could show (contention slowing the serial
    run, if it left it less than one CPU, and noise)."""
    return (1 + spread) / max(0.25, min(1.0, cpus - others))


def rel_spread(med: float | None, q1: float | None, q3: float | None) -> float:
    if not med or q1 is None or q3 is None:
        return MIN_SPREAD
    return max(MIN_SPREAD, (q3 - q1) / abs(med))


def stat3(s: Any) -> tuple[float, float, float] | None:
    """(median, q1, q3) of a summarized measurement."""
    med, q1, q3 = num(get(s, "median")), num(get(s, "q1")), num(get(s, "q3"))
    if med is None:
        return None
    return med, q1 if q1 is not None else med, q3 if q3 is not None else med


def speedup_stats(cell: Cell) -> tuple[float | None, float | None, float | None]:
    samples = [s for s in cell.measurements.get(M.SPEEDUP_SAMPLES) or [] if num(s)]
    if not samples:
        return None, None, None
    return (num(cell.measurements.get(M.SPEEDUP)), quantile(samples, 0.25),
            quantile(samples, 0.75))


def paired(stat: Any) -> tuple[int, str, float] | None:
    """A per-round ratio of two interleaved variants, from its median's confidence interval:
    (-1 wholly below 1 - PAIRED_MARGIN, +1 wholly above 1 + PAIRED_MARGIN, 0 a tie, the ratio
    in words, its median), or None where it was not measured. Why no stretch by contention is
    needed: see ``lab.report.verdicts._iftry_case``."""
    ci = get(stat, "ci")
    med = num(get(stat, M.MEDIAN))
    if med is None or not isinstance(ci, list) or len(ci) != 2 or None in (
            num(ci[0]), num(ci[1])):
        return None
    lo, hi = float(ci[0]), float(ci[1])
    side = -1 if hi < 1 - PAIRED_MARGIN else 1 if lo > 1 + PAIRED_MARGIN else 0
    return side, f"x{med:.2f} (x{lo:.2f}-x{hi:.2f})", med


@dataclass(frozen=True, kw_only=True)
class Clocks:
    """The workers' own CPU clocks, judged: did they run at once (above ``ceiling``), and did
    they use fewer CPUs than parallel workers would have with the contention measured (below
    ``floor``)? Both can hold: a thread that spins while it waits for the GIL overlaps a
    little, far below what parallel threads reach."""

    at_once: bool
    below: bool
    median: float
    ceiling: float
    floor: float

    @property
    def measured(self) -> str:
        return f"{self.median:.2f} CPUs at once by their own clocks"

    def words(self, *, floor_too: bool = False) -> str:
        """The measure with the bound that decided it: the parallel floor when below it (and
        not at once, unless ``floor_too``), both bounds for a tie."""
        if not self.at_once and not self.below:
            return (f"{self.measured} (between {self.ceiling:.2f}, taking turns, and "
                    f"{self.floor:.2f}, parallel)")
        if self.below and (floor_too or not self.at_once):
            return f"{self.measured} (parallel ones would be on at least {self.floor:.2f})"
        return self.measured
