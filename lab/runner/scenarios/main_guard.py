# IN-CONTAINER CODE: standard library only, Python 3.9+ and PyPy; never imports lab.*.
"""main_guard: a script that starts a child at module level, with no
``if __name__ == "__main__":`` guard, works under ``fork`` only.

Claim: a ``spawn`` child, and the ``forkserver`` server (which preloads ``__main__``), import
the main script again; without the guard that import runs the module-level code again, and
starting a process during it raises "An attempt has been made to start a new process before
the current process has finished its bootstrapping phase".

How: the cell writes a small unguarded script to a temporary folder and runs it with this
interpreter, ``python SCRIPT METHOD``, as a user would. It has no timeout of its own: the
cell's deadline judges it, as it does any cell (a script that waits for good is found stuck and
the cell is hung, with every process's stack; one that is only slow, as PyPy beside a loaded
machine's other cells was, at 20 to 28 s, is not called hanging). Recorded: the script's exit
code, whether its child ran, the error it ended with, and whether the bootstrapping error
appeared.
"""

import os
import subprocess
import sys
import tempfile

UNGUARDED = '''\
import multiprocessing
import sys

def work():
    print("child ran", flush=True)

ctx = multiprocessing.get_context(sys.argv[1])
proc = ctx.Process(target=work)
proc.start()
proc.join()
print("parent done, child exit code", proc.exitcode, flush=True)
sys.exit(0 if proc.exitcode == 0 else 1)
'''

BOOTSTRAP_ERROR = "before the current process has finished its bootstrapping phase"


def run(ctx):
    method = ctx.start_method or "fork"
    folder = tempfile.mkdtemp(prefix="lab-guard-")
    script = os.path.join(folder, "unguarded.py")
    with open(script, "w") as fh:
        fh.write(UNGUARDED)
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)  # the script sees what a user's would: no lab runner
    done = subprocess.run([sys.executable, script, method], cwd=folder, env=env,
                          stdin=subprocess.DEVNULL, capture_output=True)
    code = done.returncode
    out = done.stdout.decode("utf-8", "replace")
    err = done.stderr.decode("utf-8", "replace")
    # The exception: from the last line a traceback does not indent, whitespace collapsed.
    lines = err.splitlines()
    starts = [i for i, line in enumerate(lines) if line.strip() and not line[0].isspace()]
    error = " ".join(" ".join(lines[starts[-1]:]).split()) if starts else None
    ctx.record("script_exit_code", code)
    ctx.record("child_ran", "child ran" in out)
    ctx.record("bootstrap_error", BOOTSTRAP_ERROR in " ".join(err.split()))
    ctx.record("error", error[:300] if error else None)
    ctx.record("stdout_tail", out[-600:])
    ctx.record("stderr_tail", err[-1500:])
