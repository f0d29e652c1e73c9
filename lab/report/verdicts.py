"""Verdicts: the common claims about Python concurrency, judged per target from this run's cells.

The one place where observations become "confirmed" / "refuted". Claims about macOS and Windows
are not observable in Linux containers unless a host target on that system ran; the documented
value is shown instead.

Timing claims are decided by their margin, not thrown away when the machine was busy. Each
timing cell records how many CPUs *other* processes used while it ran (``contention``, c) and
its own spread (interquartile range over median, s, at least MIN_SPREAD). With N CPUs:

- 2 workers that really run in parallel show a speedup of at least
  ``parallel_floor = min(2, N - c) * (1 - s)``: others can take c CPUs away, no more;
- work that does not run in parallel shows at most ``serial_ceiling = (1 + s) / min(1, N - c)``:
  contention can slow the serial run only if it left it less than one CPU.

A parallelism claim (1, 2) is decided first on the workers' own clocks, the evidence that
survives load: their CPU time over the span from the first one's start to the last one's end
(``cpu_concurrency``, the CPUs the work used at once). Workers taking turns cannot exceed 1, so
a lower quartile above ``1 + MIN_SPREAD`` proves they ran at once, however busy the machine; an
upper quartile under ``parallel_floor`` says they used fewer CPUs than parallel workers would
have had; contention only lowers the measure, so it cannot fake parallelism. Threads are refuted
(they ran in parallel) only if the wall-clock speedup agrees, since a thread spinning on a lock
is on a CPU too. Cells without the clocks (older runs) are decided when the speedup's
interquartile range lies wholly beyond one of the bounds above ("2 threads x1.04; even with 0.24
CPU taken by others, parallel threads would reach at least x1.6: confirmed"), and are
``inconclusive`` only in between: a real tie. The wall-clock speedup is always shown: it is what
a user pays. For processes (claim 1) without the clocks the speedup judged is the work's alone,
where the children reported when their work ran (serial time over the span from the first
child's work to the last one's end); the end-to-end speedup, start-up included, says under which
condition the claim pays: a start method slower than serial at the measured size gets "start-up
costs more than the work saves at this size" and the size at which it breaks even (serial work x
(2 / speedup - 1)). Latency and per-call comparisons are decided when one interquartile range
lies beyond the other stretched by ``1 + c`` (what c CPUs of contention could add), except where
the two were interleaved round by round: then the per-round ratio's confidence interval decides,
with no stretch (contention cancels in a ratio of two halves of one round; see ``_iftry_case``).
Where cells of one target point in opposite directions, no cell decides alone: the verdict is
``inconclusive`` and says so.
"""

from __future__ import annotations

from typing import Any, cast

from lab.report import forks
from lab.report.documented import documented
from lab.report.evidence import (
    CONFIRMED,
    INCONCLUSIVE,
    NOT_OBSERVABLE,
    REFUTED,
    Claim,
    Verdict,
    anchor,
)
from lab.report.margins import (
    CONTENDED,
    MIN_SPREAD,
    Clocks,
    contention,
    get,
    num,
    paired,
    parallel_floor,
    rel_spread,
    serial_ceiling,
    speedup_stats,
    stat3,
)
from lab.results import START_METHODS, Cell, Outcome, RunResults, TargetResult, TargetStatus
from lab.runner import measurements as M

TIMING_CLAIMS = ("1", "2", "4", "7")
PARALLEL_SPEEDUP = 1.4  # 2 workers on >= 2 CPUs: clearly parallel above this
SERIAL_SPEEDUP = 1.2  # below this: no parallel gain
STAGGERED = 0.5  # children whose work overlapped for less of the longer one's say nothing


CLAIMS = {
    "1": "Running work in separate processes gives parallelism on several cores (no shared "
         "GIL).",
    "2": "In CPython, threads do not achieve true parallelism because of the GIL.",
    "3": "On Unix (3.4+) a program can choose fork, forkserver or spawn; the default differs "
         "by platform and version.",
    "4": "forkserver and spawn are slower than fork to start processes.",
    "5": "Forking while another thread holds a lock leaves the child with a lock that is never "
         "released.",
    # The seed's sixth claim holds two statements, each judged on its own evidence.
    "6a": "In pure Python, multiprocessing handles that properly.",
    "6b": "It bites if you are interacting with other libraries.",
    "7": "Checking q.empty() before get_nowait() is cheaper than catching queue.Empty.",
    "8": "An unbounded multiprocessing.Queue can grow without limit and become slow.",
}


