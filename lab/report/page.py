"""The report: one self-contained HTML page (and junit.xml) per run, rendering only.

It reads ``results.json`` (or a run folder) and nothing else, so any old run can be re-rendered.
Every template is autoescaped, and every string that came from a container is first made inert
by ``sanitize``: control characters shown as escapes, invalid text replaced, length capped with
a marker. Charts are inline SVG; nothing is fetched from the network; no JavaScript is needed.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup, escape

from lab.report.changes import hazards as change_hazards
from lab.report.changes import summaries as change_summaries
from lab.report.documented import documented
from lab.report.history import Entry, History
from lab.report.stacks import HangGroup, stuck_frame
from lab.report.stacks import hang_groups as stack_groups
from lab.report.summary import absent_groups
from lab.report.verdicts import CONTENDED, Claim, anchor, contention, judge
from lab.results import (
    CHECK_METHODS,
    METHOD_ORDER,
    PROBLEMS,
    START_METHODS,
    Cell,
    Outcome,
    RunResults,
    TargetResult,
    TargetStatus,
    load,
)
from lab.runner import measurements as M
from lab.runner.scenarios import CATALOG
from lab.runner.util import quantile

FIELD_LIMIT = 2000  # characters of an ordinary container-provided string
BLOCK_LIMIT = 48 * 1024  # stacks and output
DETAIL_LIMIT = 8 * 1024  # a detail can hold a traceback
NOISY_SPREAD = 0.10  # IQR / median above this: the chart warns
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_SURROGATE = re.compile(r"[\ud800-\udfff]")


def inert(text: str, limit: int = FIELD_LIMIT) -> str:
    """Make a container-provided string safe to show: visible control characters (ANSI
    escapes, NUL), no lone surrogates (invalid UTF-8 that came through), capped length."""
    cut = len(text) - limit
    if cut > 0:
        text = text[:limit]
    text = _SURROGATE.sub("\ufffd", text)
    text = _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)
    if cut > 0:
        text += f"\n[... lab: {cut} more characters cut ...]"
    return text


def sanitize(value: Any, limit: int = FIELD_LIMIT) -> Any:
    if isinstance(value, str):
        return inert(value, limit)
    if isinstance(value, dict):
        return {inert(str(k), 200): sanitize(v, limit) for k, v in list(value.items())[:500]}
    if isinstance(value, list | tuple):
        return [sanitize(v, limit) for v in list(value)[:2000]]
    return value


def sanitize_results(r: RunResults) -> RunResults:
    cells = [dataclasses.replace(
        c,
        measurements=sanitize(c.measurements), warnings=sanitize(c.warnings),
        stacks=inert(c.stacks, BLOCK_LIMIT) if c.stacks else c.stacks,
        output=inert(c.output, BLOCK_LIMIT) if c.output else c.output,
        detail=inert(c.detail, DETAIL_LIMIT) if c.detail else c.detail,
        signal=inert(c.signal, 100) if c.signal else c.signal,
        quiet=sanitize(c.quiet) if isinstance(c.quiet, dict) else None,
        attempts=sanitize(c.attempts) if isinstance(c.attempts, list) else None,
    ) for c in r.results]
    targets = [dataclasses.replace(t, probe=sanitize(t.probe),
                                   reason=inert(t.reason, BLOCK_LIMIT) if t.reason else t.reason,
                                   base=sanitize(t.base) if isinstance(t.base, dict) else None)
               for t in r.targets]
    run = dataclasses.replace(r.run, scenarios=sanitize(r.run.scenarios))
    return RunResults(run=run, targets=targets, results=cells, schema_version=r.schema_version)


# -- the view model ------------------------------------------------------------------------------
PLATFORM_ORDER = ["linux/amd64", "linux/386", "linux/arm64"]


def column_order(targets: list[TargetResult]) -> list[TargetResult]:
    """Targets as columns: grouped by platform (native first), then CPython by version."""
    def key(t: TargetResult) -> tuple[Any, ...]:
        plat = PLATFORM_ORDER.index(t.platform) if t.platform in PLATFORM_ORDER else 99
        parts = tuple(int(p) for p in t.version.split(".") if p.isdigit())
        return (t.kind == "host", plat, t.emulated, t.implementation != "cpython", parts,
                t.freethreaded)  # 3.14t beside 3.14
    return sorted(targets, key=key)


@dataclass(frozen=True, kw_only=True)
class Value:
    text: str
    changed: str | None = None  # "changed in 3.14"
    documented: str | None = None
    source: str | None = None
    mismatch: bool = False


@dataclass(frozen=True, kw_only=True)
class Row:
    label: str
    values: list[Value]
    hint: str = ""
    key: str = ""  # the probe key: the row's anchor is fact-KEY

    @property
    def secondary(self) -> bool:
        """A fact of the container rather than of concurrency, shown behind a click unless
        something about it changed or disagrees with the docs."""
        return self.key in SECONDARY_FACTS and not any(v.changed or v.mismatch
                                                         for v in self.values)

    @property
    def anchor(self) -> str:
        return "fact-" + re.sub(r"[^A-Za-z0-9_-]", "_", self.key.lstrip("_"))


def show(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ", ".join(show(v) for v in value) or "—"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, dict):
        return ", ".join(f"{k}={show(v)}" for k, v in value.items())
    return str(value)


def _fork_warning(r: RunResults, t: TargetResult, variant: str, field_: str) -> Any:
    cell = r.cell(t.id, "fork_warning", "fork")
    if not cell or cell.outcome != Outcome.OK:
        return None
    v = cell.measurements.get(variant)
    return v.get(field_) if isinstance(v, dict) else None


PROBE_ROWS: list[tuple[str, str, str]] = [
    # (label, key, hint); keys starting with "_" are derived below
    ("Python", "version", "platform.python_version()"),
    ("Implementation", "implementation", "sys.implementation.name"),
    ("Machine", "machine", "platform.machine()"),
    ("Pointer size (bits)", "pointer_bits", "struct.calcsize('P') * 8"),
    ("libc", "libc", "platform.libc_ver()"),
    ("Default start method", "default_start_method", "get_start_method() on first use"),
    ("Start method before first use", "start_method_before_use",
     "get_start_method(allow_none=True)"),
    ("get_all_start_methods()", "start_methods", "in the order returned"),
    ("Default listed first", "_default_first", "get_all_start_methods()[0] == default"),
    ("Fork warning (-W always)", "_fork_warning_always",
     "a fork child from a threaded process; fork_warning cell"),
    ("-W error raises it", "_fork_warning_error_raises", "fork_warning cell, -W error"),
    ("GIL enabled", "gil_enabled", "sys._is_gil_enabled(), after the probe's imports"),
    ("Free-threaded build", "py_gil_disabled", "sysconfig Py_GIL_DISABLED"),
    ("GIL in a child", "_children_gil",
     "sys._is_gil_enabled() and PYTHON_GIL in one child per start method"),
    ("PYTHON_GIL", "python_gil_env", "in the container's environment"),
    ("sys._is_gil_enabled exists", "has_is_gil_enabled", ""),
    ("os.cpu_count()", "cpu_count", ""),
    ("os.process_cpu_count()", "process_cpu_count", "3.13+"),
    ("os.process_cpu_count exists", "_has_process_cpu_count", ""),
    ("CPU affinity", "affinity", "os.sched_getaffinity(0)"),
    ("cgroup CPU quota", "_cgroup_quota", "read from /sys/fs/cgroup"),
    ("Pickle default protocol", "pickle_default_protocol", "what spawn/forkserver send"),
    ("Switch interval (s)", "switch_interval_s", "sys.getswitchinterval()"),
    ("Runner is PID 1", "runner_is_pid1", "containers run with an init"),
    ("PID 1", "pid1_cmdline", "/proc/1/cmdline"),
    ("uid", "uid", "containers run unprivileged"),
]


SECONDARY_FACTS = {"implementation", "machine", "pointer_bits", "libc", "affinity",
                   "_cgroup_quota", "runner_is_pid1", "pid1_cmdline", "uid", "_children_gil",
                   "python_gil_env"}


def _children_gil(seen: Any) -> str | None:
    """The probe's children_gil (untrusted: shapes checked, text capped) in one line."""
    if not isinstance(seen, dict) or not seen:
        return None
    states = {}
    order = list(START_METHODS)
    for method in sorted(list(seen)[:5], key=lambda m: (order + [m]).index(m)):
        v = seen[method]
        if not isinstance(v, dict):
            states[str(method)[:12]] = "no answer"
            continue
        g = v.get("gil_enabled")
        state = "on" if g is True else "off" if g is False else NOT_EXPOSED
        env = v.get("python_gil")
        states[str(method)[:12]] = state + (f" (PYTHON_GIL={str(env)[:8]})"
                                            if env is not None else "")
    if len(set(states.values())) == 1:
        return f"{next(iter(states.values()))} in every child"
    return ", ".join(f"{m}: {s}" for m, s in states.items())


