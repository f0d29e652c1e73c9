# IN-CONTAINER CODE: standard library only, Python 3.9+ and PyPy; never imports lab.*.
"""Native stacks of a hung cell's processes, read from outside them by py-spy.

faulthandler (which every process of a cell registers) shows Python frames and thread ids. py-spy
adds what it cannot: each thread's name, whether it is running or waiting, which one holds the
GIL, and the C frames beneath the Python ones (``PyThread_acquire_lock_timed``,
``GOMP_parallel``). The host put the binary in the runner layer (``lab/images/tools.py``).

How it attaches with the cell's container still dropping every capability: py-spy runs as the
same user as the cell's processes, and the kernel lets a process trace another of its own user
without CAP_SYS_PTRACE, unless Yama's ``ptrace_scope`` asks for an ancestor; for that case the
hook declares any process a permitted tracer of each cell process (``PR_SET_PTRACER``), which
grants nothing beyond what the same user could do by other means (Docker's seccomp profile
allows ``ptrace`` on kernels from 4.8). A sidecar container holding CAP_SYS_PTRACE was the other
way: it would need one more container per hang and a PID namespace shared with the cell's.

It runs before faulthandler's dump: a traced process is stopped while py-spy reads it, and the
dump signal would otherwise arrive in the middle of that.

py-spy is asked for JSON and the text is written here in its own ``dump`` layout, because its
text hides the GIL holder whenever that thread waits: it prints ``idle`` for any thread that is
not running, GIL or not, and a thread asleep in C with the GIL held (the classic GIL deadlock)
reads the same as one that released it. The JSON keeps ``owns_gil`` for every thread.
"""

import json
import os
import platform
import re
import subprocess
import sysconfig

TOOL = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tools",
                    "py-spy")
GRACE_S = 5.0  # what py-spy may take for all of a cell's processes
HEADING = "--- native stacks (py-spy): thread names, GIL holder, C frames"
GIL_LINE = "GIL holder: "  # the first line under HEADING, for the report
JSON_FACTOR = 32  # py-spy's JSON is several times its text: read that much more, then cap
_THREAD = re.compile(r"^Thread (\d+) ")
_FRAME = re.compile(r"^\s{4}(\S+) \(([^()]+)\)$")  # "    function (library or file:line)"


def unreadable():
    """Why py-spy cannot read this interpreter's processes here, or None when it can."""
    impl = platform.python_implementation()
    if impl != "CPython":
        return f"py-spy reads CPython only and this is {impl}"
    if sysconfig.get_config_var("Py_GIL_DISABLED"):
        return "py-spy does not read free-threaded builds"
    if not os.access(TOOL, os.X_OK):
        return "py-spy is not in this image (the run's notes say why)"
    return None


class Dump:
    """py-spy started on each of ``pids`` at once, each writing its JSON to
    ``folder/<pid>.txt`` and anything else it says to ``folder/<pid>.err``."""

    def __init__(self, pids, folder):
        self.folder = folder
        self.procs = []
        self.pids = []
        for pid in pids:
            path = os.path.join(folder, f"{pid}")
            with open(f"{path}.txt", "wb") as out, open(f"{path}.err", "wb") as err:
                try:
                    self.procs.append(subprocess.Popen(
                        [TOOL, "dump", "--native", "--json", "--pid", str(pid)],
                        stdin=subprocess.DEVNULL, stdout=out, stderr=err))
                    self.pids.append(pid)
                except OSError as exc:
                    err.write(f"py-spy did not start: {exc}\n".encode())

    def done(self):
        return all(p.poll() is not None for p in self.procs)

    def stop(self):
        """Kill what has not finished (a process that cannot be read must not hold up the
        cell's end) and reap them all."""
        for pid, p in zip(self.pids, self.procs):
            if p.poll() is None:
                p.kill()
                with open(os.path.join(self.folder, f"{pid}.err"), "ab") as err:
                    err.write(f"py-spy did not finish within {GRACE_S:g} s and was stopped "
                              "(a loaded machine, or a process it could not read)\n".encode())
            p.wait()


def read(folder, pid, limit):
    """What py-spy said of ``pid``: its stacks in its text layout with each thread's GIL
    state (see ``render``), else its own words (why it read none), capped at ``limit`` bytes;
    or None."""
    said = {}
    for kind, cap in (("txt", limit * JSON_FACTOR), ("err", limit)):
        try:
            with open(os.path.join(folder, f"{pid}.{kind}"), "rb") as fh:
                said[kind] = fh.read(cap).decode("utf-8", "replace").strip()
        except OSError:
            said[kind] = ""
    try:
        traces = json.loads(said["txt"])
    except ValueError:
        traces = None
    if isinstance(traces, list) and traces:
        return render(traces)[:limit]
    return "\n".join(t for t in (said["err"], said["txt"]) if t)[:limit] or None


def has_stacks(text):
    """Whether ``read`` gave stacks (else only py-spy's words on why it gave none)."""
    return bool(text) and text.startswith(GIL_LINE)


def render(traces):
    """py-spy's ``dump --json`` (a list of threads, untrusted: each field checked) as its text
    layout, newest thread last as py-spy prints it, with a first line naming the GIL holder
    and ``+gil`` on that thread's state even when it waits (``idle+gil``)."""
    lines, holders = [], []
    for trace in reversed(traces):
        if not isinstance(trace, dict):
            continue
        tid = trace.get("os_thread_id") or trace.get("thread_id")
        tid = str(tid) if isinstance(tid, int) else "?"
        name = trace.get("thread_name")
        name = f' "{name}"' if isinstance(name, str) else ""
        state = "active" if trace.get("active") is True else "idle"
        if trace.get("owns_gil") is True:
            state += "+gil"
            holders.append(f"thread {tid}{name} ({state})")
        lines.append(f"Thread {tid} ({state}):{name}" if name else f"Thread {tid} ({state})")
        frames = trace.get("frames")
        for frame in frames if isinstance(frames, list) else []:
            if not isinstance(frame, dict):
                continue
            where = frame.get("short_filename") or frame.get("filename") or "?"
            line = frame.get("line")
            if isinstance(line, int) and line:
                where = f"{where}:{line}"
            lines.append(f"    {frame.get('name') or '?'} ({where})")
    gil = ", ".join(holders) or "none"
    return "\n".join([GIL_LINE + gil] + lines)


def stripped(text):
    """{tid: ({library}, {function}, [(address, library)])} of each thread in py-spy's
    ``text`` whose innermost frames are bare addresses (a stripped library's code:
    ``0x7f... (libgomp.so.1.0.0)``): those frames' libraries, every function py-spy did name
    on that thread, and each of those addresses whose next frame is in another library: the
    frame of the exported function that was entered from there is gone (a tail call)."""
    found, tid, last, innermost = {}, None, None, False
    for line in (text or "").splitlines():
        m = _THREAD.match(line)
        if m:
            tid, last, innermost = int(m.group(1)), None, True
            found[tid] = (set(), set(), [])
            continue
        m = _FRAME.match(line)
        if tid is None or not m:
            continue
        function, where = m.groups()
        libraries, named, entered = found[tid]
        if last and last[1] != where:
            entered.append(last)
        last = None
        if function.startswith("0x") and innermost:
            libraries.add(where)
            last = (int(function, 16), where)
        elif not function.startswith("0x"):
            innermost = False
            named.add(function.split("+")[0])
    return {t: v for t, v in found.items() if v[0]}
