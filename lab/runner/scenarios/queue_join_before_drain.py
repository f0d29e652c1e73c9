# IN-CONTAINER CODE: standard library only, Python 3.9+ and PyPy; never imports lab.*.
"""queue_join_before_drain - the documented "joining processes that use queues" deadlock.

How: the child puts one ~1 MB item on a ``multiprocessing.Queue`` and returns; the parent calls
``join()`` (no timeout) *before* ``get()``. A child waits for its feeder thread to flush the
item into the pipe before it exits, and the pipe holds far less than 1 MB, so the documented
outcome is a deadlock under every start method. The cell is ``hung`` if that happens, with
the child's stack in its exit-time ``join_thread``; ``ok`` if the join returns.
"""

import time

ITEM_BYTES = 1000 * 1000


def child_puts(q):
    q.put(b"x" * ITEM_BYTES)


def run(ctx):
    q = ctx.mp.Queue()
    start = time.perf_counter()
    proc = ctx.start_child(child_puts, q)
    ctx.record("item_bytes", ITEM_BYTES)
    proc.join()  # before draining: the documented deadlock
    ctx.record("join_returned_after_s", time.perf_counter() - start)
    item = q.get(timeout=30)
    ctx.record("item_received_bytes", len(item))
    ctx.record("child_exitcode", proc.exitcode)
