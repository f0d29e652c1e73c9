"""A run, end to end: its folder, its images, executing the plan, and its files.

Thin on purpose: what runs when is decided by ``scheduler.plan_runs``; how one container runs
is ``containers.run_job``. This module wires them with a thread pool (one Engine per thread),
persists every cell as it finishes, and on Ctrl-C stops and removes every container it made,
then writes and renders what finished, marked incomplete.
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import datetime as dt
import json
import os
import platform
import shutil
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lab import __version__
from lab.containers import JobContext, run_job
from lab.engine import MANAGED, Engine
from lab.errors import (
    BuildFailed,
    ConfigError,
    EngineUnavailable,
    ImageUnavailable,
    Interrupted,
    LabError,
)
from lab.images import ImageBuilder, plan_image
from lab.matrix import Target
from lab.progress import Progress
from lab.results import (
    Cell,
    CellSink,
    ImageRef,
    RunInfo,
    RunResults,
    TargetResult,
    write_json,
)
from lab.scheduler import Job, Plan, cell_order, plan_runs
from lab.usercode import CheckSpec, ScenarioFile, catalog_with, stage_user_dir

REPORTS = Path("reports")
BUILD_ALLOWANCE_S = 1800.0  # one cold bootstrap of the slowest base, emulated
BEHAVIOUR_TARGETS = 6  # targets whose behaviour cells run at once (builds: --jobs at once)


def watchdog_budget(plan: Plan, jobs: int) -> float:
    """The whole run's upper bound: builds, behaviour waves in parallel, timing in series."""
    behaviour = sum(j.host_deadline_s for j in plan.behaviour) / max(1, jobs)
    longest = max((j.host_deadline_s for j in plan.behaviour), default=0.0)
    timing = sum(j.host_deadline_s for j in plan.timing)
    return BUILD_ALLOWANCE_S + max(behaviour, longest) + timing


@dataclass(frozen=True, kw_only=True)
class RunOptions:
    targets: list[Target]
    out: Path = REPORTS
    jobs: int = 3
    scenarios: list[str] | None = None
    quick: bool = False
    command: list[str] = field(default_factory=list)
    progress: bool = True
    run_id: str | None = None
    timeout_s: float | None = None  # the run-level watchdog; None: computed from the plan
    scenario_files: list[ScenarioFile] = field(default_factory=list)
    check: CheckSpec | None = None  # `lab check`: the probe and this program, nothing else


