"""Every scenario, run by the real runner with the host interpreter, under every start method."""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import sys
from pathlib import Path

import pytest

import lab.runner
from lab.run.scheduler import start_methods_of
from lab.runner import measurements as M
from lab.runner.measurements import READ_BY_HOST
from lab.runner.protocol import START_METHODS
from lab.runner.scenarios import CATALOG

METHODS = [m for m in START_METHODS if m in multiprocessing.get_all_start_methods()]


def cells_for(name: str, deadline: float | None = None) -> list[dict]:
    meta = CATALOG[name]
    methods = start_methods_of(name, METHODS)
    return [{"scenario": name, "start_method": m, "params": {"quick": True},
             "deadline_s": deadline or meta["deadline_s"], **({"env": meta["env"]}
                                                              if meta.get("env") else {})}
            for m in methods]


def test_probe_observes_this_interpreter(runner):
    rec = runner(cells_for("probe"))[("probe", None)]
    assert rec["outcome"] == "ok", rec
    m = rec["measurements"]
    assert m["version"] == ".".join(map(str, sys.version_info[:3]))
    assert m["start_methods"] == multiprocessing.get_all_start_methods()
    assert m["default_start_method"] in m["start_methods"]
    assert m["pointer_bits"] == 64
    assert m["switch_interval_s"] == sys.getswitchinterval()
    assert m["runner_is_pid1"] is False  # the runner is the cell's parent, never PID 1 here


def test_fork_held_lock_hangs_under_fork_only_and_shows_the_child_blocked(runner):
    recs = runner(cells_for("fork_held_lock", deadline=4))
    fork = recs[("fork_held_lock", "fork")]
    assert fork["outcome"] == "hung"
    # The child's stack names the line where it blocked.
    child = fork["stacks"].split("(child process)", 1)[1]
    assert "in child_takes_lock" in child
    source = (Path(lab.runner.__file__).parent / "scenarios" / "fork_held_lock.py").read_text()
    line = next(i for i, text in enumerate(source.splitlines(), 1)
                if text.strip().startswith("LOCK.acquire()"))
    assert f"fork_held_lock.py\", line {line}" in child
    # ... with that line's source beneath it, read where it ran (the report's stuck frame).
    assert f"fork_held_lock.py\", line {line} in child_takes_lock\n" in child
    assert child.split(f"line {line} in child_takes_lock\n", 1)[1].lstrip().startswith(
        "LOCK.acquire()")
    for method in METHODS:
        if method != "fork":
            assert recs[("fork_held_lock", method)]["outcome"] == "ok"
            assert recs[("fork_held_lock", method)]["measurements"][M.CHILD_ACQUIRED_LOCK]


def test_queue_join_before_drain_is_the_documented_deadlock(runner):
    recs = runner(cells_for("queue_join_before_drain", deadline=4))
    for method in METHODS:
        rec = recs[("queue_join_before_drain", method)]
        assert rec["outcome"] == "hung", (method, rec["detail"])
        assert "_finalize_join" in rec["stacks"] or "join_thread" in rec["stacks"]
        assert rec["duration_s"] < 4 + 3  # killed within its deadline, plus the grace


def test_hung_cells_wait_side_by_side(runner):
    cells = cells_for("queue_join_before_drain", deadline=3)
    start = __import__("time").monotonic()
    runner(cells, parallel=len(cells))
    assert __import__("time").monotonic() - start < 3 * len(cells)


def test_fork_warning_records_each_variant(runner):
    recs = runner(cells_for("fork_warning"))
    for method in METHODS:
        m = recs[("fork_warning", method)]["measurements"]
        assert set(m) == {"default", "always", "error"}
        for variant in m.values():
            assert variant["exit_code"] is not None
    fork = recs[("fork_warning", "fork")]["measurements"]
    expect_warning = sys.version_info >= (3, 12)
    assert fork["always"]["warned"] is expect_warning


@pytest.mark.parametrize("name", ["countdown", "threading_gil", "process_startup",
                                  "queue_transfer", "queue_iftry", "queue_growth",
                                  "fork_held_io"])
