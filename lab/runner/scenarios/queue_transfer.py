# IN-CONTAINER CODE: standard library only, Python 3.9+ and PyPy; never imports lab.*.
"""queue_transfer - how fast data moves between two processes, per start method.

How: a child sends ``count`` items then a sentinel through a ``multiprocessing.Queue`` or a
``Pipe``; the parent receives them. The clock runs from the first item received to the
sentinel, so process start-up is not counted. Small items (an int) and ~1 MB items. Recorded
per channel and size: items/s and MB/s over several repeats (median, IQR).
"""

import pickle
import time

SMALL = 20000
LARGE = 40
LARGE_BYTES = 1000 * 1000
REPEATS = 3


def send_queue(q, count, size):
    item = b"x" * size if size else 7
    for _ in range(count):
        q.put(item)
    q.put(None)


def send_pipe(conn, count, size):
    item = b"x" * size if size else 7
    for _ in range(count):
        conn.send(item)
    conn.send(None)
    conn.close()


def once(mp, channel, count, size):
    if channel == "queue":
        q = mp.Queue()
        proc = mp.Process(target=send_queue, args=(q, count, size))
        proc.start()
        first = q.get(timeout=30)
        t0 = time.perf_counter()
        while q.get(timeout=30) is not None:
            pass
    else:
        recv_end, send_end = mp.Pipe(duplex=False)
        proc = mp.Process(target=send_pipe, args=(send_end, count, size))
        proc.start()
        send_end.close()
        first = recv_end.recv()
        t0 = time.perf_counter()
        while recv_end.recv() is not None:
            pass
    took = time.perf_counter() - t0
    proc.join(30)
    assert first is not None
    return took


def run(ctx):
    repeats = 2 if ctx.quick else REPEATS
    small = 3000 if ctx.quick else SMALL
    large = 10 if ctx.quick else LARGE
    item_bytes = {"small": len(pickle.dumps(7)), "large": LARGE_BYTES}
    for channel in ("queue", "pipe"):
        for size_name, count, size in (("small", small, 0), ("large", large, LARGE_BYTES)):
            samples = [once(ctx.mp, channel, count, size) for _ in range(repeats)]
            moved = count - 1  # the first item only starts the clock
            rates = [moved / s for s in samples]
            ctx.record(f"{channel}_{size_name}", {
                "items": moved,
                "item_bytes": item_bytes[size_name],
                "seconds": ctx.summarize(samples),
                "items_per_s": ctx.summarize(rates),
                "mb_per_s": ctx.summarize([r * item_bytes[size_name] / 1e6 for r in rates]),
            })
