from __future__ import annotations

import dataclasses
import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from lab.cli import main
from lab.report.compare import compare_runs
from lab.report.page import render_html, render_junit, render_stacks_html
from lab.report.sanitize import inert
from lab.report.view import column_order, probe_rows
from lab.results import from_dict, load, to_dict

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "run-cp39-cp315-quick.json"

HOSTILE = [
    "<script>alert('x')</script>",
    '" onmouseover="alert(1)" x="',
    "{{ 7*7 }}{% raw %}",
    "\x1b[31mred\x1b[0m",
    "nul\x00byte",
    "bad utf-8 \udcff\udcfe",
]
HUGE = "A" * 10_000_000  # one 10 MB line


def hostile_results(tmp_path: Path) -> Path:
    data = json.loads(GOLDEN.read_text())
    blob = "|".join(HOSTILE)
    data["targets"][0]["probe"]["libc"] = blob
    data["targets"][0]["probe"]["default_start_method"] = HOSTILE[0]
    data["targets"][2]["reason"] = blob
    for cell in data["results"][:40]:
        cell["detail"] = blob
        cell["stacks"] = blob
        cell["output"] = blob
        cell["outcome"] = "hung"
        cell["measurements"] = {HOSTILE[0]: blob, "nested": {"x": [HOSTILE[1], HOSTILE[3]]}}
        cell["warnings"] = [{"category": HOSTILE[2], "message": blob}]
    data["results"][0]["output"] = HUGE
    data["results"][1]["stacks"] = HUGE
    data["results"][2]["measurements"] = {"line": HUGE}
    data["targets"][1]["probe"]["libc"] = HUGE
    path = tmp_path / "results.json"
    # ensure_ascii keeps the lone surrogates as \udcff escapes, as a container could send them
    path.write_text(json.dumps(data))
    return path


def test_hostile_strings_are_inert_and_truncated(tmp_path: Path, capsys):
    src = hostile_results(tmp_path)
    out = tmp_path / "report.html"
    assert main(["report", str(src), "-o", str(out)]) == 0
    raw = out.read_bytes()
    html = raw.decode("utf-8")  # valid UTF-8 despite the lone surrogates
    assert "<script" not in html.lower()
    assert "&lt;script&gt;alert(" in html
    assert 'onmouseover="alert(1)"' not in html
    assert "{{ 7*7 }}" in html  # shown literally, never evaluated
    assert "\x1b" not in html and "\\x1b[31m" in html
    assert "\x00" not in html and "nul\\x00byte" in html
    assert "\ufffd" in html
    assert "more characters cut" in html
    assert len(raw) < 2 * 1024 * 1024  # four 10 MB lines, each cut
    junit = (tmp_path / "junit.xml").read_text(encoding="utf-8")
    ET.fromstring(junit.encode())  # still well-formed XML
    assert "\x00" not in junit


def test_inert_caps_and_marks():
    assert inert("abc") == "abc"
    assert inert("x" * 10, limit=4) == "xxxx\n[... lab: 6 more characters cut ...]"
    assert inert("\x07") == "\\x07"
    assert inert("tab\tnewline\n") == "tab\tnewline\n"


def test_report_is_self_contained():
    html = render_html(load(GOLDEN))
    assert "<script" not in html and "<link" not in html and "<img" not in html
    assert 'src="' not in html and "url(" not in html and "@import" not in html
    assert "<svg" in html and "<style>" in html


def test_sections_and_stacks_one_click_from_the_matrix():
    r = load(GOLDEN)
    html = render_html(r)
    for section in ("summary", "defaults", "hazards", "deadlocks", "timings", "claims",
                    "environment"):
        assert f'id="{section}"' in html
    hung = next(c for c in r.results if c.outcome == "hung")
    anchor = f"cell-{hung.target}-{hung.scenario}-{hung.start_method}"
    # The HUNG badge leads to the stacks page, where its group's stacks are shown ...
    assert f'href="stacks.html#{anchor}"' in html
    page = render_stacks_html(r)
    block = page.split(f'id="{anchor}"', 1)[1].split('class="cell"', 1)[0]
    shared = block.split('<pre class="shared">', 1)[1].split("</pre>", 1)[0]
    assert "child process" in shared
    assert f"{hung.target}: its own stacks" in block  # ... and its own, one click away
    # In the report its group names the frame the child waits in, and links to those stacks.
    group = html[html.index('id="hang-fork_held_lock-fork"'):]
    assert "Stuck at <code>fork_held_lock.py:" in group[:2000]
    assert 'href="stacks.html#hang-fork_held_lock-fork-1"' in group[:3000]