def test_scenario_runs_and_records(runner, name):
    recs = runner(cells_for(name), parallel=1)
    assert recs, name
    for (scenario, method), rec in recs.items():
        assert rec["outcome"] in ("ok", "hung"), (scenario, method, rec["detail"], rec["output"])
        assert rec["measurements"], (scenario, method)
        if rec["outcome"] == "ok":  # what the host reads is there, under the declared names
            missing = set(READ_BY_HOST.get(name, ())) - set(rec["measurements"])
            if method is None:
                missing -= set(M.PROCESSES_ONLY)
            assert not missing, (scenario, method, missing)
        if rec["outcome"] == "hung":
            # Only fork may hang here (an inherited held I/O lock), and it shows the stack.
            assert name == "fork_held_io" and method == "fork" and rec["stacks"]


def test_cells_record_their_cpu_and_everyone_elses(runner):
    rec = runner(cells_for("countdown")[:1])[("countdown", None)]
    cpu = rec["cpu"]
    # Load-independent invariants (how much CPU the cell gets depends on what else runs).
    assert cpu["own_s"] > 0.05  # the cell's rusage, including the children it joined
    assert cpu["others_s"] == pytest.approx(max(0.0, cpu["host_busy_s"] - cpu["own_s"]),
                                            abs=0.002)
    assert cpu["steal_s"] >= 0 and cpu["wall_s"] > 0
    assert cpu["others_cpus"] == pytest.approx(cpu["others_s"] / cpu["wall_s"], abs=0.002)


def test_countdown_statistics(runner):
    m = runner(cells_for("countdown")[:1])[("countdown", None)]["measurements"]
    how = m["sampling"]
    assert m["serial"]["n"] == how["n"] == len(m["speedup_samples"]) >= 5
    assert how["stop"] in ("precise", "max_samples", "budget")
    if how["stop"] == "precise":  # the stopping rule held: the interval is narrow enough
        assert how["precision"]["speedup"] <= how["target"] == 0.08  # --quick's target
    lo, hi = m["serial"]["ci"]
    assert lo <= m["serial"]["median"] <= hi
    assert m["threads"]["q1"] <= m["threads"]["median"] <= m["threads"]["q3"]
    assert m["speedup"] == pytest.approx(m["serial"]["median"] / m["threads"]["median"])


def test_process_startup_is_what_a_script_pays_with_no_lab_code_in_its_children(runner):
    recs = runner(cells_for("process_startup"), parallel=1)
    for method in METHODS:
        m = recs[("process_startup", method)]["measurements"]
        assert m["harness_in_child"] is False, method  # the children never saw labrunner
        assert m["startup"]["n"] == m["sampling"]["n"] >= 5
        inside = m["children"]  # the third child: its own view, beside its start + join
        assert all(0 < a < b for a, b in zip(inside["child_startup_s"]["samples"],
                                             inside["took"]["samples"], strict=True))
        assert m["first_s"] > 0 and m["startup_module"]["median"] > 0


def test_queue_growth_unbounded_grows_more_than_bounded(runner):
    m = runner(cells_for("queue_growth")[:1])[("queue_growth", METHODS[0])]["measurements"]
    assert m["unbounded"]["peak_backlog_items"] > m["unbounded"]["items"] // 2
    assert m["bounded"]["peak_backlog_items"] <= m["bounded"]["maxsize"] + 1


def test_unavailable_start_method_is_skipped(runner):
    rec = runner([{"scenario": "fork_held_lock", "start_method": "nosuchmethod",
                   "deadline_s": 10}])[("fork_held_lock", "nosuchmethod")]
    assert rec["outcome"] == "skipped"
    assert "not offered" in rec["detail"]


@pytest.mark.parametrize("name,outcome,needle", [
    ("crash", "crashed", "SIGSEGV"),
    ("fail", "failed", "RuntimeError: selftest"),
    ("exit3", "failed", "code 3"),
    ("badresult", "error", "malformed"),
    ("hang", "hung", "deadline"),
    ("nosuch", "error", "unknown self-test"),
])
def test_harness_outcomes(runner, name, outcome, needle):
    rec = runner([{"scenario": f"selftest.{name}", "deadline_s": 2}])[(f"selftest.{name}", None)]
    assert rec["outcome"] == outcome, rec
    assert needle in (rec["detail"] or "") + (rec.get("signal") or ""), rec["detail"]


