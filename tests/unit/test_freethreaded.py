"""Free-threaded targets in verdicts and the report. No free-threaded build can be had on the
machine these tests were written on, so the run is the recorded golden one with a twin of
cp315 whose probe and cells say what a free-threaded build reports (Py_GIL_DISABLED 1, the GIL
off) and whose threads countdown ran in parallel: this checks how such observations are
judged and shown, not that such a build behaves so."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from lab.report.documented import documented
from lab.report.page import render_html
from lab.report.verdicts import CONFIRMED, REFUTED, judge
from lab.report.view import column_order, findings, probe_rows
from lab.results import RunResults, load

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "run-cp39-cp315-quick.json"


def with_twin(speedup: float = 1.9, gil: bool = False) -> RunResults:
    r = load(GOLDEN)
    base = next(t for t in r.targets if t.id == "cp315")
    twin = dataclasses.replace(base, id="cp315t", freethreaded=True, kind="archive", probe={
        **base.probe, "gil_enabled": gil, "py_gil_disabled": 1,
        "children_gil": {m: {"gil_enabled": gil, "python_gil": None}
                         for m in ("fork", "spawn", "forkserver")}})
    cells = []
    for c in r.results:
        if c.target != "cp315":
            continue
        m = c.measurements
        if c.scenario == "countdown" and c.start_method is None:
            m = dict(m, speedup=speedup, speedup_samples=[speedup] * 5)
        cells.append(dataclasses.replace(c, target="cp315t", measurements=m, gil_enabled=gil))
    # the twin first in the file: the columns still put it after cp315
    return dataclasses.replace(r, targets=[twin, *r.targets], results=[*r.results, *cells])


def test_claim2_is_judged_by_what_the_free_threaded_threads_did():
    claim2 = {c.number: c for c in judge(with_twin())}["2"]
    ft, gil = claim2.verdicts["cp315t"], claim2.verdicts["cp315"]
    assert ft.status == REFUTED, ft.summary
    assert "2 threads x1.90" in ft.summary
    assert "GIL enabled: False (a free-threaded build)" in ft.summary
    assert gil.status == CONFIRMED and "free-threaded" not in gil.summary
    # The verdict follows the measurement, not the build: threads that did not overlap on a
    # free-threaded build (an extension turned the GIL back on) confirm the claim there.
    serial = {c.number: c for c in judge(with_twin(speedup=1.0, gil=True))}["2"]
    assert serial.verdicts["cp315t"].status == CONFIRMED
    assert "GIL enabled: True (a free-threaded build)" in serial.verdicts["cp315t"].summary


def test_3_15t_is_its_own_column_beside_3_15_and_its_own_line_of_versions():
    r = with_twin()
    cols = [t for t in column_order(r.targets) if t.status == "ok"]
    assert [t.id for t in cols] == ["cp39", "cp315", "cp315t"]
    rows = {row.label: row for row in probe_rows(r, cols)}
    gil = rows["GIL enabled"].values
    assert [v.text for v in gil] == ["—", "yes", "no"]
    # documented per build: the default build's GIL is on, the free-threaded build's off
    assert gil[1].documented == "yes" and gil[2].documented == "no"
    assert not gil[2].mismatch
    # 3.15t is not "a change in 3.15": it starts its own line (3.13t, 3.14t, ...)
    assert gil[2].changed is None
    assert rows["Free-threaded build"].values[2].text == "1"
    assert rows["GIL in a child"].values[2].text == "off in every child"
    found = findings(cols, list(rows.values()), [], [])
    assert not any("cp315t" in heading for heading, _ in found.changed)
    html = render_html(r)
    assert "cpython 3.15t · linux/amd64" in html


def test_a_free_threaded_gil_that_is_on_is_flagged_against_the_docs():
    r = with_twin(gil=True)
    cols = [t for t in column_order(r.targets) if t.status == "ok"]
    gil = {row.label: row for row in probe_rows(r, cols)}["GIL enabled"].values
    assert gil[2].text == "yes" and gil[2].documented == "no" and gil[2].mismatch


def test_documented_facts_are_per_build():
    assert documented("gil_enabled", implementation="cpython", version="3.14").value is True
    assert documented("gil_enabled", implementation="cpython", version="3.14",
                      freethreaded=True).value is False
    assert documented("py_gil_disabled", implementation="cpython", version="3.13",
                      freethreaded=True).value == 1
    assert documented("py_gil_disabled", implementation="cpython", version="3.13") is None
    assert documented("default_start_method", implementation="cpython", version="3.14",
                      freethreaded=True).value == "forkserver"
