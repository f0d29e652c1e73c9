"""Hangs named from their stacks: what the evidence in a hung cell's stacks supports, with the
frame that shows it, else "unknown".

The stacks are text a container wrote (faulthandler's Python frames, py-spy's native ones under
each process where it could read them, see ``lab/runner/native.py``); they are only matched,
never followed. Each rule asks for a frame that only that kind of hang leaves, in the order
below, so a hang shows the most specific cause its stacks support:

- **OpenMP after fork**: a native ``GOMP_`` or ``gomp_`` frame, or a native frame inside
  libgomp beneath the Python line that called ``GOMP_...`` (GNU OpenMP's pool does not survive
  fork: GCC bug 52303; Debian's libgomp is stripped, so py-spy shows its own frames as
  addresses, and the runner's scan names the exported ``GOMP_`` frame beside them where the
  stack holds one). A Python line alone is not enough: it shows the call, not that it waits
  there;
- **gRPC after fork**: a frame of grpc's code, native or Python, in the forked child first;
- **GIL held while waiting in C**: py-spy saw a thread that holds the GIL and is not running
  (``idle+gil``): it waits in C code that did not release the GIL (a ``ctypes.PyDLL`` call, an
  extension that blocks with it held), so no other thread of that process can run Python;
- **buffered I/O lock after fork**: a forked child waits inside a stream's ``flush``/``write``,
  ``print`` or a logging handler: the buffer's lock was copied held;
- **join before drain**: one process waits in ``Process.join`` while a queue's feeder thread is
  still blocked sending into a full pipe (``_feed`` -> ``send_bytes``);
- **lock copied in its held state**: a forked child waits in a lock's ``acquire`` (the Python
  line, or ``PyThread_acquire_lock`` beneath it).

PyPy's faulthandler gives approximate line numbers (the ``def`` line) and py-spy cannot read
it, so a rule that needs the waiting line often finds no evidence there: that hang is
"unknown", with the frame it is stuck in.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from lab.report.stacks import sections
from lab.results import Cell

OPENMP = "OpenMP after fork"
GRPC = "gRPC after fork"
GIL_IN_C = "GIL held while waiting in C"
IO_LOCK = "buffered I/O lock after fork"
JOIN_BEFORE_DRAIN = "join before drain"
LOCK_HELD = "lock copied in its held state"
UNKNOWN = "unknown"

_FRAME = re.compile(r'^\s*File "([^"]*)", line (\d+) in (\S+)')
_NATIVE = re.compile(r"^\s{4}\S.* \([^()]+\)$")  # py-spy: "    symbol (library or file:line)"
_GOMP = re.compile(r"\b(GOMP_\w+|gomp_\w+)")
_GRPC = re.compile(r"(/grpc/|\bgrpc_\w+|\bgrpc::)")
_NUMBER = re.compile(r"(0x[0-9a-f]+|\d+)")
_GIL_WAITER = re.compile(r'^Thread \d+ \(idle\+gil\):?(.*)$')  # labrunner.native.render's


@dataclass(frozen=True, kw_only=True)
class Cause:
    name: str
    evidence: str  # the frame that shows it, as the stacks give it ("" for unknown)

    @property
    def key(self) -> tuple[str, str]:
        """What tells two causes apart: the name and the evidence, numbers aside (addresses,
        offsets and line numbers differ between versions of the same frame)."""
        return self.name, _NUMBER.sub("#", self.evidence)


def merged(causes: list[Cause]) -> Cause:
    """One cause for cells whose causes share a key (one line for several targets): their
    evidence where it is the same, with "…" for each number that differs between them (an
    address "0x…", an offset, a line), so no target is shown another's frame."""
    first = causes[0]
    split = [_NUMBER.split(c.evidence) for c in causes]
    if any(len(s) != len(split[0]) for s in split):  # not one key: nothing to merge
        return first
    return Cause(name=first.name, evidence="".join(
        part if all(s[i] == part for s in split) else "0x…" if part.startswith("0x") else "…"
        for i, part in enumerate(split[0])))


def cells_cause(cells: list[Cell], start_method: str | None) -> Cause:
    """The cause the stacks of ``cells`` show (one stack group's), as ``merged`` puts it."""
    return merged([cause_of(c.stacks, start_method) for c in cells])


def _first_python_frame(lines: list[str]) -> tuple[str, str]:
    """The innermost frame of the first thread faulthandler lists (the current one), with the
    source line the runner wrote beneath it ("" if none)."""
    for i, line in enumerate(lines):
        if _FRAME.match(line):
            after = lines[i + 1].strip() if i + 1 < len(lines) else ""
            return line.strip(), "" if _FRAME.match(after) else after
    return "", ""


def _where(frame: str, source: str) -> str:
    m = _FRAME.match(frame)
    if not m:
        return frame
    where = f"{m.group(3)} at {m.group(1).rsplit('/', 1)[-1]}:{m.group(2)}"
    return f"{where}: {source}" if source else where


