"""The run's ledger: what a run has found, kept as it arrives, from many threads."""

from __future__ import annotations

import json
import threading

from lab.results import Cell, RunInfo, TargetResult, recover
from lab.run.ledger import Ledger


def row(tid: str) -> TargetResult:
    return TargetResult(id=tid, implementation="cpython", version="3.11",
                        platform="linux/amd64", python="/usr/bin/python3", kind="debian",
                        status="error",
                        reason="not run")


def test_cells_reach_the_disk_at_once_and_come_back_in_plan_order(tmp_path):
    seen: list[str] = []
    order = {("a", "probe", None, None): 0, ("a", "fork_held_lock", "fork", None): 1}
    ledger = Ledger(tmp_path, RunInfo(id="r", started_at="now"), [row("a")], order=order,
                    on_cell=lambda c: seen.append(c.scenario))
    hung = Cell(target="a", scenario="fork_held_lock", start_method="fork", outcome="hung")
    probe = Cell(target="a", scenario="probe", start_method=None, outcome="ok",
                 measurements={"default_start_method": "fork"})
    threads = [threading.Thread(target=ledger.record, args=(c,)) for c in (hung, probe)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    lines = (tmp_path / "cells.jsonl").read_text().splitlines()
    assert sorted(json.loads(x)["scenario"] for x in lines) == ["fork_held_lock", "probe"]
    assert sorted(seen) == ["fork_held_lock", "probe"]
    ledger.set_target("a", status="ok", reason=None)
    ledger.note("one note")
    snap = ledger.snapshot(complete=False, interrupted=True, duration_s=1.26)
    assert [c.scenario for c in snap.results] == ["probe", "fork_held_lock"]
    assert snap.targets[0].status == "ok"
    assert snap.targets[0].probe == {"default_start_method": "fork"}
    assert snap.run.notes == ["one note"] and snap.run.interrupted and snap.run.duration_s == 1.3
    # The head plus cells.jsonl rebuild the run if the harness dies before results.json.
    ledger.write_head(snap)
    ledger.close()
    again = recover(tmp_path)
    assert {c.scenario for c in again.results} == {"probe", "fork_held_lock"}
    ledger.record(probe)  # a straggler after the run was saved is dropped, not an error
