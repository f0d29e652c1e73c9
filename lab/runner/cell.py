# IN-CONTAINER CODE: standard library only, Python 3.9+ and PyPy; never imports lab.*.
"""Runs one (scenario, start method) cell in this process and writes its result file.

The harness starts this module in a new session with a deadline; everything a scenario
observes goes to the result file named on the command line, never to stdout.
"""

import multiprocessing
import sys
import traceback
import warnings

from . import protocol as P
from . import scenarios
from .util import CellContext, install_stack_dump


def run_cell(scenario, start_method, params, result_path):
    install_stack_dump()
    ctx = CellContext(scenario, start_method, params, result_path)
    ctx.flush()
    try:
        module = scenarios.get(scenario)
    except (KeyError, ImportError) as exc:
        ctx.status = P.ERROR
        ctx.detail = f"harness: {exc}"
        ctx.flush()
        return 0
    if start_method is not None and start_method not in multiprocessing.get_all_start_methods():
        ctx.skip(f"start method {start_method!r} is not offered by this interpreter")
        return 0
    try:
        with warnings.catch_warnings(record=True) as caught:
            ctx.caught = caught
            # Record every warning, including those the default filters hide when
            # multiprocessing is the caller (the 3.12+ fork-with-threads DeprecationWarning).
            warnings.simplefilter("always")
            module.run(ctx)
    except Exception:
        ctx.status = P.FAILED
        ctx.detail = traceback.format_exc(limit=20)
    # The GIL state the cell ran with, read after the scenario's imports: on a free-threaded
    # build an extension that does not declare support turns the GIL back on when imported.
    gil = getattr(sys, "_is_gil_enabled", None)
    ctx.flush({"gil_enabled": gil() if gil is not None else None})
    return 0
