"""What a run would make, made ahead of it: ``lab build``'s images and ``lab deps export``'s
wheels, each target on the engine a run would place it (and its timing lane's, if elsewhere),
through the same image phase a run uses. Per-target failures are lines, never exceptions that
stop the others; no engine at all is EngineUnavailable (exit 3).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

from lab.engine import Engine
from lab.errors import EngineUnavailable, Interrupted, LabError
from lab.images import ImagePhase, tools
from lab.images.deps import prepare
from lab.images.plan import cache_dir
from lab.images.requirements import PipSettings, Requirements
from lab.matrix import Selection
from lab.run.engines import Survey, survey_engines
from lab.run.scheduler import Plan, plan_runs

Say = Callable[[str], None]


def _fleet(chosen: Selection, *, prefix: str,
           say_err: Say) -> tuple[Survey, Plan, ImagePhase, Path]:
    specs = {e.name: e for e in chosen.engines}
    survey = survey_engines(chosen.engines, Engine.connect)  # none reachable: exit 3
    plan = plan_runs(chosen.container_targets, engines=survey.slots)
    log_dir = Path(tempfile.mkdtemp(prefix=prefix))
    phase = ImagePhase(connect=lambda name: Engine.connect(specs[name]), engines=specs,
                       log_dir=log_dir, lost=lambda: survey.down,
                       on_stage=lambda tid, st: say_err(f"{tid}: {st}"))
    return survey, plan, phase, log_dir


def build_images(chosen: Selection, *, jobs: int, say: Say, say_err: Say) -> int:
    """Every image a run of ``chosen`` would need, made or reused; the number that failed."""
    targets = {t.id: t for t in chosen.container_targets}
    names = [e.name for e in chosen.engines]
    survey, plan, phase, log_dir = _fleet(chosen, prefix="lab-build-", say_err=say_err)
    wanted = sorted({(j.target_id, j.engine) for j in plan.jobs if j.target_id in targets},
                    key=lambda p: (names.index(p[1]), p[0]))
    several = len(names) > 1
    failed = 0
    for tid, name in wanted:
        if name in survey.down:
            failed += 1
            say_err(f"{tid}: FAILED on {name}: {survey.down[name]}")
    up = [(targets[tid], name) for tid, name in wanted if name not in survey.down]
    for line in tools.prepare([t for t, _ in up], cache_dir()):  # as a run does
        say_err(line)
    try:
        phase.prefetch({name: [t for t, n in up if n == name] for name in names})
        for built in phase.build(up, jobs=jobs):
            on = f" on {built.engine}" if several else ""
            if built.image is not None:
                say(f"{built.target}: {built.image.tag} ({built.image.id[7:19]}) in "
                    f"{built.seconds:.1f}s{on}")
                continue
            if isinstance(built.error, EngineUnavailable):
                raise built.error
            failed += 1
            say_err(f"{built.target}: FAILED{on}: {built.error}")
    except KeyboardInterrupt:
        # Every download and second stage noticed within a fraction of a second, and each
        # worker removed its own container and half-made image before it returned.
        raise Interrupted("interrupted; no partial image was kept") from None
    finally:
        phase.close()
    say_err(f"build logs: {log_dir}")
    return failed


def export_wheels(chosen: Selection, reqs: Requirements, dest: Path, *, say: Say,
                  say_err: Say) -> int:
    """Each target's packages (and a pip wheel it runs), downloaded by its own interpreter
    into ``dest``; the number of targets that could not have them."""
    inputs = prepare(reqs, PipSettings.of_host())
    targets = {t.id: t for t in chosen.container_targets}
    survey, plan, phase, _ = _fleet(chosen, prefix="lab-deps-", say_err=say_err)
    failed, written = 0, set()
    try:
        for tid, target in targets.items():
            engine = plan.engine_of(tid)
            if engine in survey.down:
                failed += 1
                say_err(f"{tid}: not exported: engine {engine}: {survey.down[engine]}")
                continue
            try:
                image = phase.ensure(target, engine)
                names = phase.export_deps(target, engine, image, reqs, inputs, dest)
            except EngineUnavailable:
                raise
            except LabError as exc:
                failed += 1
                say_err(f"{tid}: not exported: {' '.join(str(exc).split())}")
                continue
            written.update(names)
            say(f"{tid}: {len(names)} file(s): {', '.join(sorted(names))}")
    finally:
        phase.close()
    wheels, lacking = tools.export(targets.values(), dest)  # native stacks offline too
    written.update(wheels)
    for line in lacking:
        say_err(line)
    if wheels:
        say(f"py-spy: {', '.join(wheels)}")
    say(f"{dest}: {len(written)} file(s) for {len(targets) - failed} of {len(targets)} "
        f"target(s); use it with --wheelhouse {dest}")
    return failed
