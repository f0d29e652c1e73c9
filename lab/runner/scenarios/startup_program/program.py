# IN-CONTAINER CODE: standard library only, Python 3.9+ and PyPy; never imports lab.*.
"""A small program, run as ``python program.py METHOD``: what starting a process costs a script.

The process_startup cell copies this folder and runs it as a user's program is run, so the
figure is what ``python script.py`` pays, with none of the lab's harness in the parent or the
children. Each line on stdin names a variant: ``main`` (the child's target is defined here, in
``__main__``) or ``module`` (in ``target.py``, a small module this script imports). For each,
it starts and joins one trivial child and prints a JSON line: the start + join time, and what
the child saw from inside (its start-up latency and its CPU time).
"""

import json
import multiprocessing
import sys
import time

import target

clock = time.monotonic  # CLOCK_MONOTONIC: one clock for parent and child


def noop(called, box):
    box[0] = clock() - called
    box[1] = time.process_time()


def main():
    ctx = multiprocessing.get_context(sys.argv[1])
    box = ctx.RawArray("d", 2)  # shared memory: no pipe set up per start
    targets = {"main": noop, "module": target.noop}
    for line in sys.stdin:
        variant = line.strip()
        box[0] = box[1] = -1.0
        t0 = clock()
        p = ctx.Process(target=targets[variant], args=(t0, box))
        p.start()
        p.join()
        took = clock() - t0
        print(json.dumps({"variant": variant, "took": took, "exitcode": p.exitcode,
                          "child_startup_s": box[0], "child_cpu_s": box[1]}), flush=True)


if __name__ == "__main__":
    main()
