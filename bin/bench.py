"""``make bench``: the lab's scheduler against a naive sequential loop, on one matrix.

Three measurements in one invocation, images built beforehand so only execution is timed:
1. the lab (behaviour containers in parallel, timing containers exclusive and pinned);
2. a naive loop: one container per target x scenario x start method, one after another,
   each hung cell waiting out the same deadline;
3. the countdown cells of every target run at once, beside the behaviour containers (no
   pinning, no exclusivity): what a lab that parallelised timing would measure.
Printed: both wall times and their ratio, the lab's overhead over its ideal schedule (sum of
timing work divided by cores, plus one deadline for all hung cells), and the countdown spread
(IQR / median of the speedup samples) with and without pinning.

``--noise``: instead, two warm runs of the matrix back to back and a third beside a spinner
that takes 30 % of one CPU: the warm wall time (goal <= 130 s), how many countdown speedups
the two warm runs agree on (90 % intervals overlap), and how many verdicts of claims 1, 2 and 4
the busy run shares with the quiet one.

``--bases``: instead, the cold image phase: the default matrix's Debian bases (four suites,
amd64) removed, made again from an empty download cache, three at a time as a run makes them;
prints the wall time and each base's own time and phases.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import multiprocessing
import os
import tempfile
import threading
import time
from pathlib import Path
from statistics import median
from typing import Any

from lab.engine import Engine
from lab.images import ImagePhase
from lab.images.plan import plan_image
from lab.matrix import load_matrix, select_targets
from lab.report.margins import CONTENDED, contention
from lab.report.verdicts import judge
from lab.results import Cell, Outcome, RunResults
from lab.run.containers import JobContext, cells_only, run_job
from lab.run.runs import Run, RunOptions
from lab.run.scheduler import Job, plan_runs
from lab.runner import measurements as M
from lab.runner.util import median_interval, quantile

GOAL_RATIO, GOAL_OVERHEAD, GOAL_SPREAD = 3.0, 0.10, 0.05


def spread(cells: list[Cell]) -> float | None:
    """Median over countdown cells of IQR / median of their speedup samples."""
    values = []
    for c in cells:
        samples = sorted(c.measurements.get(M.SPEEDUP_SAMPLES) or [])
        if c.scenario != "countdown" or c.outcome != Outcome.OK or len(samples) < 2:
            continue
        values.append((quantile(samples, 0.75) - quantile(samples, 0.25)) / median(samples))
    return median(values) if values else None


def one_job(engine: Engine, job: Job, target, image: str, run_dir: Path,
            run_id: str) -> list[Cell]:
    ctx = JobContext(run_id=run_id, run_dir=run_dir, target=target, image_tag=image,
                     stop=threading.Event())
    return cells_only(run_job(engine, job, ctx))


def bench_bases(ids: str | None) -> int:
    """The cold image phase: every selected target's base rebuilt from an empty cache."""
    matrix = load_matrix()
    targets = [t for t in select_targets(matrix, ids=ids.split(",") if ids else None)
               if ids or not t.optional]  # optional targets may not be had here
    engine = Engine.connect()
    plans = {t.id: plan_image(t) for t in targets if t.base is not None}
    bases = {p.base_key for p in plans.values() if p.base_key}
    # Children first, as `lab clean` removes them: every image made from these bases, then them.
    doomed = [i for i in engine.images({"lab.managed": "true"})
              if i.labels.get("lab.base-ref") in bases or bases & set(i.tags)]
    for image in sorted(doomed, key=lambda i: i.labels.get("lab.kind") == "base"):
        engine.remove_image(image.id)
    work = Path(tempfile.mkdtemp(prefix="lab-bench-bases-"))
    os.environ["LAB_CACHE_DIR"] = str(work / "cache")
    stages: dict[str, list[tuple[float, str]]] = {}
    started = time.monotonic()

    def on_stage(tid: str, stage: str) -> None:
        stages.setdefault(tid, []).append((time.monotonic() - started, stage))

    phase = ImagePhase(connect=lambda name: Engine.connect(), engines=["default"],
                       log_dir=work, on_stage=on_stage)
    chosen = [t for t in targets if t.id in plans]
    phase.prefetch({"default": chosen})  # as a run does
    per: dict[str, float] = {}
    for built in phase.build([(t, "default") for t in chosen], jobs=3):
        if built.error is not None:
            phase.close()
            raise built.error
        per[built.target] = time.monotonic() - started
    wall = time.monotonic() - started
    phase.close()
    print(f"cold image phase: {len(plans)} targets on "
          f"{len({p.base_key for p in plans.values()})} bases, empty cache: {wall:.1f} s wall; "
          f"downloaded {phase.builder.cache.downloaded_bytes / 1e6:.0f} MB")
    for tid, done in per.items():
        print(f"  {tid}: ready at {done:.1f} s")
        for at, stage in stages.get(tid, []):
            print(f"      {at:6.1f}  {stage}")
    print(f"logs: {work}")
    return 0


