# IN-CONTAINER CODE: standard library only, Python 3.9+ and PyPy; never imports lab.*.
"""The scenario catalog: data the host plans with, and the modules the runner executes.

``kind`` decides scheduling: ``timing`` cells run exclusive, pinned to CPUs of their own;
``behaviour`` cells may run side by side. ``start_methods`` is ``none`` (one cell, no child
process), ``each`` (one cell per start method) or ``none+each`` (both).
``deadline_s`` is the per-cell deadline on a native CPU; the host scales it for emulation.
``cost_s`` is what a cell typically takes on a native CPU, measured on 2 cores (the median of
its start methods, a deliberate hang included): the plan's estimate uses it where no earlier
run recorded durations.
``module`` (optional) names the module that runs it (a variant of another scenario), and
``env`` (optional) what its cells' environment sets.
``requires`` (optional) names the packages it imports, in pip's words: such a scenario runs only
when asked for (``lab run --scenarios``), which installs them for each target the way
``--with`` does; the default run needs no index. ``imports`` names the modules of theirs its
module imports, inside functions only, so that it loads (and skips) where they are missing.
``containers`` (optional) runs the scenario's cells in containers of their own, one per variant
(``cpus=1``: ``--cpus 1``; ``cpuset=0``: ``--cpuset-cpus 0``) instead of the usual one.
A scenario's docstring states its claim and how the cell observes it.
"""

import importlib
import os

CATALOG = {
    "probe": {
        "kind": "behaviour", "start_methods": "none", "deadline_s": 30, "cost_s": 1,
        "title": "Interpreter facts: start methods, GIL, CPUs, pickle, PID 1",
    },
    "countdown": {
        "kind": "timing", "start_methods": "none+each", "deadline_s": 90, "cost_s": 1.2,
        "title": "CPU-bound countdown: serial vs 2 threads vs 2 processes",
    },
    "threading_gil": {
        "kind": "timing", "start_methods": "none", "deadline_s": 60, "cost_s": 0.7,
        "title": "Threads on blocking I/O: do they overlap?",
    },
    "process_startup": {
        "kind": "timing", "start_methods": "each", "deadline_s": 60, "cost_s": 0.7,
        "title": "Start + join latency of a trivial process",
    },
    "queue_transfer": {
        "kind": "timing", "start_methods": "each", "deadline_s": 60, "cost_s": 0.8,
        "title": "Queue and Pipe throughput between two processes",
    },
    "queue_iftry": {
        "kind": "timing", "start_methods": "each", "deadline_s": 60, "cost_s": 0.8,
        "title": "if q.empty() vs try/except queue.Empty",
    },
    "queue_growth": {
        "kind": "behaviour", "start_methods": "each", "deadline_s": 40, "cost_s": 3,
        "title": "Producer memory with a slow consumer: unbounded vs bounded queue",
    },
    "fork_held_lock": {
        "kind": "behaviour", "start_methods": "each", "deadline_s": 6, "cost_s": 3,
        "title": "Child takes a lock another thread held at start",
    },
    "fork_held_io": {
        "kind": "behaviour", "start_methods": "each", "deadline_s": 10, "cost_s": 5,
        "title": "Child prints and logs while a thread was busy writing at start",
    },
    "queue_join_before_drain": {
        "kind": "behaviour", "start_methods": "each", "deadline_s": 6, "cost_s": 6,
        "title": "join() a child before getting its ~1 MB queue item",
    },
    "fork_warning": {
        "kind": "behaviour", "start_methods": "each", "deadline_s": 40, "cost_s": 1,
        "title": "Fork-with-threads DeprecationWarning, and -W error",
    },
    "pickle_target": {
        "kind": "behaviour", "start_methods": "each", "deadline_s": 40, "cost_s": 0.5,
        "title": "A lambda, a closure and a nested function as Process targets",
    },
    "main_guard": {
        "kind": "behaviour", "start_methods": "each", "deadline_s": 40, "cost_s": 1.5,
        "title": "A script with no __main__ guard starts a child at module level",
    },
    "inherited_state": {
        "kind": "behaviour", "start_methods": "each", "deadline_s": 20, "cost_s": 1,
        "title": "A module global changed at run time: what the child sees",
    },
    "openmp_fork": {
        "kind": "behaviour", "start_methods": "each", "deadline_s": 6, "cost_s": 3,
        "title": "A child runs an OpenMP parallel region after its parent ran one",
    },
    "openmp_fork_single": {
        "kind": "behaviour", "start_methods": "each", "deadline_s": 6, "cost_s": 0.5,
        "module": "openmp_fork", "env": {"OMP_NUM_THREADS": "1"},
        "title": "The same with OMP_NUM_THREADS=1",
    },
    "blas_fork": {
        "kind": "behaviour", "start_methods": "each", "deadline_s": 20, "cost_s": 2,
        "requires": ["numpy"], "imports": ["numpy"],
        "title": "A child multiplies matrices with numpy's BLAS after its parent did",
    },
    "grpc_fork": {
        "kind": "behaviour", "start_methods": "each", "deadline_s": 20, "cost_s": 2,
        "requires": ["grpcio"], "imports": ["grpc"],
        "title": "A child makes a gRPC call after its parent made one",
    },
    "grpc_fork_support_off": {
        "kind": "behaviour", "start_methods": "each", "deadline_s": 20, "cost_s": 2,
        "requires": ["grpcio"], "module": "grpc_fork", "env": {"GRPC_ENABLE_FORK_SUPPORT": "0"},
        "title": "The same with GRPC_ENABLE_FORK_SUPPORT=0",
    },
    "grpc_fork_support_on": {
        "kind": "behaviour", "start_methods": "each", "deadline_s": 20, "cost_s": 2,
        "requires": ["grpcio"], "module": "grpc_fork", "env": {"GRPC_ENABLE_FORK_SUPPORT": "1"},
        "title": "The same with GRPC_ENABLE_FORK_SUPPORT=1",
    },
    "executor_defaults": {
        "kind": "behaviour", "start_methods": "each", "deadline_s": 60, "cost_s": 4,
        "title": "ProcessPoolExecutor() and Pool(): start method, workers, max_tasks_per_child",
    },
    "cpu_limits": {
        "kind": "behaviour", "start_methods": "each", "deadline_s": 40, "cost_s": 1,
        "containers": ["cpus=1", "cpuset=0"],
        "title": "CPU facts and default worker counts under --cpus 1 and --cpuset-cpus 0",
    },
}

USER_PACKAGE = "lab_scenarios"  # scenario files, copied by the host into LAB_USER_DIR


def get(name):
    if name.startswith("selftest."):
        from . import selftest

        fn = getattr(selftest, name.split(".", 1)[1], None)
        if fn is None or not callable(fn):
            raise KeyError(f"unknown self-test {name!r}")
        return selftest.Shim(fn)
    if name in CATALOG:
        return importlib.import_module("." + CATALOG[name].get("module", name), __name__)
    if os.environ.get("LAB_USER_DIR") and name.isidentifier():
        return importlib.import_module(USER_PACKAGE + "." + name)
    raise KeyError("unknown scenario {!r}; known: {}".format(name, ", ".join(sorted(CATALOG))))
