"""Results: the data model of a run and its files, ``results.json`` and ``cells.jsonl``.

Format history (``schema_version``; the reader ignores keys it does not know):
  1 - lab 0.1.0: run, targets (with probe), results (one cell per scenario x start method).
  2 - targets[].base: how a Debian base was made by the lab's own bootstrap (suite, signed
      Release date, signing key, mirror, package versions). Version 1 files read fine.
  3 - results[].container: the container variant a cell ran in (``cpus=1``, ``cpuset=0``;
      null for the usual one); start_method ``default`` (`lab check`: the interpreter's own);
      run.scenarios: scenarios that are not built in (scenario files, `lab check` scripts),
      with their kind, title, claim and source; results[].quiet and results[].attempts (timing
      cells measured again when other processes disturbed them). Older files read fine.
  4 - engines: run.engines (name -> id, name, version, arch, kernel, cpus, storage driver of
      each Docker engine used), targets[].engine and results[].engine (the engine's name in
      run.engines; null for host interpreters and older files). run.docker stays: the first
      engine. Older files read fine.
  5 - archive targets: targets[].kind ``archive`` (a python-build-standalone archive on a
      Debian base), targets[].archive (its URL, SHA256, file name, who vouched for the hash,
      full version), targets[].freethreaded (the matrix's word: a free-threaded build),
      targets[].python_gil (PYTHON_GIL set in its containers), results[].gil_enabled (the GIL
      state each cell ran with). Older files read fine.
  6 - a user's dependencies: targets[].dependencies (what was requested and where from, each
      package pip installed for that target with its version, wheel tags and SHA256, the deps
      image, whether it was reused, the network the step used); run.scenarios[].env and
      run.scenarios[].requires (NAME=VALUE set in the cells of a `lab check` program or a
      scenario file, and what the file declared it needs). Older files read fine.
The JSON Schema is ``lab/schema/results.schema.json``. The report reads only these files, so any
old run can be re-rendered; ``cells.jsonl`` is appended as each cell finishes, so a run that
died keeps what finished.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import threading
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar

from lab.errors import ConfigError
from lab.runner import protocol

SCHEMA_VERSION = 6


class Outcome(StrEnum):
    """What became of a cell (``results[].outcome``), in the runner's own words."""

    OK = protocol.OK
    HUNG = protocol.HUNG
    CRASHED = protocol.CRASHED
    FAILED = protocol.FAILED
    SKIPPED = protocol.SKIPPED
    ERROR = protocol.ERROR

    @classmethod
    def values(cls) -> tuple[str, ...]:
        return tuple(o.value for o in cls)


# Outcomes a reader must look at: hung is a finding, the others something went wrong.
PROBLEMS = (Outcome.HUNG, Outcome.CRASHED, Outcome.FAILED, Outcome.ERROR)


class TargetStatus(StrEnum):
    """What became of a target (``targets[].status``): whether its cells could run at all."""

    OK = "ok"
    UNAVAILABLE = "unavailable"  # its image cannot be had here (no registry, no mirror, ...)
    BUILD_FAILED = "build_failed"
    ERROR = "error"


# The start methods as the runner names them, and the order every table and list shows a
# target's cells in: no method first (probe), then lab check's "default", then the methods.
START_METHODS = protocol.START_METHODS
DEFAULT_METHOD = protocol.DEFAULT
CHECK_METHODS = (DEFAULT_METHOD, *START_METHODS)
METHOD_ORDER: tuple[str | None, ...] = (None, *CHECK_METHODS)


@dataclass(frozen=True, kw_only=True)
class ImageRef:
    tag: str
    id: str


