"""The measurements the host reads, declared once for both sides.

A scenario records whatever it likes (``ctx.record(key, value)``); the keys below are the ones
the host's verdicts, report, "what changed" and bench read back, so they are a contract:
scenarios record them under these names, the host reads them through these names, and
``tests/runner/test_scenarios.py`` checks that every scenario records what ``READ_BY_HOST``
says it does.

IN-CONTAINER CODE: standard library only, Python 3.9+ and PyPy; never imports lab.*.
"""

# Timing statistics (util.summarize): median, quartiles, n, the median's interval, the samples.
MEDIAN = "median"
Q1 = "q1"
Q3 = "q3"
N = "n"
CI = "ci"  # [low, high]: the median's 90 % interval
SAMPLES = "samples"

# countdown; threading_gil keeps the same keys under IO.
WORK_N = "n"  # countdown: iterations of the countdown one serial sample runs
SPEEDUP = "speedup"  # serial time over parallel time, the median of the paired rounds
SPEEDUP_SAMPLES = "speedup_samples"  # every round's speedup
SERIAL = "serial"  # statistics of one serial sample, in seconds
CHILDREN = "children"  # process-based timings: each child's own start-up, CPU and wall time
SAMPLING = "sampling"  # why sampling stopped: precise, max_samples or budget
IO = "io"  # threading_gil: two threads waiting on I/O against one
CPU_CONCURRENCY = "cpu_concurrency"  # workers' own CPU time over their span: CPUs used at once

# process_startup
STARTUP = "startup"  # statistics of start + join, in seconds
FIRST_S = "first_s"  # the first start (a forkserver starts its server then)
STARTUP_MODULE = "startup_module"  # the target in an imported module instead of __main__
STARTUP_OVER_FORK = "startup_over_fork_paired"  # per round: this method's start over fork's

# queue_transfer: transfer(channel, size) for channel in CHANNELS and size in SIZES, each with
# statistics of ITEMS_PER_S and MB_PER_S
CHANNELS = ("queue", "pipe")
SIZES = ("small", "large")
ITEMS_PER_S = "items_per_s"
MB_PER_S = "mb_per_s"


def transfer(channel, size):
    return channel + "_" + size


# queue_iftry: per queue type, then paired directions, then the put-then-empty() race
# Under each queue type, for each state: iftry_ns(state, variant) holds the statistics of a
# call in nanoseconds and iftry_paired(state) those of the interleaved per-round ratio if/except.
QUEUE_TYPES = ("queue.Queue", "multiprocessing.Queue")
QUEUE_STATES = ("empty", "nonempty")
IF_EMPTY = "if_empty"
TRY_EXCEPT = "try_except"
DIRECTIONS = "directions"
EMPTY_AFTER_PUT = "empty_after_put"  # {"trials", "empty_right_after_put", FRACTION, ATTEMPTS}
FRACTION = "fraction"
ATTEMPTS = "attempts"  # each attempt's fraction: the race's spread


def iftry_ns(state, variant):
    return state + "_" + variant + "_ns"


def iftry_paired(state):
    return state + "_if_over_try_paired"


# queue_growth
UNBOUNDED = "unbounded"
BOUNDED = "bounded"

# Hazards
CHILD_ACQUIRED_LOCK = "child_acquired_lock"  # fork_held_lock: the child got the lock
TRIALS_PLANNED = "trials_planned"  # fork_held_io
TRIALS_COMPLETED = "trials_completed"
DETECTION = "detection"  # {"probability": P, "rate": R}: a hang in >= R of trials shows with P
CHILD_SEES = "child_sees"  # inherited_state: run-time or import-time
CHILD_INHERITED_RUN_TIME_STATE = "child_inherited_run_time_state"

# Native libraries after fork (openmp_fork, openmp_fork_single)
LIBRARY = "library"  # {"name", "file", "version"}: what the cell loaded, as it found it
OMP_NUM_THREADS = "omp_num_threads"  # the variable as the cell saw it (None: unset)
PARENT_REGION_THREADS = "parent_region_threads"  # threads the parent's parallel region ran on
CHILD_REGION_THREADS = "child_region_threads"  # the child's (None: it never finished one)
CHILD_COMPLETED_REGION = "child_completed_region"

# Recorded only by cells that start processes (countdown's threads cell has no children).
PROCESSES_ONLY = (CHILDREN,)

READ_BY_HOST = {
    "countdown": (SPEEDUP, SPEEDUP_SAMPLES, SERIAL, CHILDREN, SAMPLING, CPU_CONCURRENCY),
    "threading_gil": (IO,),
    "process_startup": (STARTUP, FIRST_S, STARTUP_MODULE, CHILDREN, SAMPLING),
    "queue_transfer": tuple(transfer(c, s) for c in CHANNELS for s in SIZES),
    "queue_iftry": QUEUE_TYPES + (DIRECTIONS, EMPTY_AFTER_PUT),
    "queue_growth": (UNBOUNDED, BOUNDED),
    "fork_held_lock": (CHILD_ACQUIRED_LOCK,),  # when the child was not left hanging
    "fork_held_io": (TRIALS_PLANNED, TRIALS_COMPLETED, DETECTION),
    "inherited_state": (CHILD_SEES, CHILD_INHERITED_RUN_TIME_STATE),
    "openmp_fork": (LIBRARY, OMP_NUM_THREADS, PARENT_REGION_THREADS),  # child's: if not hung
    "openmp_fork_single": (LIBRARY, OMP_NUM_THREADS, PARENT_REGION_THREADS,
                           CHILD_REGION_THREADS, CHILD_COMPLETED_REGION),
}
