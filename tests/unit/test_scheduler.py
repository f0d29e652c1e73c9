from __future__ import annotations

import pytest

from lab.errors import ConfigError
from lab.matrix import load_matrix, select_targets
from lab.runner.scenarios import CATALOG
from lab.scheduler import (
    CELL_PARALLEL,
    EMULATION_SLOWDOWN,
    cell_order,
    plan_cells,
    plan_runs,
    select_scenarios,
)


def test_every_scenario_under_every_start_method_where_a_child_is_involved():
    cells = plan_cells(CATALOG)
    keys = {(c.scenario, c.start_method) for c in cells}
    assert ("probe", None) in keys and ("probe", "fork") not in keys
    assert {("countdown", m) for m in (None, "fork", "spawn", "forkserver")} <= keys
    assert {("fork_held_lock", m) for m in ("fork", "spawn", "forkserver")} <= keys
    assert ("fork_held_lock", None) not in keys
    assert len(keys) == 45
    # cpu_limits runs once per container variant, and only there.
    limits = {(c.start_method, c.container) for c in cells if c.scenario == "cpu_limits"}
    assert limits == {(m, v) for m in ("fork", "spawn", "forkserver")
                      for v in ("cpus=1", "cpuset=0")}
    assert all(c.params["container"] == c.container for c in cells if c.container)
    assert len(cells) == 48


def test_container_variants_are_jobs_of_their_own_with_their_limits():
    plan = plan_runs(select_targets(load_matrix(), ids=["cp311"]))
    by_name = {j.name: j for j in plan.behaviour}
    assert set(by_name) == {"cp311-behaviour", "cp311-behaviour-cpus1", "cp311-behaviour-cpuset0"}
    assert by_name["cp311-behaviour-cpus1"].limits == {"nano_cpus": 1_000_000_000}
    assert by_name["cp311-behaviour-cpuset0"].limits == {"cpuset_cpus": "0"}
    assert by_name["cp311-behaviour"].limits == {}
    assert not any(c.container for c in by_name["cp311-behaviour"].cells)
    assert {c.scenario for c in by_name["cp311-behaviour-cpus1"].cells} == {"cpu_limits"}


def test_host_interpreters_get_no_container_variants():
    from lab.matrix import Target

    host = Target(id="host-cp311", implementation="cpython", version="3.11",
                  python="/usr/bin/python3", host_python="/usr/bin/python3", default=False)
    plan = plan_runs([host])
    assert [j.name for j in plan.behaviour] == ["host-cp311-behaviour"]


def test_user_scenarios_and_check_scripts_plan_from_the_catalog_they_are_given():
    catalog = {**CATALOG, "mine": {"kind": "behaviour", "start_methods": ["spawn"],
                                   "deadline_s": 5, "title": "t"},
               "check:x.py": {"kind": "behaviour", "deadline_s": 9, "title": "x",
                              "start_methods": ["default", "fork"],
                              "script": {"path": "script/x.py", "args": ["a"]}}}
    plan = plan_runs(select_targets(load_matrix(), ids=["cp39"]),
                     scenarios=["probe", "mine", "check:x.py"], catalog=catalog)
    cells = [c for j in plan.jobs for c in j.cells]
    assert [(c.scenario, c.start_method) for c in cells] == [
        ("probe", None), ("mine", "spawn"), ("check:x.py", "default"), ("check:x.py", "fork")]
    script = [c.to_plan() for c in cells if c.script]
    assert script[0]["script"] == {"path": "script/x.py", "args": ["a"]}
    assert script[0]["deadline_s"] == 9


def test_behaviour_runs_in_parallel_timing_runs_exclusive():
    targets = select_targets(load_matrix())
    plan = plan_runs(targets)
    assert [j.target_id for j in plan.behaviour if not j.container] == [t.id for t in targets]
    assert all(j.parallel == CELL_PARALLEL and not j.exclusive for j in plan.behaviour)
    assert all(j.parallel == 1 and j.exclusive for j in plan.timing)
    for job in plan.behaviour:
        assert {c.kind for c in job.cells} == {"behaviour"}
    for job in plan.timing:
        assert {c.kind for c in job.cells} == {"timing"}
    assert plan.cells_of("cp39") == 48


def test_host_deadline_covers_the_worst_case_of_every_wave():
    plan = plan_runs(select_targets(load_matrix(), ids=["cp311"]))
    job = plan.behaviour[0]
    assert job.host_deadline_s >= sum(c.deadline_s for c in job.cells) / job.parallel
    timing = plan.timing[0]
    assert timing.host_deadline_s >= sum(c.deadline_s for c in timing.cells)


def test_emulated_targets_get_longer_deadlines():
    m = load_matrix()
    native = plan_runs([m.get("cp311")]).behaviour[0]
    emulated = plan_runs([m.get("cp311-arm64")]).behaviour[0]
    if m.get("cp311-arm64").emulated:
        assert emulated.host_deadline_s == pytest.approx(native.host_deadline_s *
                                                         EMULATION_SLOWDOWN)


def test_scenario_selection_keeps_the_probe_and_rejects_unknown():
    assert select_scenarios(["fork_held_lock"]) == ["probe", "fork_held_lock"]
    with pytest.raises(ConfigError, match="nope"):
        select_scenarios(["nope"])


def test_quick_passes_through_to_the_cells():
    assert all(c.params == {"quick": True} for c in plan_cells(["countdown"], quick=True))


def test_cell_order_is_matrix_then_catalog_then_method():
    order = cell_order(["b", "a"])
    assert order[("b", "fork_warning", "forkserver", None)] < order[("a", "probe", None, None)]
    assert order[("a", "countdown", None, None)] < order[("a", "countdown", "fork", None)]
    assert (order[("a", "cpu_limits", "forkserver", None)]
            < order[("a", "cpu_limits", "fork", "cpus=1")])


def test_behaviour_cells_start_longest_first_to_pack_the_slots():
    plan = plan_runs(select_targets(load_matrix(), ids=["cp311"]))
    [job] = [j for j in plan.behaviour if not j.container]
    costs = [CATALOG[c.scenario]["cost_s"] for c in job.cells]
    assert costs == sorted(costs, reverse=True)
    assert job.cells[0].scenario == "queue_join_before_drain"  # 6 s, hangs under every method
    [timing] = plan.timing  # timing cells keep catalog order: a scenario's cells stay together
    assert [c.scenario for c in timing.cells][:4] == ["countdown"] * 4

