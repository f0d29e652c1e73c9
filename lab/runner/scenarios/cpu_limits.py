# IN-CONTAINER CODE: standard library only, Python 3.9+ and PyPy; never imports lab.*.
"""cpu_limits: how Python sees a container's CPU limits, and the worker counts it derives.

Claim: ``os.cpu_count()`` reports the machine's CPUs whatever the container's limits;
``os.process_cpu_count()`` (3.13+) follows the CPU affinity, so it sees ``--cpuset-cpus`` but
not a ``--cpus`` quota; ``ProcessPoolExecutor()`` and ``Pool()`` size themselves from these, so
in a container limited to one CPU they may start more workers than it can run at once.

How: the lab runs these cells in containers of their own, one started with ``--cpus 1`` and
one with ``--cpuset-cpus 0`` (the ``container`` parameter names which). Each cell records the
CPU facts, then makes ``ProcessPoolExecutor(mp_context=...)`` and ``Pool()`` of its start
method with no worker count, and records the counts they chose.
"""

import concurrent.futures as cf


def square(x):
    return x * x


def run(ctx):
    ctx.record("container", ctx.params.get("container"))
    for key, value in ctx.cpu_facts().items():
        ctx.record(key, value)
    with cf.ProcessPoolExecutor(mp_context=ctx.mp) as pool:
        ctx.record("executor_max_workers", getattr(pool, "_max_workers", None))
        ctx.record("executor_ran", pool.submit(square, 3).result(timeout=30) == 9)
    with ctx.mp.Pool() as pool:
        ctx.record("pool_processes", getattr(pool, "_processes", None))
        ctx.record("pool_ran", pool.apply(square, (3,)) == 9)
