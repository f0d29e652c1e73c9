# IN-CONTAINER CODE: standard library only, Python 3.9+ and PyPy; never imports lab.*.
"""process_startup - claim 4: forkserver and spawn are slower than fork to start processes.

How: what a program run as ``python script.py`` pays to start and join a process that does
nothing, with the cell's start method. The cell runs a small program of its own
(``startup_program/``) as a script, in a folder of its own and without the lab's harness on its
path, so neither the parent nor the children import harness modules (a forkserver preloads
``__main__``; a harness there would be counted). The program measures two places for the child's
target, interleaved in rounds that alternate their order: defined in ``__main__`` (``startup``,
the headline) and in a small module the script imports (``startup_module``). The first start of
each is recorded apart (a forkserver launches its server then); rounds go on until both medians
are known to the cell's precision. In a spawn or forkserver cell each round also starts the same
child with fork, right before or after the headline one, and keeps the round's ratio
(``startup_over_fork_paired``): load that slows a round slows both, so the ratio survives a busy
machine where two cells' unpaired ranges do not. A third child each round reports from inside
(to a file) when its target ran and its CPU time, so that cost stays out of the first two.
Instrumenting the measured children with a shared-memory array instead would have cost them 15
ms on cp314's forkserver (their unpickling imports ctypes).
"""

import json
import multiprocessing
import os
import shutil
import subprocess
import sys

from .. import measurements as M

PROGRAM_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "startup_program")
BUDGET_S = 1.0


def run(ctx):
    folder = os.path.join(os.path.dirname(os.path.abspath(ctx.result_path)), "program")
    shutil.copytree(PROGRAM_DIR, folder, ignore=shutil.ignore_patterns("__pycache__"))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.Popen([sys.executable, "program.py", ctx.start_method], cwd=folder,
                            env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            universal_newlines=True)
    first = {}
    children = {"child_startup_s": [], "child_cpu_s": [], "took": []}
    harness = []

    def start(variant):
        proc.stdin.write(variant + "\n")
        proc.stdin.flush()
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the start-up program ended (exit code {proc.wait()})")
        got = json.loads(line)
        if got["exitcode"] != 0:
            raise RuntimeError(f"trivial child exited with {got['exitcode']}")
        return got

    paired = ctx.start_method != "fork" and "fork" in multiprocessing.get_all_start_methods()

    def one_round(i):
        order = ["main", "fork", "module"] if i % 2 == 0 else ["module", "fork", "main"]
        if not paired:
            order.remove("fork")
        got = {v: start(v) for v in order + ["inside"]}
        if i == 0:  # the warm-up: each variant's first start
            first.update({v: g["took"] for v, g in got.items()})
        else:
            for key in children:
                children[key].append(got["inside"][key])
            harness.append(got["inside"]["harness_in_child"])
        out = {"main": got["main"]["took"], "module": got["module"]["took"]}
        if paired:
            out["over_fork"] = got["main"]["took"] / got["fork"]["took"]
        return out

    try:
        series, how = ctx.sample_until(one_round, ["main", "module"], budget_s=BUDGET_S)
    finally:
        proc.stdin.close()
        proc.wait()
    ctx.record(M.FIRST_S, first["main"])
    ctx.record("first_module_s", first["module"])
    ctx.record(M.STARTUP, ctx.summarize(series["main"]))
    ctx.record(M.STARTUP_MODULE, ctx.summarize(series["module"]))
    ctx.record(M.SAMPLING, how)
    if paired:
        ctx.record(M.STARTUP_OVER_FORK, ctx.summarize(series["over_fork"]))
    ctx.record(M.CHILDREN, {k: ctx.summarize([x for x in v if x >= 0])
                            for k, v in children.items()})
    ctx.record("measured_from", "a script run as `python program.py`, target in __main__")
    ctx.record("harness_in_child", any(harness))
