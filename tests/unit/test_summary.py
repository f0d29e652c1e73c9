"""The terminal's plan and findings, from real golden runs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from lab.matrix import load_matrix, select_targets
from lab.report.summary import findings_text, hang_groups, named_hangs
from lab.report.view import claim_lines, version_changes
from lab.results import load
from lab.run.preview import duration, estimate, history, plan_text
from lab.run.scheduler import plan_runs
from lab.runner.scenarios import CATALOG

GOLDEN = Path(__file__).resolve().parents[1] / "golden"
FULL = GOLDEN / "run-default-six-targets-v3.json"


def test_hang_groups_are_the_hung_cells_grouped_by_scenario_and_method():
    r = load(FULL)
    groups = dict(hang_groups(r))
    hung = [c for c in r.results if c.outcome == "hung"]
    assert sum(len(v) for v in groups.values()) == len(hung) == 29
    assert groups["fork_held_lock · fork"] == ["cp39", "cp311", "cp313", "cp314", "cp315",
                                              "pp311"]


def test_findings_name_counts_hangs_changes_claims_and_the_report_url(tmp_path):
    r = load(FULL)
    text = findings_text(r, tmp_path / "index.html", changes=version_changes(r),
                         claims=claim_lines(r))
    assert text.startswith("findings: 288 cells: 259 ok, 29 hung")
    assert "  fork_held_lock · fork: 6/6 targets (cp39, cp311, cp313, cp314, cp315, pp311)" in text
    assert "  queue_join_before_drain · fork: 6/6 targets (cp39, cp311, cp313, cp314, cp315, " \
           "pp311)\n    join before drain on cp39, cp311, cp313, cp314, cp315, pp311: _feed at " \
           "queues.py:…\n" in text  # line 251 on cp39, 250 on cp311, 268, 211 on pp311
    assert "Default start method: forkserver on cp314, changed in 3.14 (was fork in 3.13)" in text
    assert sum(line.startswith("  ") and line[2].isdigit() and ". " in line
               for line in text.splitlines()) == 9
    assert text.splitlines()[-1] == f"report: {(tmp_path / 'index.html').as_uri()}"


def test_estimate_from_history_follows_recorded_durations(tmp_path):
    targets = select_targets(load_matrix())
    plan = plan_runs(targets)
    run = tmp_path / "20990101-000000-0001"
    run.mkdir()
    shutil.copy(FULL, run / "results.json")
    past_run, past = history(tmp_path)
    assert past_run == run.name and len(past) == 288
    # The optional targets (no image here yet) are not counted: the six that ran are.
    est = estimate(plan, CATALOG, 3, past, past_run,
                   leave_out={t.id for t in targets if t.optional})
    recorded = json.loads(FULL.read_text())["run"]["duration_s"]
    assert "run 20990101-000000-0001" in est.source
    assert "not counting 7 optional target(s) not built yet" in est.source
    assert 0.6 * recorded < est.seconds < 1.4 * recorded, (est.seconds, recorded)
    assert estimate(plan, CATALOG, 3, past, past_run).seconds > 1.4 * recorded
    # A quick run does not learn from a full one.
    assert history(tmp_path, quick=True) == (None, {})


def test_estimate_without_history_uses_declared_costs_and_counts_builds():
    plan = plan_runs(select_targets(load_matrix()))
    bare = estimate(plan, CATALOG, 3, {}, None)
    cold = estimate(plan, CATALOG, 3, {}, None, (4, 6))
    assert "declared costs" in bare.source
    assert 120 < bare.seconds < 600 and cold.seconds > bare.seconds + 40


def test_plan_text_says_what_will_happen():
    text = plan_text(targets=["cp311", "cp314"], scenarios=["probe"], cells=2, containers=2,
                     to_build=["base bookworm/amd64", "cp311 layer"],
                     est=estimate(plan_runs(select_targets(load_matrix(), ids=["cp311"]),
                                            scenarios=["probe"]), CATALOG, 3, {}, None))
    first = text.splitlines()[0]
    assert first == "plan: 2 target(s) (cp311, cp314); 1 scenario(s); 2 cells in 2 container(s)"
    assert "to build: base bookworm/amd64, cp311 layer" in text and "estimate: about" in text
    assert duration(65) == "65 s" and duration(261) == "4 min 21 s"


def test_plan_text_counts_optional_targets_apart():
    text = plan_text(targets=["cp311", "cp312-slim", "cp313t"], scenarios=["probe"], cells=3,
                     containers=3, to_build=[], optional={"cp312-slim", "cp313t"},
                     optional_cells=2,
                     est=estimate(plan_runs(select_targets(load_matrix(), ids=["cp311"]),
                                            scenarios=["probe"]), CATALOG, 3, {}, None))
    assert text.splitlines()[0] == (
        "plan: 1 target(s) (cp311) + 2 optional where they can be had (cp312-slim, cp313t); "
        "1 scenario(s); 1 cells (+2 on optional targets) in 3 container(s)")


def test_optional_targets_left_out_for_one_reason_are_one_line():
    import dataclasses

    from lab.report.summary import absent_groups, findings_text
    from lab.results import RunInfo, RunResults, TargetResult

    def gone(tid, kind, reason, version="3.13"):
        return TargetResult(id=tid, implementation="cpython", version=version,
                            platform="linux/amd64", python="/x", kind=kind, status="unavailable",
                            reason=reason, optional=True, freethreaded=tid.endswith("t"))

    net = "cannot download the archive from github.com: [Errno -2] Name or service not known"
    targets = [gone("cp313t", "archive", f"{net} (cpython-3.13.1+2026-x-freethreaded.tar.gz)."),
               gone("cp314t", "archive", f"{net}. No local archive matched: none named "
                    "cpython-3.14.*-freethreaded*.tar.gz in /a. Offline? Set it. "
                    "(It is cpython-3.14.1+2026-x.tar.gz.)", "3.14"),
               gone("cp315t", "archive", f"{net}. No local archive matched: none named "
                    "cpython-3.15.*-freethreaded*.tar.gz in /a. Offline? Set it. "
                    "(It is cpython-3.15.0a1+2026-x.tar.gz.)", "3.15"),
               gone("cp312-slim", "registry", "cannot pull python:3.12-slim: no registry "
                    "answered (dial tcp: no such host)", "3.12"),
               dataclasses.replace(gone("cp311", "debian", "mirror down"), optional=False)]
    groups = absent_groups(targets)
    assert [[t.id for t in g.targets] for g in groups] == [["cp313t"], ["cp314t", "cp315t"],
                                                           ["cp312-slim"]]
    assert groups[0].reason == f"{net}." and groups[0].source == "python-build-standalone"
    assert groups[0].own == {"cp313t": "cpython 3.13t · cpython-3.13.1+2026-x-freethreaded.tar.gz"}
    # what each was looked for locally is its own (in its tooltip); the rest is shared
    assert groups[1].reason == f"{net}. Offline? Set it."
    assert groups[1].own["cp314t"] == ("cpython 3.14t · cpython-3.14.1+2026-x.tar.gz · No local "
                                       "archive matched: none named cpython-3.14.*-freethreaded"
                                       "*.tar.gz in /a")
    assert groups[2].reason.startswith("no registry answered")
    text = findings_text(RunResults(run=RunInfo(id="r", started_at="t", complete=True),
                                    targets=targets, results=[]), Path("/r/index.html"))
    assert f"  cp313t: not available here (optional, python-build-standalone): {net}." in text
    assert "  cp314t, cp315t: not available here (optional, python-build-standalone): " in text
    assert "  cp312-slim: not available here (optional, registry): no registry" in text
    assert "  cp311: unavailable: mirror down" in text
    # what to do, at the end of a long reason, is not cut off; a longer one is cut at a word
    assert "Offline? Set it." in text
    long = dataclasses.replace(targets[-1], reason="mirror down " + "word " * 100)
    text = findings_text(RunResults(run=RunInfo(id="r", started_at="t", complete=True),
                                    targets=[long], results=[]), Path("/r/index.html"))
    line = next(x for x in text.splitlines() if x.startswith("  cp311"))
    assert line.endswith(" word … (the rest in the report)") and len(line) <= 2 + 5 + 13 + 320
    # a target with an empty reason (or only a line break) still gets its line
    for empty in ("", "\n", None):
        text = findings_text(RunResults(run=RunInfo(id="r", started_at="t", complete=True),
                                        targets=[dataclasses.replace(long, reason=empty)],
                                        results=[]), Path("/r/index.html"))
        assert "  cp311: unavailable: no reason recorded" in text


def test_a_target_whose_hang_shows_another_frame_gets_a_cause_line_of_its_own():
    """make lab on 2026-12-04: CPython's OpenMP hangs are named from py-spy's frames, PyPy's
    from the runner's stack scan; line numbers and addresses alone do not split a line."""
    r = load(GOLDEN / "run-default-2026-12-04.json")
    named = {label: causes for label, _, causes in named_hangs(r)}
    openmp = named["openmp_fork · fork"]
    # each target's own address differs: none is shown another's
    assert openmp[0] == ("OpenMP after fork on cp39, cp311, cp313, cp314, cp315: "
                         "lib.GOMP_parallel(body, None, ctypes.c_uint(0), ctypes.c_uint(0)) -> "
                         "0x… (libgomp.so.1.0.0)")
    assert openmp[1] == "OpenMP after fork on pp311: GOMP_parallel+0x46 (libgomp.so.1.0.0)"
    assert named["queue_join_before_drain · fork"] == [
        "join before drain on cp39, cp311, cp313, cp314, cp315, pp311: _feed at queues.py:…"]
