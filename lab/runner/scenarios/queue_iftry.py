# IN-CONTAINER CODE: standard library only, Python 3.9+ and PyPy; never imports lab.*.
"""queue_iftry - claim 7: is ``if q.empty()`` cheaper than catching ``queue.Empty``?

How: time ``if not q.empty(): q.get_nowait()`` against ``try: q.get_nowait() except
queue.Empty`` per call, on an empty and on a non-empty queue, for ``queue.Queue`` and
``multiprocessing.Queue`` (the latter made with the cell's start method). The two variants are
interleaved round by round, in alternating order, after a warm-up of each, until both medians
are known to the cell's precision; the per-round ratio is kept too. Then a child process
puts one item at a time and signals when ``put()`` returned; the parent checks ``empty()`` at
once: how often it still says True is the documented "short delay". It is a race with the
queue's feeder thread, so it runs as several attempts, each with a fresh queue and child, and
records each attempt's share: their spread is part of the finding.
"""

import queue
import time

from .. import measurements as M

CALLS = {"thread": 20000, "process": 1000}
BUDGET_S = 0.2
TRIALS = 25  # per attempt
ATTEMPTS = 4


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


def bench(ctx, make, calls):
    """Both variants on the same kind of queue, interleaved: each round times one block of
    each, in alternating order, after a warm-up round that warms each variant up on its own
    (under a JIT, a block of samples can carry a state - warm-up, a trace - that its spread
    does not show, so one variant must not get all the early or all the late blocks)."""
    out = {}
    variants = (("if_empty", if_check), ("try_except", try_except))
    for state in M.QUEUE_STATES:

        def one_round(i, state=state):
            got = {}
            for name, fn in (variants if i % 2 == 0 else variants[::-1]):
                q = make()
                if state != "empty":
                    fill(q, calls)
                got[name] = fn(q, calls) * 1e9
            got["if_over_try"] = got[M.IF_EMPTY] / got[M.TRY_EXCEPT]
            return got

        series, how = ctx.sample_until(one_round, [M.IF_EMPTY, M.TRY_EXCEPT],
                                       budget_s=BUDGET_S)
        for name, _ in variants:
            out[M.iftry_ns(state, name)] = ctx.summarize(series[name])
        a = out[M.iftry_ns(state, M.IF_EMPTY)][M.MEDIAN]
        b = out[M.iftry_ns(state, M.TRY_EXCEPT)][M.MEDIAN]
        out[f"{state}_if_over_try"] = a / b if b else None
        out[M.iftry_paired(state)] = ctx.summarize(series["if_over_try"])
        out[f"{state}_sampling"] = how
    return out


def putter(q, put_done, go_on, trials):
    for i in range(trials):
        go_on.wait()
        go_on.clear()
        q.put(i)
        put_done.set()


def empty_after_put(ctx, trials, attempts):
    """How often ``empty()`` is still True right after another process's ``put()`` returned,
    over ``attempts`` independent attempts of ``trials`` each."""
    seen = [one_attempt(ctx, trials) for _ in range(attempts)]
    total = trials * attempts
    return {"trials": total, "empty_right_after_put": sum(seen), M.FRACTION: sum(seen) / total,
            M.ATTEMPTS: [x / float(trials) for x in seen], "trials_per_attempt": trials}


def one_attempt(ctx, trials):
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
    return still_empty


def direction(paired):
    """+1: ``if`` is cheaper (the per-round ratio's interval lies below 1), -1: dearer, 0: not
    told apart. The runner measures again the cells of a target whose directions disagree."""
    interval = paired.get("ci")
    if not interval:
        return 0
    return 1 if interval[1] < 1 else -1 if interval[0] > 1 else 0


def run(ctx):
    found = {}
    for name, make, calls in (("queue.Queue", queue.Queue, CALLS["thread"]),
                              ("multiprocessing.Queue", ctx.mp.Queue, CALLS["process"])):
        found[name] = bench(ctx, make, calls)
        ctx.record(name, found[name])
    ctx.record(M.DIRECTIONS, {f"{name} {state}": direction(m[M.iftry_paired(state)])
                              for name, m in found.items() for state in M.QUEUE_STATES})
    ctx.record(M.EMPTY_AFTER_PUT, empty_after_put(ctx, TRIALS, 2 if ctx.quick else ATTEMPTS))
