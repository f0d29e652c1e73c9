from __future__ import annotations

import pytest

from lab.errors import ConfigError
from lab.matrix import load_matrix, select_targets
from lab.run.scheduler import (
    CELL_PARALLEL,
    EMULATION_SLOWDOWN,
    cell_order,
    plan_cells,
    plan_runs,
    required_by,
    select_scenarios,
)
from lab.runner.scenarios import CATALOG


def test_every_scenario_under_every_start_method_where_a_child_is_involved():
    cells = plan_cells(CATALOG)
    keys = {(c.scenario, c.start_method) for c in cells}
    assert ("probe", None) in keys and ("probe", "fork") not in keys
    assert {("countdown", m) for m in (None, "fork", "spawn", "forkserver")} <= keys
    assert {("fork_held_lock", m) for m in ("fork", "spawn", "forkserver")} <= keys
    assert ("fork_held_lock", None) not in keys
    assert len(keys) == 63
    # cpu_limits runs once per container variant, and only there.
    limits = {(c.start_method, c.container) for c in cells if c.scenario == "cpu_limits"}
    assert limits == {(m, v) for m in ("fork", "spawn", "forkserver")
                      for v in ("cpus=1", "cpuset=0")}
    assert all(c.params["container"] == c.container for c in cells if c.container)
    assert len(cells) == 66


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
    assert plan.cells_of("cp39") == 54


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



AMD64 = frozenset({"linux/amd64", "linux/386"})
ARM64 = frozenset({"linux/arm64"})


def _slots(*specs):
    from lab.run.scheduler import EngineSlot

    return [EngineSlot(name=n, platforms=p, cpus=c, timing=t) for n, p, c, t in specs]


def test_one_engine_pins_timing_to_all_its_cpus_and_nothing_is_emulated():
    plan = plan_runs(select_targets(load_matrix()), engines=_slots(("local", AMD64, 4, True)))
    assert {j.engine for j in plan.jobs} == {"local"}
    assert all(j.cpuset == "0,1,2,3" for j in plan.timing)
    assert all(j.cpuset is None for j in plan.behaviour)
    assert not any(plan.emulated.values())


def test_targets_go_native_first_and_are_balanced_by_cost():
    m = load_matrix()
    six = [t for t in select_targets(m) if not t.optional]
    targets = six + [m.get("cp311-arm64"), m.get("cp314-arm64")]
    plan = plan_runs(targets, engines=_slots(("a", AMD64, 2, True), ("b", AMD64, 2, True),
                                             ("arm", ARM64, 8, True)))
    placed = plan.placement
    # arm64 targets run natively on the arm64 engine, never emulated on an x86 one.
    assert placed["cp311-arm64"] == placed["cp314-arm64"] == "arm"
    assert not plan.emulated["cp311-arm64"]
    arm_jobs = [j for j in plan.jobs if j.target_id == "cp311-arm64"]
    assert all(j.engine == "arm" and not j.emulated and j.deadline_scale == 1.0
               for j in arm_jobs)
    # the six amd64 targets (equal cost) split three and three over the two amd64 engines
    amd = [t.id for t in six]
    assert sorted(placed[t] for t in amd) == ["a", "a", "a", "b", "b", "b"]
    assert plan.timing_on("arm") and len(plan.timing_on("a")) == 3
    assert all(j.cpuset == "0,1,2,3,4,5,6,7" for j in plan.timing_on("arm"))


def test_a_platform_no_engine_runs_natively_is_emulated_on_the_least_loaded():
    m = load_matrix()
    plan = plan_runs([m.get("cp311"), m.get("cp311-arm64")],
                     engines=_slots(("a", AMD64, 2, True), ("b", AMD64, 2, True)))
    assert plan.placement == {"cp311": "a", "cp311-arm64": "b"}
    assert plan.emulated["cp311-arm64"]
    timing = plan.timing_on("b")[0]
    assert timing.emulated and timing.deadline_scale == EMULATION_SLOWDOWN


def test_timing_is_exclusive_per_engine_and_avoids_engines_that_refuse_it():
    m = load_matrix()
    targets = select_targets(m)
    plan = plan_runs(targets, engines=_slots(("fast", AMD64, 2, True),
                                             ("ci", AMD64, 2, False)))
    assert {plan.placement[t.id] for t in targets} == {"fast", "ci"}  # behaviour spreads
    assert plan.timing_on("ci") == ()  # but no timing cell runs on a timing = false engine
    assert len(plan.timing_on("fast")) == len(targets)
    assert all(j.exclusive and j.parallel == 1 for j in plan.timing)
    with pytest.raises(ConfigError, match="no engine may run timing cells"):
        plan_runs(targets, engines=_slots(("ci", AMD64, 2, False)))
    # without timing scenarios, such engines are fine
    assert plan_runs(targets, engines=_slots(("ci", AMD64, 2, False)),
                     scenarios=["probe"]).timing == ()


def test_host_interpreters_run_in_the_first_engine_s_lane_unpinned():
    from lab.matrix import Target

    host = Target(id="host-cp311", implementation="cpython", version="3.11",
                  python="/usr/bin/python3", host_python="/usr/bin/python3", default=False)
    plan = plan_runs([host, load_matrix().get("cp311")],
                     engines=_slots(("a", AMD64, 2, True), ("b", AMD64, 2, True)))
    assert plan.placement["host-cp311"] == "a"
    host_timing = next(j for j in plan.timing if j.target_id == "host-cp311")
    assert host_timing.engine == "a" and host_timing.cpuset is None


def test_scenarios_that_need_packages_run_only_when_named_and_say_what_they_need():
    default = select_scenarios(None)
    assert "openmp_fork" in default  # the standard library and the bases' libgomp1 only
    assert not {"blas_fork", "grpc_fork", "grpc_fork_support_off"} & set(default)
    named = select_scenarios(["grpc_fork_support_off", "blas_fork", "grpc_fork"])
    assert named == ["probe", "blas_fork", "grpc_fork", "grpc_fork_support_off"]
    assert required_by(named) == ["numpy", "grpcio"]  # each once, in catalog order
    env = {c.scenario: dict(c.env or {}) for c in plan_cells(named)}
    assert env["grpc_fork_support_off"] == {"GRPC_ENABLE_FORK_SUPPORT": "0"}
    assert env["grpc_fork"] == {}  # the installed release's own default
