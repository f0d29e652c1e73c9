"""Verdicts: the common claims about Python concurrency, judged per target from this run's cells.

The one place where observations become "confirmed" / "refuted". Timing comparisons only count
beyond noise (the interquartile ranges must not overlap); otherwise the verdict says
``inconclusive``. Claims about macOS and Windows are not observable in Linux containers unless a
host target on that system ran; the documented value is shown instead.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, cast

from lab.documented import documented
from lab.results import Cell, RunResults, TargetResult

CONFIRMED = "confirmed"
REFUTED = "refuted"
INCONCLUSIVE = "inconclusive"
NOT_OBSERVABLE = "not observable"

CONTENDED = 0.15  # CPUs other processes used on average during a timing cell: not trusted
TIMING_CLAIMS = (1, 2, 4, 7)
PARALLEL_SPEEDUP = 1.4  # 2 workers on >= 2 CPUs: clearly parallel above this
SERIAL_SPEEDUP = 1.2  # below this: no parallel gain


@dataclass(frozen=True, kw_only=True)
class Verdict:
    status: str
    summary: str
    evidence: tuple[str, ...] = ()  # cell anchors


@dataclass(frozen=True, kw_only=True)
class Claim:
    number: int
    text: str
    verdicts: dict[str, Verdict]  # by target id, plus "macOS" / "Windows" for claim 3
    note: str = ""
    extra_columns: tuple[str, ...] = field(default_factory=tuple)


CLAIMS = {
    1: "Running work in separate processes gives parallelism on several cores (no shared GIL).",
    2: "In CPython, threads do not achieve true parallelism because of the GIL.",
    3: "On Unix (3.4+) a program can choose fork, forkserver or spawn; the default differs by "
       "platform and version.",
    4: "forkserver and spawn are slower than fork to start processes.",
    5: "Forking while another thread holds a lock leaves the child with a lock that is never "
       "released.",
    6: "In pure Python, multiprocessing handles that properly; it only bites through other "
       "libraries.",
    7: "Checking q.empty() before get_nowait() is cheaper than catching queue.Empty.",
    8: "An unbounded multiprocessing.Queue can grow without limit and become slow.",
}


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


def anchor(cell: Cell) -> str:
    raw = f"cell-{cell.target}-{cell.scenario}-{cell.start_method or 'none'}"
    if cell.container:
        raw += f"-{cell.container}"
    return re.sub(r"[^A-Za-z0-9_.:=-]", "_", raw)


def _get(d: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(d, dict):
            return None
        d = d.get(key)
    return d


def _num(x: Any) -> float | None:
    return float(x) if isinstance(x, int | float) and not isinstance(x, bool) else None


def beyond_noise(lo: dict[str, Any] | None, hi: dict[str, Any] | None) -> bool:
    """True when ``hi`` is larger than ``lo`` beyond noise: hi.q1 > lo.q3."""
    a, b = _num(_get(lo, "q3")), _num(_get(hi, "q1"))
    return a is not None and b is not None and b > a


def _speedup_stats(cell: Cell) -> tuple[float | None, float | None, float | None]:
    samples = [s for s in cell.measurements.get("speedup_samples") or [] if _num(s)]
    if not samples:
        return None, None, None
    ordered = sorted(samples)

    def q(p: float) -> float:
        pos = (len(ordered) - 1) * p
        lo = int(pos)
        hi = min(lo + 1, len(ordered) - 1)
        return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)

    return _num(cell.measurements.get("speedup")), q(0.25), q(0.75)


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
    def claim1(self, t: TargetResult) -> Verdict:
        cells = [c for m in ("fork", "spawn", "forkserver")
                 if (c := self.cell(t, "countdown", m)) and c.outcome == "ok"]
        if not cells:
            return Verdict(status=NOT_OBSERVABLE, summary="no countdown cell with processes ran")
        if self.cpus(t) < 2:
            return Verdict(status=NOT_OBSERVABLE, summary="fewer than 2 CPUs available",
                           evidence=tuple(anchor(c) for c in cells))
        parts, best = [], None
        for c in cells:
            s, q1, q3 = _speedup_stats(c)
            if s is None:
                continue
            parts.append(f"{c.start_method} x{s:.2f}")
            if best is None or (q1 or 0) > (best[1] or 0):
                best = (s, q1, q3)
        ev = tuple(anchor(c) for c in cells)
        summary = "2 processes vs serial: " + ", ".join(parts) + self.emulated_note(t)
        if best is None:
            return Verdict(status=INCONCLUSIVE, summary="no speedup recorded", evidence=ev)
        if best[0] >= PARALLEL_SPEEDUP and (best[1] or 0) > SERIAL_SPEEDUP:
            return Verdict(status=CONFIRMED, summary=summary, evidence=ev)
        if all((_speedup_stats(c)[2] or 9) < SERIAL_SPEEDUP for c in cells):
            return Verdict(status=REFUTED, summary=summary, evidence=ev)
        return Verdict(status=INCONCLUSIVE, summary=summary + "; within noise", evidence=ev)

    def claim2(self, t: TargetResult) -> Verdict:
        c = self.cell(t, "countdown", None)
        g = self.cell(t, "threading_gil", None)
        if not c or c.outcome != "ok":
            return Verdict(status=NOT_OBSERVABLE, summary="the threads countdown did not run")
        if self.cpus(t) < 2:
            return Verdict(status=NOT_OBSERVABLE, summary="fewer than 2 CPUs available",
                           evidence=(anchor(c),))
        s, q1, q3 = _speedup_stats(c)
        ev = (anchor(c),) + ((anchor(g),) if g else ())
        gil = t.probe.get("gil_enabled")
        io = _num(_get(g.measurements, "io", "speedup")) if g and g.outcome == "ok" else None
        summary = f"2 threads vs serial on CPU-bound code: x{s:.2f}" if s else "no speedup"
        if io is not None:
            summary += f"; on blocking I/O {_get(g.measurements, 'threads') if g else ''} " \
                       f"threads overlap: x{io:.2f}"
        summary += f"; GIL enabled: {gil if gil is not None else 'not exposed'}"
        summary += self.emulated_note(t)
        if s is None:
            return Verdict(status=INCONCLUSIVE, summary=summary, evidence=ev)
        if (q3 or s) < SERIAL_SPEEDUP:
            return Verdict(status=CONFIRMED, summary=summary, evidence=ev)
        if s >= PARALLEL_SPEEDUP and (q1 or 0) > SERIAL_SPEEDUP:
            return Verdict(status=REFUTED, summary=summary, evidence=ev)
        return Verdict(status=INCONCLUSIVE, summary=summary, evidence=ev)

    def claim3(self, t: TargetResult) -> Verdict:
        methods = t.probe.get("start_methods")
        default = t.probe.get("default_start_method")
        p = self.cell(t, "probe", None)
        ev = (anchor(p),) if p else ()
        if not isinstance(methods, list):
            return Verdict(status=NOT_OBSERVABLE, summary="the probe did not run")
        summary = f"offers {', '.join(methods)}; default {default}"
        if set(methods) >= {"fork", "spawn", "forkserver"}:
            return Verdict(status=CONFIRMED, summary=summary, evidence=ev)
        return Verdict(status=REFUTED, summary=summary, evidence=ev)

    def claim4(self, t: TargetResult) -> Verdict:
        cells = {m: self.cell(t, "process_startup", m) for m in ("fork", "spawn", "forkserver")}
        ok = {m: c for m, c in cells.items() if c and c.outcome == "ok"}
        if "fork" not in ok or len(ok) < 2:
            return Verdict(status=NOT_OBSERVABLE,
                           summary="fork and another method are needed to compare")
        ev = tuple(anchor(c) for c in ok.values())
        fork = ok["fork"].measurements.get("startup")
        parts = []
        verdicts = []
        for m in ("spawn", "forkserver"):
            if m not in ok:
                continue
            other = ok[m].measurements.get("startup")
            med, fmed = _num(_get(other, "median")), _num(_get(fork, "median"))
            if med is not None and fmed:
                parts.append(f"{m} {med * 1000:.1f} ms vs fork {fmed * 1000:.1f} ms "
                             f"(x{med / fmed:.1f})")
            if beyond_noise(fork, other):
                verdicts.append(CONFIRMED)
            elif beyond_noise(other, fork):
                verdicts.append(REFUTED)
            else:
                verdicts.append(INCONCLUSIVE)
        first = _num(ok["forkserver"].measurements.get("first_s")) if "forkserver" in ok else None
        summary = "; ".join(parts)
        if first is not None:
            summary += f"; first forkserver start {first * 1000:.0f} ms (launches the server)"
        summary += self.emulated_note(t)
        if all(v == CONFIRMED for v in verdicts):
            return Verdict(status=CONFIRMED, summary=summary, evidence=ev)
        if REFUTED in verdicts:
            return Verdict(status=REFUTED, summary=summary, evidence=ev)
        return Verdict(status=INCONCLUSIVE, summary=summary + "; within noise", evidence=ev)

    def claim5(self, t: TargetResult) -> Verdict:
        c = self.cell(t, "fork_held_lock", "fork")
        if not c or c.outcome == "skipped":
            return Verdict(status=NOT_OBSERVABLE, summary="fork is not available")
        others = [x for m in ("spawn", "forkserver")
                  if (x := self.cell(t, "fork_held_lock", m))]
        fresh = ", ".join(f"{x.start_method}: {x.outcome}" for x in others)
        ev = (anchor(c),) + tuple(anchor(x) for x in others)
        if c.outcome == "hung":
            blocked = "child blocked in child_takes_lock" if c.stacks and \
                "child_takes_lock" in c.stacks else "hung"
            return Verdict(status=CONFIRMED,
                           summary=f"fork: {blocked} until killed at the deadline; {fresh}",
                           evidence=ev)
        if c.outcome == "ok":
            return Verdict(status=REFUTED, summary=f"fork: the child took the lock; {fresh}",
                           evidence=ev)
        return Verdict(status=INCONCLUSIVE, summary=f"fork cell ended {c.outcome}", evidence=ev)

    def claim6(self, t: TargetResult) -> Verdict:
        lock = self.cell(t, "fork_held_lock", "fork")
        io = self.cell(t, "fork_held_io", "fork")
        if not lock or lock.outcome == "skipped":
            return Verdict(status=NOT_OBSERVABLE, summary="fork is not available")
        ev = (anchor(lock),) + ((anchor(io),) if io else ())
        parts = [f"pure-Python threading.Lock under fork: {lock.outcome}"]
        if io:
            done = io.measurements.get("trials_completed") or 0
            planned = io.measurements.get("trials_planned")
            parts.append(f"print/logging under fork: {io.outcome}"
                         + (f" after {done}/{planned} children" if planned else ""))
        summary = "; ".join(parts) + "; spawn/forkserver children start fresh"
        if lock.outcome == "hung" or (io and io.outcome == "hung"):
            return Verdict(status=REFUTED, summary=summary, evidence=ev)
        if lock.outcome == "ok" and io and io.outcome == "ok":
            return Verdict(status=CONFIRMED, summary=summary + " (fork_held_io is a race: "
                           "one clean run does not prove it safe)", evidence=ev)
        return Verdict(status=INCONCLUSIVE, summary=summary, evidence=ev)

    def claim7(self, t: TargetResult) -> Verdict:
        cells = [c for m in ("fork", "spawn", "forkserver")
                 if (c := self.cell(t, "queue_iftry", m)) and c.outcome == "ok"]
        if not cells:
            return Verdict(status=NOT_OBSERVABLE, summary="queue_iftry did not run")
        ev = tuple(anchor(c) for c in cells)
        cases = [("queue.Queue", cells[0])] + [(f"mp.Queue/{c.start_method}", c) for c in cells]
        parts, verdicts = [], []
        for label, c in cases:
            key = "queue.Queue" if label == "queue.Queue" else "multiprocessing.Queue"
            m = c.measurements.get(key) or {}
            if_s, try_s = m.get("empty_if_empty_ns"), m.get("empty_try_except_ns")
            a, b = _num(_get(if_s, "median")), _num(_get(try_s, "median"))
            if a is None or b is None:
                continue
            parts.append(f"{label} empty: if {a:.0f} ns vs except {b:.0f} ns")
            if beyond_noise(if_s, try_s):
                verdicts.append(CONFIRMED)
            elif beyond_noise(try_s, if_s):
                verdicts.append(REFUTED)
            else:
                verdicts.append(INCONCLUSIVE)
        late = _get(cells[0].measurements, "empty_after_put", "fraction")
        summary = "; ".join(parts)
        if _num(late) is not None:
            summary += f"; empty() still True right after another process's put(): {late:.0%}"
        if verdicts and all(v == CONFIRMED for v in verdicts):
            return Verdict(status=CONFIRMED, summary=summary, evidence=ev)
        if REFUTED in verdicts:
            return Verdict(status=REFUTED, summary=summary, evidence=ev)
        return Verdict(status=INCONCLUSIVE, summary=summary, evidence=ev)

    def claim8(self, t: TargetResult) -> Verdict:
        cells = [c for m in ("fork", "spawn", "forkserver")
                 if (c := self.cell(t, "queue_growth", m)) and c.outcome == "ok"]
        if not cells:
            return Verdict(status=NOT_OBSERVABLE, summary="queue_growth did not run")
        ev = tuple(anchor(c) for c in cells)
        grew, parts = [], []
        for c in cells:
            unb, bnd = c.measurements.get("unbounded"), c.measurements.get("bounded")
            items = _num(_get(unb, "items"))
            back_u = _num(_get(unb, "peak_backlog_items"))
            back_b = _num(_get(bnd, "peak_backlog_items"))
            mem_u, mem_b = _num(_get(unb, "growth_kib")), _num(_get(bnd, "growth_kib"))
            if items is None or back_u is None or back_b is None:
                continue
            mem = (f"; peak RSS +{mem_u / 1024:.1f} vs +{mem_b / 1024:.1f} MiB"
                   if mem_u is not None and mem_b is not None else "")
            parts.append(f"{c.start_method}: up to {back_u:.0f} of {items:.0f} items waiting "
                         f"unbounded vs {back_b:.0f} bounded (maxsize "
                         f"{_get(bnd, 'maxsize')}){mem}")
            grew.append(back_u >= 0.5 * items and back_u >= 4 * max(back_b, 1))
        summary = "; ".join(parts) + "; 'slow' not judged: see consumer times"
        if grew and all(grew):
            return Verdict(status=CONFIRMED, summary=summary, evidence=ev)
        if grew and not any(grew):
            return Verdict(status=REFUTED, summary=summary, evidence=ev)
        return Verdict(status=INCONCLUSIVE, summary=summary, evidence=ev)


def judge(results: RunResults) -> list[Claim]:
    j = _Judge(results)
    targets = [t for t in results.targets if t.status == "ok"]
    claims = []
    for number, text in CLAIMS.items():
        method = getattr(j, f"claim{number}")
        verdicts = {t.id: method(t) for t in targets}
        if number in TIMING_CLAIMS:
            verdicts = {tid: _discount_contended(results, v) for tid, v in verdicts.items()}
        note, extra = "", cast(tuple[str, ...], ())
        if number == 3:
            extra = ("macOS", "Windows")
            verdicts.update(_other_systems(results))
            defaults = sorted({f"{t.implementation} {t.version}: "
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


def _discount_contended(results: RunResults, v: Verdict) -> Verdict:
    """A timing verdict from cells that other processes disturbed decides nothing."""
    cells = [c for c in results.results if anchor(c) in v.evidence]
    worst = max((x for c in cells if (x := contention(c)) is not None), default=None)
    if worst is None or worst <= CONTENDED:
        return v
    note = f"; other processes used up to {worst:.2f} CPU during these cells"
    if v.status in (CONFIRMED, REFUTED):
        return Verdict(status=INCONCLUSIVE, summary=f"{v.summary}{note}: would have been "
                       f"{v.status}, not trusted", evidence=v.evidence)
    return Verdict(status=v.status, summary=v.summary + note, evidence=v.evidence)


def _other_systems(results: RunResults) -> dict[str, Verdict]:
    out = {}
    for system, label in (("darwin", "macOS"), ("windows", "Windows")):
        host = next((t for t in results.targets if t.kind == "host" and t.status == "ok"
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