class _Judge:
    def __init__(self, results: RunResults) -> None:
        self.r = results

    def cell(self, t: TargetResult, scenario: str, method: str | None) -> Cell | None:
        return self.r.cell(t.id, scenario, method)

    def cpus(self, t: TargetResult) -> int:
        aff = t.probe.get("affinity")
        return len(aff) if isinstance(aff, list) else int(t.probe.get("cpu_count") or 0)

    def emulated_note(self, t: TargetResult) -> str:
        return " (emulated: timings not comparable with native)" if t.emulated else ""

    # -- the claims ----------------------------------------------------------------------------
    def bounds(self, t: TargetResult, c: Cell) -> tuple[float, float, float, float, float,
                                                         float]:
        """(speedup, q1, q3, others, parallel floor, serial ceiling) of a countdown cell."""
        s, q1, q3 = speedup_stats(c)
        others = contention(c) or 0.0
        spread = rel_spread(s, q1, q3)
        cpus = self.cpus(t)
        return (s or 0.0, q1 or s or 0.0, q3 or s or 0.0, others,
                parallel_floor(cpus, others, spread), serial_ceiling(cpus, others, spread))

    def concurrency(self, t: TargetResult, c: Cell) -> Clocks | None:
        """What the workers' own CPU clocks say (``cpu_concurrency``), or None where a cell
        lacks them."""
        k = stat3(c.measurements.get(M.CPU_CONCURRENCY))
        if not k:
            return None
        med, q1, q3 = k
        spread = rel_spread(med, q1, q3)
        floor = parallel_floor(self.cpus(t), contention(c) or 0.0, spread)
        # Taking turns, the workers' CPU time cannot exceed their span: a bound of physics, not
        # an estimate, so each round above it proves they ran at once; the margin is for the
        # clocks, and the lower quartile asks it of three rounds in four.
        ceiling = 1 + MIN_SPREAD
        return Clocks(at_once=q1 > ceiling, below=q3 < floor, median=med, ceiling=ceiling,
                      floor=floor)

    def claim1(self, t: TargetResult) -> Verdict:
        """Parallelism is judged on the children's own CPU clocks where they read them
        (``cpu_concurrency``: more CPU time than their span proves they ran at once, and
        contention cannot fake it), else on the work's speedup where the children said when it
        ran (``work_speedup``), else end to end. End to end, start-up included, says at which
        size it pays: a method slower than serial gets its break-even work size."""
        cells = [c for m in START_METHODS
                 if (c := self.cell(t, "countdown", m)) and c.outcome == Outcome.OK
                 and speedup_stats(c)[0] is not None]
        if not cells:
            return Verdict(status=NOT_OBSERVABLE, summary="no countdown cell with processes ran")
        ev = tuple(anchor(c) for c in cells)
        if self.cpus(t) < 2:
            return Verdict(status=NOT_OBSERVABLE, summary="fewer than 2 CPUs available",
                           evidence=ev)
        found: dict[str, list[str]] = {"parallel": [], "serial": [], "tie": []}
        costly: list[str] = []
        parts: list[str] = []
        for c in cells:
            m = c.start_method or ""
            kind, label = self._claim1_cell(t, c)
            found[kind].append(m)
            s, q1, q3 = speedup_stats(c)
            serial = num(get(c.measurements, M.SERIAL, "median"))
            if s is not None and q3 is not None and q3 < 1.0:
                startup = num(get(c.measurements, M.CHILDREN, "startup_s", "median"))
                why = f", start-up {startup * 1000:.0f} ms" if startup is not None else ""
                even = (f"; it breaks even at about {serial * (2 / s - 1):.2f} s of serial "
                        f"work, this cell's was {serial:.2f} s") if serial and s > 0 else ""
                costly.append(f"{m} x{s:.2f}: start-up costs more than the work saves at this "
                              f"size{why}{even}")
            parts.append(f"{m} {label}{_with(contention(c) or 0.0)}")
        summary = "; ".join(parts + costly) + self.emulated_note(t)
        if found["parallel"]:
            lead = f"confirmed for {', '.join(found['parallel'])}"
            if costly:
                lead += "; with " + " and ".join(x.split(" ")[0] for x in costly) + \
                    ", start-up costs more than the work saves at this size"
            return Verdict(status=CONFIRMED, summary=f"{lead}: {summary}", evidence=ev)
        if found["serial"] and not found["tie"]:
            return Verdict(status=REFUTED, summary="no start method ran the work in parallel: "
                           + summary, evidence=ev)
        return Verdict(status=INCONCLUSIVE, summary=summary, evidence=ev)

    def _claim1_cell(self, t: TargetResult, c: Cell) -> tuple[str, str]:
        """One start method's evidence for claim 1: (parallel | serial | tie, its words)."""
        s, q1, q3, others, floor, ceiling = self.bounds(t, c)
        work = stat3(get(c.measurements, M.CHILDREN, "work_speedup"))
        speeds = (f"x{work[0]:.2f} for the work alone, x{s:.2f} end to end" if work
                  else f"x{s:.2f}")
        clocks = self.concurrency(t, c)
        if clocks:
            kind = "parallel" if clocks.at_once else "serial" if clocks.below else "tie"
            words = clocks.words()
            overlap = num(get(c.measurements, M.CHILDREN, "overlap", "median"))
            if kind == "serial" and overlap is not None and overlap < STAGGERED:
                # Children that were never alive together say nothing about running at once.
                kind = "tie"
                words = (f"{clocks.measured}, but their work overlapped for only "
                         f"{overlap:.0%} of the longer one's (start-up staggered them)")
            return kind, f"children on {words}; {speeds}"
        if work:
            w, q1, q3 = work
            spread = rel_spread(w, q1, q3)
            floor = parallel_floor(self.cpus(t), others, spread)
            ceiling = serial_ceiling(self.cpus(t), others, spread)
        if q1 > ceiling:
            return "parallel", speeds
        if q3 < (floor if work else min(1.0, floor)):
            return "serial", f"{speeds} (no parallel gain)"
        return "tie", f"{speeds} (between x{ceiling:.2f} and x{floor:.2f}: a tie)"

    def claim2(self, t: TargetResult) -> Verdict:
        """Judged on the threads' own CPU clocks where they read them: on CPUs at once by
        less than parallel threads would be, even with the contention measured, confirms;
        on CPUs at once *and* faster than serial refutes (CPU time alone could be a lock's
        spinning). Else, and for cells without the clocks, on the wall-clock speedup."""
        c = self.cell(t, "countdown", None)
        g = self.cell(t, "threading_gil", None)
        if not c or c.outcome != Outcome.OK:
            return Verdict(status=NOT_OBSERVABLE, summary="the threads countdown did not run")
        ev = (anchor(c),) + ((anchor(g),) if g else ())
        if self.cpus(t) < 2:
            return Verdict(status=NOT_OBSERVABLE, summary="fewer than 2 CPUs available",
                           evidence=ev)
        if speedup_stats(c)[0] is None:
            return Verdict(status=INCONCLUSIVE, summary="no speedup recorded", evidence=ev)
        s, q1, q3, others, floor, ceiling = self.bounds(t, c)
        # The GIL state the threads cell ran with (the probe's where an older run lacks it).
        gil = c.gil_enabled if c.gil_enabled is not None else t.probe.get("gil_enabled")
        io = num(get(g.measurements, M.IO, M.SPEEDUP)) if g and g.outcome == Outcome.OK else None
        tail = f"; GIL enabled: {gil if gil is not None else 'not exposed'}"
        if t.probe.get("py_gil_disabled") == 1:
            tail += " (a free-threaded build)"
        if io is not None:
            tail += f"; on blocking I/O threads overlap: x{io:.2f}"
        tail += self.emulated_note(t)
        clocks = self.concurrency(t, c)
        if clocks:
            at_once, below = clocks.at_once, clocks.below
            # Overlapping a little, far from parallel (PyPy's GIL spins): say how far.
            head = f"2 threads on {clocks.words(floor_too=below)}, x{s:.2f} wall clock"
            if below:
                return Verdict(status=CONFIRMED, evidence=ev,
                               summary=f"{head}{_with(others)}" + tail)
            if at_once and q1 > ceiling:
                return Verdict(status=REFUTED, evidence=ev, summary=(
                    f"{head}: above the x{ceiling:.2f} that threads without parallelism could "
                    f"reach{_with(others)}" + tail))
            if at_once:
                return Verdict(status=INCONCLUSIVE, evidence=ev, summary=(
                    f"{head}: on CPUs at once but no faster than x{ceiling:.2f}, which "
                    f"waiting could explain{_with(others)}" + tail))
            return Verdict(status=INCONCLUSIVE, evidence=ev,
                           summary=f"{head}{_with(others)}: a tie" + tail)
        if q1 > ceiling:
            return Verdict(status=REFUTED, evidence=ev, summary=(
                f"2 threads x{s:.2f}: above the x{ceiling:.2f} that threads without "
                f"parallelism could reach{_with(others)}" + tail))
        if q3 < floor:
            return Verdict(status=CONFIRMED, evidence=ev, summary=(
                f"2 threads x{s:.2f}; even with {others:.2f} CPU taken by others, parallel "
                f"threads would reach at least x{floor:.2f}" + tail))
        return Verdict(status=INCONCLUSIVE, evidence=ev, summary=(
            f"2 threads x{s:.2f}, between x{ceiling:.2f} (no parallelism) and x{floor:.2f} "
            f"(parallel){_with(others)}: a tie" + tail))

    def claim3(self, t: TargetResult) -> Verdict:
        methods = t.probe.get("start_methods")
        default = t.probe.get("default_start_method")
        p = self.cell(t, "probe", None)
        ev = (anchor(p),) if p else ()
        if not isinstance(methods, list):
            return Verdict(status=NOT_OBSERVABLE, summary="the probe did not run")
        summary = f"offers {', '.join(methods)}; default {default}"
        if set(methods) >= set(START_METHODS):
            return Verdict(status=CONFIRMED, summary=summary, evidence=ev)
        return Verdict(status=REFUTED, summary=summary, evidence=ev)

    def claim4(self, t: TargetResult) -> Verdict:
        cells = {m: self.cell(t, "process_startup", m) for m in START_METHODS}
        ok = {m: c for m, c in cells.items() if c and c.outcome == Outcome.OK}
        if "fork" not in ok or len(ok) < 2:
            return Verdict(status=NOT_OBSERVABLE,
                           summary="fork and another method are needed to compare")
        ev = tuple(anchor(c) for c in ok.values())
        fork = ok["fork"].measurements.get(M.STARTUP)
        parts = []
        verdicts = []
        for m in ("spawn", "forkserver"):
            if m not in ok:
                continue
            other = ok[m].measurements.get(M.STARTUP)
            med, fmed = num(get(other, "median")), num(get(fork, "median"))
            ratio = paired(ok[m].measurements.get(M.STARTUP_OVER_FORK))
            if ratio:  # this cell's own starts with fork, interleaved round by round
                side, words, _ = ratio
                parts.append(f"{m} {med * 1000:.1f} ms, {words} of fork's started beside it"
                             if med is not None else f"{m} {words} of fork's")
                verdicts.append({1: CONFIRMED, -1: REFUTED, 0: INCONCLUSIVE}[side])
                continue
            if med is not None and fmed:
                parts.append(f"{m} {med * 1000:.1f} ms vs fork {fmed * 1000:.1f} ms "
                             f"(x{med / fmed:.1f})")
            stretch = 1 + max(contention(ok["fork"]) or 0.0, contention(ok[m]) or 0.0)
            verdicts.append(_compare(fork, other, stretch))
        first = num(ok["forkserver"].measurements.get(M.FIRST_S)) if "forkserver" in ok else None
        summary = "; ".join(parts)
        if first is not None:
            summary += f"; first forkserver start {first * 1000:.0f} ms (launches the server)"
        summary += self.emulated_note(t)
        if verdicts and all(v == CONFIRMED for v in verdicts):
            return Verdict(status=CONFIRMED, summary=summary, evidence=ev)
        if verdicts and all(v == REFUTED for v in verdicts):
            return Verdict(status=REFUTED, summary=summary, evidence=ev)
        if CONFIRMED in verdicts and REFUTED in verdicts:
            return Verdict(status=INCONCLUSIVE, evidence=ev,
                           summary=summary + "; spawn and forkserver disagree")
        return Verdict(status=INCONCLUSIVE, summary=summary + "; within noise", evidence=ev)

    def claim5(self, t: TargetResult) -> Verdict:
        return forks.claim5(self.r, t)

    def claim6a(self, t: TargetResult) -> Verdict:
        return forks.pure_python(self.r, t)

    def claim6b(self, t: TargetResult) -> Verdict:
        return forks.libraries(self.r, t)

    def claim7(self, t: TargetResult) -> Verdict:
        """Decided per queue type, start method and queue state on the interleaved per-round
        ratio if/except (see ``_iftry_case``); the claim is about polling an empty queue, so
        the empty cases decide it, and the cases with items say where it stops holding. One
        case that ties is a tie for that case only."""
        cells = [c for m in START_METHODS
                 if (c := self.cell(t, "queue_iftry", m)) and c.outcome == Outcome.OK]
        if not cells:
            return Verdict(status=NOT_OBSERVABLE, summary="queue_iftry did not run")
        ev = tuple(anchor(c) for c in cells)
        cases = [("queue.Queue", cells[0])] + [(f"mp.Queue/{c.start_method}", c) for c in cells]
        found: dict[str, list[tuple[str, str, str]]] = {s: [] for s in M.QUEUE_STATES}
        directions: set[bool] = set()  # of the empty cases' medians, decided or not
        for label, c in cases:
            key = "queue.Queue" if label == "queue.Queue" else "multiprocessing.Queue"
            m = c.measurements.get(key) or {}
            for state in M.QUEUE_STATES:
                decided = _iftry_case(m, state, contention(c) or 0.0)
                if decided is not None:
                    found[state].append((label, decided[0], decided[1]))
                    if state == "empty":
                        directions.add(decided[2])
        empty = [d for _, d, _ in found["empty"]]
        held = [d for _, d, _ in found["nonempty"]]
        lead = [w for w, yes in (("confirmed when the queue is empty", CONFIRMED in empty
                                  and REFUTED not in empty),
                                 ("refuted when it holds items", REFUTED in held
                                  and CONFIRMED not in held),
                                 ("confirmed when it holds items too", CONFIRMED in held
                                  and REFUTED not in held)) if yes]
        parts = [_iftry_words(state, found[state]) for state in M.QUEUE_STATES if found[state]]
        summary = ("; ".join(lead) + " — " if lead else "") + "; ".join(parts)
        summary += _caveat(cells)
        if len(directions) > 1 and (CONFIRMED in empty or REFUTED in empty):
            return Verdict(status=INCONCLUSIVE, evidence=ev, summary=(
                summary + "; the empty cases disagree on which is cheaper, so none decides "
                "(under a JIT a block of samples can carry a state its spread does not show)"))
        if CONFIRMED in empty:
            return Verdict(status=CONFIRMED, summary=summary, evidence=ev)
        if REFUTED in empty:
            return Verdict(status=REFUTED, summary=summary, evidence=ev)
        return Verdict(status=INCONCLUSIVE, summary=summary + "; within noise", evidence=ev)

    def claim8(self, t: TargetResult) -> Verdict:
        cells = [c for m in START_METHODS
                 if (c := self.cell(t, "queue_growth", m)) and c.outcome == Outcome.OK]
        if not cells:
            return Verdict(status=NOT_OBSERVABLE, summary="queue_growth did not run")
        ev = tuple(anchor(c) for c in cells)
        grew, parts = [], []
        for c in cells:
            unb, bnd = c.measurements.get(M.UNBOUNDED), c.measurements.get(M.BOUNDED)
            items = num(get(unb, "items"))
            back_u = num(get(unb, "peak_backlog_items"))
            back_b = num(get(bnd, "peak_backlog_items"))
            mem_u, mem_b = num(get(unb, "growth_kib")), num(get(bnd, "growth_kib"))
            if items is None or back_u is None or back_b is None:
                continue
            mem = (f"; peak RSS +{mem_u / 1024:.1f} vs +{mem_b / 1024:.1f} MiB"
                   if mem_u is not None and mem_b is not None else "")
            parts.append(f"{c.start_method}: up to {back_u:.0f} of {items:.0f} items waiting "
                         f"unbounded vs {back_b:.0f} bounded (maxsize "
                         f"{get(bnd, 'maxsize')}){mem}")
            grew.append(back_u >= 0.5 * items and back_u >= 4 * max(back_b, 1))
        summary = "; ".join(parts) + "; 'slow' not judged: see consumer times"
        if grew and all(grew):
            return Verdict(status=CONFIRMED, summary=summary, evidence=ev)
        if grew and not any(grew):
            return Verdict(status=REFUTED, summary=summary, evidence=ev)
        return Verdict(status=INCONCLUSIVE, summary=summary, evidence=ev)


