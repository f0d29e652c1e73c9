# IN-CONTAINER CODE: standard library only, Python 3.9+ and PyPy; never imports lab.*.
"""executor_defaults: what ``ProcessPoolExecutor()`` and ``Pool()`` really use when a program
has chosen a start method with ``set_start_method``, and their default worker counts.

Claim: both follow the global start method, and their default worker count is
``os.cpu_count()`` (``os.process_cpu_count()`` from 3.13), not the CPUs the process may use.
``max_tasks_per_child`` (3.11+) is refused with ``fork``, and without an explicit
``mp_context`` it quietly switches the executor to ``spawn`` where ``fork`` is the default.

How: the cell calls ``multiprocessing.set_start_method(METHOD, force=True)``, makes each pool
with no arguments and runs one task in it. The method is read from the pool and also inferred
from the worker itself: a worker that sees a global changed at run time was forked from the
cell; one whose parent is not the cell came from a forkserver; otherwise it was spawned.
"""

import concurrent.futures as cf
import multiprocessing
import os

from ..util import describe_error

MARK = "import-time"


def whoami(_=None):
    return {"pid": os.getpid(), "ppid": os.getppid(), "mark": MARK}


def inferred(seen):
    if seen["mark"] == "run-time":
        return "fork"
    return "spawn" if seen["ppid"] == os.getpid() else "forkserver"


def pcc():
    fn = getattr(os, "process_cpu_count", None)
    return fn() if fn else None


def arguments(kwargs):
    return {k: v.get_start_method() if hasattr(v, "get_start_method") else v
            for k, v in kwargs.items()}


def executor(ctx, **kwargs):
    out = {"arguments": arguments(kwargs)}
    try:
        with cf.ProcessPoolExecutor(**kwargs) as pool:
            out["max_workers"] = getattr(pool, "_max_workers", None)
            mp_context = getattr(pool, "_mp_context", None)
            out["context"] = mp_context.get_start_method() if mp_context else None
            seen = [pool.submit(whoami).result(timeout=30) for _ in range(3)]
        out["worker_method"] = inferred(seen[0])
        out["worker_pids"] = len({s["pid"] for s in seen})
    except Exception as exc:  # the observation: what a user's call raises
        out["error"] = describe_error(exc)
    return out


def pool_default(ctx, **kwargs):
    out = {"arguments": arguments(kwargs)}
    try:
        with multiprocessing.Pool(**kwargs) as pool:
            out["processes"] = getattr(pool, "_processes", None)
            pool_ctx = getattr(pool, "_ctx", None)
            out["context"] = pool_ctx.get_start_method() if pool_ctx else None
            seen = pool.map(whoami, range(3), chunksize=1)
        out["worker_method"] = inferred(seen[0])
        out["worker_pids"] = len({s["pid"] for s in seen})
    except Exception as exc:
        out["error"] = describe_error(exc)
    return out


def run(ctx):
    global MARK
    MARK = "run-time"
    multiprocessing.set_start_method(ctx.start_method, force=True)
    ctx.record("global_start_method", multiprocessing.get_start_method())
    ctx.record("cpu_count", os.cpu_count())
    ctx.record("process_cpu_count", pcc())
    ctx.record("affinity", ctx.affinity())
    ctx.record("ProcessPoolExecutor()", executor(ctx))
    ctx.record("Pool()", pool_default(ctx))
    ctx.record("ProcessPoolExecutor(max_tasks_per_child=1)",
               executor(ctx, max_tasks_per_child=1))
    ctx.record("ProcessPoolExecutor(max_tasks_per_child=1, mp_context=this method)",
               executor(ctx, max_tasks_per_child=1, mp_context=ctx.mp))
    ctx.record("Pool(maxtasksperchild=1)", pool_default(ctx, maxtasksperchild=1))
