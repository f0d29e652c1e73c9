"""The timings as charts: one bar per (target, start method) with its median and interval,
grouped by engine (figures of different engines are never pooled), the rest of each cell
(start-up split, sampling, CPUs, contention) one click away. Also the readers of a timing
statistic that charts and comparisons share."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from lab.report.evidence import anchor
from lab.report.margins import CONTENDED, contention
from lab.results import (
    PROBLEMS,
    START_METHODS,
    Cell,
    Outcome,
    RunResults,
    TargetResult,
    TargetStatus,
)
from lab.runner import measurements as M
from lab.runner.util import quantile

NOISY_SPREAD = 0.10  # IQR / median above this: the chart warns


@dataclass(frozen=True, kw_only=True)
class Bar:
    label: str
    value: float
    lo: float | None = None
    hi: float | None = None
    text: str = ""
    warn: str = ""
    anchor: str = ""
    engine: str | None = None  # where the cell ran (a key of run.engines)
    home: bool = False  # this bar's row carries the cell's anchor (its first bar)

    @property
    def headline(self) -> str:
        """The figure and its interval: "x1.85 (IQR 1.79–1.88, n=5)"; the rest is ``more``."""
        head, sep, _ = self.text.partition("; ")
        return head + (")" if sep and "(" in head and not head.endswith(")") else "")

    @property
    def more(self) -> str:
        _, sep, rest = self.text.partition("; ")
        return rest[:-1] if sep and rest.endswith(")") else rest


@dataclass(frozen=True, kw_only=True)
class Chart:
    title: str
    unit: str
    bars: list[Bar]
    note: str = ""
    reference: float | None = None  # a vertical line (e.g. speedup 1.0)
    max_value: float = 1.0
    @property
    def ticks(self) -> list[tuple[float, str]]:
        """The axis: round values from 0 up to max_value, about four steps, as (fraction of
        the width, label)."""
        if self.max_value <= 0:
            return [(0.0, "0")]
        raw = self.max_value / 4
        mag = 10 ** math.floor(math.log10(raw))
        step = min((k * mag for k in (1, 2, 2.5, 5, 10)), key=lambda s: abs(s - raw))
        decimals = max(0, -math.floor(math.log10(step) + 1e-9)) + (1 if step / mag == 2.5
                                                                  and step < 10 else 0)
        out, v = [], 0.0
        while v <= self.max_value * (1 + 1e-9):
            out.append((v / self.max_value, f"{v:,.{decimals}f}"))
            v += step
        return out

    # With several engines: (heading, bars) per engine, in run.engines order; else one group
    # with no heading. Figures of different engines are never pooled, only shown apart.
    groups: list[tuple[str, list[Bar]]] = field(default_factory=list)
    secondary: bool = False  # shown behind a click: no claim is judged from it


def stat_of(s: Any) -> tuple[float, float, float, int] | None:
    if not isinstance(s, dict) or not isinstance(med := s.get(M.MEDIAN), int | float):
        return None
    return float(med), float(s.get(M.Q1) or med), float(s.get(M.Q3) or med), int(s.get(M.N) or 0)


def _spread_warning(median: float, lo: float, hi: float) -> str:
    if median and (hi - lo) / abs(median) > NOISY_SPREAD:
        return f"spread {(hi - lo) / abs(median):.0%} of the median: small gaps are noise"
    return ""


def _cpus(c: Cell) -> str:
    cpus = ",".join(str(x) for x in c.cpus or []) or "?"
    extra = " exclusive" if c.exclusive else (
        f" shared with {', '.join(c.concurrent)}" if c.concurrent else "")
    others = contention(c)
    load = f"; others used {others:.2f} CPU" if others is not None else ""
    engine = f" of engine {c.engine}" if c.engine and c.engine != "default" else ""
    return f"CPUs {cpus}{engine}{extra}{load}{_retries(c)}" + (
        " · emulated: not comparable" if c.emulated else "")


def _retries(c: Cell) -> str:
    """How the measurement was protected: the wait for a quiet machine, discarded attempts."""
    parts = []
    quiet = c.quiet or {}
    waited = quiet.get("waited_s")
    if quiet.get("quiet") is False:
        parts.append(f"the machine never got quiet in {waited} s")
    elif isinstance(waited, int | float) and waited >= 1:
        parts.append(f"waited {waited:.0f} s for a quiet machine")
    dropped = [a for a in c.attempts or [] if not a.get("kept")]
    if dropped:
        used = ", ".join(f"{a['others_cpus']:.2f}" for a in dropped
                         if isinstance(a.get("others_cpus"), int | float))
        parts.append(f"kept the cleanest of {len(c.attempts or [])} attempts; "
                     f"{len(dropped)} discarded, others used {used} CPU during them")
    return "".join(f"; {p}" for p in parts)


def _children(c: Cell) -> str:
    """What a countdown cell's children said from inside: why its speedup is what it is."""
    ch = c.measurements.get(M.CHILDREN)
    if not isinstance(ch, dict):
        return ""
    med = {k: stat_of(ch.get(k)) for k in ("work_speedup", "startup_s", "overlap", "pace")}
    if not all(med.values()):
        return ""
    work, startup, overlap, pace = (v[0] for v in med.values() if v)
    return (f"; the work alone x{work:.2f}: start-up {startup * 1000:.1f} ms, children's work "
            f"overlapped {overlap:.0%}, each took x{pace:.2f} its share of the serial time")


