# IN-CONTAINER CODE: standard library only, Python 3.9+ and PyPy; never imports lab.*.
"""queue_growth - claim 8: an unbounded multiprocessing.Queue can grow without limit.

How: a producer child puts ``ITEMS`` distinct 64 KiB items as fast as it can; the parent
consumes them slowly (a fixed sleep per item). With an unbounded queue ``put()`` never blocks,
so the backlog piles up in the producer's feeder buffer; with ``maxsize`` it blocks instead.
Recorded per variant: the peak number of items waiting in the producer's feeder buffer (the
direct measure of growth), the producer's peak RSS above its baseline (``ru_maxrss``; on PyPy
its GC keeps freed items around, so RSS alone cannot tell the two apart), how long its puts
took, and the consumer's total time.
"""

import resource
import sys
import time

from .. import measurements as M

ITEM_BYTES = 64 * 1024
ITEMS = 400
BOUND = 8
CONSUMER_DELAY_S = 0.001


def _maxrss_kib():
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 1024.0 if sys.platform == "darwin" else float(rss)


def producer(q, report, items):
    base = _maxrss_kib()
    start = time.perf_counter()
    backlog = 0
    for i in range(items):
        q.put(bytes((i % 256,)) * ITEM_BYTES)  # a distinct object per item
        # Items put() accepted but the feeder thread has not yet written to the pipe
        # (private attribute, the same in CPython and PyPy's stdlib).
        backlog = max(backlog, len(getattr(q, "_buffer", None) or ()))
    put_s = time.perf_counter() - start
    peak = _maxrss_kib()
    report.send({"baseline_kib": base, "peak_kib": peak, "put_seconds": put_s,
                 "peak_backlog_items": backlog})
    report.close()


def one(ctx, maxsize, items):
    q = ctx.mp.Queue(maxsize) if maxsize else ctx.mp.Queue()
    recv_end, send_end = ctx.mp.Pipe(duplex=False)
    start = time.perf_counter()
    proc = ctx.start_child(producer, q, send_end, items)
    send_end.close()
    for _ in range(items):
        q.get(timeout=30)
        time.sleep(CONSUMER_DELAY_S)
    consumed = time.perf_counter() - start
    stats = recv_end.recv()
    proc.join(30)
    stats["growth_kib"] = stats["peak_kib"] - stats["baseline_kib"]
    stats["consumer_seconds"] = consumed
    stats["maxsize"] = maxsize
    stats["items"] = items
    stats["item_bytes"] = ITEM_BYTES
    return stats


def run(ctx):
    items = 150 if ctx.quick else ITEMS
    ctx.record(M.UNBOUNDED, one(ctx, 0, items))
    ctx.record(M.BOUNDED, one(ctx, BOUND, items))
    unb = ctx.measurements["unbounded"]["growth_kib"]
    bnd = ctx.measurements["bounded"]["growth_kib"]
    ctx.record("backlog_mib", items * ITEM_BYTES / 1048576.0)
    ctx.record("growth_ratio", unb / bnd if bnd > 0 else None)
