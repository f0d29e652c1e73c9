"""What a run has found so far, kept as it arrives: every finished cell (appended to
``cells.jsonl`` at once, and in memory), each target's row, the run's facts and notes, and
``run.json``, the head a partial run is rebuilt from if the harness dies. The run's workers
share one ledger; every method is thread-safe. Deciding what runs where is not its business
(``scheduler``), nor running it (``runs``)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import platform
import socket
import sys
import threading
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from lab import __version__
from lab.matrix import Target
from lab.results import (
    Cell,
    CellSink,
    Outcome,
    RunInfo,
    RunResults,
    TargetResult,
    TargetStatus,
    now_iso,
)
from lab.run.engines import Survey
from lab.run.scheduler import Plan


class Ledger:
    def __init__(self, run_dir: Path, info: RunInfo, rows: Iterable[TargetResult], *,
                 order: Mapping[tuple[Any, ...], int],
                 on_cell: Callable[[Cell], None] = lambda cell: None) -> None:
        self.dir = run_dir
        self._info = info
        self._rows = {r.id: r for r in rows}
        self._order = order  # a cell's key -> its place in results.json
        self._cells: list[Cell] = []
        self._lock = threading.Lock()
        self._sink = CellSink(run_dir / "cells.jsonl")
        self._on_cell = on_cell

    def record(self, cell: Cell) -> None:
        self._sink.add(cell)
        with self._lock:
            self._cells.append(cell)
        self._on_cell(cell)

    def set_target(self, tid: str, **changes: Any) -> None:
        with self._lock:
            self._rows[tid] = dataclasses.replace(self._rows[tid], **changes)

    def row(self, tid: str) -> TargetResult:
        with self._lock:
            return self._rows[tid]

    @property
    def cells(self) -> list[Cell]:
        with self._lock:
            return list(self._cells)

    def note(self, *notes: str) -> None:
        with self._lock:
            self._info = dataclasses.replace(self._info, notes=[*self._info.notes, *notes])

    def snapshot(self, *, complete: bool, interrupted: bool, duration_s: float) -> RunResults:
        """The run as found so far, cells in plan order, each row with its probe's facts."""
        with self._lock:
            cells, rows, info = list(self._cells), list(self._rows.values()), self._info
        cells.sort(key=lambda c: self._order.get(c.key, len(self._order)))
        probes = {c.target: c.measurements for c in cells
                  if c.scenario == "probe" and c.outcome == Outcome.OK}
        rows = [dataclasses.replace(r, probe=probes.get(r.id, {})) for r in rows]
        info = dataclasses.replace(info, finished_at=now_iso(), complete=complete,
                                   interrupted=interrupted, duration_s=round(duration_s, 1))
        return RunResults(run=info, targets=rows, results=cells)

    def write_head(self, head: RunResults) -> None:
        """run.json: enough to rebuild a partial run from cells.jsonl if the harness dies."""
        data = {"schema_version": head.schema_version, "run": dataclasses.asdict(head.run),
                "targets": [dataclasses.asdict(t) for t in head.targets], "results": []}
        (self.dir / "run.json").write_text(json.dumps(data, indent=1, default=repr))

    def close(self) -> None:
        self._sink.close()


def new_run_id() -> str:
    return dt.datetime.now().strftime("%Y%m%d-%H%M%S") + f"-{os.getpid() % 10000:04d}"


def host_facts() -> dict[str, object]:
    return {
        "hostname": socket.gethostname(),
        "system": platform.system(),
        "release": platform.release(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
    }


def run_head(run_id: str, targets: Iterable[Target], plan: Plan, survey: Survey, *,
             command: Iterable[str], quick: bool,
             scenarios: Mapping[str, Mapping[str, Any]]) -> tuple[RunInfo, list[TargetResult]]:
    """What a run's ledger starts from: the run's facts (host, engines as found, command,
    scenarios that are not built in) and a row per target, each ``error: not run`` until its
    image is had."""
    engines: dict[str, dict[str, Any]] = {
        name: {**dataclasses.asdict(f), "where": survey.where[name],
               "files": survey.files.get(name, "bind")}
        for name, f in survey.facts.items()}
    for name, why in survey.down.items():
        engines[name] = {"reachable": False, "reason": why}
    first = next(iter(survey.facts.values()), None)
    info = RunInfo(id=run_id, started_at=now_iso(), lab_version=__version__,
                   host=host_facts(), command=list(command),
                   docker=dataclasses.asdict(first) if first else {}, engines=engines,
                   quick=quick,
                   scenarios={k: {x: v for x, v in meta.items() if x != "script"}
                              for k, meta in scenarios.items()})
    emulated = plan.emulated or {}
    rows = [TargetResult(id=t.id, implementation=t.implementation, version=t.version,
                         platform=t.platform, python=t.python, kind=t.kind,
                         emulated=emulated.get(t.id, t.emulated), status=TargetStatus.ERROR,
                         reason="not run", engine=None if t.host_python else plan.engine_of(t.id),
                         optional=t.optional, freethreaded=t.freethreaded,
                         python_gil=t.python_gil)
            for t in targets]
    return info, rows