def _sampling(m: Any) -> str:
    """Why a measurement stopped taking samples, and how precise it got."""
    how = m.get("sampling") if isinstance(m, dict) else None
    if not isinstance(how, dict):
        return ""
    reached = [v for v in (how.get("precision") or {}).values() if isinstance(v, int | float)]
    got = f"±{max(reached):.1%}" if reached else "unknown"
    target = how.get("target")
    want = f"±{target:.0%}" if isinstance(target, int | float) else "?"
    stop = {"precise": "precise", "max_samples": "stopped at the sample cap",
            "budget": "stopped at its time budget"}.get(str(how.get("stop")),
                                                         str(how.get("stop")))
    return f"; median known to {got} (target {want}): {stop}"


def _warnings(c: Cell, median: float, lo: float, hi: float) -> str:
    parts = [w for w in (_spread_warning(median, lo, hi),) if w]
    others = contention(c)
    if others is not None and others > CONTENDED:
        parts.append(f"other processes used {others:.2f} CPU meanwhile: contended")
    return "; ".join(parts)


def timing_charts(r: RunResults, columns: list[TargetResult]) -> list[Chart]:
    """The timing charts, each one's bars grouped by the engine they were measured on; a
    cell's first bar carries its anchor (the claims' evidence links land there)."""
    seen: set[str] = set()
    charts = []
    for ch in sorted(_timing_charts(r, columns), key=lambda ch: ch.secondary):  # those last
        bars = []
        for b in ch.bars:
            bars.append(dataclasses.replace(b, home=b.anchor not in seen))
            seen.add(b.anchor)
        charts.append(dataclasses.replace(ch, bars=bars, groups=_by_engine(r, bars)))
    return charts


def uncharted(r: RunResults, charts: list[Chart]) -> list[Cell]:
    """Timing cells no chart shows (threading_gil's I/O, a skipped or failed timing): listed
    in one line each, so every cell has a place on the page."""
    charted = {b.anchor for ch in charts for b in ch.bars}
    return [c for c in r.results if c.kind == "timing" and c.outcome not in PROBLEMS
            and anchor(c) not in charted]


def _by_engine(r: RunResults, bars: list[Bar]) -> list[tuple[str, list[Bar]]]:
    names = list(r.run.engines)
    used = list(dict.fromkeys(b.engine for b in bars))
    if len(r.run.engines) < 2 or len(used) < 2:
        return [("", bars)]
    order = sorted(used, key=lambda e: names.index(e) if e in names else len(names))
    return [(_engine_heading(r, e), [b for b in bars if b.engine == e]) for e in order]


def _engine_heading(r: RunResults, name: str | None) -> str:
    if name is None:
        return "on this machine (host interpreters)"
    facts = r.run.engines.get(name) or {}
    if not facts.get("id"):
        return f"engine {name}"
    return (f"engine {name} · {facts.get('where')} · {facts.get('cpus')} CPUs · "
            f"{facts.get('arch')} · kernel {facts.get('kernel')}")