NOT_EXPOSED = "not exposed"


def probe_value(r: RunResults, t: TargetResult, key: str) -> Any:
    p = t.probe
    if key == "_default_first":
        methods = p.get("start_methods")
        return methods[0] == p.get("default_start_method") if methods else None
    if key == "_fork_warning_always":
        return _fork_warning(r, t, "always", "warned")
    if key == "_fork_warning_error_raises":
        return _fork_warning(r, t, "error", "raised")
    if key == "_children_gil":
        return _children_gil(p.get("children_gil")) if p else None
    if key == "_has_process_cpu_count":
        return p.get("process_cpu_count") is not None if p else None
    if key == "_cgroup_quota":
        q = p.get("cgroup_cpu_quota")
        if not isinstance(q, dict):
            return None
        return "none" if q.get("cpus") is None else f"{q['cpus']:g} CPUs"
    return p.get(key)


DOC_KEYS = {"default_start_method": "default_start_method",
            "_default_first": "default_first_in_all_start_methods",
            "_fork_warning_always": "fork_warning_always",
            "_fork_warning_error_raises": "fork_warning_error_raises",
            "gil_enabled": "gil_enabled", "has_is_gil_enabled": "has_is_gil_enabled",
            "py_gil_disabled": "py_gil_disabled",
            "pickle_default_protocol": "pickle_default_protocol",
            "switch_interval_s": "switch_interval_s",
            "_has_process_cpu_count": "has_process_cpu_count"}


