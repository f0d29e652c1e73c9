# IN-CONTAINER CODE: standard library only, Python 3.9+ and PyPy; never imports lab.*.
"""countdown - claims 1, 2 and 4: the GIL, threads vs processes, on a CPU-bound countdown.

How: ``n`` is calibrated so the serial countdown takes about ``TARGET_S``. The same total work
is then split over 2 workers: 2 threads (cell without a start method) or 2 processes with the
cell's start method (process start-up included, as a user would pay it). Each round times the
serial run and the parallel run back to back, alternating which goes first, after a warm-up
round; rounds go on until the median speedup is known to the cell's precision (or a cap).
Recorded: every sample, median, IQR, the median's interval, why sampling stopped, and
speedup = median(serial) / median(parallel).

Each child process also reports from inside: its start-up latency (from ``start()`` in the
parent to its target running), its work's wall time and its CPU time. So a low speedup splits
into start-up, children that did not overlap, and children slower than the serial run, and
``work_speedup`` (serial over the span from the first child's work to the last one's end)
says whether the work itself ran in parallel.

Each worker, thread or process, also reads its own CPU clock around its work. Their CPU time
added up, over the span from the first one's start to the last one's end, is how many CPUs the
work used at once on average (``cpu_concurrency``). Above 1 it proves that both workers were on
a CPU at the same moment: taking turns, their CPU time could not exceed the span. Other load on
the machine can lower it (a worker waits for a CPU) but never raise it, so it tells parallel
from serial where a wall-clock speedup, which other load shrinks, cannot.
"""

import os
import threading
import time

from .. import measurements as M

TARGET_S = 0.1  # serial work per sample; the break-even size is reported, see verdicts
QUICK_TARGET_S = 0.05
WORKERS = 2
BUDGET_S = 1.0
clock = time.monotonic  # CLOCK_MONOTONIC: one clock for parent and children
thread_clock = getattr(time, "thread_time", None)  # this thread's CPU time


def countdown(n):
    while n > 0:
        n -= 1


def calibrate(target_s):
    n = 100000
    while True:
        start = time.perf_counter()
        countdown(n)
        took = time.perf_counter() - start
        if took >= 0.02:
            return max(WORKERS, int(n * target_s / took))
        n *= 4


