# IN-CONTAINER CODE: standard library only, Python 3.9+ and PyPy; never imports lab.*.
"""fork_held_io - claim 6: does the standard library's own I/O survive a fork mid-write?

How: a thread writes through ``print()`` and ``logging`` in a tight loop (to /dev/null, so the
hazard is the locks, not the disk) while the main thread starts a child with the cell's start
method; the writer pauses once ``start()`` has returned, so the parent's join is not starved of
the GIL and any hang is the child's. Each child prints and logs a few lines and exits. The
parent joins each child without a timeout: a child that inherited a held ``BufferedWriter`` or
handler lock blocks forever and the cell shows ``hung`` with its stack. The race is sampled:
the trial count is chosen so that a hang happening in at least ``RATE`` of trials shows with
probability ``DETECT`` (29 trials for 95 % at 10 %; --quick: 8 for 80 % at 20 %), within
``BUDGET_S`` seconds. Recorded: trials planned and completed, and that detection target, so
"0 hangs" reads as "not seen, not ruled out" with its odds. logging re-initialises its locks
at fork (3.7+); ``sys.stdout``'s buffer lock has no such hook, so a hang here is a real stdlib
hazard under ``fork``.
"""

import io
import logging
import math
import os
import sys
import threading
import time

from .. import measurements as M

DETECT, RATE = 0.95, 0.10  # see a hang in >= 10 % of trials 95 % of the time
QUICK_DETECT, QUICK_RATE = 0.80, 0.20
BUDGET_S = 4.0


def trials_for(detect, rate):
    """The fewest trials in which an event of per-trial probability ``rate`` shows at least
    once with probability ``detect``: 1 - (1 - rate) ** n >= detect."""
    return math.ceil(math.log(1 - detect) / math.log(1 - rate))


def child_prints_and_logs():
    log = logging.getLogger("lab.fork_held_io")
    for i in range(5):
        print(f"child line {i}")
        log.warning("child log %d", i)
    sys.stdout.flush()


def run(ctx):
    detect, rate = (QUICK_DETECT, QUICK_RATE) if ctx.quick else (DETECT, RATE)
    trials = int(ctx.params.get("trials", trials_for(detect, rate)))
    sink = io.TextIOWrapper(io.BufferedWriter(io.FileIO(os.devnull, "w"), 1 << 16))
    old_stdout = sys.stdout
    sys.stdout = sink
    log = logging.getLogger("lab.fork_held_io")
    handler = logging.StreamHandler(sink)
    log.addHandler(handler)
    log.propagate = False
    busy = threading.Event()
    stop = threading.Event()
    lines = [0]

    def writer():
        payload = "y" * 512
        while not stop.is_set():
            busy.wait()  # no timeout: while the child runs, the parent is seen to sleep
            if stop.is_set():
                break
            print(payload)
            log.warning("busy %s", payload)
            lines[0] += 2

    thread = threading.Thread(target=writer, name="busy-writer", daemon=True)
    thread.start()
    ctx.record(M.TRIALS_PLANNED, trials)
    ctx.record(M.DETECTION, {"probability": detect, "rate": rate})
    started = time.perf_counter()
    try:
        for i in range(trials):
            busy.set()
            time.sleep(0.002)  # let the writer get going: the fork lands mid-write
            proc = ctx.start_child(child_prints_and_logs)
            busy.clear()
            proc.join()  # no timeout: an inherited held I/O lock shows as a hung cell
            ctx.record(M.TRIALS_COMPLETED, i + 1)
            if proc.exitcode != 0:
                ctx.record("child_failures", ctx.measurements.get("child_failures", 0) + 1)
            if time.perf_counter() - started > BUDGET_S:
                break
    finally:
        stop.set()
        busy.set()
        thread.join(5)
        sys.stdout = old_stdout
        log.removeHandler(handler)
    ctx.record("writer_lines", lines[0])
    ctx.record("seconds", time.perf_counter() - started)
