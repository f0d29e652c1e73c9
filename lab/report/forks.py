"""Claims 5, 6a and 6b: what a fork child inherits, judged per target from the hazard cells.

- **5**, a lock held by another thread at fork is never released in the child:
  ``fork_held_lock`` under fork.
- **6a**, "in pure Python, multiprocessing handles that properly": judged by the pure-Python
  hazards alone (``fork_held_lock``, and ``fork_held_io``, the standard library's own buffered
  I/O and logging locks), refuted when either hangs under fork.
- **6b**, "it bites if you are interacting with other libraries": judged per native library the
  run observed (``LIBRARIES``). A library bites when its fork cell hangs while its spawn and
  forkserver cells end ok (so the hang is fork's doing); the verdict names which libraries bite
  and which do not, with each one's version as the cell found it, the cause its stacks support,
  and what a library's variant (``OMP_NUM_THREADS=1``) did. One library that bites confirms the
  statement; libraries that all survive fork leave it inconclusive, since a few libraries cannot
  speak for the rest; a target where none could run says why.
"""

from __future__ import annotations

from typing import Any

from lab.report.causes import cause_of
from lab.report.evidence import CONFIRMED, INCONCLUSIVE, NOT_OBSERVABLE, REFUTED, Verdict, anchor
from lab.results import Cell, Outcome, RunResults, TargetResult
from lab.runner import measurements as M

FRESH = ("spawn", "forkserver")
# (the library as the verdict names it, its scenario, its variants: (scenario, what they set))
LIBRARIES: tuple[tuple[str, str, tuple[tuple[str, str], ...]], ...] = (
    ("OpenMP", "openmp_fork", (("openmp_fork_single", "OMP_NUM_THREADS=1"),)),
)


def claim5(r: RunResults, t: TargetResult) -> Verdict:
    c = r.cell(t.id, "fork_held_lock", "fork")
    if not c or c.outcome == Outcome.SKIPPED:
        return Verdict(status=NOT_OBSERVABLE, summary="fork is not available")
    others = [x for m in FRESH if (x := r.cell(t.id, "fork_held_lock", m))]
    fresh = ", ".join(f"{x.start_method}: {x.outcome}" for x in others)
    ev = (anchor(c),) + tuple(anchor(x) for x in others)
    if c.outcome == Outcome.HUNG:
        blocked = ("child blocked in child_takes_lock"
                   if c.stacks and "child_takes_lock" in c.stacks else "hung")
        return Verdict(status=CONFIRMED, summary=f"fork: {blocked} until killed; {fresh}",
                       evidence=ev)
    if c.outcome == Outcome.OK:
        return Verdict(status=REFUTED, summary=f"fork: the child took the lock; {fresh}",
                       evidence=ev)
    return Verdict(status=INCONCLUSIVE, summary=f"fork cell ended {c.outcome}", evidence=ev)


def pure_python(r: RunResults, t: TargetResult) -> Verdict:
    lock = r.cell(t.id, "fork_held_lock", "fork")
    io = r.cell(t.id, "fork_held_io", "fork")
    if not lock or lock.outcome == Outcome.SKIPPED:
        return Verdict(status=NOT_OBSERVABLE, summary="fork is not available")
    ev = (anchor(lock),) + ((anchor(io),) if io else ())
    parts = [f"pure-Python threading.Lock under fork: {lock.outcome}"]
    if io:
        done = io.measurements.get(M.TRIALS_COMPLETED) or 0
        planned = io.measurements.get(M.TRIALS_PLANNED)
        parts.append(f"print/logging under fork: {io.outcome}"
                     + (f" after {done}/{planned} children" if planned else ""))
    summary = "; ".join(parts) + "; spawn/forkserver children start fresh"
    if lock.outcome == Outcome.HUNG or (io and io.outcome == Outcome.HUNG):
        return Verdict(status=REFUTED, summary=summary, evidence=ev)
    if lock.outcome == Outcome.OK and io and io.outcome == Outcome.OK:
        return Verdict(status=CONFIRMED, summary=summary + " (fork_held_io is a race: "
                       "one clean run does not prove it safe)", evidence=ev)
    return Verdict(status=INCONCLUSIVE, summary=summary, evidence=ev)


def _named(label: str, c: Cell) -> str:
    """"OpenMP (libgomp 12.2.0-14)": the library with the version its cell found."""
    lib: Any = c.measurements.get(M.LIBRARY)
    if isinstance(lib, dict) and lib.get("name"):
        version = f" {lib['version']}" if lib.get("version") else ""
        return f"{label} ({lib['name']}{version})"
    return label


def _library(r: RunResults, t: TargetResult, label: str, scenario: str,
             variants: tuple[tuple[str, str], ...]) -> tuple[str | None, str, list[Cell]]:
    """One library's evidence: (bites | survives | None when it says nothing, its words, the
    cells it rests on)."""
    fork = r.cell(t.id, scenario, "fork")
    if fork is None:
        return None, f"{label}: not run", []
    if fork.outcome in (Outcome.SKIPPED, Outcome.ERROR):
        return None, f"{label}: not available ({fork.detail or fork.outcome})", [fork]
    others = [x for m in FRESH if (x := r.cell(t.id, scenario, m))]
    cells = [fork, *others]
    fresh = ", ".join(f"{x.start_method} {x.outcome}" for x in others)
    name = _named(label, fork)
    if fork.outcome == Outcome.HUNG:
        if others and all(x.outcome == Outcome.OK for x in others):
            cause = cause_of(fork.stacks, "fork")
            why = f" ({cause.name}: {cause.evidence})" if cause.evidence else ""
            words = f"{name} bites: the fork child hangs{why}; {fresh}"
            for variant, setting in variants:
                v = r.cell(t.id, variant, "fork")
                if v is not None:
                    cells.append(v)
                    words += f"; with {setting} the fork child {_ended(v)}"
            return "bites", words, cells
        return None, f"{name}: hangs under fork and also {fresh}: not fork's doing", cells
    if fork.outcome == Outcome.OK:
        return "survives", f"{name} survives fork: the child's region ran; {fresh}", cells
    return None, f"{name}: the fork cell ended {fork.outcome}", cells


def _ended(c: Cell) -> str:
    return {Outcome.OK: "is fine", Outcome.HUNG: "hangs too"}.get(c.outcome, f"ended {c.outcome}")


def libraries(r: RunResults, t: TargetResult) -> Verdict:
    fork = r.cell(t.id, "fork_held_lock", "fork")
    if fork is not None and fork.outcome == Outcome.SKIPPED:
        return Verdict(status=NOT_OBSERVABLE, summary="fork is not available")
    found = [_library(r, t, *lib) for lib in LIBRARIES]
    ev = tuple(anchor(c) for _, _, cells in found for c in cells)
    summary = "; ".join(words for _, words, _ in found)
    kinds = [kind for kind, _, _ in found]
    if "bites" in kinds:
        return Verdict(status=CONFIRMED, summary=summary, evidence=ev)
    if "survives" in kinds:
        return Verdict(status=INCONCLUSIVE, evidence=ev, summary=(
            summary + "; no library observed here bites under fork, and these few cannot "
            "speak for the rest"))
    return Verdict(status=NOT_OBSERVABLE, summary=summary or "no library was observed",
                   evidence=ev)