def serial(n):
    for _ in range(WORKERS):
        countdown(n // WORKERS)


def timed_thread(n, out):
    """A worker thread: the countdown, with its start and end on the shared clock and its own
    CPU time."""
    entered = clock()
    cpu0 = thread_clock() if thread_clock else None
    countdown(n)
    done = clock()
    if cpu0 is not None:
        out.append((entered, done, thread_clock() - cpu0))


def with_threads(n):
    """Run the work in WORKERS threads; return each one's (start, end, CPU time), or nothing
    where this interpreter has no per-thread CPU clock."""
    seen = []
    threads = [threading.Thread(target=timed_thread, args=(n // WORKERS, seen))
               for _ in range(WORKERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return seen if len(seen) == WORKERS else []


def cpu_concurrency(workers):
    """The CPUs the work used at once on average: the workers' CPU time over the span from the
    first one's start to the last one's end, each given as (start, end, CPU time)."""
    if not workers:
        return None
    span = max(w[1] for w in workers) - min(w[0] for w in workers)
    return sum(w[2] for w in workers) / span if span > 0 else None


def timed_child(n, called, report):
    """A worker process: the countdown, then what it saw from inside, written to a file of its
    own (a file costs the child no import and no descriptor passed at start, unlike a pipe)."""
    entered = clock()
    cpu0 = time.process_time()
    countdown(n)
    done = clock()
    cpu = time.process_time()
    with open(report, "w") as fh:
        fh.write(" ".join(repr(x) for x in (entered - called, entered, done, cpu - cpu0, cpu)))


def with_processes(mp, n, folder):
    """Run the work in WORKERS processes; return each child's view: start-up, its work's start
    and end on the shared clock, its work's CPU time and its whole CPU time."""
    procs, reports = [], []
    for i in range(WORKERS):
        report = os.path.join(folder, f"child-{i}.txt")
        p = mp.Process(target=timed_child, args=(n // WORKERS, clock(), report))
        p.start()
        procs.append(p)
        reports.append(report)
    for p in procs:
        p.join()
    children = []
    for report in reports:
        with open(report) as fh:
            children.append(tuple(float(x) for x in fh.read().split()))
        os.unlink(report)
    return children


def explain(children, serial_s):
    """One round's children: start-up, overlap of their work, and their pace against serial."""
    first = min(c[1] for c in children)
    last = max(c[2] for c in children)
    overlap = max(0.0, min(c[2] for c in children) - max(c[1] for c in children))
    longest = max(c[2] - c[1] for c in children)
    return {
        "startup_s": max(c[0] for c in children),
        "work_span_s": last - first,
        "overlap": overlap / longest if longest else None,
        "pace": longest / (serial_s / WORKERS) if serial_s else None,
        "child_work_cpu_s": max(c[3] for c in children),
        "child_cpu_s": max(c[4] for c in children),
    }


def run(ctx):
    n = calibrate(QUICK_TARGET_S if ctx.quick else TARGET_S)
    label = "processes" if ctx.start_method else "threads"
    folder = os.path.dirname(os.path.abspath(ctx.result_path))
    ctx.record(M.WORK_N, n)
    ctx.record("workers", WORKERS)
    ctx.record("cpus", ctx.affinity())
    cpu = [0.0]

    def one_round(i):
        def timed_serial():
            c0 = time.process_time()
            t0 = time.perf_counter()
            serial(n)
            took = time.perf_counter() - t0
            if i:  # round 0 is the warm-up
                cpu[0] += time.process_time() - c0
            return took

        def timed_parallel():
            t0 = time.perf_counter()
            children = (with_processes(ctx.mp, n, folder) if ctx.start_method
                        else with_threads(n))
            return time.perf_counter() - t0, children

        if i % 2:
            (par, children), ser = timed_parallel(), timed_serial()
        else:
            ser, (par, children) = timed_serial(), timed_parallel()
        out = {"serial": ser, "parallel": par, "speedup": ser / par}
        workers = ([(c[1], c[2], c[3]) for c in children] if ctx.start_method
                   else children)
        out[M.CPU_CONCURRENCY] = cpu_concurrency(workers)
        if ctx.start_method:
            why = explain(children, ser)
            out.update(why)
            out["work_speedup"] = ser / why["work_span_s"] if why["work_span_s"] else None
        return out

    series, how = ctx.sample_until(one_round, ["speedup"], budget_s=BUDGET_S)
    s = ctx.summarize(series["serial"])
    p = ctx.summarize(series["parallel"])
    ctx.record(M.SAMPLING, how)
    ctx.record(M.SERIAL, s)
    ctx.record(label, p)
    ctx.record("parallel_kind", label)
    # CPU the serial runs used; the parallel runs do the same work again, in other threads or
    # processes, which lets a test check that a cell's CPU accounting counts them.
    ctx.record("serial_cpu_s", cpu[0])
    ctx.record(M.SPEEDUP, s["median"] / p["median"] if p["median"] else None)
    ctx.record(M.SPEEDUP_SAMPLES, series["speedup"])
    ctx.record("per_iteration_ns", s["median"] / n * 1e9)
    concurrency = [v for v in series[M.CPU_CONCURRENCY] if v is not None]
    if concurrency:
        ctx.record(M.CPU_CONCURRENCY, ctx.summarize(concurrency))
    if ctx.start_method:
        children = {key: ctx.summarize([v for v in series[key] if v is not None])
                    for key in ("startup_s", "overlap", "pace", "child_work_cpu_s",
                                "child_cpu_s", "work_speedup")}
        ctx.record(M.CHILDREN, children)