@dataclass(frozen=True, kw_only=True)
class Cell:
    """One (target, scenario, start method) observation."""

    target: str
    scenario: str
    start_method: str | None
    outcome: Outcome
    duration_s: float | None = None
    measurements: dict[str, Any] = field(default_factory=dict)
    warnings: list[dict[str, Any]] = field(default_factory=list)
    stacks: str | None = None
    detail: str | None = None
    output: str | None = None
    exit_code: int | None = None
    signal: str | None = None
    kind: str = "behaviour"  # behaviour | timing
    cpus: list[int] | None = None  # CPUs the cell could run on
    exclusive: bool = False  # no other lab work ran on those CPUs meanwhile
    concurrent: list[str] = field(default_factory=list)  # other containers running meanwhile
    emulated: bool = False  # timings not comparable with native ones
    deadline_s: float | None = None
    # CPU seconds of the cell, of every other process on the machine meanwhile, and stolen
    # by the hypervisor (own_s, others_s, others_cpus, steal_s, host_busy_s, wall_s).
    cpu: dict[str, Any] | None = None
    container: str | None = None  # a container variant (cpus=1, cpuset=0); None: the usual
    # Timing cells: what the wait for a quiet machine found before the kept attempt, and every
    # attempt when a disturbed cell was measured again (the kept one marked).
    quiet: dict[str, Any] | None = None
    attempts: list[dict[str, Any]] | None = None
    engine: str | None = None  # where it ran: a key of run.engines (None: on the host)
    # sys._is_gil_enabled() in the cell's process after its scenario ran (None: not exposed,
    # before 3.13 and on PyPy): the GIL state the cell actually ran with.
    gil_enabled: bool | None = None

    @property
    def key(self) -> tuple[str, str, str | None, str | None]:
        return (self.target, self.scenario, self.start_method, self.container)


@dataclass(frozen=True, kw_only=True)
class TargetResult:
    id: str
    implementation: str
    version: str
    platform: str
    python: str
    kind: str  # debian | registry | archive | host
    emulated: bool = False
    image: ImageRef | None = None
    status: TargetStatus = TargetStatus.OK
    reason: str | None = None
    probe: dict[str, Any] = field(default_factory=dict)
    build_seconds: float | None = None
    # How the Debian base was made (suite, Release date, signing key, package versions);
    # see lab.images.plan.BaseProvenance. None for registry and host targets.
    base: dict[str, Any] | None = None
    engine: str | None = None  # the engine its image and behaviour cells were on
    optional: bool = False  # the matrix's word: its absence does not make the run partial
    # Archive targets: the python-build-standalone archive its interpreter was unpacked from
    # (url, sha256, filename, vouched_by, version); see lab.images.pythons.ArchiveSource.
    archive: dict[str, Any] | None = None
    freethreaded: bool = False  # the matrix's word; the probe says what the build is
    python_gil: str | None = None  # PYTHON_GIL set in its containers by the matrix
    # A user's requirements as installed for this target (lab.images.deps.DepsImage.to_json);
    # None when the run asked for none.
    dependencies: dict[str, Any] | None = None

    @property
    def flavour_version(self) -> str:
        """``3.14``, or ``3.14t`` for a free-threaded build: its own column beside 3.14."""
        return self.version + ("t" if self.freethreaded else "")

    @property
    def left_out(self) -> bool:
        """An optional target whose image cannot be had here: not a failure of the run."""
        return self.optional and self.status == "unavailable"


@dataclass(frozen=True, kw_only=True)
class RunInfo:
    id: str
    started_at: str
    finished_at: str | None = None
    lab_version: str = ""
    host: dict[str, Any] = field(default_factory=dict)
    docker: dict[str, Any] = field(default_factory=dict)
    engines: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> EngineFacts
    command: list[str] = field(default_factory=list)
    complete: bool = False
    interrupted: bool = False
    duration_s: float | None = None
    quick: bool = False
    notes: list[str] = field(default_factory=list)
    # Scenarios that are not built in: id -> kind, title, claim, source, start_methods.
    scenarios: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class RunResults:
    run: RunInfo
    targets: list[TargetResult]
    results: list[Cell]
    schema_version: int = SCHEMA_VERSION

    def target(self, tid: str) -> TargetResult | None:
        return next((t for t in self.targets if t.id == tid), None)

    def cell(self, tid: str, scenario: str, start_method: str | None,
             container: str | None = None) -> Cell | None:
        key = (tid, scenario, start_method, container)
        return next((c for c in self.results if c.key == key), None)

    def cells_for(self, scenario: str) -> list[Cell]:
        return [c for c in self.results if c.scenario == scenario]