def test_probe_rows_mark_changes_and_documented_values():
    r = load(GOLDEN)
    cols = [t for t in column_order(r.targets) if t.status == "ok"]
    assert [t.id for t in cols] == ["cp39", "cp315"]
    rows = {row.label: row for row in probe_rows(r, cols)}
    default = rows["Default start method"].values
    assert default[0].text == "fork" and default[1].text == "forkserver"
    assert default[1].changed == "changed in 3.15 (was fork in 3.9)"
    assert default[0].documented == "fork" and default[1].documented == "forkserver"
    assert not default[0].mismatch and not default[1].mismatch
    raises = rows["-W error raises it"].values
    assert raises[1].text == "yes" and raises[1].documented == "yes"


def test_documented_mismatch_is_flagged():
    data = json.loads(GOLDEN.read_text())
    data["targets"][1]["probe"]["default_start_method"] = "spawn"  # cp315 says spawn
    r = from_dict(data)
    rows = {row.label: row for row in probe_rows(r, [t for t in r.targets if t.status == "ok"])}
    v = rows["Default start method"].values[1]
    assert v.mismatch and v.documented == "forkserver"
    assert "≠ observed" in render_html(r)


def test_partial_run_is_marked():
    data = json.loads(GOLDEN.read_text())
    data["run"]["complete"] = False
    data["run"]["interrupted"] = True
    html = render_html(from_dict(data))
    assert "Partial run" in html and "interrupted" in html


def test_junit_has_one_case_per_cell_and_hangs_fail():
    r = load(GOLDEN)
    root = ET.fromstring(render_junit(r))
    cases = root.findall(".//testcase")
    ok_targets = [t for t in r.targets if t.status == "ok"]
    assert len(cases) == len(r.results) + (len(r.targets) - len(ok_targets))
    hung = sum(c.outcome == "hung" for c in r.results)
    assert len(root.findall(".//failure[@type='hung']")) == hung > 0
    assert len(root.findall(".//error")) == len(r.targets) - len(ok_targets)  # unavailable


def test_compare_shows_changed_outcomes(tmp_path: Path):
    old = load(GOLDEN)
    cells = [dataclasses.replace(c, outcome="ok") if c.scenario == "fork_held_lock" else c
             for c in old.results]
    new = dataclasses.replace(old, results=cells)
    changes = compare_runs(new, old)
    assert any("fork_held_lock · fork" in ch.what and ch.old == "hung" and ch.new == "ok"
               for ch in changes)
    (tmp_path / "new.json").write_text(json.dumps(to_dict(new)))
    out = tmp_path / "cmp.html"
    assert main(["report", str(tmp_path / "new.json"), "--compare", str(GOLDEN),
                 "-o", str(out)]) == 0
    assert "Changes since run" in out.read_text()


def test_compare_normalizes_by_work_and_calls_only_changes_beyond_both_intervals():
    """Issue 12's case: cp315's serial countdown went from 0.42 s to 0.15 s between two runs
    because one calibration, under load, chose a smaller n. Per iteration nothing changed."""
    old = load(GOLDEN)

    def countdown(run, n, serial, others=0.0):
        cells = []
        for c in run.results:
            if c.target == "cp39" and c.scenario == "countdown" and c.start_method is None:
                c = dataclasses.replace(c, cpu={"others_cpus": others}, measurements=dict(
                    c.measurements, n=n, speedup_samples=[0.98, 1.0, 1.02],
                    serial={"median": serial, "q1": serial * 0.99, "q3": serial * 1.01,
                            "ci": [serial * 0.98, serial * 1.02]}))
            cells.append(c)
        return dataclasses.replace(run, results=cells)

    a = countdown(old, 30_000_000, 0.42)
    b = countdown(old, 10_714_286, 0.15)  # the same 14 ns per iteration
    assert not [ch for ch in compare_runs(b, a) if "countdown" in ch.what]
    c = countdown(old, 10_714_286, 0.30, others=0.6)  # twice as slow per iteration
    [ch] = [ch for ch in compare_runs(c, a) if "countdown" in ch.what]
    assert "serial time per iteration" in ch.what and ch.old.startswith("14 ns")
    assert ch.new.startswith("28 ns") and "contended: new run: others used 0.60 CPU" in ch.new