def judge(results: RunResults) -> list[Claim]:
    j = _Judge(results)
    targets = [t for t in results.targets if t.status == TargetStatus.OK]
    claims = []
    for number, text in CLAIMS.items():
        method = getattr(j, f"claim{number}")
        verdicts = {t.id: method(t) for t in targets}
        if number in TIMING_CLAIMS:
            verdicts = {tid: _note_contended(results, v) for tid, v in verdicts.items()}
        note, extra = "", cast(tuple[str, ...], ())
        if number == "3":
            extra = ("macOS", "Windows")
            verdicts.update(_other_systems(results))
            defaults = sorted({f"{t.implementation} {t.flavour_version}: "
                               f"{t.probe.get('default_start_method')}"
                               for t in targets if t.probe.get("default_start_method")},
                              key=lambda s: s)
            distinct = {t.probe.get("default_start_method") for t in targets
                        if t.probe.get("default_start_method")}
            note = ("Observed defaults: " + "; ".join(defaults) + ". "
                    + ("The default differs between versions in this run."
                       if len(distinct) > 1 else "All observed targets share one default."))
        claims.append(Claim(number=number, text=text, verdicts=verdicts, note=note,
                            extra_columns=extra))
    return claims


def _with(others: float) -> str:
    return f", with {others:.2f} CPU taken by others" if others > 0.005 else ""


