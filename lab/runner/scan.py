# IN-CONTAINER CODE: standard library only, Python 3.9+ and PyPy; never imports lab.*.
"""Native frames where py-spy cannot read a process (PyPy, free-threaded builds), or where it
shows a stripped library's frames only as addresses: a scan of each thread's stack for return
addresses into the shared libraries it has mapped, named from their exported symbols.

A hung thread waits in a system call, so ``/proc/PID/task/TID/syscall`` gives its stack pointer.
From there up to ``MAX_BYTES`` of its stack are read from ``/proc/PID/mem`` (the runner is an
ancestor of every cell process, which is what Yama's ``ptrace_scope=1`` asks; the container
keeps no capability), and every word that points into the code of a mapped ELF file is listed,
innermost first, the way py-spy lists frames: inside a function the file exports (its
``.dynsym``), ``ffi_call+0xcd (libffi.so.8.1.2)``; at a function's first byte, the address a
call was handed, ``GOMP_parallel (libgomp.so.1.0.0; a function's address)``; elsewhere, inside
an internal function, ``0x1e2fd (libgomp.so.1.0.0)``. Such a scan is conservative, not an
unwinder: a word may be a stale value rather than a live frame's, and the heading says it is a
scan. Only on x86_64 and i386, where ``watch.abi`` knows the calls.

Beside py-spy, which unwinds properly but names only what a library exports, the same snapshot
names the frames py-spy leaves as addresses where it can (``beside_py_spy``); ``lab/runner/elf.py``
reads the files.
"""

import bisect
import os
import re
import struct

from . import elf, watch

HEADING = ("--- native code addresses on each thread's stack (a scan, not an unwinder; "
           "py-spy cannot read this process)")
BESIDE_HEADING = ("--- the stripped libraries py-spy shows as addresses, named from their files: "
                  "the exported functions that jump to where a caller left no frame (unwind "
                  "table), those found on the same thread's stack (a scan, not an unwinder)")
_C_LIBRARY = re.compile(r"^(libc[.-]|libpthread[.-]|ld-linux)")  # libc.so.6, libc-2.31.so
_EXPORTED = re.compile(r"^([A-Za-z_][\w.@]*)\+0x[0-9a-f]+ \(([^();]+)\)$")  # "f+0x46 (lib)"
MAX_BYTES = 16384  # of each thread's stack, from its stack pointer up
MAX_FRAMES = 12  # listed per thread


def _maps(pid):
    """What one read of ``/proc/PID/maps`` gives: [(start, end, path)] of the executable file
    mappings, {path: load base}, and [(start, end)] of every mapping (a stack's end)."""
    spans, bases, regions = [], {}, []
    try:
        with open(f"/proc/{pid}/maps") as fh:
            lines = fh.read(1 << 20).splitlines()
    except OSError:
        return [], {}, []
    for line in lines:
        parts = line.split(None, 5)
        try:
            start, end = (int(x, 16) for x in parts[0].split("-"))
        except (IndexError, ValueError):
            continue
        regions.append((start, end))
        if len(parts) < 6 or not parts[5].startswith("/"):
            continue
        path = parts[5].strip()
        base = start - int(parts[2], 16)
        bases[path] = min(bases.get(path, base), base)
        if "x" in parts[1]:
            spans.append((start, end, path))
    spans.sort()
    regions.sort()
    return spans, bases, regions


def _stack_pointer(pid, tid):
    """The thread's stack pointer while it waits (``/proc/.../syscall``'s next to last field)."""
    try:
        with open(f"/proc/{pid}/task/{tid}/syscall") as fh:
            fields = fh.read(512).split()
    except OSError:
        return None
    if len(fields) < 3:  # "running": no stack pointer to read
        return None
    try:
        return int(fields[-2], 16)
    except ValueError:
        return None


def _region_end(regions, address):
    """The end of the mapping that holds ``address`` (None if none does)."""
    k = bisect.bisect_right(regions, (address, float("inf"))) - 1
    return regions[k][1] if k >= 0 and address < regions[k][1] else None


