"""The scheduler: what runs where and when, decided by pure functions (no Docker, no I/O).

Behaviour cells (correctness, deadlocks) of one target share one container and run side by
side inside it, so hung cells that burn no CPU cost one deadline together; containers of
different targets run in parallel. Timing cells run afterwards, one container at a time per
engine, pinned to that engine's CPUs with nothing else of the lab running on it: timings taken
while other containers run are noise on a 2-core machine. Engines are independent machines, so
timing cells on different engines run at the same time.

Where: each target goes to an engine that runs its platform natively, the least loaded of them
by expected cost; a platform no engine runs natively is emulated on the least loaded engine. A
host interpreter runs on this machine, in the first engine's timing lane.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from lab.errors import ConfigError
from lab.matrix import Target, native_platforms
from lab.results import METHOD_ORDER, START_METHODS
from lab.runner.protocol import OVERRUN_LIMIT
from lab.runner.scenarios import CATALOG

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


@dataclass(frozen=True, kw_only=True)
class CellSpec:
    scenario: str
    start_method: str | None
    kind: str
    deadline_s: float
    params: Mapping[str, Any]
    container: str | None = None  # a CONTAINERS variant; None: the target's usual container
    script: Mapping[str, Any] | None = None  # `lab check`: run this program as the cell
    env: Mapping[str, str] | None = None  # --env, a scenario file's ENV: set in the cell

    def to_plan(self) -> dict[str, Any]:
        plan = {"scenario": self.scenario, "start_method": self.start_method,
                "deadline_s": self.deadline_s, "params": dict(self.params)}
        if self.script is not None:
            plan["script"] = dict(self.script)
        if self.env:
            plan["env"] = dict(self.env)
        return plan


@dataclass(frozen=True, kw_only=True)
class EngineSlot:
    """What the planner knows of one engine: lab.toml's word and the engine's own facts."""

    name: str
    platforms: frozenset[str]  # run natively
    cpus: int | None = None  # None: not known; timing jobs are then not pinned
    timing: bool = True  # may run timing cells

    @property
    def cpuset(self) -> str | None:
        """Every CPU of the engine, for a timing job that must have them all."""
        return ",".join(str(c) for c in range(self.cpus)) if self.cpus else None


def local_slot(cpus: int | None = None) -> EngineSlot:
    """The environment's engine, assumed to be on this machine."""
    return EngineSlot(name="default", platforms=frozenset(native_platforms()), cpus=cpus)


@dataclass(frozen=True, kw_only=True)
class Job:
    """One container (or host process) running some cells of one target, on one engine."""

    target_id: str
    phase: str  # behaviour | timing
    cells: tuple[CellSpec, ...]
    parallel: int
    exclusive: bool  # alone on its engine (timing): nothing else of the lab runs there
    deadline_scale: float
    container: str | None = None  # a CONTAINERS variant
    engine: str = "default"  # where it runs (a host interpreter: whose lane it shares)
    cpuset: str | None = None  # pinned to these CPUs of its engine
    emulated: bool = False  # its engine does not run the target's platform natively

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
        deadlines = sorted((c.deadline_s * self.overrun_limit for c in self.cells),
                           reverse=True)
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

    @property
    def overrun_limit(self) -> float:
        """How many deadlines a behaviour cell still working at its deadline may run: it is
        starved, not hung. Timing cells run alone on quiet CPUs, and keep theirs."""
        return 1.0 if self.exclusive else OVERRUN_LIMIT

    def to_plan(self) -> dict[str, Any]:
        plan: dict[str, Any] = {"parallel": self.parallel, "deadline_scale": self.deadline_scale,
                                "overrun_limit": self.overrun_limit,
                                "cells": [c.to_plan() for c in self.cells]}
        if self.exclusive:
            plan["quiet"] = dict(QUIET)
        return plan


@dataclass(frozen=True, kw_only=True)
class Plan:
    """The schedule: behaviour jobs in parallel (builds first), then each engine's timing jobs
    one after another, engines side by side."""

    behaviour: tuple[Job, ...]  # run in parallel across targets
    timing: tuple[Job, ...]  # per engine: one after another, exclusive
    engines: tuple[str, ...] = ("default",)
    placement: Mapping[str, str] | None = None  # target id -> engine
    emulated: Mapping[str, bool] | None = None  # target id -> emulated where it was placed

    @property
    def jobs(self) -> tuple[Job, ...]:
        return self.behaviour + self.timing

    def timing_on(self, engine: str) -> tuple[Job, ...]:
        """One engine's timing lane, in order."""
        return tuple(j for j in self.timing if j.engine == engine)

    def engine_of(self, target_id: str) -> str:
        return (self.placement or {}).get(target_id, self.engines[0])

    def cells_of(self, target_id: str) -> int:
        return sum(len(j.cells) for j in self.jobs if j.target_id == target_id)


def select_scenarios(names: Iterable[str] | None, catalog: Catalog = CATALOG) -> list[str]:
    """Scenario ids in catalog order; the probe always runs (targets' facts come from it).
    By default every scenario but those that need packages installed (``requires``): they run
    when named, as the default run needs no package index."""
    if not names:
        return [s for s in catalog if not catalog[s].get("requires")]
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


def required_by(scenarios: Iterable[str], catalog: Catalog = CATALOG) -> list[str]:
    """The packages the named scenarios import, in pip's words, each once."""
    found: list[str] = []
    for name in scenarios:
        for req in catalog[name].get("requires") or ():
            if req not in found:
                found.append(str(req))
    return found


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
                                      container=container, script=meta.get("script"),
                                      env=meta.get("env")))
    return cells


