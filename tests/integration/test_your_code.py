"""Your own code against the real engine on the six default targets: `lab check` programs,
a scenario file from outside the repo, and the five porting-hazard scenarios."""

from __future__ import annotations

import json
import shutil
import textwrap
from pathlib import Path

import jsonschema
import pytest

from .conftest import REPO, lab, lab_containers, load_results, only_run

SCHEMA = json.loads((REPO / "lab" / "schema" / "results.schema.json").read_text())
PROGRAMS = Path(__file__).parent / "programs"
SIX = ["cp39", "cp311", "cp313", "cp314", "cp315", "pp311"]
FORKSERVER_DEFAULT = {"cp314", "cp315"}
METHODS = ("default", "fork", "spawn", "forkserver")


def check(tmp_path_factory, name: str, *extra: str) -> tuple[int, dict, str, Path]:
    # The program is copied out of the repo first, alone: lab check takes any folder, and
    # what it needs from elsewhere comes with --file.
    home = tmp_path_factory.mktemp("mine")
    shutil.copy(PROGRAMS / name, home / name)
    out = tmp_path_factory.mktemp("runs")
    proc = lab("check", "--targets", ",".join(SIX), "--timeout", "15", "--out", str(out),
               "--no-progress", *extra, str(home / name))
    run = only_run(out)
    return proc.returncode, load_results(run), proc.stdout, run


def outcomes(data: dict, name: str) -> dict[tuple[str, str], dict]:
    return {(c["target"], c["start_method"]): c for c in data["results"]
            if c["scenario"] == f"check:{name}"}


@pytest.mark.parametrize("name", ["unguarded.py", "lambda_target.py"])
def test_check_shows_what_fails_away_from_fork_and_under_3_14s_default(tmp_path_factory, name):
    code, data, stdout, run = check(tmp_path_factory, name)
    assert code == 1, stdout
    jsonschema.validate(data, SCHEMA)
    cells = outcomes(data, name)
    assert len(cells) == len(SIX) * 4
    for tid in SIX:
        default = "forkserver" if tid in FORKSERVER_DEFAULT else "fork"
        # What the program printed: the interpreter's own default, observed in the container.
        assert f"default start method: {default}" in cells[(tid, "default")]["output"]
        for method in METHODS:
            cell = cells[(tid, method)]
            breaks = (method if method != "default" else default) != "fork"
            assert (cell["outcome"] != "ok") == breaks, (tid, method, cell["outcome"],
                                                         cell["detail"])
            if not breaks:
                assert "child ran" in cell["output"]
            elif name == "lambda_target.py":
                assert cell["outcome"] == "failed" and "pickle" in cell["detail"].lower()
            else:  # the child, re-importing the script, tries to start a process again
                assert "bootstrapping phase" in " ".join(cell["output"].split()), cell["output"]
    html = (run / "index.html").read_text()
    assert "What changes for your code" in html and f"Your program: python {name}" in html
    assert "cp314</b>: the default is <code>forkserver</code>" in html


def test_check_shows_a_fork_deadlock_as_hung_with_the_programs_own_function(tmp_path_factory,
                                                                           engine):
    code, data, stdout, run = check(tmp_path_factory, "held_lock.py", "--file",
                                    str(PROGRAMS / "helper.py"))
    assert code == 1
    cells = outcomes(data, "held_lock.py")
    for tid in SIX:
        default = "forkserver" if tid in FORKSERVER_DEFAULT else "fork"
        assert "helper-imported" in cells[(tid, "default")]["output"]
        for method in METHODS:
            cell = cells[(tid, method)]
            used = default if method == "default" else method
            if used == "fork":
                assert cell["outcome"] == "hung", (tid, method, cell["outcome"], cell["detail"])
                child = cell["stacks"].split("(child process)", 1)[1]
                assert "held_lock.py" in child and "take_the_lock" in child, child
            else:
                assert cell["outcome"] == "ok", (tid, method, cell["detail"])
                assert "child took the lock" in cell["output"]
    # The table on stdout: one line per target, each run's outcome.
    row = next(line for line in stdout.splitlines() if line.startswith("cp39 "))
    assert row.split()[:2] == ["cp39", "hung"]
    assert lab_containers(engine, **{"lab.run": run.name}) == []


def test_check_exit_code_is_zero_when_every_run_ends_ok(tmp_path_factory):
    home = tmp_path_factory.mktemp("ok")
    (home / "fine.py").write_text(textwrap.dedent("""
        import multiprocessing
        def square(x):
            return x * x
        if __name__ == "__main__":
            with multiprocessing.Pool(2) as pool:
                assert pool.map(square, [1, 2, 3]) == [1, 4, 9]
    """))
    out = tmp_path_factory.mktemp("runs")
    proc = lab("check", "--targets", "cp39,cp314", "--out", str(out), "--no-progress",
               str(home / "fine.py"))
    assert proc.returncode == 0, proc.stdout + proc.stderr[-2000:]