def free_threaded(t: TargetResult) -> bool:
    """A free-threaded build, as its probe saw it (Py_GIL_DISABLED), else as the matrix says."""
    seen = t.probe.get("py_gil_disabled") if t.probe else None
    return bool(seen) if isinstance(seen, int) else t.freethreaded


def probe_rows(r: RunResults, columns: list[TargetResult]) -> list[Row]:
    rows = []
    for label, key, hint in PROBE_ROWS:
        values = []
        prev: dict[tuple[str, str, bool], tuple[str, str]] = {}
        for t in columns:
            raw = probe_value(r, t, key) if t.probe else None
            text = show(raw)
            # Free-threaded builds are their own line: 3.14t follows 3.13t, not 3.14.
            group = (t.implementation, t.platform, t.freethreaded)
            changed = None
            if raw is not None and group in prev and prev[group][0] != text and key not in (
                    "version", "pid1_cmdline", "libc") and not (
                    # that sys._is_gil_enabled appeared is its own row
                    key == "_children_gil" and prev[group][0].startswith(NOT_EXPOSED)):
                changed = (f"changed in {t.flavour_version} "
                           f"(was {prev[group][0]} in {prev[group][1]})")
            if raw is not None:
                prev[group] = (text, t.flavour_version)
            doc = None
            mismatch = False
            if key in DOC_KEYS:
                system = "linux" if t.kind != "host" else t.platform.split("/")[0]
                fact = documented(DOC_KEYS[key], implementation=t.implementation,
                                  version=t.version, platform=system,
                                  freethreaded=free_threaded(t))
                if fact is not None:
                    doc = fact
                    mismatch = raw is not None and show(raw) != show(fact.value)
            values.append(Value(text=text, changed=changed,
                                documented=show(doc.value) if doc else None,
                                source=doc.source if doc else None, mismatch=mismatch))
        rows.append(Row(label=label, values=values, hint=hint, key=key))
    return rows


@dataclass(frozen=True, kw_only=True)
class Link:
    text: str
    href: str


@dataclass(frozen=True, kw_only=True)
class Findings:
    """The report's answers first: each one sentence, each linking to its evidence, all from
    this run. ``defaults``: (target, default start method, what changed) per column;
    ``changed``: per target, what differs from the previous version of its implementation;
    ``hangs`` and ``claims``: one line per hang group and per claim."""

    defaults: list[tuple[str, str, str | None]]
    changed: list[tuple[str, list[Link]]]
    hangs: list[Link]
    claims: list[Link]


