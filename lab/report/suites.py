"""A user's own code, first: `lab test`'s tests that differ by start method or target, grouped
by where and how they differ, and `lab check`'s program per run. Pure functions of a run's
results, used by the page, the terminal and junit.xml.

Every test's outcome comes from its cell's measurements (what the lab's pytest plugin wrote in
the container): untrusted, so each entry's shape is checked and anything else is skipped.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from lab.report.evidence import anchor
from lab.results import CHECK_METHODS, Cell, Outcome, RunResults, TargetResult

PASSING = ("passed",)  # what counts as a pass in every run
QUIET = ("skipped", "xfail")  # neither a pass nor a failure: counted, not listed, when uniform
FAILING = ("hung", "failed", "error", "not run")
VERBS = {"failed": "fails", "error": "errors", "hung": "hangs", "skipped": "is skipped",
         "xfail": "xfails", "xpass": "passes unexpectedly (xpass)", "not run": "did not run"}
OUTCOMES = ("passed", "failed", "error", "skipped", "xfail", "xpass", "hung")
_ADDRESS = re.compile(r"0x[0-9a-fA-F]+")


def is_user_code(scenario: str) -> bool:
    return scenario.startswith(("check:", "test:"))


def user_scenario(r: RunResults) -> str | None:
    """The run's `lab check` program or `lab test` suite, if it is such a run."""
    return next((s for s in r.run.scenarios if is_user_code(s)), None)


def outcomes_of(cell: Cell) -> dict[str, tuple[str, str]]:
    """node id -> (outcome, first error line), from a suite cell's measurements."""
    out: dict[str, tuple[str, str]] = {}
    raw = cell.measurements.get("tests")
    for entry in raw if isinstance(raw, list) else []:
        if (isinstance(entry, list) and len(entry) >= 3 and isinstance(entry[0], str)
                and entry[1] in OUTCOMES):
            out[entry[0]] = (entry[1], str(entry[2] or ""))
    return out


@dataclass(frozen=True, kw_only=True)
class Forced:
    """A run in which the code chose its own start method over the column's."""

    target: str
    column: str  # the lab's start method for the run (or default)
    asked: str | None  # the method that column stands for (default: the interpreter's)
    method: str  # what the code chose
    call: str
    where: str
    anchor: str

    @property
    def text(self) -> str:
        how = "forced" if self.call == "set_start_method" else "chose, with get_context(),"
        return (f"the suite {how} {self.method} ({self.where}); this column did not run "
                f"under {self.asked or self.column}")


@dataclass(frozen=True, kw_only=True)
class Difference:
    """Tests with the same outcomes in the same runs and the same first error line."""

    tests: list[str]
    where: str  # "fails under spawn and forkserver on every target"
    line: str
    worst: str  # its worst outcome: hung, failed, error, not run, then the others
    evidence: str  # the address of one cell that shows it
    outcomes: dict[tuple[str, str], str] = field(default_factory=dict)  # (target, col) -> o

    @property
    def failing(self) -> bool:
        return any(o in FAILING for o in self.outcomes.values())


@dataclass(frozen=True, kw_only=True)
class SuiteView:
    scenario: str
    title: str
    columns: list[tuple[str, str]]  # (target, column) of every run
    ran: list[tuple[str, str]]  # the runs that have per-test outcomes
    tests: int
    passing: int  # pass in every run: counted, not listed
    quiet: int  # skipped or xfail in every run
    differences: list[Difference]
    forced: list[Forced]
    unrun: list[tuple[str, str, str]]  # (target, column, why) of runs with no test outcomes


def _targets_phrase(targets: list[str], order: list[str]) -> str:
    if targets == order:
        return "every target"
    idx = [order.index(t) for t in targets]
    if len(targets) >= 3 and idx == list(range(idx[0], idx[0] + len(idx))):
        return f"{targets[0]}-{targets[-1]}"
    return ", ".join(targets)