def longest_first(cells: Iterable[CellSpec], catalog: Catalog = CATALOG) -> tuple[CellSpec, ...]:
    """Behaviour cells in the order that packs a job's parallel slots best: the longest
    (catalog ``cost_s``, a deliberate hang included) first, catalog order among equals. The
    report sorts cells back into catalog order."""
    def cost(c: CellSpec) -> float:
        value = (catalog.get(c.scenario) or {}).get("cost_s")
        return float(value) if isinstance(value, int | float) else 0.0
    return tuple(sorted(cells, key=cost, reverse=True))


def deadline_scale(target: Target, emulated: bool | None = None) -> float:
    emulated = target.emulated if emulated is None else emulated
    return target.deadline_scale * (EMULATION_SLOWDOWN if emulated else 1.0)


def _cost(cells: Iterable[CellSpec], catalog: Catalog) -> float:
    """Declared seconds of some cells (half the deadline where a scenario declares none)."""
    total = 0.0
    for c in cells:
        meta = catalog.get(c.scenario) or {}
        value = meta.get("cost_s")
        total += float(value) if isinstance(value, int | float) else c.deadline_s / 2
    return total


def place_targets(targets: Iterable[Target], engines: list[EngineSlot],
                  cost: Mapping[str, float]) -> dict[str, str]:
    """Target id -> engine name. Native first: a target goes to an engine that runs its
    platform natively if any does, else to any (emulated there); among the candidates, the
    least loaded by expected cost, heaviest targets placed first (LPT), ties to the earlier
    engine. Host interpreters run on this machine: the first engine's lane."""
    load = {e.name: 0.0 for e in engines}
    order = {e.name: i for i, e in enumerate(engines)}
    placed: dict[str, str] = {}
    for t in sorted(targets, key=lambda t: -cost.get(t.id, 0.0)):
        if t.host_python:
            placed[t.id] = engines[0].name
            continue
        native = [e for e in engines if t.platform in e.platforms]
        best = min(native or engines, key=lambda e: (load[e.name], order[e.name]))
        placed[t.id] = best.name
        load[best.name] += cost.get(t.id, 0.0)
    return placed


def plan_runs(
    targets: Iterable[Target],
    *,
    engines: Iterable[EngineSlot] | None = None,
    scenarios: Iterable[str] | None = None,
    quick: bool = False,
    cell_parallel: int = CELL_PARALLEL,
    catalog: Catalog = CATALOG,
) -> Plan:
    """Split each target's cells into a behaviour job, a timing job and one behaviour job per
    container variant (host interpreters have no container, so no variants), and say where
    each runs: its engine, and for timing jobs the CPUs they are pinned to. Timing cells of a
    target placed on an engine with ``timing = false`` go to the least loaded engine that
    allows them (native first); with none, planning fails."""
    targets = list(targets)
    slots = list(engines or [local_slot()])
    if len({e.name for e in slots}) != len(slots):
        raise ConfigError("two engines share a name. Give each [engine.NAME] its own name.")
    by_name = {e.name: e for e in slots}
    cells = plan_cells(select_scenarios(scenarios, catalog), quick=quick, catalog=catalog)
    variants = sorted({c.container for c in cells if c.container})
    b_cells = longest_first((c for c in cells if c.kind != "timing" and not c.container), catalog)
    t_cells = tuple(c for c in cells if c.kind == "timing" and not c.container)
    per_target = _cost(t_cells, catalog) + _cost(b_cells, catalog) / cell_parallel
    placement = place_targets(targets, slots, {t.id: per_target * t.deadline_scale
                                               for t in targets})
    timers = [e for e in slots if e.timing]
    if t_cells and targets and not timers:
        raise ConfigError("no engine may run timing cells (every one has timing = false). "
                          "Set timing = true on one, or leave timing scenarios out with "
                          "--scenarios.")
    timing_load = {e.name: 0.0 for e in timers}
    behaviour, timing = [], []
    emulated: dict[str, bool] = {}
    for target in targets:
        where = by_name[placement[target.id]]
        emulated[target.id] = (not target.host_python
                               and target.platform not in where.platforms)
        scale = deadline_scale(target, emulated[target.id])
        if b_cells:
            behaviour.append(Job(target_id=target.id, phase="behaviour", cells=b_cells,
                                 parallel=cell_parallel, exclusive=False, deadline_scale=scale,
                                 engine=where.name, emulated=emulated[target.id]))
        for variant in [] if target.host_python else variants:
            v = tuple(c for c in cells if c.container == variant)
            behaviour.append(Job(target_id=target.id, phase="behaviour", cells=v,
                                 parallel=cell_parallel, exclusive=False, deadline_scale=scale,
                                 container=variant, engine=where.name,
                                 emulated=emulated[target.id]))
        if t_cells:
            lane, lane_emulated = where, emulated[target.id]
            if not where.timing:
                native = [e for e in timers if target.platform in e.platforms]
                lane = min(native or timers, key=lambda e: timing_load[e.name])
                lane_emulated = (not target.host_python
                                 and target.platform not in lane.platforms)
                scale = deadline_scale(target, lane_emulated)
            timing_load[lane.name] += _cost(t_cells, catalog)
            timing.append(Job(target_id=target.id, phase="timing", cells=t_cells, parallel=1,
                              exclusive=True, deadline_scale=scale, engine=lane.name,
                              cpuset=None if target.host_python else lane.cpuset,
                              emulated=lane_emulated))
    return Plan(behaviour=tuple(behaviour), timing=tuple(timing),
                engines=tuple(e.name for e in slots), placement=placement, emulated=emulated)


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