def findings(columns: list[TargetResult], rows: list[Row], claims: list[Claim],
             hangs: list[HangGroup]) -> Findings:
    by_key = {row.key: row for row in rows}
    defaults = []
    if (row := by_key.get("default_start_method")) is not None:
        defaults = [(t.id, v.text, v.changed) for t, v in zip(columns, row.values, strict=True)]
    changed: dict[str, list[Link]] = {}
    for i, t in enumerate(columns):  # in column order: versions ascending
        for row in rows:
            v = row.values[i]
            if v.changed:
                was = v.changed.split("(was ", 1)[-1].rstrip(")")
                changed.setdefault(f"{t.id} ({t.implementation} {t.flavour_version})",
                                   []).append(
                    Link(text=f"{row.label}: {v.text} (was {was})", href="#" + row.anchor))
    ran = [t.id for t in columns]
    hang_links = []
    for g in hangs:
        on = "every target" if set(g.targets) >= set(ran) else ", ".join(g.targets)
        what = f"{g.scenario} under {g.start_method or 'its default'}" + (
            f" in a {g.container} container" if g.container else "")
        hang_links.append(Link(text=f"{what}: hung on {on} ({len(g.targets)} of {len(ran)})",
                               href="#" + g.anchor))
    ids = {t.id for t in columns}
    claim_links = []
    for claim in claims:
        by: dict[str, list[str]] = {}
        for tid, verdict in claim.verdicts.items():
            if tid in ids:
                by.setdefault(verdict.status, []).append(tid)
        verdicts = "; ".join(f"{status} on {', '.join(t) if len(t) < 4 else f'{len(t)} targets'}"
                             for status, t in by.items()) or "not observed"
        claim_links.append(Link(text=f"{claim.number}. {claim.text.rstrip('.')}: {verdicts}",
                                href=f"#claim-{claim.number}"))
    return Findings(defaults=defaults, changed=list(changed.items()), hangs=hang_links,
                    claims=claim_links)


@dataclass(frozen=True, kw_only=True)
class HazardRow:
    scenario: str
    start_method: str | None
    title: str
    kind: str
    cells: list[Cell | None]
    container: str | None = None
    source: str | None = None  # a scenario file's path, a checked program's


def scenario_catalog(r: RunResults) -> dict[str, dict[str, Any]]:
    """Built-in scenarios, then the run's own (scenario files, `lab check`), then any other
    scenario a cell names (a newer lab's), so no cell is left out of the matrix."""
    catalog: dict[str, dict[str, Any]] = {k: dict(v) for k, v in CATALOG.items()}
    for sid, meta in r.run.scenarios.items():
        catalog.setdefault(sid, dict(meta) if isinstance(meta, dict) else {})
    for c in r.results:
        catalog.setdefault(c.scenario, {"title": "", "kind": c.kind})
    return catalog


def hazard_rows(r: RunResults, columns: list[TargetResult]) -> list[HazardRow]:
    """The hazard matrix: behaviour scenarios only (a timing cell's "ok" says only that it
    ran; the timings section has them)."""
    rows = []
    for name, meta in scenario_catalog(r).items():
        if meta.get("kind") == "timing":
            continue
        for container in [None, *(meta.get("containers") or [])]:
            for m in METHOD_ORDER:
                cells = [r.cell(t.id, name, m, container) for t in columns]
                if any(cells):
                    rows.append(HazardRow(scenario=name, start_method=m,
                                          title=str(meta.get("title") or ""),
                                          kind=str(meta.get("kind") or "behaviour"),
                                          cells=cells, container=container,
                                          source=meta.get("source") if name not in CATALOG
                                          else None))
    return rows


def cell_note(c: Cell | None, *, short: bool = False) -> str:
    """What a behaviour cell measured, where that matters to read its badge: the trials a
    race ran and the one it hung in, or the backlog a queue reached. ``short``: for a matrix
    cell (the long form goes in its tooltip and beside its deadlock group)."""
    if c is None:
        return ""
    m = c.measurements
    planned, done = m.get(M.TRIALS_PLANNED), m.get(M.TRIALS_COMPLETED, 0)
    if isinstance(planned, int) and isinstance(done, int):
        if c.outcome == Outcome.HUNG:
            return (f"hung in trial {done + 1}/{planned}" if short
                    else f"hung in trial {done + 1} of {planned}")
        if c.outcome == Outcome.OK:
            if short:
                return f"0/{done} hung" + (f" (of {planned})" if done < planned else "")
            text = (f"0 of {done} trials hung" + (f" (of {planned} planned; time ran out)"
                                                  if done < planned else "")
                    + ": not seen, not ruled out")
            target = m.get(M.DETECTION)
            rate = target.get("rate") if isinstance(target, dict) else None
            if isinstance(rate, int | float) and 0 < rate < 1:
                seen = 1 - (1 - rate) ** done  # what these trials could see
                text += (f"; a hang in {rate:.0%} of trials would have shown {seen:.0%} of "
                         "the time")
            return text
    backlog = _nested(m, M.UNBOUNDED, "peak_backlog_items")
    if isinstance(backlog, int):
        bounded = _nested(m, M.BOUNDED, "peak_backlog_items")
        if short:
            return f"backlog {backlog}" + (f" (bounded {bounded})"
                                           if isinstance(bounded, int) else "")
        return f"peak backlog {backlog} items" + (
            f" (bounded: {bounded})" if isinstance(bounded, int) else "")
    return ""


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