def _compare(lower: Any, higher: Any, stretch: float) -> str:
    """CONFIRMED when ``lower`` is below ``higher`` beyond noise and what contention could add
    (its upper quartile times ``stretch`` under the other's lower quartile), REFUTED for the
    reverse, else INCONCLUSIVE."""
    lo_q1, lo_q3 = num(get(lower, "q1")), num(get(lower, "q3"))
    hi_q1, hi_q3 = num(get(higher, "q1")), num(get(higher, "q3"))
    if None in (lo_q1, lo_q3, hi_q1, hi_q3):
        return INCONCLUSIVE
    assert lo_q1 is not None and lo_q3 is not None and hi_q1 is not None and hi_q3 is not None
    if lo_q3 * stretch < hi_q1:
        return CONFIRMED
    if hi_q3 * stretch < lo_q1:
        return REFUTED
    return INCONCLUSIVE


def _iftry_case(m: dict[str, Any], state: str,
                others: float) -> tuple[str, str, bool] | None:
    """One case of claim 7: (verdict, the ratio in words, whether its median says `if` is
    cheaper), or None if it was not measured.

    Where the runner interleaved the two variants round by round (``iftry_paired``: each
    round's if/except), the verdict reads the confidence interval of that ratio's median.
    Contention that slows a round slows both halves of it, so it cancels in the ratio; what
    it does to one half only is random from round to round and widens the interval, which is
    already there. So no stretch by contention is needed, unlike for two unpaired ranges: an
    interval wholly below 1 - PAIRED_MARGIN confirms, wholly above 1 + PAIRED_MARGIN refutes,
    else the case is a tie. (The 5 % margin is what a user would not act on.) Cells without
    the paired ratio fall back to comparing the two variants' ranges stretched by 1 + c."""
    ratio = paired(m.get(M.iftry_paired(state)))
    if ratio:
        side, words, med = ratio
        return {-1: CONFIRMED, 1: REFUTED, 0: INCONCLUSIVE}[side], words, med < 1
    if_s, try_s = m.get(M.iftry_ns(state, M.IF_EMPTY)), m.get(M.iftry_ns(state, M.TRY_EXCEPT))
    a, b = num(get(if_s, M.MEDIAN)), num(get(try_s, M.MEDIAN))
    if a is None or b is None:
        return None
    return _compare(if_s, try_s, 1 + others), f"if {a:.0f} ns vs except {b:.0f} ns", a < b


