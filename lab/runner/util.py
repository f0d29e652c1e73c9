# IN-CONTAINER CODE: standard library only, Python 3.9+ and PyPy; never imports lab.*.
"""Helpers shared by the scenarios: statistics, stack-dump set-up, the cell context."""

import faulthandler
import json
import math
import multiprocessing
import os
import signal
import time

from . import measurements as M
from . import protocol as P

STACKS_ENV = "LAB_STACKS_DIR"
STACK_SIGNAL = signal.SIGUSR1

_stack_file = None


def install_stack_dump():
    """Make this process dump every thread's stack to its own file on SIGUSR1.

    faulthandler's handler is C-level, so it works even when the main thread is blocked in a
    C lock wait, where a Python signal handler would never run. ``fork`` children inherit the
    parent's registration (and its file); spawn and forkserver children call this themselves.
    """
    global _stack_file
    directory = os.environ.get(STACKS_ENV)
    if not directory:
        return
    allow_tracing()
    path = os.path.join(directory, f"{os.getpid()}.txt")
    try:
        _stack_file = open(path, "w")
        faulthandler.register(STACK_SIGNAL, file=_stack_file, all_threads=True, chain=False)
    except (OSError, AttributeError, RuntimeError, ValueError):
        # PyPy or an exotic platform without faulthandler.register: the cell still runs, the
        # report says "no stack" for its processes.
        _stack_file = None


YAMA_SCOPE = "/proc/sys/kernel/yama/ptrace_scope"


def allow_tracing():
    """Where Yama lets only an ancestor trace a process, let any process of this user do it, so
    that the harness's py-spy can read this one's native stack when it hangs (see native.py).
    Only there: ctypes costs a process milliseconds to import."""
    try:
        with open(YAMA_SCOPE) as fh:
            if fh.read().strip() != "1":
                return
        import ctypes

        ctypes.CDLL(None).prctl(0x59616D61, ctypes.c_ulong(-1), 0, 0, 0)  # PR_SET_PTRACER, ANY
    except (OSError, AttributeError, ImportError, ValueError):
        pass


def child_entry(target, *args):
    """Entry point of every child process a scenario starts: register stacks, then run."""
    install_stack_dump()
    target(*args)


def start_child(ctx, target, *args, **kwargs):
    """Start ``target(*args)`` in a child of the cell's start method, with stack dumps."""
    proc = ctx.mp.Process(target=child_entry, args=(target,) + args, **kwargs)
    proc.start()
    return proc


def median(values):
    ordered = sorted(values)
    n = len(ordered)
    if n == 0:
        return None
    mid = n // 2
    if n % 2:
        return ordered[mid]
    return (ordered[mid - 1] + ordered[mid]) / 2.0


