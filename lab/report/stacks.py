"""Hung cells, grouped for a reader: by scenario and start method, then by stacks that are the
same apart from paths, addresses and process ids, with the frame the hung child is stuck in.

Stacks are what a container wrote (``faulthandler`` output, with py-spy's native stacks under
each process where it could read them; sanitised before it gets here):
they are parsed as text, never opened as paths. Source lines come from the stacks too: the
runner writes each frame's line beneath it, read in the container from the file that ran.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from pathlib import Path

from lab.results import Cell, Outcome
from lab.runner.native import GIL_LINE  # the first line under NATIVE_HEADING

RUNNER_IN_IMAGE = "/opt/lab/labrunner/"  # the lab's own code in a target image
NATIVE_HEADING = "--- native stacks (py-spy)"  # labrunner.native.HEADING's start
UNREAD = re.compile(r"^\(native stacks not read: ([^;\n]{1,200});")  # the harness's first line

_HEADER = re.compile(r"^=== pid \d+ \(([^)]*)\).*$")
_FRAME = re.compile(r'^\s*File "([^"]*)", line (\d+) in (\S+)\s*$')
_THREAD = re.compile(r"^(Current thread|Thread) 0x[0-9a-fA-F]+ ")


@dataclass(frozen=True, kw_only=True)
class Frame:
    file: str  # as the stack names it
    line: int
    function: str
    source: str | None = None  # the line itself, when it is the lab's own runner code

    @property
    def where(self) -> str:
        return f"{Path(self.file).name}:{self.line} in {self.function}"


@dataclass(frozen=True, kw_only=True)
class StackGroup:
    """Cells whose stacks are the same apart from paths, addresses and pids."""

    cells: list[Cell]
    stacks: str  # the first cell's, as it was recorded

    @property
    def targets(self) -> list[str]:
        return [c.target for c in self.cells]


@dataclass(frozen=True, kw_only=True)
class HangGroup:
    scenario: str
    start_method: str | None
    container: str | None
    cells: list[Cell]
    stuck: Frame | None  # where the hung child (else the main process) waits
    stack_groups: list[StackGroup]

    @property
    def targets(self) -> list[str]:
        return [c.target for c in self.cells]

    @property
    def anchor(self) -> str:
        raw = f"hang-{self.scenario}-{self.start_method or 'none'}"
        if self.container:
            raw += f"-{self.container}"
        return re.sub(r"[^A-Za-z0-9_.:=-]", "_", raw)


def _own_code(file: str) -> bool:
    return file.startswith(RUNNER_IN_IMAGE)


def normalized(stacks: str) -> str:
    """The stacks without what differs between machines and versions of the same code path:
    process ids, thread addresses, folders, and the line numbers of code that is not the
    lab's own (the standard library's lines move between versions; the runner's do not)."""
    out = []
    native = False  # py-spy's part of a process: its versions, libraries and addresses differ
    for line in stacks.splitlines():
        if line.startswith(NATIVE_HEADING):
            native = True
            continue
        if m := _HEADER.match(line):
            native = False
            out.append(f"=== ({m.group(1)})")
        elif native:
            continue
        elif m := _FRAME.match(line):
            file, number, function = m.groups()
            name = Path(file).name
            out.append(f"  {name}:{number} in {function}" if _own_code(file)
                       else f"  {name} in {function}")
        elif _THREAD.match(line):
            out.append(_THREAD.match(line).group(1))  # type: ignore[union-attr]
        elif line.startswith("    ") and out and out[-1].startswith("  ") and " in " in out[-1]:
            continue  # a frame's source line: the frame already says where
        elif line.strip():
            out.append(re.sub(r"0x[0-9a-fA-F]+", "0x…", line.strip()))
    return "\n".join(out)


def sections(stacks: str) -> list[tuple[str, list[str]]]:
    """(role, lines) per process, in the order the stacks list them."""
    out: list[tuple[str, list[str]]] = []
    for line in stacks.splitlines():
        if m := _HEADER.match(line):
            out.append((m.group(1), []))
        elif out:
            out[-1][1].append(line)
    return out


def stuck_frame(stacks: str) -> Frame | None:
    """The innermost frame of the current thread of the first child process (else of the
    first process): where the hung process waits, with its source line when the runner
    recorded one beneath it (read in the container, from the file that ran)."""
    found = sections(stacks)
    if not found:
        return None
    _, lines = next((s for s in found if "child" in s[0]), found[0])
    current = False
    for i, line in enumerate(lines):
        if _THREAD.match(line):
            current = line.startswith("Current thread")
            continue
        if current and (m := _FRAME.match(line)):
            after = lines[i + 1] if i + 1 < len(lines) else ""
            source = (after.strip() if after.strip() and not _FRAME.match(after)
                      and not _THREAD.match(after) else None)
            return Frame(file=m.group(1), line=int(m.group(2)), function=m.group(3),
                         source=source)
    return None


def gil_holder(stacks: str) -> str | None:
    """What py-spy said of the GIL in the hung child (else the first process it read): "none",
    or the thread holding it with its state; where no native stack was read, why (PyPy, a
    free-threaded build); None where the stacks say neither."""
    if m := UNREAD.match(stacks):
        return f"not read ({m.group(1)})"
    found = sections(stacks)
    found.sort(key=lambda s: "child" not in s[0])  # the child first, else the order given
    for _, lines in found:
        for i, line in enumerate(lines[:-1]):
            if line.startswith(NATIVE_HEADING) and lines[i + 1].startswith(GIL_LINE):
                return lines[i + 1][len(GIL_LINE):].strip()[:200] or None
    return None


def hang_groups(cells: list[Cell],
                same: Callable[[Cell], Hashable] | None = None) -> list[HangGroup]:
    """Hung cells by (scenario, start method, container), in the order given; within each,
    cells grouped by normalized stacks (cells with no stacks form a group of their own) and by
    what ``same`` says of them (the cause their stacks show, whose evidence may be in the
    native frames that normalizing leaves out: ``lab.report.causes.cause_key``)."""
    by_key: dict[tuple[str, str | None, str | None], list[Cell]] = {}
    for c in cells:
        if c.outcome == Outcome.HUNG:
            by_key.setdefault((c.scenario, c.start_method, c.container), []).append(c)
    groups = []
    for (scenario, method, container), hung in by_key.items():
        alike: dict[tuple[str, Hashable], list[Cell]] = {}
        for c in hung:
            key = (normalized(c.stacks or ""), same(c) if same else None)
            alike.setdefault(key, []).append(c)
        stack_groups = [StackGroup(cells=cs, stacks=cs[0].stacks or "")
                        for cs in alike.values()]
        stuck = next((f for c in hung if c.stacks and (f := stuck_frame(c.stacks))), None)
        groups.append(HangGroup(scenario=scenario, start_method=method, container=container,
                                cells=hung, stuck=stuck, stack_groups=stack_groups))
    return groups
