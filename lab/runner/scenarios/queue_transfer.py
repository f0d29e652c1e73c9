# IN-CONTAINER CODE: standard library only, Python 3.9+ and PyPy; never imports lab.*.
"""queue_transfer - how fast data moves between two processes, per start method.

How: for each channel (a ``multiprocessing.Queue``, a ``Pipe``) and item size (an int, ~1 MB),
one child sends batches of items, each when the parent asks for it, and ends each batch with
a marker; the parent times a batch from its first item received to the marker, so process
start-up is not counted. The first batch is the warm-up and sizes the rest to about
``SAMPLE_S`` each; batches go on until the median rate is known to the cell's precision.
Recorded per channel and size: items/s and MB/s (median, IQR, interval), why sampling stopped,
and what the child saw from inside: its start-up latency, CPU time and wall time.
"""

import pickle
import time

from .. import measurements as M

LARGE_BYTES = 1000 * 1000
FIRST_BATCH = {"small": 2000, "large": 10}
SAMPLE_S = 0.02
BUDGET_S = 0.2
MARK = "end of batch"
clock = time.monotonic  # CLOCK_MONOTONIC: one clock for parent and child


def sender(channel, out, ctl, size, called):
    entered = clock()
    item = b"x" * size if size else 7
    put = out.put if channel == "queue" else out.send
    while True:
        count = ctl.recv()
        if count is None:
            break
        for _ in range(count):
            put(item)
        put(MARK)
    put(("done", entered - called, time.process_time(), clock() - entered))
    if channel == "pipe":
        out.close()


def measure(ctx, channel, size_name):
    size = LARGE_BYTES if size_name == "large" else 0
    mp = ctx.mp
    ctl_recv, ctl_send = mp.Pipe(duplex=False)
    if channel == "queue":
        q = mp.Queue()
        out, get = q, (lambda: q.get(timeout=30))
    else:
        recv_end, out = mp.Pipe(duplex=False)
        get = recv_end.recv
    proc = ctx.start_child(sender, channel, out, ctl_recv, size, clock())
    if channel == "pipe":
        out.close()
    count = [FIRST_BATCH[size_name]]

    def batch(i):
        ctl_send.send(count[0])
        get()
        t0 = time.perf_counter()
        while True:
            got = get()
            if isinstance(got, str) and got == MARK:
                break
        took = time.perf_counter() - t0
        rate = (count[0] - 1) / took  # the first item only starts the clock
        if i == 0:  # the warm-up sizes the batches that are measured
            count[0] = max(FIRST_BATCH[size_name], int(rate * SAMPLE_S) + 1)
        return {M.ITEMS_PER_S: rate, "seconds": took}

    series, how = ctx.sample_until(batch, [M.ITEMS_PER_S], budget_s=BUDGET_S)
    ctl_send.send(None)
    done = get()
    proc.join(30)
    item_bytes = LARGE_BYTES if size else len(pickle.dumps(7))
    rates = series[M.ITEMS_PER_S]
    return {
        "items": count[0] - 1,
        "item_bytes": item_bytes,
        "seconds": ctx.summarize(series["seconds"]),
        M.ITEMS_PER_S: ctx.summarize(rates),
        M.MB_PER_S: ctx.summarize([r * item_bytes / 1e6 for r in rates]),
        "sampling": how,
        "child": {"startup_s": done[1], "cpu_s": done[2], "wall_s": done[3]},
    }


def run(ctx):
    for channel in M.CHANNELS:
        for size_name in M.SIZES:
            ctx.record(M.transfer(channel, size_name), measure(ctx, channel, size_name))
