"""The report's view model: columns in matrix order, the probe's rows with the documented
values beside them, the findings list, the hazard matrix's rows and each cell's short note.
Pure functions of a (sanitized) results file; the page renders what they return."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any

from lab.report.charts import nested
from lab.report.documented import documented
from lab.report.evidence import Claim
from lab.report.sanitize import sanitize_results
from lab.report.stacks import HangGroup
from lab.report.verdicts import judge
from lab.results import (
    METHOD_ORDER,
    START_METHODS,
    Cell,
    Outcome,
    RunResults,
    TargetResult,
    TargetStatus,
)
from lab.runner import measurements as M
from lab.runner.scenarios import CATALOG

# -- the view model ------------------------------------------------------------------------------
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
    span: int = 1  # rows its scenario heading spans (0: under the heading of a row above)


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
    # One heading per scenario, spanning its rows (start methods, container variants).
    out: list[HazardRow] = []
    for row in rows:
        first = next((i for i, o in enumerate(out) if o.scenario == row.scenario), None)
        if first is None:
            out.append(row)
        else:
            out[first] = dataclasses.replace(out[first], span=out[first].span + 1)
            out.append(dataclasses.replace(row, span=0))
    return out


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
    backlog = nested(m, M.UNBOUNDED, "peak_backlog_items")
    if isinstance(backlog, int):
        bounded = nested(m, M.BOUNDED, "peak_backlog_items")
        if short:
            return f"backlog {backlog}" + (f" (bounded {bounded})"
                                           if isinstance(bounded, int) else "")
        return f"peak backlog {backlog} items" + (
            f" (bounded: {bounded})" if isinstance(bounded, int) else "")
    return ""


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
