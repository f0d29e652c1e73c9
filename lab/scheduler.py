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
STARTUP_ALLOWANCE_S = 20.0  # per wave: slow interpreter start-ups (the runner allows each 60 s)
# Timing jobs: before each cell (unless the cell before ran undisturbed, at most
# `retry_above`), wait up to max_wait_s for other processes to use at most `threshold` CPUs; a
# cell during which they used more than `retry_above` anyway is measured again, up to
# `retries` times. (Short cells read 0.15-0.25 CPU of "others" on a quiet machine here - the
# lab's own polling, 10 ms ticks, fuse-overlayfs serving the files a new interpreter opens -
# so the bar for measuring again is higher than the bar for starting.)
QUIET = {"threshold": 0.15, "retry_above": 0.3, "max_wait_s": 10.0, "retries": 2}
# Container variants a scenario may ask for (its catalog entry's ``containers``): each runs
# that scenario's cells in a container of its own, started with these limits.
CONTAINERS: dict[str, dict[str, Any]] = {
    "cpus=1": {"nano_cpus": 1_000_000_000},  # docker run --cpus 1 (a CFS quota)
    "cpuset=0": {"cpuset_cpus": "0"},  # docker run --cpuset-cpus 0 (an affinity)
}
# The catalog as the host plans with it: the runner's CATALOG, plus scenario files and
# `lab check` scripts (their ``start_methods`` may be a list, "default" included).
Catalog = Mapping[str, Mapping[str, Any]]
METHOD_ORDER: tuple[str | None, ...] = (None, "default", *START_METHODS)


@dataclass(frozen=True, kw_only=True)
class CellSpec:
    scenario: str
    start_method: str | None
    kind: str
    deadline_s: float
    params: Mapping[str, Any]
    container: str | None = None  # a CONTAINERS variant; None: the target's usual container
    script: Mapping[str, Any] | None = None  # `lab check`: run this program as the cell

    def to_plan(self) -> dict[str, Any]:
        plan = {"scenario": self.scenario, "start_method": self.start_method,
                "deadline_s": self.deadline_s, "params": dict(self.params)}
        if self.script is not None:
            plan["script"] = dict(self.script)
        return plan


@dataclass(frozen=True, kw_only=True)
class Job:
    """One container (or host process) running some cells of one target."""

    target_id: str
    phase: str  # behaviour | timing
    cells: tuple[CellSpec, ...]
    parallel: int
    exclusive: bool
    deadline_scale: float
    container: str | None = None  # a CONTAINERS variant

    @property
    def name(self) -> str:
        suffix = "-" + self.container.replace("=", "") if self.container else ""
        return f"{self.target_id}-{self.phase}{suffix}"

    @property
    def limits(self) -> dict[str, Any]:
        """Extra container settings of this job's variant (nano_cpus, cpuset_cpus)."""
        return dict(CONTAINERS[self.container]) if self.container else {}

    @property
    def host_deadline_s(self) -> float:
        """The host's own deadline for the whole container (the runner's comes first)."""
        deadlines = sorted((c.deadline_s for c in self.cells), reverse=True)
        waves = math.ceil(len(deadlines) / self.parallel)
        # At worst every wave waits out its longest cell (timing cells: every attempt, and
        # the wait for a quiet machine before each; a cell that disagreed with the others of
        # its scenario is measured once more, with retries of its own).
        worst = sum(deadlines[i * self.parallel] for i in range(waves))
        worst += waves * STARTUP_ALLOWANCE_S  # a cell's deadline starts once its code runs
        if self.exclusive:
            tries = 2 * (1 + int(QUIET["retries"]))
            worst = tries * (worst + len(self.cells) * QUIET["max_wait_s"])
        return (worst + CONTAINER_OVERHEAD_S) * self.deadline_scale

    def to_plan(self) -> dict[str, Any]:
        plan: dict[str, Any] = {"parallel": self.parallel, "deadline_scale": self.deadline_scale,
                                "cells": [c.to_plan() for c in self.cells]}
        if self.exclusive:
            plan["quiet"] = dict(QUIET)
        return plan


@dataclass(frozen=True, kw_only=True)
class Plan:
    behaviour: tuple[Job, ...]  # run in parallel across targets
    timing: tuple[Job, ...]  # run one after another, exclusive

    @property
    def jobs(self) -> tuple[Job, ...]:
        return self.behaviour + self.timing

    def cells_of(self, target_id: str) -> int:
        return sum(len(j.cells) for j in self.jobs if j.target_id == target_id)