def _stat(s: Any) -> tuple[float, float, float, int] | None:
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
    med = {k: _stat(ch.get(k)) for k in ("work_speedup", "startup_s", "overlap", "pace")}
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
    charts = []
    ok = [t for t in columns if t.status == TargetStatus.OK]

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
            serial = _stat(c.measurements.get(M.SERIAL))
            label = f"{t.id} · {'2 threads' if m is None else '2 processes, ' + m}"
            bars.append(Bar(label=label, value=float(s), lo=q1, hi=q3,
                            text=f"x{s:.2f} (IQR {q1:.2f}–{q3:.2f}, n={len(samples)}; serial "
                                 f"{serial[0]:.2f} s{_children(c)}{_sampling(c.measurements)}; "
                                 f"{_cpus(c)})" if serial else f"x{s:.2f}",
                            warn=_warnings(c, float(s), q1, q3), anchor=anchor(c),
                            engine=c.engine))
    if bars:
        charts.append(Chart(title="Countdown speedup over serial (2 workers)",
                            unit="× serial speed",
                            bars=bars, reference=1.0,
                            max_value=max(2.2, max(b.hi or b.value for b in bars) * 1.05),
                            note="1.0 = no gain. 2.0 = perfect use of 2 CPUs. Process times "
                                 "include start-up, as a user pays it; each bar's text splits "
                                 "a low speedup into start-up, overlap of the children's work "
                                 "and their pace against the serial run."))

    bars = []
    for t in ok:
        for m in START_METHODS:
            c = r.cell(t.id, "process_startup", m)
            st = _stat(c.measurements.get(M.STARTUP)) if c and c.outcome == Outcome.OK else None
            if not c or not st:
                continue
            med, q1, q3, n = st
            first = c.measurements.get(M.FIRST_S)
            module = _stat(c.measurements.get(M.STARTUP_MODULE))
            inside = _stat(_nested(c.measurements, M.CHILDREN, "child_startup_s"))
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
    if bars:
        charts.append(Chart(title="Process start + join latency", unit="ms", bars=bars,
                            max_value=max(b.hi or b.value for b in bars) * 1.05,
                            note="A trivial child, started by a small program run as \"python "
                                 "script.py\" (no lab code in it), target in __main__; the "
                                 "first start (a forkserver launches its server then) is shown "
                                 "apart."))

    for channel, size, unit, scale in (("queue", "small", "k items/s", 1e-3),
                                       ("pipe", "small", "k items/s", 1e-3),
                                       ("queue", "large", "MB/s", 1.0),
                                       ("pipe", "large", "MB/s", 1.0)):
        bars = []
        metric = "items_per_s" if size == "small" else "mb_per_s"
        for t in ok:
            for m in START_METHODS:
                c = r.cell(t.id, "queue_transfer", m)
                if not c or c.outcome != Outcome.OK:
                    continue
                st = _stat(_nested(c.measurements, f"{channel}_{size}", metric))
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

    for qtype in M.QUEUE_TYPES:  # one chart per queue type: the claim is about each
        bars = []
        for t in ok:
            c = next((x for m in START_METHODS if (x := r.cell(t.id, "queue_iftry", m))
                      and x.outcome == Outcome.OK), None)
            if not c:
                continue
            for state in ("empty", "nonempty"):
                for variant, short in (("if_empty", "if q.empty()"),
                                       ("try_except", "try/except Empty")):
                    st = _stat(_nested(c.measurements, qtype, f"{state}_{variant}_ns"))
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


def _nested(d: Any, *keys: str) -> Any:
    for k in keys:
        d = d.get(k) if isinstance(d, dict) else None
    return d


@dataclass(frozen=True, kw_only=True)
class Change:
    what: str
    old: str
    new: str


RUN_TO_RUN = 0.10  # two warm runs on one machine differ by up to this much (make bench --noise)


