from __future__ import annotations

import os
import socket
import threading
from pathlib import Path

import pytest

from lab.engine import ContainerInfo
from lab.matrix import load_matrix, select_targets
from lab.run.engines import remove_leftovers
from lab.run.runs import Run, RunOptions, watchdog_budget
from lab.run.scheduler import plan_runs

DEAD_PID = "999999999"


class Listing:
    def __init__(self, containers):
        self.items = containers
        self.removed = []
        self.vols = []
        self.removed_volumes = []

    def containers(self, labels):
        return [c for c in self.items if all(c.labels.get(k) == v for k, v in labels.items())]

    def remove_container(self, cid, *, quiet=False):
        self.removed.append(cid)

    def volumes(self, labels):
        return [(v.id, v.labels) for v in self.vols
                if all(v.labels.get(k) == val for k, val in labels.items())]

    def remove_volume(self, name):
        self.removed_volumes.append(name)


def box(cid, *, host=None, pid=DEAD_PID, run="r1"):
    return ContainerInfo(id=cid, name=cid, status="Up", labels={
        "lab.managed": "true", "lab.run": run, "lab.host": host or socket.gethostname(),
        "lab.pid": pid})


def test_sweep_removes_only_dead_harnesses_on_this_host():
    engine = Listing([box("dead"), box("alive", pid=str(os.getpid())),
                      box("elsewhere", host="another-host")])
    engine.vols = [box("dead-volume"), box("live-volume", pid=str(os.getpid()))]
    assert remove_leftovers(engine) == ["dead"]
    assert engine.removed == ["dead"]
    assert engine.removed_volumes == ["dead-volume"]  # a killed bootstrap's volume


def test_sweep_of_one_run_and_of_everything():
    engine = Listing([box("a", run="r1", pid=str(os.getpid())), box("b", run="r2")])
    assert remove_leftovers(engine, run_id="r1") == ["a"]
    engine = Listing([box("a", pid=str(os.getpid())), box("b", host="x")])
    assert sorted(remove_leftovers(engine, everything=True)) == ["a", "b"]


def test_watchdog_budget_covers_the_plan():
    plan = plan_runs(select_targets(load_matrix()))
    budget = watchdog_budget(plan, jobs=3)
    assert budget > sum(j.host_deadline_s for j in plan.timing)
    assert budget < 3 * 3600 * len({j.target_id for j in plan.jobs})


def test_an_unwritable_runs_folder_is_one_clear_error(tmp_path):
    from lab.errors import ConfigError
    from lab.run.runs import Run, RunOptions

    with pytest.raises(ConfigError, match=r"cannot create the run folder /proc/nope/.*--out"):
        Run(RunOptions(targets=[load_matrix().get("cp39")], out=Path("/proc/nope")),
            connect=lambda spec: FactsEngine())


class FactsEngine:
    """The docker boundary as a run's survey and image step see it."""

    where = "unix:///fake.sock"
    files = "bind"

    def facts(self):
        from lab.engine import EngineFacts

        return EngineFacts(id="X", name="h", version="20.10", api_version="1.41", os="linux",
                           arch="amd64", kernel="6", cpus=2, storage_driver="overlay2",
                           cgroup_version="1")

    def close(self):
        pass


class FailingBuilder:
    def ensure(self, engine, plan, donors=()):
        from lab.errors import BuildFailed

        raise BuildFailed("no space left on device", log_tail="line 1\nline 2")


def test_an_image_failing_on_the_timing_lane_leaves_the_target_s_row_alone(tmp_path):
    """A target built and run on engine a (timing = false) has its timing cells on engine b;
    if its image cannot be had there, those cells are errors that say why, and the target's
    row, which its behaviour cells earned, stays ok."""
    from lab.matrix import EngineSpec

    target = load_matrix().get("cp311")
    run = Run(RunOptions(targets=[target], out=tmp_path, progress=False,
                         engines=(EngineSpec(name="a", host="unix:///a.sock", timing=False),
                                  EngineSpec(name="b", host="unix:///b.sock"))),
              connect=lambda spec: FactsEngine())
    assert run.plan.engine_of("cp311") == "a" and run.plan.timing[0].engine == "b"
    run.ledger.set_target("cp311", status="ok", reason=None)
    run.build_slots = {"a": threading.Semaphore(1), "b": threading.Semaphore(1)}
    try:
        run.timing_lane("b", {"cp311": target}, FailingBuilder(), behaviour={})
    finally:
        run.ledger.close()
    row = run.ledger.row("cp311")
    assert row.status == "ok" and row.reason is None
    timing = [c for c in run.ledger.cells if c.kind == "timing"]
    assert len(timing) == len(run.plan.timing[0].cells)
    assert all(c.outcome == "error" and c.engine == "b" for c in timing)
    assert all(c.detail == "no image on engine b: no space left on device" for c in timing)