def test_large_output_is_truncated_with_a_marker(runner):
    rec = runner([{"scenario": "selftest.noisy", "deadline_s": 30,
                   "params": {"kib": 10 * 1024}}])[("selftest.noisy", None)]
    assert rec["outcome"] == "ok"
    assert "bytes truncated" in rec["output"]
    assert len(rec["output"]) < 40 * 1024


def test_crashed_cell_does_not_hide_the_others(runner):
    recs = runner([{"scenario": "selftest.crash", "deadline_s": 5},
                   {"scenario": "probe", "deadline_s": 30}])
    assert recs[("selftest.crash", None)]["outcome"] == "crashed"
    assert recs[("probe", None)]["outcome"] == "ok"


# -- the porting hazards of a default that is not fork --------------------------------------------
def test_pickle_target_lambda_closure_nested_run_under_fork_only(runner):
    recs = runner(cells_for("pickle_target"))
    for method in METHODS:
        m = recs[("pickle_target", method)]["measurements"]
        assert m["module_function"]["child_ran"] is True
        for kind in ("lambda", "closure", "nested_function"):
            if method == "fork":
                assert m[kind]["started"] and m[kind]["child_ran"], (method, kind, m[kind])
            else:
                assert m[kind]["started"] is False, (method, kind, m[kind])
                assert "pickle" in m[kind]["error"].lower(), m[kind]


def test_main_guard_unguarded_script_fails_where_main_is_imported_again(runner):
    recs = runner(cells_for("main_guard"))
    for method in METHODS:
        m = recs[("main_guard", method)]["measurements"]
        if method == "fork":
            assert (m["script_exit_code"], m["child_ran"], m["bootstrap_error"]) == (0, True, False)
        else:
            assert m["script_exit_code"] != 0 and not m["child_ran"], m
            assert m["bootstrap_error"] is True, m


def test_main_guards_script_slower_than_twenty_seconds_is_slow_not_hanging(tmp_path):
    """A script slower than the 20 s the scenario once gave it (PyPy took 20 to 28 s beside a
    loaded machine's other cells) still ends, and is judged by the cell's deadline, not called
    hanging. The slowness is real: a ``.pth`` file in the user site, which the script's
    interpreter runs as it starts, sleeps 21 s (a sleep is a timed wait: never stuck)."""
    import sysconfig

    from .conftest import run_plan

    base = getattr(sys, "_base_executable", sys.executable)  # a venv turns the user site off
    userbase = tmp_path / "userbase"
    purelib = Path(sysconfig.get_path("purelib", "posix_user", {"userbase": str(userbase)}))
    purelib.mkdir(parents=True)
    # only the script's interpreter: the cell's own has the runner on PYTHONPATH, the script's
    # has no PYTHONPATH
    (purelib / "slow.pth").write_text(
        "import os, time; 'PYTHONPATH' in os.environ or time.sleep(21)\n")
    cell = {**cells_for("main_guard")[0], "start_method": "fork",
            "env": {"PYTHONUSERBASE": str(userbase)}}
    rec = run_plan(tmp_path, [cell], python=base)[("main_guard", "fork")]
    assert rec["outcome"] == "ok", rec
    m = rec["measurements"]
    assert (m["script_exit_code"], m["child_ran"]) == (0, True), m
    assert rec["duration_s"] > 21, rec["duration_s"]


def test_inherited_state_reaches_a_fork_child_only(runner):
    recs = runner(cells_for("inherited_state"))
    for method in METHODS:
        m = recs[("inherited_state", method)]["measurements"]
        assert set(READ_BY_HOST["inherited_state"]) <= set(m)
        assert m["child_sees"] == ("run-time" if method == "fork" else "import-time")