def compare_runs(new: RunResults, old: RunResults) -> list[Change]:
    """Cells whose outcome changed, probe values that changed, and timing figures, normalized
    by the work done (time per iteration, speedup, throughput, ns per call), that moved beyond
    both runs' intervals and by more than RUN_TO_RUN, saying when either run was contended."""
    changes = []
    for c in new.results:
        o = old.cell(*c.key)
        if o is None:
            continue
        label = f"{c.target} · {c.scenario} · {c.start_method or '—'}" + (
            f" · {c.container}" if c.container else "")
        if o.outcome != c.outcome:
            changes.append(Change(what=label, old=o.outcome, new=c.outcome))
            continue
        before, after = figures(o), figures(c)
        if before and after and _engine_of(new, c) != _engine_of(old, o):
            changes.append(Change(what=f"{label} · timings", old=_engine_label(old, o),
                                  new=f"{_engine_label(new, c)}: another engine, not compared"))
            continue
        busy = [f"{run} run: others used {x:.2f} CPU" for run, cell in (("old", o), ("new", c))
                if (x := contention(cell)) is not None and x > CONTENDED]
        for name, (med, lo, hi, unit) in after.items():
            if name not in before:
                continue
            omed, olo, ohi, _ = before[name]
            # Beyond both runs' intervals, and more than two warm runs of one machine differ.
            if (lo > ohi or hi < olo) and abs(med - omed) > RUN_TO_RUN * abs(omed):
                note = f" (contended: {'; '.join(busy)})" if busy else ""
                changes.append(Change(what=f"{label} · {name}",
                                      old=f"{omed:.4g} {unit} [{olo:.4g}–{ohi:.4g}]",
                                      new=f"{med:.4g} {unit} [{lo:.4g}–{hi:.4g}]{note}"))
    for t in new.targets:
        ot = old.target(t.id)
        if not ot:
            continue
        for key in ("version", "default_start_method", "start_methods", "gil_enabled",
                    "pickle_default_protocol"):
            if show(t.probe.get(key)) != show(ot.probe.get(key)) and t.probe and ot.probe:
                changes.append(Change(what=f"{t.id} · {key}", old=show(ot.probe.get(key)),
                                      new=show(t.probe.get(key))))
    return changes


def _engine_of(r: RunResults, c: Cell) -> tuple[str, str] | None:
    """Which engine a cell ran on, as a machine (its ID and address); None: not recorded
    (host interpreters, runs before schema 4)."""
    facts = r.run.engines.get(c.engine or "") if c.engine else None
    if not facts:
        return None
    return str(facts.get("id")), str(facts.get("where"))


def _engine_label(r: RunResults, c: Cell) -> str:
    found = _engine_of(r, c)
    return f"engine {c.engine} ({found[1]})" if found else "engine not recorded"


def _interval(st: Any) -> tuple[float, float, float] | None:
    """(median, low, high) of a summarized timing: its median's interval where recorded,
    else its IQR."""
    got = _stat(st)
    if not got:
        return None
    ci = st.get(M.CI)
    if isinstance(ci, list) and len(ci) == 2 and all(isinstance(x, int | float) for x in ci):
        return got[0], float(ci[0]), float(ci[1])
    return got[0], got[1], got[2]


def _sample_interval(samples: Any) -> tuple[float, float, float] | None:
    values = [float(x) for x in samples or [] if isinstance(x, int | float)]
    if not values:
        return None
    return quantile(values, 0.5), quantile(values, 0.25), quantile(values, 0.75)


