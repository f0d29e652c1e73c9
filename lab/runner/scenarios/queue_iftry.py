# IN-CONTAINER CODE: standard library only, Python 3.9+ and PyPy; never imports lab.*.
"""queue_iftry - claim 7: is ``if q.empty()`` cheaper than catching ``queue.Empty``?

How: time ``if not q.empty(): q.get_nowait()`` against ``try: q.get_nowait() except
queue.Empty`` per call, on an empty and on a non-empty queue, for ``queue.Queue`` and
``multiprocessing.Queue`` (the latter made with the cell's start method). Then a child process
puts one item at a time and signals when ``put()`` returned; the parent checks ``empty()`` at
once: how often it still says True is the documented "short delay".
"""

import queue
import time

CALLS = {"thread": 20000, "process": 1000}
REPEATS = 5
TRIALS = 200


def if_check(q, calls):
    t0 = time.perf_counter()
    for _ in range(calls):
        if not q.empty():
            q.get_nowait()
    return (time.perf_counter() - t0) / calls


def try_except(q, calls):
    empty = queue.Empty
    t0 = time.perf_counter()
    for _ in range(calls):
        try:
            q.get_nowait()
        except empty:
            pass
    return (time.perf_counter() - t0) / calls


def fill(q, calls):
    for i in range(calls):
        q.put(i)
    # A multiprocessing.Queue's feeder thread writes to the pipe in the background; wait for
    # it so the non-empty variant really finds items (private attribute, same on PyPy).
    deadline = time.time() + 10
    while getattr(q, "_buffer", None) and time.time() < deadline:
        time.sleep(0.001)
    time.sleep(0.01)


def bench(ctx, make, calls, repeats):
    out = {}
    for state in ("empty", "nonempty"):
        for name, fn in (("if_empty", if_check), ("try_except", try_except)):
            samples = []
            for _ in range(repeats):
                q = make()
                if state == "nonempty":
                    fill(q, calls)
                samples.append(fn(q, calls) * 1e9)
            out[f"{state}_{name}_ns"] = ctx.summarize(samples)
        a = out[f"{state}_if_empty_ns"]["median"]
        b = out[f"{state}_try_except_ns"]["median"]
        out[f"{state}_if_over_try"] = a / b if b else None
    return out


def putter(q, put_done, go_on, trials):
    for i in range(trials):
        go_on.wait()
        go_on.clear()
        q.put(i)
        put_done.set()


def empty_after_put(ctx, trials):
    q = ctx.mp.Queue()
    put_done, go_on = ctx.mp.Event(), ctx.mp.Event()
    proc = ctx.start_child(putter, q, put_done, go_on, trials)
    still_empty = 0
    for _ in range(trials):
        go_on.set()
        put_done.wait(10)
        put_done.clear()
        if q.empty():
            still_empty += 1
        q.get(timeout=10)
    proc.join(10)
    return {"trials": trials, "empty_right_after_put": still_empty,
            "fraction": still_empty / float(trials)}


def run(ctx):
    repeats = 3 if ctx.quick else REPEATS
    scale = 4 if ctx.quick else 1
    ctx.record("queue.Queue", bench(ctx, queue.Queue, CALLS["thread"] // scale, repeats))
    ctx.record("multiprocessing.Queue",
               bench(ctx, ctx.mp.Queue, CALLS["process"] // scale, repeats))
    ctx.record("empty_after_put", empty_after_put(ctx, 50 if ctx.quick else TRIALS))