SCENARIO_FILE = '''
"""A child sees os.environ as it was when it was started, under every start method."""
import os

KIND = "behaviour"
START_METHODS = ["fork", "spawn", "forkserver"]
DEADLINE_S = 30
TITLE = "Environment set before start() reaches the child"


def report(conn):
    conn.send(os.environ.get("LAB_SCENARIO_FILE_VALUE"))


def run(ctx):
    os.environ["LAB_SCENARIO_FILE_VALUE"] = "set-by-parent-" + ctx.start_method
    recv, send = ctx.mp.Pipe(duplex=False)
    child = ctx.start_child(report, send)
    ctx.record("child_sees", recv.recv())
    child.join()
'''


@pytest.fixture(scope="module")
def hazards_run(tmp_path_factory):
    """The five new scenarios and a scenario file, on the six default targets."""
    outside = tmp_path_factory.mktemp("outside-the-repo")
    (outside / "env_reaches_child.py").write_text(SCENARIO_FILE)
    out = tmp_path_factory.mktemp("runs")
    proc = lab("run", "--targets", ",".join(SIX), "--quick", "--no-progress", "--out", str(out),
               "--scenarios", "pickle_target,main_guard,inherited_state,executor_defaults,"
               "cpu_limits", "--scenario-file", str(outside / "env_reaches_child.py"))
    run = only_run(out)
    return proc, load_results(run), run


def cell(data: dict, tid: str, scenario: str, method: str, container: str | None = None):
    found = [c for c in data["results"] if (c["target"], c["scenario"], c["start_method"],
                                            c.get("container")) == (tid, scenario, method,
                                                                    container)]
    assert len(found) == 1, (tid, scenario, method, container)
    assert found[0]["outcome"] == "ok", found[0]
    return found[0]["measurements"]


def test_the_scenario_file_runs_under_every_start_method_and_shows_in_the_report(hazards_run):
    proc, data, run = hazards_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    jsonschema.validate(data, SCHEMA)
    assert data["run"]["scenarios"]["env_reaches_child"]["kind"] == "behaviour"
    for tid in SIX:
        for method in ("fork", "spawn", "forkserver"):
            seen = cell(data, tid, "env_reaches_child", method)["child_sees"]
            assert seen == f"set-by-parent-{method}"
    html = (run / "index.html").read_text()
    assert "env_reaches_child" in html and "set-by-parent-forkserver" in html
    assert "Environment set before start() reaches the child" in html


def test_the_five_hazard_scenarios_per_target(hazards_run):
    _, data, _ = hazards_run
    for tid in SIX:
        probe = next(t for t in data["targets"] if t["id"] == tid)["probe"]
        for method in ("fork", "spawn", "forkserver"):
            forked = method == "fork"
            m = cell(data, tid, "pickle_target", method)
            assert m["module_function"]["child_ran"] is True
            for kind in ("lambda", "closure", "nested_function"):
                assert m[kind]["started"] is forked, (tid, method, kind, m[kind])
            m = cell(data, tid, "main_guard", method)
            assert m["child_ran"] is forked and m["bootstrap_error"] is not forked, (tid, m)
            m = cell(data, tid, "inherited_state", method)
            assert m["child_sees"] == ("run-time" if forked else "import-time")
            m = cell(data, tid, "executor_defaults", method)
            for pool in ("ProcessPoolExecutor()", "Pool()"):
                assert m[pool]["worker_method"] == method, (tid, pool, m[pool])
            assert m["ProcessPoolExecutor()"]["max_workers"] == (
                m["process_cpu_count"] or m["cpu_count"])
            tasks = m["ProcessPoolExecutor(max_tasks_per_child=1, mp_context=this method)"]
            if tid == "cp39":
                assert tasks["error"].startswith("TypeError")  # added in 3.11
            elif forked:
                assert tasks["error"].startswith("ValueError")
            else:
                assert tasks["worker_pids"] == 3
            quota = cell(data, tid, "cpu_limits", method, "cpus=1")
            assert quota["cgroup_cpu_quota"]["cpus"] == 1.0
            assert quota["cpu_count"] == probe["cpu_count"]  # the quota is invisible to it
            assert quota["executor_max_workers"] == (quota["process_cpu_count"]
                                                     or quota["cpu_count"])
            pinned = cell(data, tid, "cpu_limits", method, "cpuset=0")
            assert pinned["affinity"] == [0] and pinned["cgroup_cpuset"] == "0"
            if pinned["process_cpu_count"] is not None:  # 3.13+
                assert pinned["process_cpu_count"] == 1 == pinned["executor_max_workers"]
            else:
                assert pinned["executor_max_workers"] == pinned["cpu_count"]


def test_the_report_section_matches_the_cells(hazards_run):
    _, data, run = hazards_run
    html = (run / "index.html").read_text()
    section = html[html.index('id="your-code"'):html.index('id="defaults"')]
    for t in data["targets"]:
        assert (f"<b>{t['id']}</b>: the default is <code>{t['probe']['default_start_method']}"
                "</code>") in section
    assert "--cpus 1" in section and "quietly uses spawn" in section