def test_compare_does_not_compare_timings_taken_on_different_engines():
    old = load(GOLDEN)

    def on(run, name, where):
        cells = [dataclasses.replace(c, engine=name) for c in run.results]
        info = dataclasses.replace(run.run, engines={name: {"id": "X", "where": where}})
        return dataclasses.replace(run, run=info, results=cells)

    a = on(old, "laptop", "unix:///var/run/docker.sock")
    b = on(old, "arm", "ssh://lab@arm-box")
    moved = [ch for ch in compare_runs(b, a) if ch.what.endswith("· timings")]
    assert moved and all("another engine, not compared" in ch.new for ch in moved)
    assert all("ssh://lab@arm-box" in ch.new and "docker.sock" in ch.old for ch in moved)
    assert not [ch for ch in compare_runs(on(old, "laptop", "unix:///var/run/docker.sock"), a)
                if "timings" in ch.what]  # the same engine: compared as before


def test_compare_against_itself_is_quiet():
    r = load(GOLDEN)
    assert compare_runs(r, r) == []


@pytest.mark.parametrize("key", ["targets", "results"])
def test_empty_run_renders(key):
    data = json.loads(GOLDEN.read_text())
    data[key] = []
    assert "<html" in render_html(from_dict(data))


def test_contended_timing_is_flagged_in_the_chart():
    r = load(GOLDEN)
    cells = [dataclasses.replace(c, cpu={"others_cpus": 0.5, "wall_s": 1.0})
             if c.scenario == "countdown" else c for c in r.results]
    html = render_html(dataclasses.replace(r, results=cells))
    assert "other processes used 0.50 CPU meanwhile: contended" in html


def test_how_each_base_was_made_is_shown_and_escaped():
    r = load(GOLDEN)
    base = {"suite": "sid", "release_date": "Fri, 30 Oct 2026 08:08:01 UTC", "stale": True,
            "valid_until": "Fri, 06 Nov 2026 08:08:01 UTC",
            "signed_by": "B8B80B5B623EAB6AD8775C45B7C5D7D6350947F8",
            "packages": {"python3.14": "3.14.10-1", "evil": "<script>x</script>"},
            "mirror": "http://deb.debian.org/debian", "built": True}
    first = dataclasses.replace(r.targets[0], base=base)
    second = dataclasses.replace(r.targets[1], base="not an object")  # type: ignore[arg-type]
    html = render_html(dataclasses.replace(r, targets=[first, second, *r.targets[2:]]))
    assert "sid, Release of Fri, 30 Oct 2026 08:08:01 UTC" in html
    assert "Valid-Until Fri, 06 Nov 2026 08:08:01 UTC had passed" in html
    assert "signed by B8B80B5B623EAB6AD8775C45B7C5D7D6350947F8" in html
    assert "python3.14 3.14.10-1" in html and "built in this run" in html
    assert "<script>x" not in html and "&lt;script&gt;x" in html


def test_no_raw_markdown_and_a_rerender_hint_that_works_from_here(tmp_path, monkeypatch):
    import re

    from lab.report.page import render_file

    run = tmp_path / "reports" / "20991231-000000-0001"
    run.mkdir(parents=True)
    full = Path(__file__).resolve().parents[1] / "golden" / "run-default-six-targets-v3.json"
    (run / "results.json").write_text(full.read_text())
    monkeypatch.chdir(tmp_path)
    html = render_file(run).read_text()
    prose = re.sub(r"<pre>.*?</pre>", "", html, flags=re.S)
    assert "`" not in prose
    assert "<code>lab report reports/20991231-000000-0001</code>" in html


