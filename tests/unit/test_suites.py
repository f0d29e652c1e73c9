"""`lab test`'s results, from a real run on the six default targets (tests/golden): each
test's outcome per run, the differing tests grouped in words, forced start methods, the exit
code's rule and junit.xml; the plugin's lines are untrusted, so bad entries are skipped."""

from __future__ import annotations

import copy
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from lab.cli import parse
from lab.errors import ConfigError
from lab.images.requirements import Requirements
from lab.report.page import render_html, render_junit
from lab.report.suites import failing, outcomes_of, suite_text, suite_view, where_phrase
from lab.results import TargetStatus, load
from lab.run.usercode import suite_spec

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "test-workers-six-targets.json"
SCENARIO = "test:workers"
SIX = ["cp39", "cp311", "cp313", "cp314", "cp315", "pp311"]
LAMBDA = "test_workers.py::test_lambda_target"
HANG = "test_workers.py::test_lock_held_by_a_thread_at_fork"


@pytest.fixture
def results():
    return load(GOLDEN)


def view_of(r):
    return suite_view(r, SCENARIO, [t for t in r.targets if t.status == TargetStatus.OK])


def test_two_tests_differ_and_three_pass_in_every_run(results):
    v = view_of(results)
    assert (v.tests, v.passing, len(v.ran), len(v.columns)) == (5, 3, 24, 24)
    by = {d.tests[0]: d for d in v.differences}
    assert set(by) == {LAMBDA, HANG}
    assert by[HANG].where == ("hangs under fork on every target and under default on cp39, "
                              "cp311, cp313, pp311")
    assert by[HANG].worst == "hung" and by[HANG].evidence.startswith("stacks.html#cell-")
    assert by[LAMBDA].where == ("fails under spawn and forkserver on every target and under "
                                "default on cp314, cp315")
    assert "<locals>.<lambda>" in by[LAMBDA].line and "0x…" in by[LAMBDA].line
    assert v.differences[0].tests == [HANG]  # the worst first
    assert v.forced == [] and v.unrun == []


def test_the_exit_code_counts_only_the_runs_fail_on_names(results):
    v = view_of(results)
    assert failing(v) and failing(v, ["fork"]) and failing(v, ["spawn"])
    assert failing(v, ["default"])
    r = copy.deepcopy(results)
    for c in r.results:
        if c.scenario == SCENARIO:
            c.measurements["tests"] = [t for t in c.measurements["tests"] if t[0] != HANG]
    v = view_of(r)
    assert not failing(v, ["fork"])  # the lambda passes under fork
    assert failing(v, ["fork", "spawn"])


def test_untrusted_entries_of_the_wrong_shape_are_skipped(results):
    c = next(c for c in results.results if c.scenario == SCENARIO)
    c.measurements["tests"] = [["ok::a", "passed", ""], "junk", ["b", "exploded", ""], [1, 2, 3],
                               ["ok::c", "failed", None], ["short"]]
    assert outcomes_of(c) == {"ok::a": ("passed", ""), "ok::c": ("failed", "")}


def test_a_run_that_forced_its_own_method_is_named_per_cell(results):
    r = copy.deepcopy(results)
    for c in r.results:
        if c.scenario == SCENARIO and c.target == "cp311":
            c.measurements["start_method_choices"] = [
                {"call": "set_start_method", "method": "spawn", "force": True,
                 "where": "/lab/user/script/conftest.py:2"}]
    v = view_of(r)
    assert sorted(f.column for f in v.forced) == ["default", "fork", "forkserver"]
    default = next(f for f in v.forced if f.column == "default")
    assert default.asked == "fork"  # what cp311's default stands for
    assert default.text == ("the suite forced spawn (set_start_method('spawn', force=True) at "
                            "conftest.py:2); this column did not run under fork")
    text = "\n".join(suite_text(v))
    assert ("forced: the suite chose spawn itself (set_start_method('spawn', force=True) at "
            "conftest.py:2) in cp311 default, cp311 fork, cp311 forkserver") in text


def test_where_phrases():
    grid = {(t, m) for t in SIX for m in ("fork", "spawn")}
    cols = ["fork", "spawn"]
    assert where_phrase(grid, SIX, cols, grid) == "in every run"
    assert where_phrase({(t, "fork") for t in SIX[:4]}, SIX, cols, grid) == \
        "under fork on cp39-cp314"
    assert where_phrase({("cp39", "fork"), ("cp39", "spawn"), ("pp311", "spawn")}, SIX, cols,
                        grid) == "under spawn on cp39, pp311 and under fork on cp39"


def test_the_page_leads_with_the_suite_and_leaves_the_claims_to_their_section(results):
    html = render_html(results)
    first, summary = html.index('id="user-code"'), html.index('id="summary"')
    assert first < summary
    assert "fails under spawn and forkserver on every target" in html[first:summary]
    assert 'class="claims"' not in html[summary:html.index('id="defaults"')]
    assert 'id="claims"' in html  # further down, one link away


def test_junit_names_each_test_with_its_target_and_start_method(results):
    root = ET.fromstring(render_junit(results))
    cases = [c for c in root.iter("testcase") if "::" in c.get("name", "")]
    assert len(cases) == 5 * 24
    hung = next(c for c in cases if c.get("name") == f"{HANG} [pp311 fork]")
    assert hung.get("classname") == "pp311.fork"
    assert hung.find("failure").get("type") == "hung"
    for suite in root.iter("testsuite"):
        assert int(suite.get("tests")) == len(list(suite.iter("testcase")))


def test_lab_test_takes_pytest_s_arguments_after_the_double_dash():
    args = parse(["test", "--targets", "cp311", "--", "-k", "pool", "-x"])
    assert args.path == Path(".") and args.pytest_args == ["-k", "pool", "-x"]
    args = parse(["test", "proj", "--", "--", "tests/"])
    assert args.path == Path("proj") and args.pytest_args == ["--", "tests/"]
    with pytest.raises(SystemExit):
        parse(["test", "-k", "pool"])


def test_bad_input_is_one_line(tmp_path, capsys):
    with pytest.raises(ConfigError, match="no such folder"):
        suite_spec(tmp_path / "nope", [], ["fork"], timeout_s=10, test_timeout_s=5)
    with pytest.raises(ConfigError, match="--test-timeout must be between"):
        suite_spec(tmp_path, [], ["fork"], timeout_s=10, test_timeout_s=0)
    (tmp_path / "test_a.py").write_text("def test_a(): pass\n")
    spec = suite_spec(tmp_path / "test_a.py", ["-x"], ["fork"], timeout_s=10, test_timeout_s=5)
    assert spec.project == tmp_path.resolve() and spec.args == ("test_a.py", "-x")
    from lab.cli import main

    assert main(["test", "--fail-on", "spawn", "--start-methods", "fork", str(tmp_path)]) == 2
    assert "--fail-on: spawn is not a run of this suite" in capsys.readouterr().err


def test_pytest_is_added_unless_the_requirements_name_it():
    assert Requirements(lines=("PyTest==8.3",)).names("pytest")
    assert Requirements(lines=("pytest-xdist", "attrs")).names("pytest") is False
    assert Requirements(lines=("pytest[testing]>=8",)).names("pytest")


def test_a_lab_check_run_s_page_leads_with_the_program_s_runs():
    r = load(GOLDEN.with_name("check-lambda-cp314.json"))
    html = render_html(r)
    first, summary = html.index('id="user-code"'), html.index('id="summary"')
    assert first < summary
    section = html[first:summary]
    assert "Your program" in section and section.count('class="b ') >= 4
    assert 'class="claims"' not in html[summary:html.index('id="defaults"')]