def _timing_charts(r: RunResults, columns: list[TargetResult]) -> list[Chart]:
    ok = [t for t in columns if t.status == TargetStatus.OK]
    return [*_countdown_chart(r, ok), *_startup_chart(r, ok), *_transfer_charts(r, ok),
            *_iftry_charts(r, ok)]


def _countdown_chart(r: RunResults, ok: list[TargetResult]) -> list[Chart]:
    bars = []
    for t in ok:
        for m in (None, *START_METHODS):
            c = r.cell(t.id, "countdown", m)
            if not c or c.outcome != Outcome.OK:
                continue
            samples = sorted(x for x in c.measurements.get(M.SPEEDUP_SAMPLES) or []
                             if isinstance(x, int | float))
            s = c.measurements.get(M.SPEEDUP)
            if not isinstance(s, int | float) or not samples:
                continue
            q1, q3 = quantile(samples, 0.25), quantile(samples, 0.75)
            serial = stat_of(c.measurements.get(M.SERIAL))
            label = f"{t.id} · {'2 threads' if m is None else '2 processes, ' + m}"
            bars.append(Bar(label=label, value=float(s), lo=q1, hi=q3,
                            text=f"x{s:.2f} (IQR {q1:.2f}–{q3:.2f}, n={len(samples)}; serial "
                                 f"{serial[0]:.2f} s{_children(c)}{_sampling(c.measurements)}; "
                                 f"{_cpus(c)})" if serial else f"x{s:.2f}",
                            warn=_warnings(c, float(s), q1, q3), anchor=anchor(c),
                            engine=c.engine))
    if not bars:
        return []
    return [Chart(title="Countdown speedup over serial (2 workers)", unit="× serial speed",
                  bars=bars, reference=1.0,
                  max_value=max(2.2, max(b.hi or b.value for b in bars) * 1.05),
                  note="1.0 = no gain. 2.0 = perfect use of 2 CPUs. Process times include "
                       "start-up, as a user pays it; each bar's text splits a low speedup into "
                       "start-up, overlap of the children's work and their pace against the "
                       "serial run.")]


def _startup_chart(r: RunResults, ok: list[TargetResult]) -> list[Chart]:
    bars = []
    for t in ok:
        for m in START_METHODS:
            c = r.cell(t.id, "process_startup", m)
            st = stat_of(c.measurements.get(M.STARTUP)) if c and c.outcome == Outcome.OK else None
            if not c or not st:
                continue
            med, q1, q3, n = st
            first = c.measurements.get(M.FIRST_S)
            module = stat_of(c.measurements.get(M.STARTUP_MODULE))
            inside = stat_of(nested(c.measurements, M.CHILDREN, "child_startup_s"))
            extra = (f"; target in an imported module {module[0] * 1000:.1f} ms" if module
                     else "") + (f"; the child ran its target {inside[0] * 1000:.1f} ms after "
                                 f"start()" if inside else "")
            bars.append(Bar(label=f"{t.id} · {m}", value=med * 1000, lo=q1 * 1000,
                            hi=q3 * 1000,
                            text=f"{med * 1000:.1f} ms (IQR {q1 * 1000:.1f}–{q3 * 1000:.1f}, "
                                 f"n={n}; first {_ms(first)}{extra}"
                                 f"{_sampling(c.measurements)}; {_cpus(c)})",
                            warn=_warnings(c, med, q1, q3), anchor=anchor(c),
                            engine=c.engine))
    if not bars:
        return []
    return [Chart(title="Process start + join latency", unit="ms", bars=bars,
                  max_value=max(b.hi or b.value for b in bars) * 1.05,
                  note="A trivial child, started by a small program run as \"python "
                       "script.py\" (no lab code in it), target in __main__; the first start "
                       "(a forkserver launches its server then) is shown apart.")]


