"""The report: one self-contained HTML page (and junit.xml) per run, rendering only.

It reads ``results.json`` (or a run folder) and nothing else, so any old run can be re-rendered.
Every template is autoescaped, and every string that came from a container is first made inert
by ``sanitize``: control characters shown as escapes, invalid text replaced, length capped with
a marker. Charts are inline SVG; nothing is fetched from the network; no JavaScript is needed.
"""

from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ET
from pathlib import Path

from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup, escape

from lab.report.causes import cause_key, cells_cause
from lab.report.changes import hazards as change_hazards
from lab.report.changes import summaries as change_summaries
from lab.report.charts import timing_charts, uncharted
from lab.report.compare import compare_runs
from lab.report.evidence import anchor
from lab.report.history import Entry, History
from lab.report.sanitize import sanitize_results
from lab.report.stacks import gil_holder, stuck_frame
from lab.report.stacks import hang_groups as stack_groups
from lab.report.suites import outcomes_of, user_code
from lab.report.summary import absent_groups
from lab.report.verdicts import judge
from lab.report.view import (
    cell_note,
    column_order,
    findings,
    hazard_rows,
    outcome_counts,
    probe_rows,
    show,
)
from lab.results import (
    CHECK_METHODS,
    PROBLEMS,
    Cell,
    Outcome,
    RunResults,
    TargetStatus,
    load,
)
from lab.runner import measurements as M


def environment() -> Environment:
    env = Environment(loader=PackageLoader("lab.report", "templates"),
                      autoescape=select_autoescape(default=True, default_for_string=True),
                      trim_blocks=True, lstrip_blocks=True)
    env.filters["show"] = show
    env.globals["anchor"] = anchor
    env.globals["cell_note"] = cell_note
    env.globals["stuck"] = stuck_frame
    env.globals["gil"] = gil_holder
    env.globals["cause"] = cells_cause
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
    hangs = stack_groups(problems, cause_key)
    charts = timing_charts(r, ok_columns)
    return environment().get_template("report.html.j2").render(
        location=location or f"reports/{r.run.id}", your_code=changes,
        user=user_code(r, ok_columns),
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
        r=r, hang_groups=stack_groups([c for c in r.results if c.outcome in PROBLEMS],
                                 cause_key))


def render_junit(results: RunResults) -> str:
    """One test case per cell (hung and crashed are failures, failed/error are errors), and
    for `lab test` one per test of each run."""
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
            if c.scenario.startswith("test:") and _junit_tests(suite, t.id, c):
                continue
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


def _junit_tests(suite: ET.Element, target: str, c: Cell) -> bool:
    """`lab test`: each test of a run as its own case, named with its target and start method
    (``test_x.py::test_y [cp311 fork]``, class ``cp311.fork``); False if the run has none."""
    found = outcomes_of(c)
    method = c.start_method or "default"
    for nodeid, (outcome, line) in found.items():
        case = ET.SubElement(suite, "testcase", classname=f"{target}.{method}",
                             name=f"{nodeid} [{target} {method}]")
        if outcome in ("failed", "hung"):
            ET.SubElement(case, "failure", message=f"{outcome}: {line}"[:300], type=outcome)
        elif outcome == "error":
            ET.SubElement(case, "error", message=line[:300], type=outcome)
        elif outcome in ("skipped", "xfail"):
            ET.SubElement(case, "skipped", message=f"{outcome}: {line}"[:300])
    suite.set("tests", str(int(suite.get("tests") or 0) + max(0, len(found) - 1)))
    return bool(found)


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
