# IN-CONTAINER CODE: standard library only, Python 3.9+ and PyPy; never imports lab.*.
"""threading_gil - claim 2: threads overlap on blocking I/O but not on CPU-bound Python code.

How: ``THREADS`` threads each do the same work, compared with doing it serially: (a) a
CPU-bound countdown, (b) blocking I/O - reading from a pipe that a timer thread fills after a
delay, plus ``time.sleep`` - which releases the GIL. Recorded: medians, IQR, speedups and
``sys.getswitchinterval()``.
"""

import os
import sys
import threading
import time

from .countdown import calibrate, countdown

THREADS = 4
IO_WAIT_S = 0.05
IO_ROUNDS = 3


def cpu_job(n):
    countdown(n)


def io_job(_n):
    for _ in range(IO_ROUNDS):
        r, w = os.pipe()
        timer = threading.Timer(IO_WAIT_S / 2, os.write, (w, b"x"))
        timer.start()
        os.read(r, 1)  # blocks in the kernel with the GIL released
        timer.join()
        os.close(r)
        os.close(w)
        time.sleep(IO_WAIT_S / 2)


def measure(ctx, job, n, repeats):
    serial_s, threaded_s = [], []
    for i in range(1 + repeats):
        t0 = time.perf_counter()
        for _ in range(THREADS):
            job(n)
        t1 = time.perf_counter()
        threads = [threading.Thread(target=job, args=(n,)) for _ in range(THREADS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        t2 = time.perf_counter()
        if i:
            serial_s.append(t1 - t0)
            threaded_s.append(t2 - t1)
    s, t = ctx.summarize(serial_s), ctx.summarize(threaded_s)
    return {"serial": s, "threads": t, "speedup": s["median"] / t["median"]}


def run(ctx):
    repeats = 3 if ctx.quick else 5
    try:
        ctx.record("switch_interval_s", sys.getswitchinterval())
    except AttributeError:
        ctx.record("switch_interval_s", None)
    ctx.record("threads", THREADS)
    n = calibrate(0.05 if ctx.quick else 0.1)
    ctx.record("cpu", measure(ctx, cpu_job, n, repeats))
    ctx.record("io", measure(ctx, io_job, n, repeats))
