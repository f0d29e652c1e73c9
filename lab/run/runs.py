"""A run, end to end: its folder, its images, executing the plan, and its files.

Thin on purpose: what runs when is decided by ``scheduler.plan_runs``; how one container runs
is ``containers.run_job``, which yields cells; images come from the image phase
(``lab.images.ImagePhase``); the ledger's first state is ``ledger.run_head`` and the plan as the
terminal shows it is ``preview.plan_preview``. This module wires them with a thread pool (one
Engine per thread), persists every cell as it arrives, stamped with what ran beside it on its
engine, and on Ctrl-C or SIGTERM stops and removes every container it made on every engine,
then writes and renders what finished, marked incomplete.
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import os
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from lab.engine import Engine
from lab.errors import (
    BuildFailed,
    ConfigError,
    EngineUnavailable,
    ImageUnavailable,
    Interrupted,
    LabError,
)
from lab.images import ImagePhase, tools
from lab.images.deps import DepsImage
from lab.images.deps import prepare as prepare_deps
from lab.images.optional import ensure_optional
from lab.images.plan import cache_dir
from lab.images.requirements import PipSettings, Requirements
from lab.matrix import DEFAULT_ENGINE, EngineSpec, Target, native_platforms
from lab.results import (
    Cell,
    ImageRef,
    Outcome,
    RunResults,
    TargetStatus,
    write_json,
)
from lab.run.containers import JobContext, Note, missing_cell, run_job
from lab.run.engines import Survey, remove_leftovers, survey_engines
from lab.run.ledger import Ledger, new_run_id, run_head
from lab.run.preview import plan_preview
from lab.run.progress import Progress
from lab.run.scheduler import EngineSlot, Job, Plan, cell_order, plan_runs
from lab.run.usercode import (
    CheckSpec,
    ScenarioFile,
    SuiteSpec,
    catalog_with,
    stage_user_dir,
)

REPORTS = Path("reports")
BUILD_ALLOWANCE_S = 1800.0  # one cold bootstrap of the slowest base, emulated
BEHAVIOUR_TARGETS = 6  # targets whose behaviour cells run at once (builds: --jobs at once)


def watchdog_budget(plan: Plan, jobs: int) -> float:
    """The whole run's upper bound: builds, behaviour waves in parallel, timing in series on
    each engine (engines side by side)."""
    behaviour = sum(j.host_deadline_s for j in plan.behaviour) / max(1, jobs)
    longest = max((j.host_deadline_s for j in plan.behaviour), default=0.0)
    timing = max((sum(j.host_deadline_s for j in plan.timing_on(e)) for e in plan.engines),
                 default=0.0)
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
    # `lab check` / `lab test`: the probe and this program or suite, nothing else
    check: CheckSpec | SuiteSpec | None = None
    engines: tuple[EngineSpec, ...] = (DEFAULT_ENGINE,)
    # A user's dependencies, installed for each target by its own interpreter (lab check's
    # --requirements, --with, --project; scenario files' REQUIRES).
    requirements: Requirements = field(default_factory=Requirements)


class Run:
    def __init__(self, options: RunOptions,
                 connect: Callable[[EngineSpec], Engine] = Engine.connect):
        self.options = options
        self._connect = connect
        self.specs = {e.name: e for e in options.engines}
        self.needs_docker = any(not t.host_python for t in options.targets)
        # Every engine is reached before the run folder exists: none reachable is one line.
        self.survey = (survey_engines(options.engines, connect) if self.needs_docker else
                       Survey(slots=[EngineSlot(name=e.name, platforms=frozenset(
                           native_platforms())) for e in options.engines],
                              facts={}, where={}, down={}))
        self.lost: dict[str, str] = dict(self.survey.down)  # engine -> why it is gone
        # Planned before the run folder exists: a plan that cannot be made leaves nothing.
        extra = {sf.id: sf.meta() for sf in options.scenario_files}
        scenarios = options.scenarios
        if options.check is not None:
            extra[options.check.id] = options.check.meta()
            scenarios = ["probe", options.check.id]
        elif scenarios is not None and extra:
            scenarios = [*scenarios, *extra]
        self.catalog = catalog_with(extra)
        self.plan: Plan = plan_runs(options.targets, engines=self.survey.slots,
                                    scenarios=scenarios, quick=options.quick,
                                    catalog=self.catalog)
        # The host's pip settings and the step's inputs, read once for every target, before
        # the run folder exists: a bad project is one line and leaves nothing.
        self.deps_inputs = (prepare_deps(options.requirements, PipSettings.of_host())
                            if options.requirements else None)
        self.run_id = options.run_id or new_run_id()
        self.dir = options.out / self.run_id
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            (self.dir / "logs").mkdir(exist_ok=True)
        except OSError as exc:
            raise ConfigError(
                f"cannot create the run folder {self.dir} ({exc.strerror or exc}). Pick a "
                "folder you can write to with --out.") from exc
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
        self.lost_lock = threading.Lock()
        self.images: dict[str, str] = {}
        # target -> {optional requirement line: why this target cannot have it}
        self.not_installed: dict[str, dict[str, str]] = {}
        self.images_on: dict[str, set[str]] = {t.id: set() for t in options.targets}
        self.lane_problems: dict[tuple[str, str], str] = {}  # (target, engine) -> why
        self.active: dict[str, set[str]] = {e: set() for e in self.plan.engines}
        self.active_lock = threading.Lock()
        self.progress = Progress({t.id: self.plan.cells_of(t.id) for t in options.targets},
                                 live=options.progress)
        info, rows = run_head(self.run_id, options.targets, self.plan, self.survey,
                              command=options.command, quick=options.quick, scenarios=extra)
        self.ledger = Ledger(self.dir, info, rows,
                             order=cell_order([t.id for t in options.targets], self.catalog),
                             on_cell=lambda c: self.progress.cell(c.target, c.outcome))

    # -- the plan, as the terminal shows it -----------------------------------------------------
    def connect(self, engine: str) -> Engine:
        return self._connect(self.specs[engine])

    def plan_text(self) -> str:
        return plan_preview(self.options.targets, self.plan, self.catalog, out=self.options.out,
                            run_id=self.run_id, jobs=self.options.jobs, quick=self.options.quick,
                            connect=self.connect, lost=self.lost)

    # -- bookkeeping ---------------------------------------------------------------------------
    def running_others(self, me: str, engine: str) -> Callable[[], list[str]]:
        """What else of the lab runs on the same engine now (other engines do not count)."""
        def others() -> list[str]:
            with self.active_lock:
                return sorted(a for a in self.active.get(engine, ()) if a != me)
        return others


    # -- phases --------------------------------------------------------------------------------
    def engine_lost(self, engine: str, exc: EngineUnavailable) -> None:
        with self.lost_lock:
            if engine not in self.lost:
                self.lost[engine] = " ".join(str(exc).split())
                self.progress.note(f"engine {engine} lost: {self.lost[engine]}")

    def prepare(self, target: Target, phase: ImagePhase, engine_name: str) -> bool:
        """Get the target's image on an engine. On its own engine a failure goes in its row;
        on another (its timing lane) the row, which its behaviour cells earned, is left alone
        and the reason is kept in ``lane_problems`` for that job's cells. The others go on."""
        if target.host_python:
            self.ledger.set_target(target.id, status=TargetStatus.OK, reason=None)
            return True
        if engine_name in self.images_on[target.id]:
            return True
        home = engine_name == self.plan.engine_of(target.id)

        def fail(status: TargetStatus, reason: str, stage: str) -> bool:
            if home:
                self.ledger.set_target(target.id, status=status, reason=reason)
                self.progress.stage(target.id, stage)
            else:
                self.lane_problems[(target.id, engine_name)] = (
                    f"no image on engine {engine_name}: {' '.join(reason.split())}")
            return False

        if engine_name in self.lost:
            return fail(TargetStatus.UNAVAILABLE, f"engine {engine_name}: {self.lost[engine_name]}",
                        "engine unavailable")
        started = time.monotonic()
        self.progress.stage(target.id, "image")
        deps = used = None
        try:
            image = phase.ensure(target, engine_name)
            if self.deps_inputs is not None:
                deps, used, missing = ensure_optional(
                    lambda reqs, inputs: phase.ensure_deps(target, engine_name, image, reqs,
                                                           inputs),
                    self.options.requirements, self.deps_inputs,
                    lambda reqs: prepare_deps(reqs, PipSettings.of_host()))
                self.not_installed[target.id] = missing
        except ImageUnavailable as exc:
            return fail(TargetStatus.UNAVAILABLE, str(exc), "unavailable")
        except BuildFailed as exc:
            reason = str(exc) + (f"\n{exc.log_tail}" if exc.log_tail and home else "")
            return fail(TargetStatus.BUILD_FAILED, reason, "build failed")
        except EngineUnavailable as exc:
            self.engine_lost(engine_name, exc)
            return self.prepare(target, phase, engine_name)
        except LabError as exc:
            return fail(TargetStatus.BUILD_FAILED, str(exc), "build failed")
        self.images[target.id] = deps.tag if deps is not None else image.tag
        self.images_on[target.id].add(engine_name)
        if home:
            self.ledger.set_target(
                target.id, status=TargetStatus.OK, reason=None,
                image=ImageRef(tag=image.tag, id=image.id),
                base=image.base.to_json() if image.base else None,
                archive=image.archive.to_json() if image.archive else None,
                dependencies=self._dependencies(target, deps, used) if used is not None
                else None,
                build_seconds=round(time.monotonic() - started, 1))
        return True

    def _dependencies(self, target: Target, deps: DepsImage | None,
                      used: Requirements) -> dict[str, object]:
        """The target's dependencies record: what was installed, and each optional package it
        could not have with the one line of why."""
        record: dict[str, object] = (deps.to_json(used) if deps is not None else
                                     {"requested": used.requested(), "installed": []})
        missing = self.not_installed.get(target.id)
        if missing:
            record["not_installed"] = dict(missing)
        return record

    def skip_unavailable(self, job: Job, target: Target) -> Job | None:
        """The job less the cells whose scenario needs a package this target could not have:
        those are recorded ``skipped`` with the reason. None when no cell is left."""
        missing = self.not_installed.get(target.id)
        if not missing:
            return job
        ctx, keep = self._context(target), []
        for spec in job.cells:
            needs = [r for r in self.catalog.get(spec.scenario, {}).get("requires") or ()
                     if r in missing]
            if needs:
                self.ledger.record(missing_cell(spec, job, ctx, outcome=Outcome.SKIPPED, detail=(
                    f"needs {needs[0]}, which {target.id} cannot have: {missing[needs[0]]}")))
            else:
                keep.append(spec)
        return dataclasses.replace(job, cells=tuple(keep)) if keep else None

    def error_cells(self, job: Job, target: Target, why: str,
                    done: set[tuple[str, str, str | None, str | None]] | None = None) -> None:
        """Record the job's cells that did not finish as ``error``, with one line of why."""
        ctx = self._context(target)
        for spec in job.cells:
            if (target.id, spec.scenario, spec.start_method, spec.container) not in (done or ()):
                self.ledger.record(missing_cell(spec, job, ctx, outcome=Outcome.ERROR, detail=why))

    def execute(self, job: Job, target: Target) -> None:
        """Run one job on its engine; cells arrive through ``record``. If the engine is lost,
        the job's cells that did not finish are recorded as ``error`` with the reason, and the
        rest of the run goes on."""
        if self.stop.is_set():
            return
        got: set[tuple[str, str, str | None, str | None]] = set()
        others = self.running_others(job.name, job.engine)

        def record(cell: Cell) -> None:
            got.add(cell.key)
            if not job.exclusive:  # what ran beside it on its engine as it finished
                cell = dataclasses.replace(cell, concurrent=others())
            self.ledger.record(cell)

        def lost_cells() -> None:
            self.error_cells(job, target, f"engine {job.engine} lost: {self.lost[job.engine]}",
                             got)

        if not target.host_python and job.engine in self.lost:
            lost_cells()
            return
        runnable = self.skip_unavailable(job, target)
        if runnable is None:
            return
        job = runnable
        self.progress.stage(target.id, job.phase)
        with self.active_lock:
            self.active.setdefault(job.engine, set()).add(job.name)
        engine = None
        try:
            engine = None if target.host_python else self.connect(job.engine)
            for event in run_job(engine, job, self._context(target)):
                if isinstance(event, Note):
                    self.progress.stage(target.id, f"{job.phase}: {event.text}")
                else:
                    record(event)
        except EngineUnavailable as exc:
            self.engine_lost(job.engine, exc)
            if not self.stop.is_set():
                lost_cells()
        finally:
            with self.active_lock:
                self.active[job.engine].discard(job.name)
            if engine is not None:
                engine.close()

    def _context(self, target: Target) -> JobContext:
        return JobContext(run_id=self.run_id, run_dir=self.dir, target=target,
                          image_tag=self.images.get(target.id), stop=self.stop,
                          user_dir=self.user_dir)

    def build_then_behaviour(self, target: Target, phase: ImagePhase) -> None:
        # Builds take `jobs` slots of their engine (CPU and disk heavy); behaviour cells mostly
        # wait (hangs waiting out deadlines, sleeps), so every target's run side by side.
        where = self.plan.engine_of(target.id)
        with self.build_slots[where]:
            if not self.prepare(target, phase, where):
                return
        jobs = [job for job in self.plan.behaviour if job.target_id == target.id]
        # A target's container variants (cpu_limits) run beside its main behaviour job.
        with cf.ThreadPoolExecutor(max_workers=max(1, len(jobs)),
                                   thread_name_prefix=f"lab-{target.id}") as pool:
            for done in [pool.submit(self.execute, job, target) for job in jobs]:
                done.result()
        if any(j.target_id == target.id for j in self.plan.timing):
            self.progress.stage(target.id, "waiting for timing slot")
            return
        check = self.options.check
        if check is not None:  # lab check / lab test: how each of its runs ended
            runs = {c.start_method: c for c in self.ledger.cells
                    if c.target == target.id and c.scenario == check.id}
            self.progress.note(f"{target.id}: " + ", ".join(
                f"{m} {runs[m].outcome}" for m in check.start_methods if m in runs))
        self.progress.stage(target.id, "done")

    def timing_lane(self, engine: str, targets: dict[str, Target], phase: ImagePhase,
                    behaviour: dict[str, cf.Future[None]]) -> None:
        """One engine's timing jobs, one at a time, once nothing else of the lab runs on that
        engine: its own targets' behaviour jobs (and, on the first engine, the host
        interpreters', which share this machine) are done."""
        first = self.plan.engines[0]
        mine = [f for tid, f in behaviour.items()
                if self.plan.engine_of(tid) == engine or (engine == first
                                                           and targets[tid].host_python)]
        cf.wait(mine)
        for job in self.plan.timing_on(engine):
            if self.stop.is_set():
                return
            target = targets[job.target_id]
            if self.ledger.row(target.id).status != TargetStatus.OK:
                continue
            if not target.host_python and job.engine not in self.images_on[target.id]:
                with self.build_slots[engine]:  # its timing lane is not where it was built
                    if not self.prepare(target, phase, engine):
                        self.error_cells(job, target,
                                         self.lane_problems[(target.id, engine)])
                        continue
            self.execute(job, target)
            self.progress.stage(target.id, "done")

    # -- the whole run -------------------------------------------------------------------------
    def results(self, *, complete: bool) -> RunResults:
        return self.ledger.snapshot(complete=complete, interrupted=self.stop.is_set(),
                                    duration_s=time.monotonic() - self.started)

    def go(self) -> RunResults:
        """Execute the plan. Raises Interrupted (after saving) on Ctrl-C or SIGTERM, and
        EngineUnavailable (after saving) when every engine of the run is lost; an engine lost
        while others go on leaves its unfinished cells ``error`` and the run partial."""
        notes: list[str] = []
        for name in self.reachable():
            engine = self.connect(name)
            try:
                gone = remove_leftovers(engine)
            finally:
                engine.close()
            if gone:
                notes.append(f"removed {len(gone)} leftover container(s) of a killed run"
                             f"{'' if len(self.plan.engines) == 1 else f' on {name}'}: "
                             f"{', '.join(gone)}")
        for name, why in self.survey.down.items():
            notes.append(f"engine {name} not reachable at the start; its targets are "
                         f"unavailable ({why})")
        # py-spy for the runner layers, fetched once (cached) before any image is planned.
        lacking = tools.prepare([t for t in self.options.targets if not t.host_python],
                                cache_dir(), wheelhouse=self.options.requirements.wheelhouse)
        for line in lacking:
            self.progress.note(line)
        notes += lacking
        self.ledger.note(*notes)
        self.ledger.write_head(self.results(complete=False))
        phase = ImagePhase(connect=self.connect, engines=self.plan.engines,
                           log_dir=self.dir / "logs", on_stage=self.progress.stage,
                           stop=self.stop, labels={"lab.run": self.run_id},
                           lost=lambda: self.lost)
        targets = {t.id: t for t in self.options.targets}
        phase.prefetch({name: [t for t in self.options.targets if not t.host_python
                               and self.plan.engine_of(t.id) == name]
                        for name in self.reachable()})
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
        submitted: list[cf.Future[None]] = []
        self.build_slots = {e: threading.Semaphore(max(1, self.options.jobs))
                            for e in self.plan.engines}
        lanes = [e for e in self.plan.engines if self.plan.timing_on(e)]
        pool = cf.ThreadPoolExecutor(
            max_workers=max(1, self.options.jobs, min(len(self.options.targets),
                                                      BEHAVIOUR_TARGETS)) + len(lanes),
            thread_name_prefix="lab")
        try:
            behaviour = {t.id: pool.submit(self.build_then_behaviour, t, phase)
                         for t in self.options.targets}
            submitted += behaviour.values()
            submitted += [pool.submit(self.timing_lane, e, targets, phase, behaviour)
                          for e in lanes]
            self._wait(submitted)
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
            pool.shutdown(wait=not interrupted, cancel_futures=True)
            phase.close()
            self.progress.finish()
        if expired.is_set():
            self.ledger.note(f"stopped by the run watchdog after {budget:.0f} s; only "
                             "finished cells are shown")
        lost_now = {e: why for e, why in self.lost.items() if e not in self.survey.down}
        if lost_now:
            self.ledger.note(*(f"engine {e} lost during the run: {why}; its unfinished "
                               "cells are errors" for e, why in lost_now.items()))
        everything_lost = self.needs_docker and not self.reachable()
        results = self.results(complete=not interrupted and not self.stop.is_set()
                               and not self.lost)
        self.stop.set()  # releases the watchdog
        self.ledger.close()
        write_json(results, self.dir / "results.json")
        if everything_lost and lost_now:
            first = next(iter(lost_now.values()))
            raise EngineUnavailable(f"{first} Partial results kept in {self.dir}.")
        if interrupted:
            raise Interrupted(f"interrupted; kept {len(results.results)} finished cell(s) in "
                              f"{self.dir}", forced=forced)
        return results

    def reachable(self) -> list[str]:
        """The run's engines not lost (none when it needs no Docker)."""
        if not self.needs_docker:
            return []
        return [e for e in self.plan.engines if e not in self.lost]

    def _wait(self, futures: list[cf.Future[None]]) -> None:
        pending = set(futures)
        while pending:
            done, pending = cf.wait(pending, timeout=0.5)
            for f in done:
                exc = f.exception()
                if exc is not None:
                    raise exc

    def _cleanup_now(self) -> None:
        """Remove this run's containers on every engine it can still reach."""
        for name in self.plan.engines if self.needs_docker else []:
            try:
                engine = self.connect(name)
            except (EngineUnavailable, ConfigError):
                continue
            try:
                remove_leftovers(engine, run_id=self.run_id)
            except LabError:
                pass
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
