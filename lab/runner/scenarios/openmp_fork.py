# IN-CONTAINER CODE: standard library only, Python 3.9+ and PyPy; never imports lab.*.
"""openmp_fork - claim 6's second statement: fork bites through a native library.

GNU OpenMP (libgomp) keeps a pool of threads after a parallel region. A forked child has only
the thread that called ``fork()``; the pool's state says its threads exist, so the child's next
parallel region waits for them forever (GCC bug 52303, closed INVALID: fork without exec is not
supported there). ``spawn`` and ``forkserver`` children load libgomp afresh and are fine, and so
is a pool of one thread (``OMP_NUM_THREADS=1``: no pool threads exist to be lost).

How: with the standard library only, ``ctypes`` loads ``libgomp.so.1`` (Debian's ``libgomp1``,
in every base) and runs a parallel region through ``GOMP_parallel`` with a ``ctypes`` callback
that notes which OpenMP thread ran it, first in the parent, then in a child started with the
cell's start method, which sends back how many threads its region ran on. The parent joins the
child with no timeout: a child stuck in its region shows as a hung cell, its native stack in
``GOMP_parallel``. The cell records the library's file and Debian package version, the threads
each region ran on and ``OMP_NUM_THREADS`` as the cell saw it.

``openmp_fork_single`` is the same scenario with ``OMP_NUM_THREADS=1`` set in the cell's
environment (the catalog's ``env``), read by libgomp when it loads.
"""

import ctypes
import os

from .. import measurements as M

LIBRARY = "libgomp.so.1"
_CALLBACK = ctypes.CFUNCTYPE(None, ctypes.c_void_p)


def _load():
    return ctypes.CDLL(LIBRARY)


def parallel_region(lib):
    """Run one parallel region with OpenMP's default team size; the threads that ran it."""
    seen = set()

    @_CALLBACK
    def body(_data):
        seen.add(lib.omp_get_thread_num())

    lib.GOMP_parallel(body, None, ctypes.c_uint(0), ctypes.c_uint(0))  # 0: the default team
    return len(seen)


def child_region(conn):
    conn.send(parallel_region(_load()))
    conn.close()


def loaded_from():
    """The file libgomp was mapped from in this process (``/proc/self/maps``)."""
    try:
        with open("/proc/self/maps") as fh:
            for line in fh:
                path = line.split(None, 5)[-1].strip()
                if "/libgomp" in path:
                    return os.path.realpath(path)
    except OSError:
        pass
    return None


def package_version(name="libgomp1"):
    """The Debian package's version, from dpkg's status file (None where there is none)."""
    try:
        with open("/var/lib/dpkg/status", encoding="utf-8", errors="replace") as fh:
            stanzas = fh.read().split("\n\n")
    except OSError:
        return None
    for stanza in stanzas:
        fields = dict(line.split(": ", 1) for line in stanza.splitlines() if ": " in line
                      and not line.startswith(" "))
        if fields.get("Package", "").split(":")[0] == name and "installed" in fields.get(
                "Status", ""):
            return fields.get("Version")
    return None


def run(ctx):
    try:
        lib = _load()
    except OSError as exc:
        ctx.skip(f"{LIBRARY} cannot be loaded here ({exc}); a base needs Debian's libgomp1")
        return
    ctx.record(M.LIBRARY, {"name": "libgomp", "file": loaded_from(),
                           "version": package_version()})
    ctx.record(M.OMP_NUM_THREADS, os.environ.get("OMP_NUM_THREADS"))
    ctx.record(M.PARENT_REGION_THREADS, parallel_region(lib))
    r, w = ctx.mp.Pipe(duplex=False)
    proc = ctx.start_child(child_region, w)
    ctx.record("child_pid", proc.pid)
    w.close()
    proc.join()  # no timeout on purpose: a child stuck in its region must show as a hung cell
    ctx.record("child_exitcode", proc.exitcode)
    try:
        threads = r.recv() if r.poll(0) else None
    except EOFError:  # the child ended without sending
        threads = None
    ctx.record(M.CHILD_REGION_THREADS, threads)
    ctx.record(M.CHILD_COMPLETED_REGION, proc.exitcode == 0 and threads is not None)
