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
"""

import bisect
import os
import re
import struct

from . import watch

HEADING = ("--- native code addresses on each thread's stack (a scan, not an unwinder; "
           "py-spy cannot read this process)")
BESIDE_HEADING = ("--- exported functions of the stripped libraries py-spy shows as addresses, "
                  "found on the same thread's stack (a scan, not an unwinder)")
_C_LIBRARY = re.compile(r"^(libc[.-]|libpthread[.-]|ld-linux)")  # libc.so.6, libc-2.31.so
_EXPORTED = re.compile(r"^([A-Za-z_][\w.@]*)\+0x[0-9a-f]+ \(([^();]+)\)$")  # "f+0x46 (lib)"
MAX_BYTES = 16384  # of each thread's stack, from its stack pointer up
MAX_FRAMES = 12  # listed per thread
MAX_ELF_BYTES = 64 << 20  # a library larger than this is not read for its symbols
_SYMBOLS = {}  # path -> (ELF type, [(start, end, name)] sorted)


def _dynsym(path):
    """(e_type, sorted [(start, end, name)]) of the functions an ELF file exports."""
    if path in _SYMBOLS:
        return _SYMBOLS[path]
    found = (0, [])
    try:
        if os.path.getsize(path) <= MAX_ELF_BYTES:
            with open(path, "rb") as fh:
                found = _parse(fh.read())
    except (OSError, struct.error, ValueError, IndexError):
        pass
    _SYMBOLS[path] = found
    return found


def _parse(data):
    if data[:4] != b"\x7fELF" or data[5] != 1:  # little-endian only (x86_64, i386)
        return 0, []
    wide = data[4] == 2
    e_type = struct.unpack_from("<H", data, 16)[0]
    if wide:
        shoff = struct.unpack_from("<Q", data, 0x28)[0]
        shentsize, shnum = struct.unpack_from("<HH", data, 0x3A)
        section, symbol = "<IIQQQQIIQQ", "<IBBHQQ"
    else:
        shoff = struct.unpack_from("<I", data, 0x20)[0]
        shentsize, shnum = struct.unpack_from("<HH", data, 0x2E)
        section, symbol = "<IIIIIIIIII", "<IIIBBH"
    sections = [struct.unpack_from(section, data, shoff + i * shentsize) for i in range(shnum)]
    out = []
    for _name, kind, _flags, _addr, offset, size, link, _info, _align, entsize in sections:
        if kind != 11 or not entsize:  # SHT_DYNSYM
            continue
        strings = sections[link][4]
        for j in range(size // entsize):
            fields = struct.unpack_from(symbol, data, offset + j * entsize)
            if wide:
                name_at, info, _other, _shndx, value, length = fields
            else:
                name_at, value, length, info, _other, _shndx = fields
            if info & 0xF != 2 or not value or not length:  # STT_FUNC, defined, sized
                continue
            end = data.index(b"\0", strings + name_at)
            out.append((value, value + length, data[strings + name_at:end].decode("ascii",
                                                                                 "replace")))
    out.sort()
    return e_type, out


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


def thread_frames(pid, tid, spans, bases, regions):
    """The code addresses on one thread's stack, named, innermost first."""
    sp = _stack_pointer(pid, tid)
    top = _region_end(regions, sp) if sp else None
    if not top:
        return []
    word = struct.calcsize("P")
    try:
        with open(f"/proc/{pid}/mem", "rb") as mem:
            mem.seek(sp)
            raw = mem.read(min(MAX_BYTES, top - sp))
    except (OSError, OverflowError, ValueError):
        return []
    starts = [s[0] for s in spans]
    frames = []
    for (value,) in struct.iter_unpack("<Q" if word == 8 else "<I", raw[:len(raw) - len(raw)
                                                                           % word]):
        k = bisect.bisect_right(starts, value) - 1
        if k < 0 or value >= spans[k][1]:
            continue
        path = spans[k][2]
        e_type, symbols = _dynsym(path)
        where = value if e_type == 2 else value - bases.get(path, 0)  # ET_EXEC: absolute
        i = bisect.bisect_right(symbols, (where, float("inf"), "")) - 1
        library = os.path.basename(path)
        if i >= 0 and symbols[i][0] == where:  # a function's address, as a call passes it
            frame = f"{symbols[i][2]} ({library}; a function's address)"
        elif i >= 0 and where < symbols[i][1]:
            frame = f"{symbols[i][2]}+{where - symbols[i][0]:#x} ({library})"
        else:  # inside code no exported symbol covers: an internal function
            frame = f"{where:#x} ({library})"
        if not frames or frames[-1] != frame:
            frames.append(frame)
        if len(frames) >= MAX_FRAMES:
            break
    return frames


def threads(pid):
    """{tid: named return addresses, innermost first} of each waiting thread of ``pid`` that
    has any ({} on an ABI ``watch`` does not know, or for a process that is gone)."""
    if watch.abi() is None:
        return {}
    spans, bases, regions = _maps(pid)
    try:
        tids = sorted(int(t) for t in os.listdir(f"/proc/{pid}/task") if t.isdigit())
    except OSError:
        return {}
    found = {}
    for tid in tids:
        frames = thread_frames(pid, tid, spans, bases, regions)
        if frames:
            found[tid] = frames
    return found


def render(found):
    """``threads()``'s answer in py-spy's layout ("" where it is empty)."""
    lines = []
    for tid, frames in sorted(found.items()):
        lines.append(f"Thread {tid} (scan):")
        lines += [f"    {f}" for f in frames]
    return "\n".join(lines)


def beside_py_spy(found, stripped):
    """What a scan adds to py-spy's view: for each thread py-spy saw waiting in a stripped
    library (``stripped``: {tid: ({library}, {function py-spy named})}), the functions of
    those libraries that the scan finds exported on its stack and py-spy did not name
    (Debian strips libgomp: py-spy shows its frames as addresses, the scan finds
    ``GOMP_parallel+0x46``). Not the C library's: every thread waits in it, and what a scan
    finds there is mostly stale words (``clock_gettime+0x19``) that would only differ from one
    run to the next. In ``render``'s layout, "" where it adds nothing."""
    extra = {}
    for tid, (libraries, named) in stripped.items():
        frames = []
        for frame in found.get(tid, ()):
            m = _EXPORTED.match(frame)
            if (m and m.group(2) in libraries and m.group(1) not in named
                    and not _C_LIBRARY.match(m.group(2))):
                frames.append(frame)
        if frames:
            extra[tid] = frames
    return render(extra)