def _caveat(cells: list[Cell]) -> str:
    """The seed's caveat, that an ``if`` may skip a read "while the queue is flipping states",
    judged on the race it names: how often ``empty()`` still said True right after another
    process's ``put()`` returned, over every cell's attempts, with their spread."""
    seen = trials = 0
    shares: list[float] = []
    for c in cells:
        m = c.measurements.get(M.EMPTY_AFTER_PUT)
        n, k = num(get(m, "trials")), num(get(m, "empty_right_after_put"))
        if n is None or k is None or n <= 0:
            continue
        trials += int(n)
        seen += int(k)
        attempts = get(m, M.ATTEMPTS)
        shares += ([float(x) for x in attempts if num(x) is not None]
                   if isinstance(attempts, list) else [k / n])
    if not trials:
        return ""
    spread = (f"; {len(shares)} attempts in {len(cells)} cells ranged {min(shares):.0%}-"
              f"{max(shares):.0%}" if len(shares) > 1 else "")
    race = ("a race with the queue's feeder thread: how often it shows depends on the "
            "scheduler and the load")
    if seen:
        return (f"; the seed's caveat holds: empty() was still True right after another "
                f"process's put() in {seen} of {trials} trials ({seen / trials:.0%}{spread}), "
                f"so such an if skips an item that is on its way ({race})")
    return (f"; the seed's caveat was not seen: empty() was False right after another "
            f"process's put() in all {trials} trials{spread}; {race}, so this bounds it (at "
            f"most {3 / trials:.0%} at 95 %) but does not rule it out")


