# IN-CONTAINER CODE: standard library only, Python 3.9+ and PyPy; never imports lab.*.
"""A small program, run as ``python program.py METHOD``: what starting a process costs a script.

The process_startup cell copies this folder and runs it as a user's program is run, so the
figure is what ``python script.py`` pays, with none of the lab's harness in the parent or the
children. Each line on stdin names a variant: ``main`` (the child's target, which does nothing,
is defined here, in ``__main__``), ``module`` (in ``target.py``, a small module this script
imports), ``fork`` (the ``main`` target started with fork: the reference the cell pairs its own
method with, round by round) or ``inside`` (a target here that writes what it saw from inside -
its start-up latency, its CPU time and whether any lab module is loaded in it - to a file, apart
so that the other two carry no such cost). For each, it starts and joins one child and prints a
JSON line with the start + join time.
"""

import json
import multiprocessing
import sys
import time

import target

clock = time.monotonic  # CLOCK_MONOTONIC: one clock for parent and child


def noop():
    pass


def report(called, path):
    """The ``inside`` variant: the child writes when its target ran and its CPU time to a file
    (no import, nothing passed at start but a string)."""
    harness = any(name.split(".")[0] == "labrunner" for name in list(sys.modules))
    with open(path, "w") as fh:
        fh.write(f"{clock() - called!r} {time.process_time()!r} {int(harness)}")


def main():
    ctx = multiprocessing.get_context(sys.argv[1])
    fork = (multiprocessing.get_context("fork")
            if "fork" in multiprocessing.get_all_start_methods() else None)
    path = "child.txt"
    for line in sys.stdin:
        variant = line.strip()
        t0 = clock()
        if variant == "inside":
            p = ctx.Process(target=report, args=(t0, path))
        elif variant == "fork":
            p = fork.Process(target=noop)
        else:
            p = ctx.Process(target=noop if variant == "main" else target.noop)
        p.start()
        p.join()
        took = clock() - t0
        got = {"variant": variant, "took": took, "exitcode": p.exitcode}
        if variant == "inside":
            with open(path) as fh:
                startup, cpu, harness = fh.read().split()
            got.update(child_startup_s=float(startup), child_cpu_s=float(cpu),
                       harness_in_child=harness == "1")
        print(json.dumps(got), flush=True)


if __name__ == "__main__":
    main()
