"""What changes for your code: derived from real cells (golden runs recorded on the six default
targets), never from the lab's expectations."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from lab.report.changes import BREAKS, WORKS, hazards, summaries
from lab.report.page import render_html
from lab.report.view import column_order
from lab.results import from_dict, load

GOLDEN = Path(__file__).resolve().parents[1] / "golden"


def six():
    r = load(GOLDEN / "run-your-code-six-targets.json")
    return r, column_order(r.targets)


def by_id(found):
    return {h.id: h for h in found}


def test_default_column_follows_each_targets_observed_default():
    r, cols = six()
    found = by_id(hazards(r, cols))
    for t in cols:
        default = t.probe["default_start_method"]
        for h in found.values():
            e = h.effect(t.id, "default")
            assert e is not None and e.method == default
            assert e == dataclasses.replace(h.effect(t.id, default), method=default)
    lam = found["lambda"]
    assert lam.effect("cp314", "default").status == BREAKS
    assert lam.effect("cp311", "default").status == WORKS
    assert "pickle" in lam.effect("cp314", "default").text.lower()
    assert found["guard"].effect("cp315", "spawn").status == BREAKS
    assert found["guard"].effect("cp315", "fork").status == WORKS
    assert found["state"].effect("cp39", "forkserver").status == BREAKS
    assert found["lock"].effect("cp39", "fork").status == BREAKS
    assert found["lock"].effect("cp39", "spawn").status == WORKS


def test_a_changed_observation_changes_the_verdict():
    """Flip one cell's measurements: the derived effect follows the data, not a table."""
    r, cols = six()
    cells = []
    for c in r.results:
        if (c.target, c.scenario, c.start_method) == ("cp314", "pickle_target", "forkserver"):
            m = {k: {"started": True, "child_ran": True, "error": None}
                 for k in ("module_function", "lambda", "closure", "nested_function")}
            c = dataclasses.replace(c, measurements=m)
        cells.append(c)
    flipped = dataclasses.replace(r, results=cells)
    lam = by_id(hazards(flipped, cols))["lambda"]
    assert lam.effect("cp314", "default").status == WORKS
    assert lam.effect("cp315", "default").status == BREAKS


def test_cpu_limits_compare_worker_counts_with_what_the_container_allows():
    r, cols = six()
    found = by_id(hazards(r, cols))
    for t in cols:
        quota = found["cpus"].effect(t.id, "spawn")
        assert quota.status == BREAKS and "1-CPU quota" in quota.text  # cpu_count() is 2 here
        cpuset = found["cpuset"].effect(t.id, "spawn")
        cell = r.cell(t.id, "cpu_limits", "spawn", "cpuset=0")
        assert cell is not None
        workers = cell.measurements["executor_max_workers"]
        assert cpuset.status == (BREAKS if workers > 1 else WORKS)


def test_summaries_name_what_breaks_under_the_default():
    r, cols = six()
    found = hazards(r, cols)
    sums = {s.target: s for s in summaries(found, cols)}
    assert sums["cp314"].default == "forkserver"
    titles = [title for title, _ in sums["cp314"].breaks]
    assert any("lambda" in t for t in titles) and any("guard" in t for t in titles)
    assert not any("lambda" in t for t, _ in sums["cp311"].breaks)


def test_check_programs_get_a_row_and_the_report_links_the_evidence():
    r = load(GOLDEN / "check-lambda-cp314.json")
    cols = column_order(r.targets)
    (row,) = hazards(r, cols)
    assert row.title.startswith("Your program: python lambda_target.py")
    assert row.effect("cp314", "default").status == BREAKS
    assert row.effect("cp314", "default").method == "forkserver"
    assert row.effect("cp314", "fork").status == WORKS
    html = render_html(r)
    section = html[html.index('id="your-code"'):html.index('id="defaults"')]
    assert "cp314</b>: the default is <code>forkserver</code>" in section
    assert f'href="#{row.effect("cp314", "spawn").evidence}"' in section
    assert f'id="{row.effect("cp314", "spawn").evidence}"' in html


def test_user_provided_titles_are_escaped():
    data = json.loads((GOLDEN / "check-lambda-cp314.json").read_text())
    sid = next(iter(data["run"]["scenarios"]))
    data["run"]["scenarios"][sid]["title"] = "<script>alert(1)</script>"
    html = render_html(from_dict(data))
    assert "<script>alert(1)" not in html and "&lt;script&gt;alert(1)" in html


def test_old_runs_show_only_what_they_observed():
    old = load(GOLDEN / "run-cp39-cp315-quick.json")  # before these scenarios existed
    assert [h.id for h in hazards(old, column_order(old.targets))] == ["lock"]
    assert 'id="your-code"' in render_html(old)
