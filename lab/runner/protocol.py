# IN-CONTAINER CODE: standard library only, Python 3.9+ and PyPy; never imports lab.*.
"""The words the runner and the host share, declared once: the record protocol's version and
kinds, a cell's outcomes, and the start methods. The host's enums (``lab.results.Outcome``)
take their values from here, so the two sides cannot drift apart."""

RECORD_VERSION = 1  # bump when a record's meaning changes; the host refuses other versions
RECORD_KINDS = ("start", "wait", "cell", "done")

# What became of a cell. The runner decides hung and crashed from the process; a cell's own
# result file may say only one of CELL_STATUSES.
OK = "ok"
HUNG = "hung"
CRASHED = "crashed"
FAILED = "failed"
SKIPPED = "skipped"
ERROR = "error"
OUTCOMES = (OK, HUNG, CRASHED, FAILED, SKIPPED, ERROR)
CELL_STATUSES = (OK, FAILED, SKIPPED, ERROR)
# A behaviour cell still using CPU at its deadline is starved, not hung: it may run on, up to
# this many deadlines (the host's plan says so, and its own deadlines allow for it).
OVERRUN_LIMIT = 3.0

# multiprocessing's start methods, in the order every table shows them; DEFAULT is lab check's
# run under the interpreter's own default (no method chosen).
START_METHODS = ("fork", "spawn", "forkserver")
DEFAULT = "default"
