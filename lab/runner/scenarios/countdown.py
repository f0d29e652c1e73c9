# IN-CONTAINER CODE: standard library only, Python 3.9+ and PyPy; never imports lab.*.
"""countdown - claims 1, 2 and 4: the GIL, threads vs processes, on a CPU-bound countdown.

How: ``n`` is calibrated so the serial countdown takes about ``TARGET_S``. The same total work
is then split over 2 workers: 2 threads (cell without a start method) or 2 processes with the
cell's start method (process start-up included, as a user would pay it). Serial and parallel
runs are interleaved, after a warm-up, so drift hits both alike. Recorded: every sample,
median, IQR, and speedup = median(serial) / median(parallel).
"""

import threading
import time

TARGET_S = 0.4
REPEATS = 5
WORKERS = 2


def countdown(n):
    while n > 0:
        n -= 1


def calibrate(target_s):
    n = 100000
    while True:
        start = time.perf_counter()
        countdown(n)
        took = time.perf_counter() - start
        if took >= 0.05:
            return max(WORKERS, int(n * target_s / took))
        n *= 4


def serial(n):
    for _ in range(WORKERS):
        countdown(n // WORKERS)


def with_threads(n):
    threads = [threading.Thread(target=countdown, args=(n // WORKERS,)) for _ in range(WORKERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def with_processes(mp, n):
    procs = [mp.Process(target=countdown, args=(n // WORKERS,)) for _ in range(WORKERS)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()


def run(ctx):
    repeats = 3 if ctx.quick else REPEATS
    n = calibrate(0.15 if ctx.quick else TARGET_S)
    label = "processes" if ctx.start_method else "threads"
    if ctx.start_method:

        def parallel():
            with_processes(ctx.mp, n)
    else:

        def parallel():
            with_threads(n)

    ctx.record("n", n)
    ctx.record("workers", WORKERS)
    ctx.record("cpus", ctx.affinity())
    serial_s, parallel_s = [], []
    serial_cpu = 0.0
    for i in range(1 + repeats):
        c0 = time.process_time()
        t0 = time.perf_counter()
        serial(n)
        t1 = time.perf_counter()
        if i:
            serial_cpu += time.process_time() - c0
        parallel()
        t2 = time.perf_counter()
        if i:  # the first round is the warm-up
            serial_s.append(t1 - t0)
            parallel_s.append(t2 - t1)
    s = ctx.summarize(serial_s)
    p = ctx.summarize(parallel_s)
    ctx.record("serial", s)
    ctx.record(label, p)
    ctx.record("parallel_kind", label)
    # CPU the serial runs used; the parallel runs do the same work again, in other threads or
    # processes, which lets a test check that a cell's CPU accounting counts them.
    ctx.record("serial_cpu_s", serial_cpu)
    ctx.record("speedup", s["median"] / p["median"] if p["median"] else None)
    ctx.record("speedup_samples", [a / b for a, b in zip(serial_s, parallel_s)])
