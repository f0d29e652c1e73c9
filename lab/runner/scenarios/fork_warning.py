# IN-CONTAINER CODE: standard library only, Python 3.9+ and PyPy; never imports lab.*.
"""fork_warning - does starting a child from a threaded process warn, and does -W error raise?

CPython 3.12 added a DeprecationWarning to ``os.fork()`` when other threads exist
(gh-100228); multiprocessing callers hide it under default filters, and 3.15 made
``-W error`` raise it (gh-135427). How: a fresh interpreter runs a small script that starts a
thread and then a child with the cell's start method, three times: default warning filters,
``-W always::DeprecationWarning`` and ``-W error::DeprecationWarning``. Recorded per variant:
whether stderr carries the warning text, whether it ended in a traceback, the exit code, and
whether the child ran.
"""

import os
import subprocess
import sys
import tempfile

SCRIPT = r'''
import multiprocessing as mp, sys, threading

def child():
    pass

if __name__ == "__main__":
    ev = threading.Event()
    t = threading.Thread(target=ev.wait, daemon=True)
    t.start()
    p = mp.get_context(sys.argv[1]).Process(target=child)
    p.start()
    p.join()
    sys.stdout.write("LAB-CHILD-EXITCODE %s\n" % p.exitcode)
    sys.stdout.flush()
    ev.set()
'''

VARIANTS = (
    ("default", []),
    ("always", ["-W", "always::DeprecationWarning"]),
    ("error", ["-W", "error::DeprecationWarning"]),
)

MARKER = "multi-threaded"


def run(ctx):
    folder = tempfile.mkdtemp(prefix="lab-fork-warning-")
    path = os.path.join(folder, "threaded_start.py")
    with open(path, "w") as fh:
        fh.write(SCRIPT)
    env = dict(os.environ)
    env.pop("PYTHONWARNINGS", None)
    for name, flags in VARIANTS:
        cmd = [sys.executable] + flags + [path, ctx.start_method]
        # No timeout of its own: the cell's deadline judges a script that does not end (a
        # slow one on a loaded machine is not a hung one; see main_guard)
        proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, env=env)
        out = proc.stdout.decode("utf-8", "replace")
        err = proc.stderr.decode("utf-8", "replace")
        child_code = None
        for line in out.splitlines():
            if line.startswith("LAB-CHILD-EXITCODE "):
                child_code = line.split(" ", 1)[1]
        warning_lines = [ln.strip() for ln in err.splitlines() if MARKER in ln]
        ctx.record(name, {
            "warned": bool(warning_lines),
            "warning_text": warning_lines[0] if warning_lines else None,
            "raised": "Traceback" in err and "DeprecationWarning" in err,
            "exit_code": proc.returncode,
            "child_ran": child_code == "0",
            "stderr_tail": err[-1500:],
        })