def test_timings_say_how_they_were_protected_from_a_busy_machine():
    from lab.report.charts import _retries
    from lab.results import Cell

    c = Cell(target="cp311", scenario="countdown", start_method="fork", outcome="ok",
             kind="timing", quiet={"waited_s": 4.2, "quiet": True},
             attempts=[{"attempt": 0, "kept": False, "others_cpus": 0.81},
                       {"attempt": 1, "kept": True, "others_cpus": 0.04}])
    text = _retries(c)
    assert "waited 4 s for a quiet machine" in text
    assert "kept the cleanest of 2 attempts; 1 discarded, others used 0.81 CPU" in text


def test_timings_of_different_engines_are_shown_apart_under_their_engine():
    from lab.report.charts import timing_charts

    run = load(GOLDEN)
    ids = [t.id for t in run.targets]
    placed = {ids[0]: "laptop", ids[1]: "arm"}
    cells = [dataclasses.replace(c, engine=placed.get(c.target, "laptop")) for c in run.results]
    info = dataclasses.replace(run.run, engines={
        "laptop": {"id": "A", "where": "unix:///var/run/docker.sock", "cpus": 2, "arch": "amd64",
                   "kernel": "6.1"},
        "arm": {"id": "B", "where": "ssh://lab@arm-box", "cpus": 8, "arch": "arm64",
                "kernel": "6.6"}})
    two = dataclasses.replace(run, run=info, results=cells)
    charts = timing_charts(two, column_order(two.targets))
    assert charts
    for ch in charts:
        headings = [h for h, _ in ch.groups]
        assert headings == ["engine laptop · unix:///var/run/docker.sock · 2 CPUs · amd64 · "
                            "kernel 6.1", "engine arm · ssh://lab@arm-box · 8 CPUs · arm64 · "
                            "kernel 6.6"], ch.title
        laptop, arm = (bars for _, bars in ch.groups)
        assert all(b.label.startswith(ids[0]) for b in laptop)
        assert all(b.label.startswith(ids[1]) for b in arm)
    html = render_html(two)
    assert html.count('class="engine-group"') == 2 * len(charts)
    # One engine: no headings, the bars as they were.
    assert all(ch.groups == [("", ch.bars)] for ch in timing_charts(run, column_order(run.targets)))


def test_findings_come_first_and_each_links_to_its_evidence():
    full = load(Path(__file__).resolve().parents[1] / "golden" / "run-default-six-targets-v3.json")
    html = render_html(full)
    findings = html.index('id="findings"')
    assert findings < html.index('id="your-code"') and findings < html.index('id="defaults"')
    block = html[findings:html.index("</div>", findings)]
    # The default start method of every target, as its probe observed it.
    for t in full.targets:
        probe = t.probe.get("default_start_method")
        assert f"<b>{t.id}</b> {probe}</span>" in block
    assert "Changed on <b>cp314 (cpython 3.14)</b>" in block
    assert "Default start method: forkserver (was fork in 3.13)" in block
    # Every link lands on an element of the page.
    hrefs = re.findall(r'href="#([^"]+)"', block)
    assert len(hrefs) > 10
    for h in hrefs:
        assert f'id="{h}"' in html, h


def test_findings_show_what_was_observed_not_what_is_documented():
    full = load(Path(__file__).resolve().parents[1] / "golden" / "run-default-six-targets-v3.json")
    odd = [dataclasses.replace(t, probe={**t.probe, "default_start_method": "spawn"})
           if t.id == "cp314" else t for t in full.targets]
    html = render_html(dataclasses.replace(full, targets=odd))
    block = html[html.index('id="findings"'):]
    assert "<b>cp314</b> spawn</span>" in block
    assert "Default start method: spawn (was fork in 3.13)" in block
    assert "Default start method: forkserver (was spawn in 3.14)" in block  # cp315 after it


