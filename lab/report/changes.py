""""What changes for your code": the breakages users hit when the start method changes, per
target and start method, derived from this run's cells only.

Each hazard reads one scenario's measurements (or a `lab check` program's outcome) and says
``breaks``, ``works`` or ``unknown`` (the cell did not give an answer), with a short text and a
link to the cell. The ``default`` column resolves each target's default start method from its
probe, so it shows what a user gets without choosing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from lab.report.evidence import anchor
from lab.results import CHECK_METHODS, Cell, Outcome, RunResults, TargetResult
from lab.runner import measurements as M

BREAKS, WORKS, UNKNOWN = "breaks", "works", "unknown"
COLUMNS = CHECK_METHODS


@dataclass(frozen=True, kw_only=True)
class Effect:
    status: str
    text: str
    evidence: str | None = None  # the cell's anchor
    method: str | None = None  # for the default column: the method it resolved to


@dataclass(frozen=True, kw_only=True)
class Hazard:
    id: str
    title: str
    explain: str
    effects: dict[str, dict[str, Effect]] = field(default_factory=dict)  # target -> column ->

    def effect(self, target: str, column: str) -> Effect | None:
        return self.effects.get(target, {}).get(column)


def _first_line(text: Any, limit: int = 160) -> str:
    line = str(text or "").strip().splitlines()
    return (line[0][:limit] if line else "")


def _pickle(c: Cell) -> Effect:
    m = c.measurements
    failed = [k for k in ("lambda", "closure", "nested_function")
              if isinstance(m.get(k), dict) and m[k].get("started") is False]
    if failed:
        first = m[failed[0]]
        return Effect(status=BREAKS, text=f"{', '.join(failed).replace('_', ' ')} fail at "
                      f"start(): {_first_line(first.get('error'))}")
    ran = [k for k in ("lambda", "closure", "nested_function")
           if isinstance(m.get(k), dict) and m[k].get("child_ran")]
    if len(ran) == 3:
        return Effect(status=WORKS, text="a lambda, a closure and a nested function all run")
    return Effect(status=UNKNOWN, text="the children did not report")


def _guard(c: Cell) -> Effect:
    m = c.measurements
    if m.get("child_ran") and m.get("script_exit_code") == 0:
        return Effect(status=WORKS, text="the child runs")
    if m.get("timed_out"):  # runs before 2026-12-04: the cell gave its script 20 s
        return Effect(status=BREAKS, text="the script hangs")
    if "script_exit_code" not in m:
        return Effect(status=UNKNOWN, text="the script's result was not recorded")
    why = _first_line(m.get("error")) or f"exit code {m.get('script_exit_code')}"
    if m.get("bootstrap_error"):
        return Effect(status=BREAKS, text="re-importing the script starts a process again: "
                      "RuntimeError (\"bootstrapping phase\")"
                      + ("" if why.startswith("RuntimeError") else f"; it ends with {why}"))
    return Effect(status=BREAKS, text=f"the child fails: {why}")


def _state(c: Cell) -> Effect:
    seen = c.measurements.get(M.CHILD_SEES)
    if seen is None:
        return Effect(status=UNKNOWN, text="the child did not report")
    if c.measurements.get(M.CHILD_INHERITED_RUN_TIME_STATE):
        return Effect(status=WORKS, text="the child sees the value set at run time")
    return Effect(status=BREAKS, text=f"the child sees the import-time value ({seen!s:.40})")


def _pool_method(key: str) -> Callable[[Cell], Effect]:
    def judge(c: Cell) -> Effect:
        m = c.measurements.get(key)
        if not isinstance(m, dict):
            return Effect(status=UNKNOWN, text="not recorded")
        if m.get("error"):
            return Effect(status=BREAKS, text=f"refused: {_first_line(m['error'])}")
        used = m.get("worker_method")
        if used and used != c.start_method:
            return Effect(status=BREAKS, text=f"quietly uses {used}, not {c.start_method}")
        if used:
            return Effect(status=WORKS, text=f"uses {used}")
        return Effect(status=UNKNOWN, text="no worker reported")
    return judge


def _lock(c: Cell) -> Effect:
    if c.outcome == Outcome.HUNG:
        return Effect(status=BREAKS, text="the child deadlocks on a lock a thread held at start")
    if c.measurements.get(M.CHILD_ACQUIRED_LOCK):
        return Effect(status=WORKS, text="the child takes the lock")
    return Effect(status=UNKNOWN, text="the child did not report")


def _openmp(c: Cell) -> Effect:
    if c.outcome == Outcome.HUNG:
        return Effect(status=BREAKS, text="the child hangs in its parallel region")
    if c.outcome == Outcome.SKIPPED:
        return Effect(status=UNKNOWN, text=_first_line(c.detail) or "skipped")
    m = c.measurements
    if m.get(M.CHILD_COMPLETED_REGION):
        return Effect(status=WORKS, text=f"the child's region ran on "
                      f"{m.get(M.CHILD_REGION_THREADS)} thread(s)")
    return Effect(status=UNKNOWN, text="the child did not report")


def _limit(c: Cell) -> Effect:
    m = c.measurements
    workers = m.get("executor_max_workers")
    quota = (m.get("cgroup_cpu_quota") or {}).get("cpus") if isinstance(
        m.get("cgroup_cpu_quota"), dict) else None
    aff = m.get("affinity")
    allowed = quota if c.container == "cpus=1" else (len(aff) if isinstance(aff, list) else None)
    if not isinstance(workers, int) or not isinstance(allowed, int | float):
        return Effect(status=UNKNOWN, text="not recorded")
    what = (f"{workers} workers for a {allowed:g}-CPU quota; os.cpu_count() = "
            f"{m.get('cpu_count')}") if c.container == "cpus=1" else (
            f"{workers} workers for {allowed:g} allowed CPU(s); os.cpu_count() = "
            f"{m.get('cpu_count')}")
    return Effect(status=BREAKS if workers > allowed else WORKS, text=what)


# (id, scenario, container, title, why it matters, judge)
HAZARDS: tuple[tuple[str, str, str | None, str, str, Callable[[Cell], Effect]], ...] = (
    ("lambda", "pickle_target", None, "A lambda, closure or nested function as a Process target",
     "spawn and forkserver pickle the target by name", _pickle),
    ("guard", "main_guard", None, "A script with no if __name__ == \"__main__\" guard",
     "spawn children and the forkserver import the main script again", _guard),
    ("state", "inherited_state", None, "Module state set at run time, read in the child",
     "only a fork child is a copy of the parent", _state),
    ("lock", "fork_held_lock", None, "A lock held by another thread when the child starts",
     "a fork child inherits the lock held, and no thread to release it", _lock),
    ("openmp", "openmp_fork", None, "An OpenMP parallel region in the parent, then in the child",
     "GNU OpenMP's thread pool does not survive fork (GCC bug 52303); OMP_NUM_THREADS=1 "
     "avoids it (openmp_fork_single)", _openmp),
    ("max_tasks", "executor_defaults", None,
     "ProcessPoolExecutor(max_tasks_per_child=1), no mp_context",
     "3.11+ may switch the pool to another start method",
     _pool_method("ProcessPoolExecutor(max_tasks_per_child=1)")),
    ("max_tasks_ctx", "executor_defaults", None,
     "ProcessPoolExecutor(max_tasks_per_child=1, mp_context=this method)",
     "fork cannot recycle workers", _pool_method(
         "ProcessPoolExecutor(max_tasks_per_child=1, mp_context=this method)")),
    ("cpus", "cpu_limits", "cpus=1", "Default worker count in a container run with --cpus 1",
     "a CPU quota is not an affinity: Python does not see it", _limit),
    ("cpuset", "cpu_limits", "cpuset=0",
     "Default worker count in a container run with --cpuset-cpus 0",
     "process_cpu_count() (3.13+) follows the affinity; cpu_count() does not", _limit),
)


def _check(c: Cell) -> Effect:
    if c.outcome == Outcome.OK:
        return Effect(status=WORKS, text="ended ok")
    return Effect(status=BREAKS, text=f"{c.outcome}: {_first_line(c.detail)}")


def _default(t: TargetResult) -> str | None:
    d = t.probe.get("default_start_method")
    return d if isinstance(d, str) else None


def hazards(r: RunResults, columns: list[TargetResult]) -> list[Hazard]:
    """Every hazard this run observed, with each target's effect per column."""
    out = []
    rows: list[tuple[str, str, str | None, str, str, Callable[[Cell], Effect]]] = list(HAZARDS)
    for sid, meta in r.run.scenarios.items():
        if sid.startswith(("check:", "test:")):
            what = "Your program" if sid.startswith("check:") else "Your test suite"
            rows.append((sid, sid, None, f"{what}: {meta.get('title') or sid}",
                         f"from lab {sid.split(':')[0]}", _check))
    for hid, scenario, container, title, explain, judge in rows:
        effects: dict[str, dict[str, Effect]] = {}
        for t in columns:
            row: dict[str, Effect] = {}
            for method in COLUMNS:
                cell = r.cell(t.id, scenario, method, container)
                if cell is None:
                    continue
                if cell.outcome in (Outcome.OK, Outcome.HUNG) or scenario.startswith(("check:",
                                                                                      "test:")):
                    e = judge(cell)
                elif cell.outcome == Outcome.SKIPPED:
                    e = Effect(status=UNKNOWN, text=f"not offered: {_first_line(cell.detail)}")
                else:
                    e = Effect(status=UNKNOWN, text=f"{cell.outcome}: {_first_line(cell.detail)}")
                row[method] = Effect(status=e.status, text=e.text, evidence=anchor(cell))
            default = _default(t)
            if "default" not in row and default in row:
                e = row[default]
                row["default"] = Effect(status=e.status, text=e.text, evidence=e.evidence,
                                        method=default)
            elif "default" in row and default:
                row["default"] = Effect(status=row["default"].status, text=row["default"].text,
                                        evidence=row["default"].evidence, method=default)
            if row:
                effects[t.id] = row
        if effects:
            out.append(Hazard(id=hid, title=title, explain=explain, effects=effects))
    return out


@dataclass(frozen=True, kw_only=True)
class Summary:
    target: str
    default: str | None
    breaks: list[tuple[str, Effect]]  # (hazard title, effect) under the default


def summaries(found: list[Hazard], columns: list[TargetResult]) -> list[Summary]:
    """Per target: what breaks under the default start method (the example sentence)."""
    out = []
    for t in columns:
        broken = [(h.title, e) for h in found
                  if (e := h.effect(t.id, "default")) is not None and e.status == BREAKS]
        if any(h.effects.get(t.id) for h in found):
            out.append(Summary(target=t.id, default=_default(t), breaks=broken))
    return out