def _transfer_charts(r: RunResults, ok: list[TargetResult]) -> list[Chart]:
    charts = []
    for size in M.SIZES:
        unit, scale, metric = (("k items/s", 1e-3, M.ITEMS_PER_S) if size == "small"
                               else ("MB/s", 1.0, M.MB_PER_S))
        for channel in M.CHANNELS:
            bars = []
            for t in ok:
                for m in START_METHODS:
                    c = r.cell(t.id, "queue_transfer", m)
                    if not c or c.outcome != Outcome.OK:
                        continue
                    st = stat_of(nested(c.measurements, M.transfer(channel, size), metric))
                    if not st:
                        continue
                    med, q1, q3, n = st
                    bars.append(Bar(label=f"{t.id} · {m}", value=med * scale, lo=q1 * scale,
                                    hi=q3 * scale,
                                    text=f"{med * scale:,.1f} {unit} (IQR {q1 * scale:,.1f}–"
                                         f"{q3 * scale:,.1f}, n={n}; {_cpus(c)})",
                                    warn=_warnings(c, med, q1, q3), anchor=anchor(c),
                                    engine=c.engine))
            if bars:
                what = "small items (an int)" if size == "small" else "~1 MB items"
                name = "multiprocessing.Queue" if channel == "queue" else "Pipe"
                charts.append(Chart(title=f"{name} throughput, {what}", unit=unit, bars=bars,
                                    secondary=True,
                                    max_value=max(b.hi or b.value for b in bars) * 1.05))
    return charts


_IFTRY_LABELS = {M.IF_EMPTY: "if q.empty()", M.TRY_EXCEPT: "try/except Empty"}


def _iftry_charts(r: RunResults, ok: list[TargetResult]) -> list[Chart]:
    charts = []
    for qtype in M.QUEUE_TYPES:  # one chart per queue type: the claim is about each
        bars = []
        for t in ok:
            c = next((x for m in START_METHODS if (x := r.cell(t.id, "queue_iftry", m))
                      and x.outcome == Outcome.OK), None)
            if not c:
                continue
            for state in M.QUEUE_STATES:
                for variant, short in _IFTRY_LABELS.items():
                    st = stat_of(nested(c.measurements, qtype, M.iftry_ns(state, variant)))
                    if not st:
                        continue
                    med, q1, q3, n = st
                    bars.append(Bar(label=f"{t.id} · "
                                          f"{'empty' if state == 'empty' else 'not empty'}: "
                                          f"{short}",
                                    value=med, lo=q1, hi=q3,
                                    text=f"{med:,.0f} ns/call (IQR {q1:,.0f}–{q3:,.0f}, n={n}; "
                                         f"{_cpus(c)})",
                                    warn=_warnings(c, med, q1, q3), anchor=anchor(c),
                                    engine=c.engine))
        if bars:
            mp = qtype == "multiprocessing.Queue"
            charts.append(Chart(title=f"{qtype}: if q.empty() vs try/except Empty, per call",
                                unit="ns per call", bars=bars, secondary=mp,
                                max_value=max(b.hi or b.value for b in bars) * 1.05,
                                note="On an empty and a non-empty queue. Lower is cheaper."
                                + (" Under the first start method offered." if mp else "")))
    return charts


def _ms(seconds: Any) -> str:
    return f"{seconds * 1000:.0f} ms" if isinstance(seconds, int | float) else "—"


def nested(d: Any, *keys: str) -> Any:
    for k in keys:
        d = d.get(k) if isinstance(d, dict) else None
    return d


def engine_of(r: RunResults, c: Cell) -> tuple[str, str] | None:
    """Which engine a cell ran on, as a machine (its ID and address); None: not recorded
    (host interpreters, runs before schema 4)."""
    facts = r.run.engines.get(c.engine or "") if c.engine else None
    if not facts:
        return None
    return str(facts.get("id")), str(facts.get("where"))


def engine_label(r: RunResults, c: Cell) -> str:
    found = engine_of(r, c)
    return f"engine {c.engine} ({found[1]})" if found else "engine not recorded"


def interval_of(st: Any) -> tuple[float, float, float] | None:
    """(median, low, high) of a summarized timing: its median's interval where recorded,
    else its IQR."""
    got = stat_of(st)
    if not got:
        return None
    ci = st.get(M.CI)
    if isinstance(ci, list) and len(ci) == 2 and all(isinstance(x, int | float) for x in ci):
        return got[0], float(ci[0]), float(ci[1])
    return got[0], got[1], got[2]


def sample_interval(samples: Any) -> tuple[float, float, float] | None:
    values = [float(x) for x in samples or [] if isinstance(x, int | float)]
    if not values:
        return None
    return quantile(values, 0.5), quantile(values, 0.25), quantile(values, 0.75)
