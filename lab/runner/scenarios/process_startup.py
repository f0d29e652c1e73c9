# IN-CONTAINER CODE: standard library only, Python 3.9+ and PyPy; never imports lab.*.
"""process_startup - claim 4: forkserver and spawn are slower than fork to start processes.

How: start and join a process that does nothing, with the cell's start method. The first start
is recorded apart (for forkserver it launches the server), then ``REPEATS`` more.
"""

import time

REPEATS = 15


def noop():
    pass


def start_and_join(mp):
    t0 = time.perf_counter()
    p = mp.Process(target=noop)
    p.start()
    p.join()
    took = time.perf_counter() - t0
    if p.exitcode != 0:
        raise RuntimeError(f"trivial child exited with {p.exitcode}")
    return took


def run(ctx):
    repeats = 5 if ctx.quick else REPEATS
    ctx.record("first_s", start_and_join(ctx.mp))
    ctx.record("startup", ctx.summarize([start_and_join(ctx.mp) for _ in range(repeats)]))
