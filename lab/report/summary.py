"""What the terminal says around a run: the plan first (targets, scenarios, cells, images to
build, an estimate of the wall time), the findings last (outcomes, hangs, what changed between
versions, the claims, the report's address). Plain text; pure functions of their inputs.
"""

from __future__ import annotations

import json
import math
import re
import statistics
import textwrap
from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lab.results import RunResults, TargetResult, TargetStatus
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


@dataclass(frozen=True, kw_only=True)
class Absent:
    """Optional targets left out for one reason: one line however many share it."""

    targets: list[TargetResult]
    source: str  # "registry", "python-build-standalone", ...
    reason: str
    own: dict[str, str]  # target id -> what its reason names of its own (archive, image)


_OWN_PART = (re.compile(r" \((?:It is )?(?P<name>cpython-[^()\s]*\.tar\.gz)\.?\)"),  # archive
             re.compile(r"^cannot pull (?P<name>\S+): "),  # a registry image
             # where this target's archive was looked for: each names its own file pattern
             re.compile(r" (?P<name>No local archive matched: .*?)\.(?= Offline\?)"))


def absent_groups(columns: Iterable[TargetResult]) -> list[Absent]:
    """The optional targets that could not be had, grouped by what kept them out: their
    reasons with what names each one's own archive or image taken out (the full reason is in
    results.json and each target's tooltip)."""
    groups: dict[tuple[str, str], list[TargetResult]] = {}
    own: dict[str, str] = {}
    for t in columns:
        if not t.left_out:
            continue
        reason = first_line(t.reason)
        mine = [t.implementation + " " + t.flavour_version]
        for part in _OWN_PART:
            mine += [m.group("name") for m in part.finditer(reason)]
            reason = part.sub("", reason)
        own[t.id] = " · ".join(mine)
        source = {"archive": "python-build-standalone", "registry": "registry"}.get(t.kind,
                                                                                  t.kind)
        groups.setdefault((source, reason), []).append(t)
    return [Absent(targets=ts, source=src, reason=why, own={t.id: own[t.id] for t in ts})
            for (src, why), ts in groups.items()]


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


def hang_groups(results: RunResults) -> list[tuple[str, list[str]]]:
    """(scenario · method[ · container], targets where it hung), in cell order: the report's
    deadlock groups (``lab.report.stacks``), as the terminal names them."""
    from lab.report.stacks import hang_groups as groups

    return [(f"{g.scenario} · {g.start_method or '-'}"
             + (f" · {g.container}" if g.container else ""), g.targets)
            for g in groups(results.results)]


def first_line(reason: str | None) -> str:
    """A reason's first line; one that is empty or only line breaks says so."""
    lines = (reason or "").strip().splitlines()
    return lines[0] if lines else "no reason recorded"


def _clip(reason: str, width: int = 320) -> str:
    """A reason on one terminal line or two, cut at a word (the whole one is in the report)."""
    return textwrap.shorten(reason, width, placeholder=" … (the rest in the report)")


def findings_text(results: RunResults, html: Path, *, changes: Iterable[str] = (),
                  claims: Iterable[str] = ()) -> str:
    counts: dict[str, int] = defaultdict(int)
    for c in results.results:
        counts[c.outcome] += 1
    ran = [t.id for t in results.targets if t.status == TargetStatus.OK]
    lines = [f"findings: {len(results.results)} cells: "
             + ", ".join(f"{n} {o}" for o, n in sorted(counts.items(), key=lambda x: -x[1]))
             + ("" if results.run.complete else " (partial run: only what finished)")]
    for t in results.targets:
        if t.status != TargetStatus.OK and not t.left_out:
            lines.append(f"  {t.id}: {t.status}: {_clip(first_line(t.reason))}")
    for g in absent_groups(results.targets):
        lines.append(f"  {', '.join(t.id for t in g.targets)}: not available here (optional, "
                     f"{g.source}): {_clip(g.reason)}")
    groups = hang_groups(results)
    if groups:
        lines.append("hung (killed at their deadline, stacks in the report):")
        for label, where in groups:
            lines.append(f"  {label}: {len(where)}/{len(ran)} targets ({', '.join(where)})")
    changes = list(changes)
    if changes:
        lines.append("changed between versions:")
        lines += [f"  {c}" for c in changes]
    claims = list(claims)
    if claims:
        lines.append("claims:")
        lines += [f"  {c}" for c in claims]
    lines.append(f"report: {html.resolve().as_uri()}")
    return "\n".join(lines)