def test_openmp_fork_hangs_a_fork_child_in_libgomp_unless_its_team_is_one_thread(runner):
    """The host has Debian's libgomp1 (the bases do too). Both variants record what they
    loaded. (On a host the watch proves nothing stuck, as others share it: the cell hangs at
    its deadline; tests/integration checks the early finding in containers.)"""
    try:
        ctypes.CDLL("libgomp.so.1")
    except OSError as exc:  # the containers' tests still run it (tests/integration)
        pytest.skip(f"this host has no libgomp.so.1 ({exc})")
    recs = runner(cells_for("openmp_fork") + cells_for("openmp_fork_single"))
    fork = recs[("openmp_fork", "fork")]
    assert fork["outcome"] == "hung", fork
    child = fork["stacks"].split("(child process)", 1)[1]
    assert "in parallel_region" in child and "lib.GOMP_parallel(" in child
    assert "libgomp" in fork["measurements"][M.LIBRARY]["file"]
    assert fork["measurements"][M.PARENT_REGION_THREADS] >= min(2, len(os.sched_getaffinity(0)))
    for method in METHODS:
        if method != "fork":
            m = recs[("openmp_fork", method)]["measurements"]
            assert recs[("openmp_fork", method)]["outcome"] == "ok"
            assert m[M.CHILD_COMPLETED_REGION] and m[M.CHILD_REGION_THREADS] >= 1
    for method in METHODS:
        rec = recs[("openmp_fork_single", method)]
        assert rec["outcome"] == "ok", rec  # under fork too: no pool to lose
        m = rec["measurements"]
        assert m[M.OMP_NUM_THREADS] == "1"
        assert m[M.PARENT_REGION_THREADS] == m[M.CHILD_REGION_THREADS] == 1
        assert set(READ_BY_HOST["openmp_fork_single"]) <= set(m)


def test_executor_defaults_follow_the_global_method_and_report_worker_counts(runner):
    recs = runner(cells_for("executor_defaults"))
    for method in METHODS:
        m = recs[("executor_defaults", method)]["measurements"]
        assert recs[("executor_defaults", method)]["outcome"] == "ok"
        for pool in ("ProcessPoolExecutor()", "Pool()"):
            assert m[pool]["context"] == method and m[pool]["worker_method"] == method, m[pool]
        assert m["ProcessPoolExecutor()"]["max_workers"] == m["cpu_count"]
        tasks = m["ProcessPoolExecutor(max_tasks_per_child=1, mp_context=this method)"]
        if method == "fork":
            assert tasks["error"].startswith("ValueError"), tasks
        else:
            assert tasks["worker_pids"] == 3  # one task per worker: each task a new process


def test_cpu_limits_records_python_view_and_default_worker_counts(runner):
    cells = [dict(c, params={"container": "cpuset=0"}) for c in cells_for("cpu_limits")]
    recs = runner(cells)
    for method in METHODS:
        m = recs[("cpu_limits", method)]["measurements"]
        assert m["container"] == "cpuset=0"
        assert m["cpu_count"] == os.cpu_count()
        assert m["executor_ran"] and m["pool_ran"]
        assert m["pool_processes"] == os.cpu_count()


# -- timing cells on a busy machine (issue 12, part 1) --------------------------------------------
def test_a_timing_cell_waits_for_quiet_then_is_measured_again_and_keeps_every_attempt(tmp_path):
    """A busy loop runs beside the runner: the cell waits (bounded), gives up, is measured
    again up to the retry count, and the record keeps every attempt and which was kept."""
    import subprocess as sp

    from .conftest import run_plan

    burner = sp.Popen([sys.executable, "-c", "while True: pass"])
    try:
        cells = [{"scenario": "selftest.sleep", "start_method": None, "deadline_s": 20,
                  "params": {"seconds": 0.3}}]
        recs = run_plan(tmp_path, cells, parallel=1,
                        extra={"quiet": {"threshold": 0.15, "max_wait_s": 1.5, "retries": 2}})
    finally:
        burner.kill()
        burner.wait()
    rec = recs[("selftest.sleep", None)]
    assert rec["outcome"] == "ok"
    assert rec["quiet"]["quiet"] is False and rec["quiet"]["waited_s"] >= 1.5
    assert [a["attempt"] for a in rec["attempts"]] == [0, 1]  # persistently busy: one retry
    assert sum(a["kept"] for a in rec["attempts"]) == 1
    assert all(a["others_cpus"] > 0.5 for a in rec["attempts"])  # the busy loop, seen
    kept = next(a for a in rec["attempts"] if a["kept"])
    assert kept["others_cpus"] == min(a["others_cpus"] for a in rec["attempts"])
    import json

    waits = [json.loads(x) for x in (tmp_path / "out" / "results.jsonl").read_text().splitlines()
             if '"wait"' in x]
    assert waits and waits[0]["others_cpus"] > 0.15