def quantile(values, q):
    """Linear-interpolation quantile (the 'inclusive' method of statistics.quantiles)."""
    ordered = sorted(values)
    if not ordered:
        return None
    pos = (len(ordered) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


CONFIDENCE = 0.9  # of the interval around a median that the stopping rule narrows
PRECISION = 0.03  # stop when that interval's half-width is within 3 % of the median
QUICK_PRECISION = 0.08  # --quick asks for less precision, not for fewer samples blindly
MIN_SAMPLES = 5  # fewer cannot give a 90 % interval around a median
MAX_SAMPLES = 25


def median_interval(samples, confidence=CONFIDENCE):
    """A distribution-free interval around the median: the order statistics x(l) and
    x(n + 1 - l), with l the largest rank such that P(Binomial(n, 1/2) < l) <= (1 - c) / 2,
    so the true median lies inside with probability >= c whatever the distribution.
    None when there are too few samples for that confidence (fewer than 5 at 0.9)."""
    ordered = sorted(samples)
    n = len(ordered)
    tail = (1.0 - confidence) / 2.0
    cumulative, rank = 0.0, 0
    for k in range(n // 2 + 1):
        cumulative += math.comb(n, k) / 2.0 ** n  # P(B <= k)
        if cumulative > tail:
            break
        rank = k + 1
    if rank < 1:
        return None
    return ordered[rank - 1], ordered[n - rank]


def precision_of(samples, confidence=CONFIDENCE):
    """Half the width of the median's interval, relative to the median (None: unknown)."""
    interval = median_interval(samples, confidence)
    med = median(samples)
    if interval is None or not med:
        return None
    return (interval[1] - interval[0]) / 2.0 / abs(med)


def summarize(samples):
    """The statistics every timing measurement carries: samples, median, IQR, n, and the
    median's 90 % interval with its relative half-width (``precision``)."""
    q1 = quantile(samples, 0.25)
    q3 = quantile(samples, 0.75)
    med = median(samples)
    interval = median_interval(samples)
    return {
        M.SAMPLES: list(samples),
        M.N: len(samples),
        M.MEDIAN: med,
        M.Q1: q1,
        M.Q3: q3,
        "iqr": None if q1 is None else q3 - q1,
        "min": min(samples) if samples else None,
        "max": max(samples) if samples else None,
        M.CI: list(interval) if interval else None,
        "precision": precision_of(samples),
    }


def sample_until(take, keys, precision=PRECISION, budget_s=5.0, min_n=MIN_SAMPLES,
                 max_n=MAX_SAMPLES, warmup=1, clock=time.monotonic):
    """Take rounds of samples until the medians of ``keys`` are known to ``precision``.

    ``take(i)`` runs round i (i < warmup: warm-up rounds, thrown away) and returns a dict of
    series name -> sample; a round may measure several variants, interleaved, so that drift
    hits them alike. Stops at the first of: every key's :func:`precision_of` within
    ``precision`` after at least ``min_n`` rounds ("precise"), ``max_n`` rounds
    ("max_samples"), ``budget_s`` seconds spent ("budget"). Returns (series, how), where how
    says why it stopped and how precise each key got, to record beside the samples.
    """
    started = clock()
    for i in range(warmup):
        take(i)
    series = {}
    i = warmup
    while True:
        for name, value in take(i).items():
            series.setdefault(name, []).append(value)
        i += 1
        n = i - warmup
        reached = {k: precision_of(series.get(k, [])) for k in keys}
        spent = clock() - started
        if n >= min_n and all(p is not None and p <= precision for p in reached.values()):
            stop = "precise"
        elif n >= max_n:
            stop = "max_samples"
        elif spent >= budget_s and n >= min(min_n, max_n):
            stop = "budget"
        else:
            continue
        return series, {"stop": stop, "n": n, "warmup": warmup, "target": precision,
                        "precision": reached, "spent_s": round(spent, 3),
                        "budget_s": budget_s, "max_n": max_n}


def time_call(fn, *args):
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def affinity():
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return None


def read_text(path):
    try:
        with open(path) as fh:
            return fh.read().strip()
    except OSError:
        return None


def cgroup_cpu_quota():
    """The CPU quota of this cgroup in CPUs (None: unlimited or unknown), v2 then v1."""
    v2 = read_text("/sys/fs/cgroup/cpu.max")
    if v2:
        quota, _, period = v2.partition(" ")
        if quota == "max":
            return {"cpus": None, "source": "cgroup v2 cpu.max", "raw": v2}
        return {"cpus": int(quota) / float(period), "source": "cgroup v2 cpu.max", "raw": v2}
    for base in ("/sys/fs/cgroup/cpu", "/sys/fs/cgroup/cpu,cpuacct"):
        quota = read_text(base + "/cpu.cfs_quota_us")
        period = read_text(base + "/cpu.cfs_period_us")
        if quota is not None and period:
            cpus = None if int(quota) < 0 else int(quota) / float(period)
            return {"cpus": cpus, "source": "cgroup v1 cfs", "raw": f"{quota} {period}"}
    return {"cpus": None, "source": None, "raw": None}


def cgroup_cpuset():
    return (read_text("/sys/fs/cgroup/cpuset.cpus.effective")
            or read_text("/sys/fs/cgroup/cpuset/cpuset.effective_cpus")
            or read_text("/sys/fs/cgroup/cpuset/cpuset.cpus"))


def cpu_facts():
    """How this process sees its CPUs: what Python reports and what the cgroup allows."""
    pcc = getattr(os, "process_cpu_count", None)
    return {
        "cpu_count": os.cpu_count(),
        "process_cpu_count": pcc() if pcc is not None else None,
        "affinity": affinity(),
        "cgroup_cpu_quota": cgroup_cpu_quota(),
        "cgroup_cpuset": cgroup_cpuset(),
    }


class CellContext:
    """What a scenario's ``run(ctx)`` sees: the whole API, for built-in scenarios and scenario
    files alike (docs/your-code.md, "Scenario files").

    - ``ctx.mp``: the multiprocessing context of the cell's start method (the module itself
      when the cell has none); ``ctx.start_method``: its name or None.
    - ``ctx.start_child(fn, *args, **kwargs)``: start ``fn(*args)`` in a ``ctx.mp.Process``
      whose stack is dumped if the cell hangs; returns the started process.
    - ``ctx.record(key, value)``: keep a JSON-able observation (written at once, so what was
      recorded before a hang survives); ``ctx.summarize(samples)``: median, IQR and n of
      timing samples, to record.
    - ``ctx.sample_until(take, keys, budget_s=...)``: rounds of timing samples until the
      median of each series in ``keys`` is known to ``ctx.precision`` (3 %, 8 % with
      ``--quick``), see :func:`sample_until`; record its second value beside the samples.
    - ``ctx.fail(detail)`` / ``ctx.skip(detail)``: end the cell as failed or skipped.
    - ``ctx.params``, ``ctx.quick`` (lower precision), ``ctx.affinity()`` (CPUs it may use),
      ``ctx.cpu_facts()`` (os.cpu_count(), process_cpu_count(), affinity, cgroup quota).
    """

    def __init__(self, scenario, start_method, params, result_path):
        self.scenario = scenario
        self.start_method = start_method
        self.params = params or {}
        self.result_path = result_path
        self.measurements = {}
        self.status = P.OK
        self.detail = None
        self.mp = multiprocessing
        if start_method:
            try:
                self.mp = multiprocessing.get_context(start_method)
            except ValueError:
                self.mp = None  # not offered here: run_cell records the cell as skipped
        self.quick = bool(self.params.get("quick"))
        self.precision = float(self.params.get("precision")
                               or (QUICK_PRECISION if self.quick else PRECISION))
        self.caught = []

    def sample_until(self, take, keys, **kwargs):
        kwargs.setdefault("precision", self.precision)
        return sample_until(take, keys, **kwargs)

    def start_child(self, target, *args, **kwargs):
        return start_child(self, target, *args, **kwargs)

    summarize = staticmethod(summarize)
    affinity = staticmethod(affinity)
    cpu_facts = staticmethod(cpu_facts)

    def record(self, key, value):
        self.measurements[key] = value
        self.flush()

    def fail(self, detail):
        self.status = P.FAILED
        self.detail = detail
        self.flush()

    def skip(self, detail):
        self.status = P.SKIPPED
        self.detail = detail
        self.flush()

    def flush(self, extra=None):
        payload = {
            "status": self.status,
            "detail": self.detail,
            "measurements": self.measurements,
            "warnings": [describe_warning(w) for w in self.caught],
        }
        if extra:
            payload.update(extra)
        tmp = self.result_path + ".tmp"
        with open(tmp, "w") as fh:
            json.dump(payload, fh, default=repr)
        os.replace(tmp, self.result_path)


def describe_error(exc, limit=300):
    """``Type: first line of the message``; a message that is empty (a timeout's) gives the
    type alone rather than an IndexError in the handler that records it."""
    lines = str(exc).strip().splitlines()
    return type(exc).__name__ + (": " + lines[0][:limit] if lines else "")


def describe_warning(w):
    return {
        "category": w.category.__name__,
        "message": str(w.message),
        "filename": w.filename,
        "lineno": w.lineno,
    }