def _iftry_words(state: str, cases: list[tuple[str, str, str]]) -> str:
    """"when the queue is empty, if costs x0.19-x0.23 of except (confirmed: queue.Queue
    x0.19 (x0.17-x0.21), ...)", per verdict, ties named."""
    where = "when the queue is empty" if state == "empty" else "when it holds items"
    out = []
    for verdict, word in ((CONFIRMED, "if is cheaper"), (REFUTED, "except is cheaper"),
                          (INCONCLUSIVE, "a tie")):
        mine = [(label, text) for label, v, text in cases if v == verdict]
        if mine:
            out.append(f"{word} for " + ", ".join(f"{label} {text}" for label, text in mine))
    return f"{where}: " + "; ".join(out)


def _note_contended(results: RunResults, v: Verdict) -> Verdict:
    """Say how busy the machine was; the margins above already allowed for it."""
    cells = [c for c in results.results if anchor(c) in v.evidence]
    worst = max((x for c in cells if (x := contention(c)) is not None), default=None)
    if worst is None or worst <= CONTENDED or "taken by others" in v.summary:
        return v
    return Verdict(status=v.status, evidence=v.evidence, summary=(
        f"{v.summary}; other processes used up to {worst:.2f} CPU during these cells "
        "(allowed for in the margin)"))


def _other_systems(results: RunResults) -> dict[str, Verdict]:
    out = {}
    for system, label in (("darwin", "macOS"), ("windows", "Windows")):
        host = next((t for t in results.targets if t.kind == "host" and t.status == TargetStatus.OK
                     and t.platform.lower().startswith(system)), None)
        fact = documented("default_start_method", implementation="cpython", version="3.14",
                          platform=system)
        doc = f"documented default: {fact.value} ({fact.source})" if fact else ""
        if host is not None:
            v = _Judge(results).claim3(host)
            out[label] = Verdict(status=v.status, summary=f"{host.id}: {v.summary}; {doc}",
                                 evidence=v.evidence)
        else:
            out[label] = Verdict(status=NOT_OBSERVABLE,
                                 summary=f"not observable in Linux containers; {doc}. "
                                         "Run `lab run --host-python` on such a machine.")
    return out
