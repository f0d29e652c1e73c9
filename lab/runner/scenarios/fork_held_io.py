# IN-CONTAINER CODE: standard library only, Python 3.9+ and PyPy; never imports lab.*.
"""fork_held_io - claim 6: does the standard library's own I/O survive a fork mid-write?

How: a thread writes through ``print()`` and ``logging`` in a tight loop (to /dev/null, so the
hazard is the locks, not the disk) while the main thread starts a child with the cell's start
method; the writer pauses once ``start()`` has returned, so the parent's join is not starved of
the GIL and any hang is the child's. Each child prints and logs a few lines and exits. The
parent joins each child without a timeout: a child that inherited a held ``BufferedWriter`` or
handler lock blocks forever and the cell shows ``hung`` with its stack. Up to ``TRIALS``
children or ``BUDGET_S`` seconds. Recorded: trials completed. logging re-initialises its locks
at fork (3.7+); ``sys.stdout``'s buffer lock has no such hook, so a hang here is a real stdlib
hazard under ``fork``.
"""

import io
import logging
import os
import sys
import threading
import time

from .. import measurements as M

TRIALS = 40
BUDGET_S = 4.0


def child_prints_and_logs():
    log = logging.getLogger("lab.fork_held_io")
    for i in range(5):
        print(f"child line {i}")
        log.warning("child log %d", i)
    sys.stdout.flush()


def run(ctx):
    trials = 10 if ctx.quick else int(ctx.params.get("trials", TRIALS))
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
            if not busy.wait(0.1):
                continue
            print(payload)
            log.warning("busy %s", payload)
            lines[0] += 2

    thread = threading.Thread(target=writer, name="busy-writer", daemon=True)
    thread.start()
    ctx.record(M.TRIALS_PLANNED, trials)
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