T = TypeVar("T")


def _build(cls: type[T], data: Any) -> T:
    """Make a dataclass from a dict, ignoring unknown keys (newer writers)."""
    if not isinstance(data, dict):
        raise ValueError(f"expected an object for {cls.__name__}, got {type(data).__name__}")
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    return cls(**{k: v for k, v in data.items() if k in names})


def cell_from_dict(data: dict[str, Any]) -> Cell:
    cell = _build(Cell, data)
    return dataclasses.replace(cell, outcome=Outcome(cell.outcome))


def from_dict(data: dict[str, Any]) -> RunResults:
    if not isinstance(data, dict):
        raise ValueError(f"expected a JSON object, got {type(data).__name__}")
    version = data.get("schema_version")
    if not isinstance(version, int) or version > SCHEMA_VERSION:
        raise ValueError(
            f"schema_version {version!r} is not one this lab ({SCHEMA_VERSION}) can read"
        )
    targets = []
    for raw in data.get("targets") or []:
        image = raw.get("image")
        t = _build(TargetResult, {**raw, "image": None})
        t = dataclasses.replace(t, status=TargetStatus(t.status))
        if image:
            t = dataclasses.replace(t, image=_build(ImageRef, image))
        targets.append(t)
    return RunResults(
        run=_build(RunInfo, data.get("run") or {}),
        targets=targets,
        results=[cell_from_dict(c) for c in data.get("results") or []],
        schema_version=version,
    )


def to_dict(results: RunResults) -> dict[str, Any]:
    return {
        "schema_version": results.schema_version,
        "run": dataclasses.asdict(results.run),
        "targets": [dataclasses.asdict(t) for t in results.targets],
        "results": [dataclasses.asdict(c) for c in results.results],
    }


def write_json(results: RunResults, path: Path) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(to_dict(results), indent=1, default=repr))
    os.replace(tmp, path)


def load(path: Path) -> RunResults:
    """Read a results.json, or a run folder (results.json, else what cells.jsonl kept)."""
    path = Path(path)
    if path.is_dir():
        if (path / "results.json").is_file():
            path = path / "results.json"
        else:
            return recover(path)
    try:
        return from_dict(json.loads(path.read_text()))
    except OSError as exc:
        raise ConfigError(f"cannot read {path} ({exc.strerror}). Check the path.") from exc
    except (ValueError, TypeError) as exc:
        raise ConfigError(
            f"{path} is not a lab results file ({exc}). Give a results.json from a lab run."
        ) from exc


def recover(run_dir: Path) -> RunResults:
    """Rebuild a partial run from ``run.json`` and ``cells.jsonl`` (the harness died)."""
    try:
        head = json.loads((run_dir / "run.json").read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"{run_dir} has neither results.json nor a readable run.json. "
            "Give the folder of a lab run."
        ) from exc
    partial = from_dict(head)
    cells = read_cells(run_dir / "cells.jsonl")
    run = dataclasses.replace(partial.run, complete=False)
    return RunResults(run=run, targets=partial.targets, results=cells)


def read_cells(path: Path) -> list[Cell]:
    cells: list[Cell] = []
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return cells
    for line in lines:
        try:
            cells.append(cell_from_dict(json.loads(line)))
        except (ValueError, TypeError):
            continue  # a torn last line from a crash
    return cells


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


class CellSink:
    """Appends each finished cell to ``cells.jsonl`` at once (thread-safe, fsynced)."""

    def __init__(self, path: Path) -> None:
        self._fh = open(path, "a")
        self._lock = threading.Lock()

    def add(self, cell: Cell) -> None:
        line = json.dumps(dataclasses.asdict(cell), default=repr)
        with self._lock:
            if self._fh.closed:  # a straggler after an interrupted run was saved
                return
            self._fh.write(line + "\n")
            self._fh.flush()
            os.fsync(self._fh.fileno())

    def close(self) -> None:
        with self._lock:
            self._fh.close()