def test_the_hazard_matrix_holds_behaviour_cells_and_says_what_they_measured():
    from lab.report.view import hazard_rows

    full = load(Path(__file__).resolve().parents[1] / "golden" / "run-default-six-targets-v3.json")
    cols = column_order(full.targets)
    rows = hazard_rows(full, cols)
    assert rows and all(h.kind == "behaviour" for h in rows)
    assert not {"countdown", "process_startup", "queue_transfer", "queue_iftry"} & {
        h.scenario for h in rows}
    html = render_html(full)
    matrix = html[html.index('id="hazards"'):html.index('id="deadlocks"')]
    # cp311's fork_held_io: hung in its 5th trial under fork; spawn ran out of time at 22.
    assert "hung in trial 5 of 40" in matrix
    assert "0 of 22 trials hung (of 40 planned; time ran out): not seen, not ruled out" in matrix
    assert "peak backlog 391 items (bounded: " in matrix
    assert "timing</span>" not in matrix


def test_colours_say_finding_not_failure_and_charts_have_axes_with_units():
    full = load(Path(__file__).resolve().parents[1] / "golden" / "run-default-six-targets-v3.json")
    html = render_html(full)
    colours = dict(re.findall(r"--([a-z]+):(#[0-9a-f]{6})", html))
    # HUNG is a finding: its own colour, away from crashed, failed, error and "bad" red.
    assert colours["hung"] not in {colours[k] for k in ("crashed", "failed", "error", "bad")}
    assert ".b.hung { background: var(--hung); }" in html
    # Verdicts: confirmed and refuted look alike (the word says which), neither good nor bad.
    rule = re.search(r"\.v\.confirmed, \.v\.refuted \{([^}]*)\}", html)
    assert rule and "--ok" not in rule.group(1) and "--bad" not in rule.group(1)
    assert not re.search(r"\.v\.(confirmed|refuted) \{ color: var\(--(ok|bad|hung)\)", html)
    # Every chart ends in an axis that names its unit; series labels are words.
    timings = html[html.index('id="timings"'):html.index('id="claims"')]
    charts = timings.count('<table class="chart">')
    assert charts >= 5 and timings.count('<tr class="axis">') == charts
    for unit in ("× serial speed", "ms", "k items/s", "MB/s", "ns per call"):  # all, folded too
        assert f'<td class="text">{unit}</td></tr>' in timings, unit
    assert "queue.Queue: if q.empty() vs try/except Empty, per call" in timings
    assert "cp311 · not empty: try/except Empty" in timings
    assert not re.search(r"· (qu|mu) (empty|nonempty)", timings)


def test_a_sampled_race_that_did_not_hang_says_what_its_trials_could_see():
    from lab.report.view import cell_note
    from lab.results import Cell

    ok = Cell(target="cp311", scenario="fork_held_io", start_method="fork", outcome="ok",
              measurements={"trials_planned": 29, "trials_completed": 29,
                            "detection": {"probability": 0.95, "rate": 0.1}})
    assert cell_note(ok) == ("0 of 29 trials hung: not seen, not ruled out; a hang in 10% of "
                             "trials would have shown 95% of the time")
    cut = dataclasses.replace(ok, measurements={**ok.measurements, "trials_completed": 7})
    assert "(of 29 planned; time ran out)" in cell_note(cut) and "shown 52% of" in cell_note(cut)
    hung = dataclasses.replace(ok, outcome="hung", measurements={**ok.measurements,
                                                                 "trials_completed": 2})
    assert cell_note(hung) == "hung in trial 3 of 29"


def test_the_optional_targets_of_an_offline_default_run_are_two_lines():
    """make lab here (v5 golden): no registry and no GitHub, so the two -slim images and the
    five python-build-standalone targets are each listed once per reason, with links."""
    r = load(Path(__file__).resolve().parents[1] / "golden" / "run-default-v5-optional-absent.json")
    html = render_html(r)
    block = html[html.index('id="not-available"'):html.index("</div>", html.index(
        'id="not-available"'))]
    assert block.count("<li>") == 2
    assert "(registry): no registry answered" in block
    assert ">cp315t</b> (python-build-standalone): cannot download" in block
    for tid in ("cp310-slim", "cp312-slim", "cp310", "cp312", "cp313t", "cp314t", "cp315t"):
        assert f'id="target-{tid}"' in block
    assert "Partial run" not in html