def figures(c: Cell) -> dict[str, tuple[float, float, float, str]]:
    """A timing cell's figures normalized by the work it did, so runs whose calibration chose
    other work sizes compare: name -> (median, low, high, unit)."""
    out: dict[str, tuple[float, float, float, str]] = {}
    if c.outcome != Outcome.OK:
        return out
    m = c.measurements
    if c.scenario == "countdown":
        n, serial = m.get(M.WORK_N), _interval(m.get(M.SERIAL))
        if isinstance(n, int) and n > 0 and serial:
            med, lo, hi = (x / n * 1e9 for x in serial)
            out["serial time per iteration"] = (med, lo, hi, "ns")
        if speed := _sample_interval(m.get(M.SPEEDUP_SAMPLES)):
            out["speedup"] = (*speed, "x")
    elif c.scenario == "process_startup":
        for key, name in ((M.STARTUP, "start + join"),
                          (M.STARTUP_MODULE, "start + join, target in a module")):
            if got := _interval(m.get(key)):
                out[name] = (got[0] * 1000, got[1] * 1000, got[2] * 1000, "ms")
    elif c.scenario == "queue_transfer":
        for size in M.SIZES:
            for channel in M.CHANNELS:
                metric, unit = ((M.ITEMS_PER_S, "items/s") if size == "small"
                                else (M.MB_PER_S, "MB/s"))
                if got := _interval(_nested(m, M.transfer(channel, size), metric)):
                    out[f"{channel} {size} throughput"] = (*got, unit)
    elif c.scenario == "queue_iftry":
        for q in M.QUEUE_TYPES:
            for state in M.QUEUE_STATES:
                for variant in (M.IF_EMPTY, M.TRY_EXCEPT):
                    if got := _interval(_nested(m, q, M.iftry_ns(state, variant))):
                        out[f"{q} {state} {variant}"] = (*got, "ns/call")
    elif c.scenario == "threading_gil" and (
            got := _sample_interval(_nested(m, M.IO, M.SPEEDUP_SAMPLES))):
        out["threads on blocking I/O, speedup"] = (*got, "x")
    return out


def version_changes(results: RunResults) -> list[str]:
    """One line per interpreter fact that changed from one version to the next (the report's
    highlighted cells), for the terminal."""
    r = sanitize_results(results)
    columns = [t for t in column_order(r.targets) if t.status == TargetStatus.OK]
    lines = []
    for row in probe_rows(r, columns):
        for t, v in zip(columns, row.values, strict=True):
            if v.changed:
                lines.append(f"{row.label}: {v.text} on {t.id}, {v.changed}")
    return lines


def claim_lines(results: RunResults) -> list[str]:
    """Each claim in one line: its verdict on how many targets."""
    r = sanitize_results(results)
    ids = {t.id for t in r.targets}
    lines = []
    for claim in judge(r):
        by: dict[str, list[str]] = {}
        for tid, v in claim.verdicts.items():
            if tid in ids:
                by.setdefault(v.status, []).append(tid)
        text = claim.text.rstrip(".")
        text = text if len(text) <= 70 else text[:67].rstrip() + "..."
        verdicts = "; ".join(f"{status} on {len(t)} ({', '.join(t)})" if len(t) < 4
                             else f"{status} on {len(t)}" for status, t in by.items())
        lines.append(f"{claim.number}. {text}: {verdicts or 'not observed'}")
    return lines


def outcome_counts(r: RunResults) -> dict[str, int]:
    counts = {o.value: 0 for o in Outcome}
    for c in r.results:
        counts[c.outcome] = counts.get(c.outcome, 0) + 1
    return counts


def environment() -> Environment:
    env = Environment(loader=PackageLoader("lab.report", "templates"),
                      autoescape=select_autoescape(default=True, default_for_string=True),
                      trim_blocks=True, lstrip_blocks=True)
    env.filters["show"] = show
    env.globals["anchor"] = anchor
    env.globals["cell_note"] = cell_note
    env.globals["stuck"] = stuck_frame
    env.globals["PROBLEMS"] = PROBLEMS
    env.globals["CHECK_METHODS"] = CHECK_METHODS
    env.globals["M"] = M  # measurement keys: the template reads them by name, as the code does
    env.filters["code"] = inline_code
    return env


def inline_code(text: str) -> Markup:
    """Escape ``text``, then show its `backticked` spans as code (no raw Markdown in HTML)."""
    escaped = str(escape(text))
    return Markup(re.sub(r"`([^`]+)`", r"<code>\1</code>", escaped))


def render_html(results: RunResults, *, compare: RunResults | None = None,
                location: str | None = None, history: History | None = None) -> str:
    """``location``: the run folder as the user would type it (the re-render hint)."""
    r = sanitize_results(results)
    columns = column_order(r.targets)
    ok_columns = [t for t in columns if t.status == TargetStatus.OK]
    problems = [c for c in r.results if c.outcome in PROBLEMS]
    changes = change_hazards(r, ok_columns)
    rows = probe_rows(r, ok_columns)
    claims = judge(r)
    hangs = stack_groups(problems)
    charts = timing_charts(r, ok_columns)
    return environment().get_template("report.html.j2").render(
        location=location or f"reports/{r.run.id}", your_code=changes,
        your_code_summaries=change_summaries(changes, ok_columns),
        r=r, columns=columns, probe_rows=rows, ok_columns=ok_columns,
        left_out=absent_groups(columns),
        hazards=hazard_rows(r, ok_columns), charts=charts, uncharted=uncharted(r, charts),
        claims=claims, problems=problems, counts=outcome_counts(r),
        findings=findings(ok_columns, rows, claims, hangs), hang_groups=hangs,
        history=history,
        compare=compare, changes=compare_runs(r, sanitize_results(compare)) if compare else [],
    )