def select_scenarios(names: Iterable[str] | None, catalog: Catalog = CATALOG) -> list[str]:
    """Scenario ids in catalog order; the probe always runs (targets' facts come from it)."""
    if not names:
        return list(catalog)
    wanted = set(names)
    unknown = sorted(wanted - set(catalog))
    if unknown:
        import difflib

        close = difflib.get_close_matches(unknown[0], list(catalog), n=1, cutoff=0.5)
        raise ConfigError(
            f"unknown scenario {', '.join(unknown)}: valid ids are {', '.join(catalog)}."
            + (f" Did you mean {close[0]}?" if close else "") + " See `lab list`."
        )
    wanted.add("probe")
    return [s for s in catalog if s in wanted]


def start_methods_of(scenario: str, offered: Iterable[str] = START_METHODS,
                     catalog: Catalog = CATALOG) -> list[str | None]:
    """The cells' start methods for a scenario: None for a cell without a child process,
    "default" for one that leaves the interpreter's default alone (`lab check`)."""
    kind = catalog[scenario]["start_methods"]
    if isinstance(kind, list | tuple):
        return list(kind)
    methods: list[str | None] = []
    if kind in ("none", "none+each"):
        methods.append(None)
    if kind in ("each", "none+each"):
        methods.extend(offered)
    return methods


def plan_cells(scenarios: Iterable[str], *, quick: bool = False,
               catalog: Catalog = CATALOG) -> list[CellSpec]:
    """Every (scenario, start method, container) cell, in catalog order. Methods the
    interpreter lacks are planned anyway: the runner records them as ``skipped``, observed."""
    cells = []
    params = {"quick": True} if quick else {}
    for name in scenarios:
        meta = catalog[name]
        deadline = meta["deadline_s"]
        assert isinstance(deadline, int | float)
        for container in meta.get("containers") or [None]:
            extra = {"container": container} if container else {}
            for method in start_methods_of(name, catalog=catalog):
                cells.append(CellSpec(scenario=name, start_method=method, kind=str(meta["kind"]),
                                      deadline_s=float(deadline), params={**params, **extra},
                                      container=container, script=meta.get("script")))
    return cells


def longest_first(cells: Iterable[CellSpec], catalog: Catalog = CATALOG) -> tuple[CellSpec, ...]:
    """Behaviour cells in the order that packs a job's parallel slots best: the longest
    (catalog ``cost_s``, a deliberate hang included) first, catalog order among equals. The
    report sorts cells back into catalog order."""
    def cost(c: CellSpec) -> float:
        value = (catalog.get(c.scenario) or {}).get("cost_s")
        return float(value) if isinstance(value, int | float) else 0.0
    return tuple(sorted(cells, key=cost, reverse=True))


def deadline_scale(target: Target) -> float:
    return target.deadline_scale * (EMULATION_SLOWDOWN if target.emulated else 1.0)


def plan_runs(
    targets: Iterable[Target],
    *,
    scenarios: Iterable[str] | None = None,
    quick: bool = False,
    cell_parallel: int = CELL_PARALLEL,
    catalog: Catalog = CATALOG,
) -> Plan:
    """Split each target's cells into a behaviour job, a timing job and one behaviour job per
    container variant (host interpreters have no container, so no variants)."""
    cells = plan_cells(select_scenarios(scenarios, catalog), quick=quick, catalog=catalog)
    variants = sorted({c.container for c in cells if c.container})
    behaviour, timing = [], []
    for target in targets:
        scale = deadline_scale(target)
        b = longest_first((c for c in cells if c.kind != "timing" and not c.container),
                          catalog)
        t = tuple(c for c in cells if c.kind == "timing" and not c.container)
        if b:
            behaviour.append(Job(target_id=target.id, phase="behaviour", cells=b,
                                 parallel=cell_parallel, exclusive=False, deadline_scale=scale))
        for variant in [] if target.host_python else variants:
            v = tuple(c for c in cells if c.container == variant)
            behaviour.append(Job(target_id=target.id, phase="behaviour", cells=v,
                                 parallel=cell_parallel, exclusive=False, deadline_scale=scale,
                                 container=variant))
        if t:
            timing.append(Job(target_id=target.id, phase="timing", cells=t, parallel=1,
                              exclusive=True, deadline_scale=scale))
    return Plan(behaviour=tuple(behaviour), timing=tuple(timing))


def cell_order(target_ids: list[str], catalog: Catalog = CATALOG
               ) -> dict[tuple[str, str, str | None, str | None], int]:
    """Sort key: matrix order, then catalog order, then container variant (the usual one
    first), then no-method first, then "default", then START_METHODS."""
    order = {}
    i = 0
    for tid in target_ids:
        for scenario, meta in catalog.items():
            for container in [None, *(meta.get("containers") or [])]:
                for method in METHOD_ORDER:
                    order[(tid, scenario, method, container)] = i
                    i += 1
    return order
