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
    assert len(cells) == len(keys) == 30


def test_behaviour_runs_in_parallel_timing_runs_exclusive():
    targets = select_targets(load_matrix())
    plan = plan_runs(targets)
    assert [j.target_id for j in plan.behaviour] == [t.id for t in targets]
    assert all(j.parallel == CELL_PARALLEL and not j.exclusive for j in plan.behaviour)
    assert all(j.parallel == 1 and j.exclusive for j in plan.timing)
    for job in plan.behaviour:
        assert {c.kind for c in job.cells} == {"behaviour"}
    for job in plan.timing:
        assert {c.kind for c in job.cells} == {"timing"}
    assert plan.cells_of("cp39") == 30


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
    assert order[("b", "fork_warning", "forkserver")] < order[("a", "probe", None)]
    assert order[("a", "countdown", None)] < order[("a", "countdown", "fork")]
