# IN-CONTAINER CODE: standard library only, Python 3.9+ and PyPy; never imports lab.*.
"""Probe: the interpreter's facts as observed in this process.

Claim 3 (a program can choose fork, forkserver or spawn; the default differs by platform and
version) is judged from ``default_start_method`` and ``start_methods`` recorded here. The
default is read with ``get_start_method(allow_none=True)`` first (nothing has set it yet),
then ``get_start_method()``, which fixes it.
"""

import multiprocessing
import os
import pickle
import platform
import struct
import sys
import sysconfig

CHILD_WAIT_S = 20.0


def _gil_state():
    gil = getattr(sys, "_is_gil_enabled", None)
    return gil() if gil is not None else None


def _report_gil(conn):
    conn.send([_gil_state(), os.environ.get("PYTHON_GIL")])
    conn.close()


def children_gil():
    """Per start method, what one child sees: its GIL state and PYTHON_GIL. A spawn or
    forkserver child is a new interpreter, so PYTHON_GIL must reach it through the
    environment for the child to run as the parent does."""
    from ..util import child_entry

    seen = {}
    for method in multiprocessing.get_all_start_methods():
        mp = multiprocessing.get_context(method)
        receive, send = mp.Pipe(duplex=False)
        proc = mp.Process(target=child_entry, args=(_report_gil, send))
        proc.start()
        send.close()
        try:
            got = receive.recv() if receive.poll(CHILD_WAIT_S) else None
        except (EOFError, OSError):
            got = None
        proc.join(CHILD_WAIT_S)
        if proc.is_alive():
            proc.kill()
        seen[method] = ({"gil_enabled": got[0], "python_gil": got[1]} if got is not None
                        else None)
    return seen


def _read(path):
    try:
        with open(path) as fh:
            return fh.read().strip()
    except OSError:
        return None


def observe(ctx):
    unset = multiprocessing.get_start_method(allow_none=True)
    default = multiprocessing.get_start_method()
    gil = getattr(sys, "_is_gil_enabled", None)
    children = children_gil()
    runner_pid = os.environ.get("LAB_RUNNER_PID")
    pid1 = _read("/proc/1/cmdline")
    libc = platform.libc_ver()
    try:
        switch = sys.getswitchinterval()
    except AttributeError:
        switch = None
    return {
        "implementation": sys.implementation.name,
        "version": platform.python_version(),
        "version_info": list(sys.version_info[:3]),
        "sys_version": sys.version,
        "build": list(platform.python_build()),
        "compiler": platform.python_compiler(),
        "executable": sys.executable,
        "prefix": sys.prefix,
        "machine": platform.machine(),
        "system": platform.system(),
        "platform": platform.platform(),
        "pointer_bits": struct.calcsize("P") * 8,
        "libc": "{} {}".format(*libc) if libc[0] else None,
        "start_method_before_use": unset,
        "default_start_method": default,
        "start_methods": list(multiprocessing.get_all_start_methods()),
        # After this module's imports (multiprocessing, pickle, ...): an extension module
        # that does not declare free-threading support turns the GIL back on when imported.
        "gil_enabled": gil() if gil is not None else None,
        "has_is_gil_enabled": gil is not None,
        # The build: 1 for a free-threaded one (3.13t+), 0 or None otherwise.
        "py_gil_disabled": sysconfig.get_config_var("Py_GIL_DISABLED"),
        "python_gil_env": os.environ.get("PYTHON_GIL"),
        "children_gil": children,
        **ctx.cpu_facts(),
        "pickle_default_protocol": pickle.DEFAULT_PROTOCOL,
        "pickle_highest_protocol": pickle.HIGHEST_PROTOCOL,
        "switch_interval_s": switch,
        "runner_pid": int(runner_pid) if runner_pid else None,
        "runner_is_pid1": runner_pid == "1" if runner_pid else None,
        "pid1_cmdline": pid1.replace("\0", " ").strip() if pid1 else None,
        "uid": os.getuid() if hasattr(os, "getuid") else None,
    }


def run(ctx):
    for key, value in observe(ctx).items():
        ctx.measurements[key] = value
    ctx.flush()
