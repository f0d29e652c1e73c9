"""The plan as the terminal shows it before a run: targets, scenarios, cells, the images still
to build (asked of each engine, nothing built), and an estimate of the wall time from the
cell durations of the last comparable run, else the scenarios' declared costs."""

from __future__ import annotations

import json
import math
import statistics
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lab.engine import Engine
from lab.images.plan import plan_image
from lab.matrix import Target
from lab.run.scheduler import Job, Plan

BASE_BUILD_S = 45.0  # one Debian base from the mirror, several at once on 2 cores
LAYER_BUILD_S = 2.0  # a target's runner layer
CONTAINER_START_S = 2.0  # what a container adds to its cells (measured: 1-3 s)
Key = tuple[str, str, str | None, str | None]


@dataclass(frozen=True, kw_only=True)
class Estimate:
    seconds: float
    source: str  # where the cell costs came from


QUICK_TIMING = 0.4  # --quick takes fewer samples: what a timing cell's declared cost shrinks to


def history(out: Path, exclude: str | None = None, *, quick: bool = False,
            ) -> tuple[str | None, dict[Key, float]]:
    """Cell durations of the newest earlier run under ``out`` that recorded any, made with
    the same ``--quick`` setting (a quick run's timing cells are several times shorter)."""
    try:
        runs = sorted((p for p in out.iterdir() if p.is_dir() and not p.is_symlink()
                       and p.name != exclude), reverse=True)
    except OSError:
        return None, {}
    for run in runs[:20]:
        try:
            data = json.loads((run / "results.json").read_text())
        except (OSError, ValueError):
            continue
        if bool((data.get("run") or {}).get("quick")) != quick:
            continue
        found: dict[Key, float] = {}
        for c in data.get("results") or []:
            d = c.get("duration_s") if isinstance(c, dict) else None
            if isinstance(d, int | float):
                found[(str(c.get("target")), str(c.get("scenario")), c.get("start_method"),
                       c.get("container"))] = float(d)
        if found:
            return run.name, found
    return None, {}


def cell_cost(job: Job, key: Key, catalog: Mapping[str, Mapping[str, Any]],
              past: Mapping[Key, float], by_scenario: Mapping[tuple[str, str | None], float],
              quick: bool = False) -> tuple[float, bool]:
    """(seconds, from history?) for one cell."""
    if key in past:
        return past[key], True
    if (key[1], key[2]) in by_scenario:
        return by_scenario[(key[1], key[2])] * job.deadline_scale, True
    meta = catalog.get(key[1], {})
    declared = meta.get("cost_s")
    if not isinstance(declared, int | float):  # scenario files, lab check: half the deadline
        declared = min(float(meta.get("deadline_s") or 30) / 2, 30.0)
    if quick and meta.get("kind") == "timing":
        declared = float(declared) * QUICK_TIMING
    return float(declared) * job.deadline_scale, False


def estimate(plan: Plan, catalog: Mapping[str, Mapping[str, Any]], jobs: int,
             past: Mapping[Key, float], past_run: str | None,
             to_build: tuple[int, int] = (0, 0), *, quick: bool = False,
             leave_out: Collection[str] = ()) -> Estimate:
    """Builds, then behaviour containers ``jobs`` at a time (cells side by side in each),
    then timing containers one after another: the schedule lab run follows. Targets in
    ``leave_out`` (optional ones whose image is not here yet: where they cannot be had, they
    take no time) are not counted, and the source says so."""
    by: dict[tuple[str, str | None], list[float]] = defaultdict(list)
    for (_, scenario, method, _), d in past.items():
        by[(scenario, method)].append(d)
    by_scenario = {k: statistics.median(v) for k, v in by.items()}
    used_history = False

    def job_cost(job: Job) -> float:
        nonlocal used_history
        costs = []
        for c in job.cells:
            cost, known = cell_cost(job, (job.target_id, c.scenario, c.start_method,
                                          c.container), catalog, past, by_scenario, quick)
            used_history |= known
            costs.append(cost)
        waves = max(sum(costs) / job.parallel, max(costs, default=0.0))
        return waves + CONTAINER_START_S

    bases, layers = to_build
    build = (BASE_BUILD_S * math.ceil(bases / 4) if bases else 0.0) + LAYER_BUILD_S * layers
    behaviour = [job_cost(j) for j in plan.behaviour if j.target_id not in leave_out]
    behaviour_s = max(sum(behaviour) / max(1, jobs), max(behaviour, default=0.0))
    # each engine's timing jobs one after another, engines side by side
    timing_s = max((sum(job_cost(j) for j in plan.timing_on(e) if j.target_id not in leave_out)
                    for e in plan.engines), default=0.0)
    source = (f"the cell durations of run {past_run}" if used_history and past_run
              else "the scenarios' declared costs, no earlier run of this kind here")
    if leave_out:
        source += f"; not counting {len(leave_out)} optional target(s) not built yet"
    return Estimate(seconds=build + behaviour_s + timing_s, source=source)


def duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    if seconds < 90:
        return f"{seconds} s"
    return f"{seconds // 60} min {seconds % 60:02d} s"


def plan_text(*, targets: list[str], scenarios: list[str], cells: int, containers: int,
              to_build: list[str], est: Estimate, optional: Collection[str] = (),
              optional_cells: int = 0) -> str:
    """The plan as the terminal shows it before a run. Optional targets are counted apart:
    where they cannot be had they are left out, and their cells with them."""
    build = (f"to build: {', '.join(to_build)}" if to_build else "every image already built")
    wanted = [t for t in targets if t not in optional]
    extra = [t for t in targets if t in optional]
    what = f"{len(wanted)} target(s) ({', '.join(wanted)})"
    if extra:
        what += f" + {len(extra)} optional where they can be had ({', '.join(extra)})"
    count = f"{cells - optional_cells} cells" + (f" (+{optional_cells} on optional targets)"
                                                 if extra else "")
    return "\n".join([
        f"plan: {what}; {len(scenarios)} scenario(s); {count} in {containers} container(s)",
        f"      images: {build}",
        f"      estimate: about {duration(est.seconds)} (from {est.source}; Ctrl-C stops and "
        "keeps what finished)",
    ])


def images_to_build(targets: Iterable[Target], plan: Plan, *, connect: Callable[[str], Engine],
                    lost: Collection[str]) -> tuple[list[str], int, int, set[str]]:
    """(what must be built, bases, layers, targets whose image is here): asked of each
    engine, nothing built."""
    needed: list[str] = []
    here: set[str] = set()
    bases: set[tuple[str, str]] = set()
    layers = 0
    by_engine: dict[str, list[Target]] = {}
    for t in targets:
        if not t.host_python and plan.engine_of(t.id) not in lost:
            by_engine.setdefault(plan.engine_of(t.id), []).append(t)
    several = len(plan.engines) > 1
    for name, mine in by_engine.items():
        engine = connect(name)
        on = f" on {name}" if several else ""
        try:
            for t in mine:
                image = plan_image(t)
                if engine.image(image.tag) is not None:
                    here.add(t.id)
                    continue
                layers += 1
                if t.archive is not None and image.archive is None:
                    needed.append(f"{t.id} (no archive: see its reason){on}")
                    continue
                base_key = image.base_key or image.base_ref
                if t.base is not None and engine.image(base_key) is None:
                    if (name, base_key) not in bases:
                        needed.append(f"base {t.base.suite}/{t.arch}{on}")
                    bases.add((name, base_key))
                if image.archive is not None and engine.image(image.base_ref) is None:
                    needed.append(f"{t.id} from {image.archive.filename}{on}")
                else:
                    needed.append(f"{t.id} layer{on}" if t.base
                                  else f"{t.id} (registry {t.image}){on}")
        finally:
            engine.close()
    return needed, len(bases), layers, here


def plan_preview(targets: list[Target], plan: Plan, catalog: Mapping[str, Mapping[str, Any]], *,
                 out: Path, run_id: str, jobs: int, quick: bool,
                 connect: Callable[[str], Engine], lost: Collection[str]) -> str:
    """The whole preview: the plan, the images to build, and the estimate."""
    needed, bases, layers, here = images_to_build(targets, plan, connect=connect, lost=lost)
    past_run, past = history(out, exclude=run_id, quick=quick)
    optional = {t.id for t in targets if t.optional}
    est = estimate(plan, catalog, jobs, past, past_run, (bases, layers), quick=quick,
                   leave_out=optional - here)
    scenarios = sorted({c.scenario for j in plan.jobs for c in j.cells})
    return plan_text(targets=[t.id for t in targets], scenarios=scenarios,
                     cells=sum(len(j.cells) for j in plan.jobs), optional=optional,
                     optional_cells=sum(len(j.cells) for j in plan.jobs
                                        if j.target_id in optional),
                     containers=len(plan.jobs), to_build=needed, est=est)
