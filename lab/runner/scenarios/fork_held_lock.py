# IN-CONTAINER CODE: standard library only, Python 3.9+ and PyPy; never imports lab.*.
"""fork_held_lock - claims 5 and 6.

Claim 5: forking while another thread holds a lock leaves the child with a lock that is never
released. Claim 6: in pure Python, multiprocessing handles that properly.

How: a thread takes a module-level ``threading.Lock`` and keeps it; the main thread then starts
a child with the cell's start method, and the child takes the same lock *without* a timeout.
The parent joins it without a timeout. If the child inherited the held lock (``fork``), it
blocks forever: the harness's deadline marks the cell ``hung`` and shows the child's stack at
the ``acquire`` line. ``spawn``/``forkserver`` children import this module afresh and get a
free lock.
"""

import threading
import time

from .. import measurements as M

LOCK = threading.Lock()


def child_takes_lock():
    LOCK.acquire()  # blocks forever if the lock was copied in its held state
    LOCK.release()


def run(ctx):
    taken = threading.Event()
    release = threading.Event()

    def holder():
        with LOCK:
            taken.set()
            release.wait()  # no timeout: the hung cell is then seen to be stuck

    thread = threading.Thread(target=holder, name="lock-holder", daemon=True)
    thread.start()
    taken.wait()
    ctx.record("lock_held_by_thread_at_start", LOCK.locked())
    start = time.perf_counter()
    proc = ctx.start_child(child_takes_lock)
    ctx.record("child_pid", proc.pid)
    proc.join()  # no timeout on purpose: a deadlock must show as a hung cell
    ctx.record("child_exitcode", proc.exitcode)
    ctx.record(M.CHILD_ACQUIRED_LOCK, proc.exitcode == 0)
    ctx.record("child_seconds", time.perf_counter() - start)
    release.set()
    thread.join()
