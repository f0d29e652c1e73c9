"""The scheduler: what runs where and when, decided by pure functions (no Docker, no I/O).

Behaviour cells (correctness, deadlocks) of one target share one container and run side by
side inside it, so hung cells that burn no CPU cost one deadline together; containers of
different targets run in parallel. Timing cells run afterwards, one container at a time,
pinned to CPUs of their own with nothing else of the lab running: timings taken while other
containers run are noise on a 2-core machine.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from lab.errors import ConfigError
from lab.matrix import Target
from lab.runner.scenarios import CATALOG, START_METHODS

EMULATION_SLOWDOWN = 8.0  # qemu-user: deadlines stretch, timings are not comparable
CELL_PARALLEL = 4  # behaviour cells running side by side in one container
CONTAINER_OVERHEAD_S = 60.0  # interpreter start, init, image layer mount, slack


@dataclass(frozen=True, kw_only=True)
class CellSpec:
    scenario: str
    start_method: str | None
    kind: str
    deadline_s: float
    params: Mapping[str, Any]

    def to_plan(self) -> dict[str, Any]:
        return {"scenario": self.scenario, "start_method": self.start_method,
                "deadline_s": self.deadline_s, "params": dict(self.params)}


@dataclass(frozen=True, kw_only=True)
class Job:
    """One container (or host process) running some cells of one target."""

    target_id: str
    phase: str  # behaviour | timing
    cells: tuple[CellSpec, ...]
    parallel: int
    exclusive: bool
    deadline_scale: float

    @property
    def name(self) -> str:
        return f"{self.target_id}-{self.phase}"

    @property
    def host_deadline_s(self) -> float:
        """The host's own deadline for the whole container (the runner's comes first)."""
        deadlines = sorted((c.deadline_s for c in self.cells), reverse=True)
        waves = math.ceil(len(deadlines) / self.parallel)
        # At worst every wave waits out its longest cell.
        worst = sum(deadlines[i * self.parallel] for i in range(waves))
        return (worst + CONTAINER_OVERHEAD_S) * self.deadline_scale

    def to_plan(self) -> dict[str, Any]:
        return {"parallel": self.parallel, "deadline_scale": self.deadline_scale,
                "cells": [c.to_plan() for c in self.cells]}


@dataclass(frozen=True, kw_only=True)
class Plan:
    behaviour: tuple[Job, ...]  # run in parallel across targets
    timing: tuple[Job, ...]  # run one after another, exclusive

    @property
    def jobs(self) -> tuple[Job, ...]:
        return self.behaviour + self.timing

    def cells_of(self, target_id: str) -> int:
        return sum(len(j.cells) for j in self.jobs if j.target_id == target_id)


def select_scenarios(names: Iterable[str] | None) -> list[str]:
    """Scenario ids in catalog order; the probe always runs (targets' facts come from it)."""
    if not names:
        return list(CATALOG)
    wanted = set(names)
    unknown = sorted(wanted - set(CATALOG))
    if unknown:
        raise ConfigError(
            f"unknown scenario {', '.join(unknown)}: valid ids are {', '.join(CATALOG)}. "
            "See `lab list`."
        )
    wanted.add("probe")
    return [s for s in CATALOG if s in wanted]


def start_methods_of(scenario: str, offered: Iterable[str] = START_METHODS) -> list[str | None]:
    """The cells' start methods for a scenario: None for a cell without a child process."""
    kind = CATALOG[scenario]["start_methods"]
    methods: list[str | None] = []
    if kind in ("none", "none+each"):
        methods.append(None)
    if kind in ("each", "none+each"):
        methods.extend(offered)
    return methods


def plan_cells(scenarios: Iterable[str], *, quick: bool = False) -> list[CellSpec]:
    """Every (scenario, start method) cell, in catalog order. Methods the interpreter
    lacks are planned anyway: the runner records them as ``skipped``, observed."""
    cells = []
    params = {"quick": True} if quick else {}
    for name in scenarios:
        meta = CATALOG[name]
        for method in start_methods_of(name):
            deadline = meta["deadline_s"]
            assert isinstance(deadline, int | float)
            cells.append(CellSpec(scenario=name, start_method=method, kind=str(meta["kind"]),
                                  deadline_s=float(deadline), params=params))
    return cells


def deadline_scale(target: Target) -> float:
    return target.deadline_scale * (EMULATION_SLOWDOWN if target.emulated else 1.0)


def plan_runs(
    targets: Iterable[Target],
    *,
    scenarios: Iterable[str] | None = None,
    quick: bool = False,
    cell_parallel: int = CELL_PARALLEL,
) -> Plan:
    """Split each target's cells into a behaviour job and a timing job."""
    cells = plan_cells(select_scenarios(scenarios), quick=quick)
    behaviour, timing = [], []
    for target in targets:
        scale = deadline_scale(target)
        b = tuple(c for c in cells if c.kind != "timing")
        t = tuple(c for c in cells if c.kind == "timing")
        if b:
            behaviour.append(Job(target_id=target.id, phase="behaviour", cells=b,
                                 parallel=cell_parallel, exclusive=False, deadline_scale=scale))
        if t:
            timing.append(Job(target_id=target.id, phase="timing", cells=t, parallel=1,
                              exclusive=True, deadline_scale=scale))
    return Plan(behaviour=tuple(behaviour), timing=tuple(timing))


def cell_order(target_ids: list[str]) -> dict[tuple[str, str, str | None], int]:
    """Sort key: matrix order, then catalog order, then no-method first, then START_METHODS."""
    order = {}
    methods: list[str | None] = [None, *START_METHODS]
    i = 0
    for tid in target_ids:
        for scenario in CATALOG:
            for method in methods:
                order[(tid, scenario, method)] = i
                i += 1
    return order