def _and(words: list[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def where_phrase(cells: set[tuple[str, str]], targets: list[str], columns: list[str],
                 everywhere: set[tuple[str, str]]) -> str:
    """Where a set of runs lies on the grid, in words: "under spawn and forkserver on every
    target", "under fork on cp39-cp313", "in every run"."""
    if cells == everywhere:
        return "in every run"
    by_column: dict[str, list[str]] = {}
    for col in columns:
        ts = [t for t in targets if (t, col) in cells]
        if ts:
            by_column[col] = ts
    groups: dict[tuple[str, ...], list[str]] = {}
    for col, ts in by_column.items():
        groups.setdefault(tuple(ts), []).append(col)
    ordered = sorted(groups.items(), key=lambda g: -len(g[0]))  # "every target" first
    return " and ".join(f"under {_and(cols)} on {_targets_phrase(list(ts), targets)}"
                        for ts, cols in ordered)


def _forced(cell: Cell) -> Forced | None:
    asked = cell.measurements.get("start_method_asked")
    asked = asked if isinstance(asked, str) else None
    column = cell.start_method or "default"
    own = asked or (column if column != "default" else None)
    choices = cell.measurements.get("start_method_choices")
    for c in choices if isinstance(choices, list) else []:
        if not isinstance(c, dict) or not isinstance(c.get("method"), str):
            continue
        if c["method"] != own:
            where = str(c.get("where") or "?")
            where = where.split("/script/", 1)[-1]
            call = "set_start_method" if c.get("call") == "set_start_method" else "get_context"
            force = ", force=True" if c.get("force") else ""
            return Forced(target=cell.target, column=column, asked=own, method=c["method"],
                          call=call, anchor=anchor(cell),
                          where=f"{call}({c['method']!r}{force}) at {where}")
    return None


def suite_view(r: RunResults, scenario: str, targets: list[TargetResult]) -> SuiteView:
    order = [t.id for t in targets]
    meta = r.run.scenarios.get(scenario) or {}
    methods = meta.get("start_methods")
    columns = [m for m in CHECK_METHODS if not isinstance(methods, list) or m in methods]
    grid = [(t, m) for t in order for m in columns]
    per_test: dict[str, dict[tuple[str, str], tuple[str, str]]] = {}
    ran: list[tuple[str, str]] = []
    unrun: list[tuple[str, str, str]] = []
    forced: list[Forced] = []
    evidence: dict[tuple[str, str], str] = {}
    for t, m in grid:
        cell = r.cell(t, scenario, m)
        found = outcomes_of(cell) if cell is not None else {}
        if cell is not None and (f := _forced(cell)) is not None:
            forced.append(f)
        if not found:
            why = (f"{cell.outcome}: {(cell.detail or '').strip()[:300]}" if cell is not None
                   else "no result")
            unrun.append((t, m, why))
            continue
        ran.append((t, m))
        evidence[(t, m)] = anchor(cell) if cell is not None else ""
        for nodeid, seen in found.items():
            per_test.setdefault(nodeid, {})[(t, m)] = seen
    everywhere = set(ran)
    passing = quiet = 0
    groups: dict[tuple[str, str], Difference] = {}
    for nodeid, runs in per_test.items():
        outcomes = {k: runs.get(k, ("not run", ""))[0] for k in ran}
        kinds = set(outcomes.values())
        if kinds <= set(PASSING):
            passing += 1
            continue
        if len(kinds) == 1 and kinds <= set(QUIET):
            quiet += 1
            continue
        parts = []
        for kind in sorted(kinds - set(PASSING), key=lambda k: (k not in FAILING, k)):
            cells = {k for k, o in outcomes.items() if o == kind}
            parts.append(f"{VERBS.get(kind, kind)} "
                         f"{where_phrase(cells, order, columns, everywhere)}")
        where = "; ".join(parts)
        lines = Counter(_ADDRESS.sub("0x…", runs[k][1]) for k in ran
                        if k in runs and runs[k][0] not in PASSING and runs[k][1])
        line = lines.most_common(1)[0][0] if lines else ""
        worst = min((o for o in outcomes.values() if o not in PASSING),
                    key=lambda o: (o not in FAILING, FAILING.index(o) if o in FAILING else 0))
        first = next(k for k in ran if outcomes[k] == worst)
        page = "stacks.html" if worst == "hung" else ""
        key = (where, line)
        if key in groups:
            groups[key].tests.append(nodeid)
        else:
            groups[key] = Difference(tests=[nodeid], where=where, line=line, worst=worst,
                                     evidence=f"{page}#{evidence.get(first, '')}",
                                     outcomes=outcomes)
    diffs = sorted(groups.values(), key=lambda d: (
        FAILING.index(d.worst) if d.worst in FAILING else len(FAILING), d.tests[0]))
    return SuiteView(scenario=scenario, title=str(meta.get("title") or scenario),
                     columns=grid, ran=ran, tests=len(per_test), passing=passing, quiet=quiet,
                     differences=diffs, forced=forced, unrun=unrun)


def suite_text(view: SuiteView) -> list[str]:
    """The terminal's lines after a `lab test` run: the differing tests, grouped."""
    lines = [f"tests: {view.tests} in {len(view.ran)} of {len(view.columns)} runs; "
             f"{view.passing} pass in every run"
             + (f", {view.quiet} skipped or xfail in every run" if view.quiet else "")]
    if view.differences:
        lines.append("differ:")
    for d in view.differences:
        names = ", ".join(d.tests[:3]) + (f" and {len(d.tests) - 3} more"
                                          if len(d.tests) > 3 else "")
        lines.append(f"  {names}: {d.where}" + (f": {d.line}" if d.line else ""))
    for f in _grouped_forced(view.forced):
        lines.append(f"  forced: {f}")
    for t, m, why in view.unrun:
        lines.append(f"  {t} {m}: no test outcomes ({why.splitlines()[0][:200] if why else ''})")
    return [line[:400] for line in lines]


def _grouped_forced(forced: list[Forced]) -> list[str]:
    by: dict[tuple[str, str], list[Forced]] = {}
    for f in forced:
        by.setdefault((f.method, f.where), []).append(f)
    return [f"the suite chose {method} itself ({where}) in "
            + ", ".join(f"{f.target} {f.column}" for f in fs)
            + "; those runs did not run under their column's method"
            for (method, where), fs in by.items()]


def grouped_forced(view: SuiteView) -> list[str]:
    return _grouped_forced(view.forced)


def failing(view: SuiteView, columns: list[str] | None = None) -> bool:
    """Whether any test failed, errored or hung, or a run had no test outcomes, in the given
    columns (None: all): `lab test`'s exit code, and ``--fail-on``."""
    wanted = set(columns or CHECK_METHODS)
    if any(m in wanted for _, m, _ in view.unrun):
        return True
    return any(o in FAILING and k[1] in wanted
               for d in view.differences for k, o in d.outcomes.items())


def check_rows(r: RunResults, scenario: str, targets: list[TargetResult]) -> list[dict[str, Any]]:
    """`lab check`: per target, each run's cell (the page's first table)."""
    return [{"target": t.id, "cells": [r.cell(t.id, scenario, m) for m in CHECK_METHODS]}
            for t in targets]


def user_code(r: RunResults, targets: list[TargetResult]) -> dict[str, Any] | None:
    """The page's first section for a `lab test` or `lab check` run; None for any other."""
    scenario = user_scenario(r)
    if scenario is None:
        return None
    meta = r.run.scenarios.get(scenario) or {}
    if scenario.startswith("test:"):
        view = suite_view(r, scenario, targets)
        return {"kind": "test", "title": view.title, "source": meta.get("source"), "view": view,
                "forced": grouped_forced(view)}
    return {"kind": "check", "title": meta.get("title") or scenario,
            "source": meta.get("source"), "rows": check_rows(r, scenario, targets)}


__all__ = ["Difference", "Forced", "Outcome", "SuiteView", "check_rows", "failing",
           "grouped_forced", "is_user_code", "suite_text", "suite_view", "outcomes_of",
           "user_code", "user_scenario", "where_phrase"]