GOAL_WARM_S, BUSY_SHARE = 130.0, 0.3
NOISE_CLAIMS = ("1", "2", "4")


def spinner(share: float) -> None:
    """A background load: spins ``share`` of each 100 ms on one CPU, sleeps the rest."""
    while True:
        end = time.monotonic() + 0.1 * share
        while time.monotonic() < end:
            pass
        time.sleep(0.1 * (1 - share))


def countdown_intervals(r: RunResults) -> dict[tuple[str, str | None], tuple[float, float]]:
    """Each countdown cell's speedup: the 90 % interval around its median."""
    out = {}
    for c in r.results:
        samples = c.measurements.get(M.SPEEDUP_SAMPLES) or []
        if c.scenario == "countdown" and c.outcome == Outcome.OK and samples:
            interval = median_interval(samples) or (min(samples), max(samples))
            out[(c.target, c.start_method)] = interval
    return out


def bench_noise(targets: list[Any], work: Path) -> int:
    """Two warm runs back to back, then one beside a spinner that takes 30 % of a CPU:
    the warm wall time, run-to-run agreement of every countdown speedup, and whether the
    busy run's timing claims match the quiet run's."""
    runs: dict[str, tuple[RunResults, float]] = {}
    for name in ("quiet-1", "quiet-2", "busy"):
        load = None
        if name == "busy":
            load = multiprocessing.get_context("spawn").Process(target=spinner,
                                                                args=(BUSY_SHARE,), daemon=True)
            load.start()
        started = time.monotonic()
        try:
            results = Run(RunOptions(targets=targets, out=work / name, progress=False,
                                     command=["bin/bench.py", "--noise", name])).go()
        finally:
            if load is not None:
                load.terminate()
                load.join()
        runs[name] = (results, time.monotonic() - started)
        print(f"{name}: {runs[name][1]:.1f} s, {len(results.results)} cells", flush=True)

    (q1, w1), (q2, w2), (busy, wb) = runs["quiet-1"], runs["quiet-2"], runs["busy"]
    print()
    best = min(w1, w2)
    print(f"warm run       {w1:.1f} s, {w2:.1f} s (goal <= {GOAL_WARM_S:.0f} s: "
          f"{'met' if best <= GOAL_WARM_S else 'NOT met'})")
    a, b = countdown_intervals(q1), countdown_intervals(q2)
    both = sorted(set(a) & set(b), key=str)
    apart = [k for k in both if a[k][0] > b[k][1] or b[k][0] > a[k][1]]
    print(f"stability      {len(both) - len(apart)} of {len(both)} countdown speedups agree "
          f"between the two warm runs (90 % intervals overlap); {len(apart)} disagree")
    for k in apart:
        print(f"                 {k[0]} {k[1] or 'threads'}: [{a[k][0]:.2f}, {a[k][1]:.2f}] vs "
              f"[{b[k][0]:.2f}, {b[k][1]:.2f}]")
    quiet_v = {c.number: c.verdicts for c in judge(q1)}
    busy_v = {c.number: c.verdicts for c in judge(busy)}
    differ = [(n, tid, quiet_v[n][tid].status, v.status) for n in NOISE_CLAIMS
              for tid, v in busy_v[n].items() if tid in quiet_v[n]
              and v.status != quiet_v[n][tid].status]
    total = sum(len(busy_v[n]) for n in NOISE_CLAIMS)
    print(f"busy machine   {wb:.1f} s beside a {BUSY_SHARE:.0%} spinner; claims 1, 2, 4: "
          f"{total - len(differ)} of {total} verdicts as on the quiet run")
    for n, tid, was, now in differ:
        print(f"                 claim {n} on {tid}: {was} quiet, {now} busy")
    timing = [c for c in busy.results if c.kind == "timing" and c.outcome == Outcome.OK]
    loud = [c for c in timing if (x := contention(c)) is not None and x > CONTENDED]
    again = [c for c in timing if c.attempts]
    waited = sum((c.quiet or {}).get("waited_s") or 0 for c in timing)
    print(f"               {len(timing)} timing cells: {len(again)} measured again, "
          f"{waited:.0f} s of waits for a quiet machine; {len(loud)} kept above "
          f"{CONTENDED} CPU of others, each flagged in the report")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bin/bench.py", description=__doc__.splitlines()[0])
    parser.add_argument("--targets", default=None, help="comma-separated ids (default matrix)")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--bases", action="store_true",
                        help="time the cold image phase instead (bases from an empty cache)")
    parser.add_argument("--noise", action="store_true",
                        help="instead: two warm runs and one beside a 30 %% spinner (warm "
                             "time, run-to-run stability, verdicts on a busy machine)")
    args = parser.parse_args(argv)
    if args.bases:
        return bench_bases(args.targets)
    targets = [t for t in select_targets(load_matrix(), ids=args.targets.split(",")
                                         if args.targets else None)
               if args.targets or not t.optional]  # optional targets may not be had here
    work = Path(tempfile.mkdtemp(prefix="lab-bench-"))
    engine = Engine.connect()
    phase = ImagePhase(connect=lambda name: Engine.connect(), engines=["default"], log_dir=work)
    try:
        images = {t.id: phase.ensure(t, "default").tag for t in targets}
    finally:
        phase.close()
    if args.noise:
        engine.close()
        return bench_noise(targets, work)
    cores = len(os.sched_getaffinity(0))
    print(f"bench: {len(targets)} targets, {cores} cores, quick={args.quick}; work in {work}")

    started = time.monotonic()
    lab_results = Run(RunOptions(targets=targets, out=work / "lab", quick=args.quick,
                                 progress=False, command=["bin/bench.py"])).go()
    lab_wall = time.monotonic() - started
    print(f"lab:   {lab_wall:7.1f} s")

    plan = plan_runs(targets, quick=args.quick)
    by_id = {t.id: t for t in targets}
    started = time.monotonic()
    naive_cells: list[Cell] = []
    for job in plan.jobs:
        for i, cell in enumerate(job.cells):
            single = Job(target_id=job.target_id, phase=f"naive{i}-{job.phase}", cells=(cell,),
                         parallel=1, exclusive=False, deadline_scale=job.deadline_scale,
                         container=job.container, emulated=job.emulated)
            naive_cells += one_job(engine, single, by_id[job.target_id], images[job.target_id],
                                   work / "naive", "bench-naive")
    naive_wall = time.monotonic() - started
    print(f"naive: {naive_wall:7.1f} s")

    # What a lab without exclusive timing would do: the countdown cells of every target at
    # once, beside the behaviour containers, no pinning.
    shared: list[Cell] = []
    countdown_jobs = [Job(target_id=j.target_id, phase="shared-countdown",
                          cells=tuple(c for c in j.cells if c.scenario == "countdown"),
                          parallel=1, exclusive=False, deadline_scale=j.deadline_scale,
                          emulated=j.emulated)
                      for j in plan.timing]
    with cf.ThreadPoolExecutor(max_workers=len(plan.jobs)) as pool:
        futures = [pool.submit(one_job, Engine.connect(), j, by_id[j.target_id],
                               images[j.target_id], work / "shared", "bench-shared")
                   for j in [*plan.behaviour, *countdown_jobs]]
        for f in futures:
            shared += f.result()

    timing_work = sum(c.duration_s or 0 for c in lab_results.results if c.kind == "timing")
    hung = [c for c in lab_results.results if c.outcome == Outcome.HUNG]
    one_deadline = max((c.deadline_s or 0 for c in hung), default=0.0)
    ideal = timing_work / cores + one_deadline
    overhead = lab_wall / ideal - 1 if ideal else None
    # Timing cells are exclusive by design (a 2-worker countdown needs both cores), so they
    # cannot share cores: the reachable ideal runs them in series.
    serial_ideal = timing_work + one_deadline
    serial_overhead = lab_wall / serial_ideal - 1 if serial_ideal else None
    pinned, unpinned = spread(lab_results.results), spread(shared)

    def fmt(x: float | None, pct: bool = True) -> str:
        return "n/a" if x is None else (f"{x:.1%}" if pct else f"{x:.2f}")

    ratio = naive_wall / lab_wall

    def verdict(ok: bool) -> str:
        return "met" if ok else "NOT met"
    print()
    print(f"wall time      lab {lab_wall:.1f} s   naive loop {naive_wall:.1f} s   "
          f"ratio x{ratio:.2f} (goal >= x{GOAL_RATIO:.0f}: {verdict(ratio >= GOAL_RATIO)})")
    print(f"ideal schedule {ideal:.1f} s = timing work {timing_work:.1f} s / {cores} cores "
          f"+ one deadline {one_deadline:.1f} s ({len(hung)} hung cells)")
    met = overhead is not None and overhead <= GOAL_OVERHEAD
    print(f"lab overhead   {fmt(overhead)} over ideal (goal <= {GOAL_OVERHEAD:.0%}: "
          f"{verdict(met)})")
    print(f"               {fmt(serial_overhead)} over the exclusive ideal {serial_ideal:.1f} s "
          "(timing work in series + one deadline: timing cells cannot share cores)")
    met = pinned is not None and pinned <= GOAL_SPREAD
    print(f"countdown spread (IQR/median of speedup)  pinned+exclusive {fmt(pinned)}   "
          f"all at once, unpinned {fmt(unpinned)}   (goal <= {GOAL_SPREAD:.0%}: {verdict(met)})")
    naive_hung = sum(c.outcome == Outcome.HUNG for c in naive_cells)
    print(f"cells          lab {len(lab_results.results)} ({len(hung)} hung)   "
          f"naive {len(naive_cells)} ({naive_hung} hung)")
    engine.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