def test_cells_that_disagree_are_measured_again_and_keep_both_attempts(runner, tmp_path):
    """The pp311 case of issue 12: one cell of three says `if` is dearer. Only that cell is
    measured again, once; the new measurement replaces the old, which is kept as an attempt."""
    signs = {"fork": [1], "spawn": [-1, 1], "forkserver": [1]}
    cells = [{"scenario": "selftest.direction", "start_method": m, "deadline_s": 20,
              "params": {"signs": signs, "dir": str(tmp_path)}} for m in signs]
    recs = runner(cells, parallel=1,
                  extra={"quiet": {"threshold": 64, "max_wait_s": 1, "retries": 2}})
    spawn = recs[("selftest.direction", "spawn")]
    assert spawn["measurements"]["directions"] == {"x": 1}
    assert [(a["why"], a["kept"]) for a in spawn["attempts"]] == [("first", False),
                                                                   ("disagreed", True)]
    assert spawn["attempts"][0]["measurements"]["directions"] == {"x": -1}
    for m in ("fork", "forkserver"):
        assert "attempts" not in recs[("selftest.direction", m)]


def test_cells_that_still_disagree_are_measured_again_only_once(runner, tmp_path):
    signs = {"fork": [1], "spawn": [-1]}
    cells = [{"scenario": "selftest.direction", "start_method": m, "deadline_s": 20,
              "params": {"signs": signs, "dir": str(tmp_path)}} for m in signs]
    recs = runner(cells, parallel=1,
                  extra={"quiet": {"threshold": 64, "max_wait_s": 1, "retries": 2}})
    for m in signs:  # a tie: both sides are measured again, once
        assert len(recs[("selftest.direction", m)]["attempts"]) == 2
    assert recs[("selftest.direction", "spawn")]["measurements"]["directions"] == {"x": -1}


def test_a_quiet_machine_measures_once(runner):
    recs = runner([{"scenario": "selftest.sleep", "start_method": None, "deadline_s": 20,
                    "params": {"seconds": 0.1}}], parallel=1,
                  extra={"quiet": {"threshold": 64, "max_wait_s": 1, "retries": 2}})
    rec = recs[("selftest.sleep", None)]
    assert rec["quiet"]["quiet"] is True and rec["quiet"]["waited_s"] < 1
    assert "attempts" not in rec


def test_a_cells_deadline_starts_when_its_code_runs_not_when_its_interpreter_starts(tmp_path):
    """Every interpreter here takes 2 s to start (a sitecustomize that sleeps); a cell with a
    1 s deadline that needs 0.2 s is not hung."""
    from lab.images.plan import stage_runner

    from .conftest import run_plan

    stage = stage_runner(tmp_path / "stage")
    (stage / "sitecustomize.py").write_text("import time\ntime.sleep(2)\n")
    recs = run_plan(tmp_path, [{"scenario": "selftest.sleep", "start_method": None,
                                "deadline_s": 1, "params": {"seconds": 0.2}}], stage=stage)
    rec = recs[("selftest.sleep", None)]
    assert rec["outcome"] == "ok", rec
    assert rec["duration_s"] > 2


def test_the_declared_measurements_belong_to_scenarios_that_exist():
    assert set(READ_BY_HOST) <= set(CATALOG)


def test_a_sampled_race_runs_enough_trials_for_its_stated_detection_probability():
    from lab.runner.scenarios.fork_held_io import DETECT, QUICK_DETECT, QUICK_RATE, RATE, trials_for

    n = trials_for(DETECT, RATE)
    assert n == 29 and 1 - (1 - RATE) ** n >= DETECT > 1 - (1 - RATE) ** (n - 1)
    assert trials_for(QUICK_DETECT, QUICK_RATE) == 8


def test_an_error_without_a_message_is_recorded_by_its_type():
    """A timeout's str() is empty: the scenario records "TimeoutError", not an IndexError
    raised while recording it."""
    import concurrent.futures

    from lab.runner.util import describe_error

    assert describe_error(concurrent.futures.TimeoutError()) in ("TimeoutError",)
    assert describe_error(ValueError("\n")) == "ValueError"
    assert describe_error(ValueError("first\nsecond")) == "ValueError: first"
    assert describe_error(ValueError("x" * 500)) == "ValueError: " + "x" * 300