class Snapshot:
    """One hung process as it was: its mappings, and the named code addresses on each of its
    waiting threads' stacks ({tid: frames, innermost first}, ``threads``; {} on an ABI
    ``watch`` does not know, or for a process that is gone). Its libraries' files can still
    be read for names once the process has gone."""

    def __init__(self, pid):
        self.spans, self.bases, self.regions = _maps(pid)
        self.threads = {}
        if watch.abi() is None:
            return
        try:
            tids = sorted(int(t) for t in os.listdir(f"/proc/{pid}/task") if t.isdigit())
        except OSError:
            return
        for tid in tids:
            frames = self.thread_frames(pid, tid)
            if frames:
                self.threads[tid] = frames

    def locate(self, address):
        """(path, address relative to what its symbols count from) of mapped code, or None."""
        k = bisect.bisect_right(self.spans, (address, float("inf"), "")) - 1
        if k < 0 or address >= self.spans[k][1]:
            return None
        path = self.spans[k][2]
        e_type, _ = elf.exported(path)
        return path, address if e_type == 2 else address - self.bases.get(path, 0)

    def name(self, address):
        """A code address as a frame: ``ffi_call+0xcd (libffi.so.8.1.2)`` inside a function
        the file exports, ``GOMP_parallel (libgomp.so.1.0.0; a function's address)`` at its
        first byte, else ``0x1e2fd (libgomp.so.1.0.0)``; None outside mapped code."""
        found = self.locate(address)
        if found is None:
            return None
        path, where = found
        symbols = elf.exported(path)[1]
        i = bisect.bisect_right(symbols, (where, float("inf"), "")) - 1
        library = os.path.basename(path)
        if i >= 0 and symbols[i][0] == where:  # a function's address, as a call passes it
            return f"{symbols[i][2]} ({library}; a function's address)"
        if i >= 0 and where < symbols[i][1]:
            return f"{symbols[i][2]}+{where - symbols[i][0]:#x} ({library})"
        return f"{where:#x} ({library})"  # inside code no exported symbol covers

    def thread_frames(self, pid, tid):
        """The code addresses on one thread's stack, named, innermost first."""
        sp = _stack_pointer(pid, tid)
        top = _region_end(self.regions, sp) if sp else None
        if not top:
            return []
        word = struct.calcsize("P")
        try:
            with open(f"/proc/{pid}/mem", "rb") as mem:
                mem.seek(sp)
                raw = mem.read(min(MAX_BYTES, top - sp))
        except (OSError, OverflowError, ValueError):
            return []
        frames = []
        for (value,) in struct.iter_unpack("<Q" if word == 8 else "<I",
                                           raw[:len(raw) - len(raw) % word]):
            frame = self.name(value)
            if frame and (not frames or frames[-1] != frame):
                frames.append(frame)
            if len(frames) >= MAX_FRAMES:
                break
        return frames

    def entered(self, address):
        """Where py-spy shows ``address`` (absolute) with no frame of its library's above it:
        ``0x1e2d0+0x2d, jumped to by GOMP_parallel+0x77 (libgomp.so.1.0.0)``, the function
        that holds it (from the unwind table) and the exported functions that jump to its
        start; None where the file does not say, or none does."""
        found = self.locate(address)
        if found is None:
            return None
        path, where = found
        entry = elf.entered_by_jump(path, where)
        if not entry or not entry[1]:
            return None
        start, jumps = entry
        return (f"{start:#x}+{where - start:#x}, jumped to by {', '.join(jumps)} "
                f"({os.path.basename(path)})")


def render(found, kind="scan"):
    """{tid: frames} in py-spy's layout ("" where it is empty)."""
    lines = []
    for tid, frames in sorted(found.items()):
        lines.append(f"Thread {tid} ({kind}):")
        lines += [f"    {f}" for f in frames]
    return "\n".join(lines)


def beside_py_spy(snapshot, stripped):
    """What this adds to py-spy's view, for each thread py-spy saw waiting in a stripped
    library (``stripped``, from ``native.stripped``), in ``render``'s layout ("" where it adds
    nothing):

    - where an address py-spy shows has no frame of its library above it (a tail call left
      none), the function it is in and the exported functions that jump there (Debian strips
      libgomp: ``GOMP_parallel`` ends in a jump to ``gomp_team_end`` on libgomp 10 and 12);
    - the functions of those libraries the scan found exported on the same thread's stack
      and py-spy did not name (``GOMP_parallel+0x46`` on libgomp 16).

    Not the C library's: every thread waits in it, and what a scan finds there is mostly stale
    words (``clock_gettime+0x19``) that would only differ from one run to the next."""
    parts = []
    for tid, (libraries, named, entered) in sorted(stripped.items()):
        jumps = [x for address, library in entered if not _C_LIBRARY.match(library)
                 for x in [snapshot.entered(address)] if x]
        if jumps:
            parts.append(render({tid: jumps}, "unwind table"))
        frames = []
        for frame in snapshot.threads.get(tid, ()):
            m = _EXPORTED.match(frame)
            if (m and m.group(2) in libraries and m.group(1) not in named
                    and not _C_LIBRARY.match(m.group(2))):
                frames.append(frame)
        if frames:
            parts.append(render({tid: frames}))
    return "\n".join(parts)
