# IN-CONTAINER CODE: standard library only, Python 3.9+ and PyPy; never imports lab.*.
"""threading_gil - claim 2: threads overlap on blocking I/O (the GIL is released there).

How: ``THREADS`` threads each wait on blocking I/O - reading from a pipe that a timer thread
fills after a delay, plus ``time.sleep`` - compared with doing the same waits one after
another, in rounds that alternate which goes first, until the median speedup is known to the
cell's precision. CPU-bound threads are the countdown's thread cell. Recorded: medians, IQR,
the speedup, why sampling stopped and ``sys.getswitchinterval()``.
"""

import os
import sys
import threading
import time

from .. import measurements as M

THREADS = 4
IO_WAIT_S = 0.01
IO_ROUNDS = 2
BUDGET_S = 1.0


def io_job():
    for _ in range(IO_ROUNDS):
        r, w = os.pipe()
        timer = threading.Timer(IO_WAIT_S / 2, os.write, (w, b"x"))
        timer.start()
        os.read(r, 1)  # blocks in the kernel with the GIL released
        timer.join()
        os.close(r)
        os.close(w)
        time.sleep(IO_WAIT_S / 2)


def one_round(i):
    def one_by_one():
        t0 = time.perf_counter()
        for _ in range(THREADS):
            io_job()
        return time.perf_counter() - t0

    def threaded():
        t0 = time.perf_counter()
        threads = [threading.Thread(target=io_job) for _ in range(THREADS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return time.perf_counter() - t0

    if i % 2:
        t, s = threaded(), one_by_one()
    else:
        s, t = one_by_one(), threaded()
    return {"serial": s, "threads": t, "speedup": s / t}


def run(ctx):
    try:
        ctx.record("switch_interval_s", sys.getswitchinterval())
    except AttributeError:
        ctx.record("switch_interval_s", None)
    ctx.record("threads", THREADS)
    series, how = ctx.sample_until(one_round, ["speedup"], budget_s=BUDGET_S)
    s, t = ctx.summarize(series["serial"]), ctx.summarize(series["threads"])
    ctx.record(M.IO, {M.SERIAL: s, "threads": t, M.SPEEDUP: s[M.MEDIAN] / t[M.MEDIAN],
                      M.SPEEDUP_SAMPLES: series["speedup"], M.SAMPLING: how})