def cause_of(stacks: str | None, start_method: str | None) -> Cause:
    """The cause a hung cell's stacks support. ``start_method`` is the cell's: the rules for a
    state copied by fork apply to forked children only."""
    text = stacks or ""
    found = sections(text)
    if start_method == "fork" and (gomp := _openmp(found)):
        return Cause(name=OPENMP, evidence=gomp)
    if start_method == "fork" and (grpc := _grpc(found)):
        return Cause(name=GRPC, evidence=grpc)
    if gil := _gil_in_c(found):
        return Cause(name=GIL_IN_C, evidence=gil)
    children = [lines for role, lines in found if "child" in role]
    if start_method == "fork":
        for lines in children:
            frame, source = _first_python_frame(lines)
            m = _FRAME.match(frame)
            if not m:
                continue
            file, function = m.group(1), m.group(3)
            if ("/logging/" in file or function in ("flush", "write", "_io_write")
                    or source.startswith("print(")):
                return Cause(name=IO_LOCK, evidence=_where(frame, source))
    joined = any(_in(lines, "multiprocessing/process.py", "join") for _, lines in found)
    feeding = next((_where(line.strip(), "") for _, lines in found for line in lines
                    if _is(line, "multiprocessing/queues.py", "_feed")), None)
    if joined and feeding:
        return Cause(name=JOIN_BEFORE_DRAIN, evidence=feeding)
    if start_method == "fork":
        for lines in children:
            frame, source = _first_python_frame(lines)
            native = next((x.strip() for x in lines if "PyThread_acquire_lock" in x), None)
            if frame and ("acquire(" in source or frame.endswith(" in acquire") or native):
                return Cause(name=LOCK_HELD, evidence=_where(frame, source)
                             + (f" ({native})" if native else ""))
    return Cause(name=UNKNOWN, evidence="")


def _openmp(found: list[tuple[str, list[str]]]) -> str:
    """The frames that show a process stuck in GNU OpenMP: a native frame naming a ``GOMP_`` or
    ``gomp_`` symbol (py-spy's, or the runner's stack scan's, where py-spy cannot read or
    beside py-spy's addresses: see ``lab/runner/scan.py``); else, as Debian's stripped libgomp
    gives py-spy only addresses,
    a native frame inside libgomp with the Python line that called a ``GOMP_`` function above
    it ("" if neither)."""
    for _, lines in found:
        native = [x.strip() for x in lines if _NATIVE.match(x)]
        named = [x for x in native if _GOMP.search(x)]
        # a frame inside a GOMP_ function before one that is only its address (a scan's)
        if named:
            return next((x for x in named if "+0x" in x), named[0])
        inside = next((x for x in native if "(libgomp" in x), None)
        call = next((x.split("  #")[0].strip() for x in lines
                     if _GOMP.search(x) and not _FRAME.match(x)), None)
        if inside and call:
            return f"{call} -> {inside}"
    return ""


def _gil_in_c(found: list[tuple[str, list[str]]]) -> str:
    """The thread py-spy saw holding the GIL while not running, with the innermost C function
    it waits in and the Python line that called it ("" if none did)."""
    for _, lines in found:
        for i, line in enumerate(lines):
            if not (m := _GIL_WAITER.match(line)):
                continue
            frames = []
            for x in lines[i + 1:]:
                if not x.startswith("    "):
                    break
                frames.append(x.strip())
            c = next((f for f in frames if not f.startswith("0x") and ".py:" not in f), "")
            py = next((f for f in frames if ".py:" in f), "")
            name = m.group(1).strip() or "a thread"
            return f"{name} waits in {c or 'C'}" + (f" under {py}" if py else "")
    return ""


def _grpc(found: list[tuple[str, list[str]]]) -> str:
    """The innermost frame of grpc's code in a forked child (the process that hangs; the
    parent's server threads wait in grpc too), else in any process ("" if none)."""
    children = [lines for role, lines in found if "child" in role]
    for lines in children + [lines for _, lines in found]:
        for i, line in enumerate(lines):
            if _GRPC.search(line):
                after = lines[i + 1].strip() if i + 1 < len(lines) else ""
                return _where(line.strip(), "" if _FRAME.match(after) else after)
    return ""


def _is(line: str, file_end: str, function: str) -> bool:
    m = _FRAME.match(line)
    return bool(m and m.group(1).endswith(file_end) and m.group(3) == function)


def _in(lines: list[str], file_end: str, function: str) -> bool:
    return any(_is(line, file_end, function) for line in lines)


def cause_key(cell: Cell) -> tuple[str, str]:
    """The key of the cause a hung cell's stacks show (``Cause.key``)."""
    return cause_of(cell.stacks, cell.start_method).key