def render_stacks_html(results: RunResults) -> str:
    """stacks.html beside the report: each hung cell's own stacks, measurements and output,
    one click from its group in the report (which shows a group's shared stacks once)."""
    r = sanitize_results(results)
    return environment().get_template("stacks.html.j2").render(
        r=r, hang_groups=stack_groups([c for c in r.results if c.outcome in PROBLEMS]))


def render_junit(results: RunResults) -> str:
    """One test case per cell: hung and crashed are failures, failed/error are errors."""
    r = sanitize_results(results)
    suites = ET.Element("testsuites", name=f"concurrency-lab {r.run.id}")
    for t in r.targets:
        cells = [c for c in r.results if c.target == t.id]
        suite = ET.SubElement(suites, "testsuite", name=t.id, tests=str(max(1, len(cells))))
        if t.status != TargetStatus.OK:
            case = ET.SubElement(suite, "testcase", classname=t.id, name="image")
            ET.SubElement(case, "error", message=f"{t.status}: {(t.reason or '')[:200]}")
            continue
        for c in cells:
            case = ET.SubElement(suite, "testcase", classname=t.id,
                                 name=f"{c.scenario}[{c.start_method or '-'}"
                                      f"{',' + c.container if c.container else ''}]",
                                 time=f"{c.duration_s or 0:.3f}")
            body = "\n".join(x for x in (c.detail, c.stacks) if x)
            if c.outcome in (Outcome.HUNG, Outcome.CRASHED):
                ET.SubElement(case, "failure", message=f"{c.outcome}: {c.detail or ''}"[:300],
                              type=c.outcome).text = body
            elif c.outcome in (Outcome.FAILED, Outcome.ERROR):
                ET.SubElement(case, "error", message=f"{c.outcome}: {c.detail or ''}"[:300],
                              type=c.outcome).text = body
            elif c.outcome == Outcome.SKIPPED:
                ET.SubElement(case, "skipped", message=c.detail or "")
    return ET.tostring(suites, encoding="unicode", xml_declaration=True)


def render_run(run_dir: Path, *, entries: list[Entry] | None = None) -> Path:
    return render_file(run_dir, output=None, entries=entries)


def render_index(out: Path, *, entries: list[Entry] | None = None) -> Path:
    """``out/index.html``: every run under ``out`` (the newest MAX_RUNS), newest first;
    ``entries``: those runs, when the caller has read them already."""
    from lab.report.history import MAX_RUNS, differences, runs_in, versions

    entries = runs_in(out) if entries is None else entries
    rows = []
    for i, e in enumerate(entries):
        r = sanitize_results(e.results)
        rows.append({"name": e.name, "started": r.run.started_at, "complete": r.run.complete,
                     "versions": versions(r), "counts": outcome_counts(r), "first": i == 0,
                     "differs": differences(r, sanitize_results(entries[i - 1].results))
                     if i else []})
    html = environment().get_template("index.html.j2").render(
        rows=list(reversed(rows)), truncated=len(entries) >= MAX_RUNS)
    path = out / "index.html"
    path.write_text(html, encoding="utf-8")
    return path


def render_file(path: Path, *, output: Path | None = None, compare: Path | None = None,
                entries: list[Entry] | None = None) -> Path:
    results = load(path)
    old = load(compare) if compare else None
    folder = path if path.is_dir() else path.parent
    out = output or folder / "index.html"
    try:  # the hint in the page: the folder as typed from where the user stands
        location = os.path.relpath(folder.resolve())
        location = location if not location.startswith("..") else str(folder.resolve())
    except ValueError:
        location = str(folder.resolve())
    from lab.report.history import history_of

    history = history_of(folder, results, entries) if path.is_dir() or path.name == "results.json" \
        else None
    out.write_text(render_html(results, compare=old, location=location, history=history),
                   encoding="utf-8")
    (out.parent / "junit.xml").write_text(render_junit(results), encoding="utf-8")
    (out.parent / "stacks.html").write_text(render_stacks_html(results), encoding="utf-8")
    return out