def new_run_id() -> str:
    return dt.datetime.now().strftime("%Y%m%d-%H%M%S") + f"-{os.getpid() % 10000:04d}"


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def host_facts() -> dict[str, object]:
    return {
        "hostname": socket.gethostname(),
        "system": platform.system(),
        "release": platform.release(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
    }


def remove_leftovers(engine: Engine, *, run_id: str | None = None,
                     everything: bool = False) -> list[str]:
    """Remove lab containers and volumes (a bootstrap's): of ``run_id``; or all
    (``everything``); or, by default, those whose harness on this host is gone (killed with
    SIGKILL, say)."""
    labels = {MANAGED: "true"}
    if run_id:
        labels["lab.run"] = run_id
    me = socket.gethostname()

    def doomed(found: dict[str, str]) -> bool:
        if everything or run_id:
            return True
        pid = found.get("lab.pid", "")
        return found.get("lab.host") == me and pid.isdigit() and not _alive(int(pid))

    removed = []
    for c in engine.containers(labels):
        if doomed(c.labels):
            engine.remove_container(c.id, quiet=True)
            removed.append(c.name)
    for name, found in engine.volumes(labels):  # after the containers that use them
        if doomed(found):
            engine.remove_volume(name)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Run:
    def __init__(self, options: RunOptions, connect: Callable[[], Engine] = Engine.connect):
        self.options = options
        self.connect = connect
        self.run_id = options.run_id or new_run_id()
        self.dir = options.out / self.run_id
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            (self.dir / "logs").mkdir(exist_ok=True)
        except OSError as exc:
            raise ConfigError(
                f"cannot create the run folder {self.dir} ({exc.strerror or exc}). Pick a "
                "folder you can write to with --out.") from exc
        extra = {sf.id: sf.meta() for sf in options.scenario_files}
        scenarios = options.scenarios
        if options.check is not None:
            extra[options.check.id] = options.check.meta()
            scenarios = ["probe", options.check.id]
        elif scenarios is not None and extra:
            scenarios = [*scenarios, *extra]
        self.catalog = catalog_with(extra)
        self.plan: Plan = plan_runs(options.targets, scenarios=scenarios, quick=options.quick,
                                    catalog=self.catalog)
        try:
            self.user_dir = stage_user_dir(self.dir / "work" / "user", options.scenario_files,
                                           options.check)
        except (ConfigError, OSError) as exc:
            shutil.rmtree(self.dir, ignore_errors=True)  # nothing ran: leave nothing half-made
            if isinstance(exc, ConfigError):
                raise
            raise ConfigError(f"cannot copy your files into the run folder ({exc}). Check "
                              "that you can read them.") from exc
        self.stop = threading.Event()
        self.started = time.monotonic()
        self.cells: list[Cell] = []
        self.cells_lock = threading.Lock()
        self.target_rows: dict[str, TargetResult] = {
            t.id: TargetResult(id=t.id, implementation=t.implementation, version=t.version,
                               platform=t.platform, python=t.python, kind=t.kind,
                               emulated=t.emulated, status="error", reason="not run")
            for t in options.targets
        }
        self.images: dict[str, str] = {}
        self.active: set[str] = set()
        self.active_lock = threading.Lock()
        self.sink = CellSink(self.dir / "cells.jsonl")
        self.progress = Progress({t.id: self.plan.cells_of(t.id) for t in options.targets},
                                 live=options.progress)
        self.info = RunInfo(id=self.run_id, started_at=now_iso(), lab_version=__version__,
                            host=host_facts(), command=list(options.command),
                            quick=options.quick,
                            scenarios={k: {x: v for x, v in meta.items() if x != "script"}
                                       for k, meta in extra.items()})

    # -- the plan, as the terminal shows it -----------------------------------------------------
    def images_to_build(self) -> tuple[list[str], int, int]:
        """(what must be built, bases, layers): asked of the engine, nothing built."""
        needed: list[str] = []
        bases: set[str] = set()
        layers = 0
        containers = [t for t in self.options.targets if not t.host_python]
        if not containers:
            return needed, 0, 0
        engine = self.connect()
        try:
            for t in containers:
                plan = plan_image(t)
                if engine.image(plan.tag) is not None:
                    continue
                layers += 1
                if t.base is not None and engine.image(plan.base_ref) is None:
                    if plan.base_ref not in bases:
                        needed.append(f"base {t.base.suite}/{t.arch}")
                    bases.add(plan.base_ref)
                needed.append(f"{t.id} layer" if t.base else f"{t.id} (registry {t.image})")
        finally:
            engine.close()
        return needed, len(bases), layers

    def plan_text(self) -> str:
        from lab.summary import estimate, history, plan_text

        needed, bases, layers = self.images_to_build()
        past_run, past = history(self.options.out, exclude=self.run_id,
                                 quick=self.options.quick)
        est = estimate(self.plan, self.catalog, self.options.jobs, past, past_run,
                       (bases, layers), quick=self.options.quick)
        scenarios = sorted({c.scenario for j in self.plan.jobs for c in j.cells})
        return plan_text(targets=[t.id for t in self.options.targets], scenarios=scenarios,
                         cells=sum(len(j.cells) for j in self.plan.jobs),
                         containers=len(self.plan.jobs), to_build=needed, est=est)

    # -- bookkeeping ---------------------------------------------------------------------------
    def record(self, cell: Cell) -> None:
        self.sink.add(cell)
        with self.cells_lock:
            self.cells.append(cell)
        self.progress.cell(cell.target, cell.outcome)

    def set_target(self, tid: str, **changes: Any) -> None:
        with self.cells_lock:
            self.target_rows[tid] = dataclasses.replace(self.target_rows[tid], **changes)

    def running_others(self, me: str) -> Callable[[], list[str]]:
        def others() -> list[str]:
            with self.active_lock:
                return sorted(a for a in self.active if a != me)
        return others

    def write_head(self) -> None:
        """run.json: enough to rebuild a partial run from cells.jsonl if the harness dies."""
        head = self.results(complete=False)
        data = {"schema_version": head.schema_version, "run": dataclasses.asdict(head.run),
                "targets": [dataclasses.asdict(t) for t in head.targets], "results": []}
        (self.dir / "run.json").write_text(json.dumps(data, indent=1, default=repr))

    # -- phases --------------------------------------------------------------------------------
    def prepare(self, target: Target, builder: ImageBuilder) -> bool:
        """Get the target's image; on failure its row says why and the others go on."""
        if target.host_python:
            self.set_target(target.id, status="ok", reason=None)
            return True
        started = time.monotonic()
        self.progress.stage(target.id, "image")
        engine = self.connect()
        try:
            image = builder.ensure(engine, plan_image(target))
        except ImageUnavailable as exc:
            self.set_target(target.id, status="unavailable", reason=str(exc))
            self.progress.stage(target.id, "unavailable")
            return False
        except BuildFailed as exc:
            reason = str(exc) + (f"\n{exc.log_tail}" if exc.log_tail else "")
            self.set_target(target.id, status="build_failed", reason=reason)
            self.progress.stage(target.id, "build failed")
            return False
        except EngineUnavailable:
            raise
        except LabError as exc:
            self.set_target(target.id, status="build_failed", reason=str(exc))
            self.progress.stage(target.id, "build failed")
            return False
        finally:
            engine.close()
        self.images[target.id] = image.tag
        self.set_target(target.id, status="ok", reason=None,
                        image=ImageRef(tag=image.tag, id=image.id),
                        base=image.base.to_json() if image.base else None,
                        build_seconds=round(time.monotonic() - started, 1))
        return True

    def execute(self, job: Job, target: Target, *, cpuset: str | None) -> list[Cell]:
        if self.stop.is_set():
            return []
        self.progress.stage(target.id, job.phase)
        engine = None if target.host_python else self.connect()
        with self.active_lock:
            self.active.add(job.name)
        try:
            ctx = JobContext(run_id=self.run_id, run_dir=self.dir, target=target,
                             image_tag=self.images.get(target.id), cpuset=cpuset, stop=self.stop,
                             on_cell=self.record, concurrent=self.running_others(job.name),
                             user_dir=self.user_dir,
                             on_note=lambda note: self.progress.stage(target.id,
                                                                      f"timing: {note}"))
            return run_job(engine, job, ctx)
        finally:
            with self.active_lock:
                self.active.discard(job.name)
            if engine is not None:
                engine.close()

    def build_then_behaviour(self, target: Target, builder: ImageBuilder) -> None:
        # Builds take `jobs` slots (CPU and disk heavy); behaviour cells mostly wait (hangs
        # waiting out deadlines, sleeps), so every target's run side by side once built.
        with self.build_slots:
            if not self.prepare(target, builder):
                return
        jobs = [job for job in self.plan.behaviour if job.target_id == target.id]
        # A target's container variants (cpu_limits) run beside its main behaviour job.
        with cf.ThreadPoolExecutor(max_workers=max(1, len(jobs)),
                                   thread_name_prefix=f"lab-{target.id}") as pool:
            for done in [pool.submit(self.execute, job, target, cpuset=None) for job in jobs]:
                done.result()
        self.progress.stage(target.id, "waiting for timing slot")

    def timing(self, targets: dict[str, Target]) -> None:
        """Timing jobs one at a time, pinned to every CPU, nothing else of the lab running."""
        cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
        cpuset = ",".join(str(c) for c in cpus) or None
        for job in self.plan.timing:
            if self.stop.is_set():
                return
            target = targets[job.target_id]
            if self.target_rows[target.id].status != "ok":
                continue
            self.execute(job, target, cpuset=None if target.host_python else cpuset)
            self.progress.stage(target.id, "done")

    # -- the whole run -------------------------------------------------------------------------
    def results(self, *, complete: bool) -> RunResults:
        with self.cells_lock:
            cells = list(self.cells)
            rows = [self.target_rows[t.id] for t in self.options.targets]
        order = cell_order([t.id for t in self.options.targets], self.catalog)
        cells.sort(key=lambda c: order.get(c.key, len(order)))
        probes = {c.target: c.measurements for c in cells
                  if c.scenario == "probe" and c.outcome == "ok"}
        rows = [dataclasses.replace(r, probe=probes.get(r.id, {})) for r in rows]
        info = dataclasses.replace(
            self.info, finished_at=now_iso(), complete=complete,
            interrupted=self.stop.is_set(),
            duration_s=round(time.monotonic() - self.started, 1))
        return RunResults(run=info, targets=rows, results=cells)

    def go(self) -> RunResults:
        """Execute the plan. Raises Interrupted (after saving) on Ctrl-C."""
        engine = None
        needs_docker = any(not t.host_python for t in self.options.targets)
        if needs_docker:
            engine = self.connect()
            try:
                facts = dataclasses.asdict(engine.facts())
                self.info = dataclasses.replace(self.info, docker=facts)
                gone = remove_leftovers(engine)
                if gone:
                    self.info = dataclasses.replace(
                        self.info, notes=[f"removed {len(gone)} leftover container(s) of a "
                                          f"killed run: {', '.join(gone)}"])
            finally:
                engine.close()
        self.write_head()
        builder = ImageBuilder(log_dir=self.dir / "logs", on_stage=self.progress.stage,
                               stop=self.stop, labels={"lab.run": self.run_id})
        targets = {t.id: t for t in self.options.targets}
        if needs_docker:
            builder.prefetch_bases([plan_image(t) for t in self.options.targets
                                    if not t.host_python], self.connect)
        budget = self.options.timeout_s or watchdog_budget(self.plan, self.options.jobs)
        expired = threading.Event()

        def watchdog() -> None:
            if not self.stop.wait(budget):
                expired.set()
                self.progress.note(f"watchdog: the run exceeded {budget:.0f} s; stopping")
                self.stop.set()

        threading.Thread(target=watchdog, name="lab-watchdog", daemon=True).start()
        self.progress.start()
        interrupted = forced = False
        engine_lost: EngineUnavailable | None = None
        submitted: list[cf.Future[None]] = []
        self.build_slots = threading.Semaphore(max(1, self.options.jobs))
        pool = cf.ThreadPoolExecutor(
            max_workers=max(1, self.options.jobs, min(len(self.options.targets),
                                                      BEHAVIOUR_TARGETS)),
            thread_name_prefix="lab")
        try:
            submitted += [pool.submit(self.build_then_behaviour, t, builder)
                          for t in self.options.targets]
            self._wait(submitted)
            submitted.append(pool.submit(self.timing, targets))
            self._wait(submitted[-1:])
        except EngineUnavailable as exc:
            engine_lost = exc
            self.stop.set()
        except KeyboardInterrupt:
            interrupted = True
            self.stop.set()
            self.progress.note("interrupted: stopping and removing containers "
                               "(Ctrl-C again to force)")
            try:
                self._cleanup_now()
                pool.shutdown(wait=False, cancel_futures=True)
                cf.wait(submitted, timeout=8)  # workers notice the stop within a poll
            except KeyboardInterrupt:
                forced = True
                self._cleanup_now()
        finally:
            pool.shutdown(wait=not (interrupted or engine_lost), cancel_futures=True)
            builder.close()
            self.progress.finish()
        if expired.is_set():
            self.info = dataclasses.replace(self.info, notes=[
                *self.info.notes, f"stopped by the run watchdog after {budget:.0f} s; "
                "only finished cells are shown"])
        results = self.results(complete=not interrupted and not self.stop.is_set())
        self.stop.set()  # releases the watchdog
        self.sink.close()
        write_json(results, self.dir / "results.json")
        if engine_lost is not None:
            raise EngineUnavailable(f"{engine_lost} Partial results kept in {self.dir}.")
        if interrupted:
            raise Interrupted(f"interrupted; kept {len(results.results)} finished cell(s) in "
                              f"{self.dir}", forced=forced)
        return results

    def _wait(self, futures: list[cf.Future[None]]) -> None:
        pending = set(futures)
        while pending:
            done, pending = cf.wait(pending, timeout=0.5)
            for f in done:
                exc = f.exception()
                if isinstance(exc, EngineUnavailable):
                    self.stop.set()
                    raise exc
                if exc is not None:
                    raise exc

    def _cleanup_now(self) -> None:
        if not any(not t.host_python for t in self.options.targets):
            return
        try:
            engine = self.connect()
        except EngineUnavailable:
            return
        try:
            remove_leftovers(engine, run_id=self.run_id)
        finally:
            engine.close()


def point_latest(out: Path, run_dir: Path) -> None:
    link = out / "latest"
    tmp = out / f".latest-{os.getpid()}"
    try:
        if tmp.is_symlink():
            tmp.unlink()
        tmp.symlink_to(run_dir.name)
        os.replace(tmp, link)
    except OSError:
        pass
