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
# Each library the run may observe: how the verdict names it, then its configurations, each
# (what it sets, "" for the library's own default; the scenario that runs it).
LIBRARIES: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = (
    ("OpenMP", (("", "openmp_fork"), ("OMP_NUM_THREADS=1", "openmp_fork_single"))),
    ("BLAS", (("", "blas_fork"),)),
    ("gRPC", (("", "grpc_fork"), ("GRPC_ENABLE_FORK_SUPPORT=0", "grpc_fork_support_off"),
              ("GRPC_ENABLE_FORK_SUPPORT=1", "grpc_fork_support_on"))),
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
    """"OpenMP (libgomp 12.2.0-14)", "BLAS (numpy 2.4.6, scipy-openblas 0.3.31)": the library
    with the versions its cell found."""
    lib: Any = c.measurements.get(M.LIBRARY)
    if not isinstance(lib, dict) or not lib.get("name"):
        return label
    parts = [" ".join(str(x) for x in (lib["name"], lib.get("version")) if x)]
    if lib.get("blas"):
        parts.append(" ".join(str(x) for x in (lib["blas"], lib.get("blas_version")) if x))
    return f"{label} ({', '.join(parts)})"


def _configuration(r: RunResults, t: TargetResult, setting: str,
                   scenario: str) -> tuple[str | None, str, list[Cell], Cell | None]:
    """One configuration's evidence: (bites | survives | None when it says nothing, its words,
    the cells it rests on, its fork cell)."""
    where = f"with {setting}" if setting else "by default"
    fork = r.cell(t.id, scenario, "fork")
    if fork is None:
        return None, "", [], None
    if fork.outcome in (Outcome.SKIPPED, Outcome.ERROR):
        return None, f"{where}: not available ({fork.detail or fork.outcome})", [fork], fork
    others = [x for m in FRESH if (x := r.cell(t.id, scenario, m))]
    cells = [fork, *others]
    fresh = "".join(f", {x.start_method} {x.outcome}" for x in others)
    if fork.outcome == Outcome.HUNG:
        if others and all(x.outcome == Outcome.OK for x in others):
            cause = cause_of(fork.stacks, "fork")
            why = f" ({cause.name}: {cause.evidence})" if cause.evidence else ""
            return "bites", f"{where} the fork child hangs{why}{fresh}", cells, fork
        return None, f"{where} it hangs under fork{fresh}: not fork's doing", cells, fork
    if fork.outcome == Outcome.OK:
        return "survives", f"{where} the fork child is fine{fresh}", cells, fork
    return None, f"{where} the fork cell ended {fork.outcome}", cells, fork


def _library(r: RunResults, t: TargetResult, label: str,
             configurations: tuple[tuple[str, str], ...]) -> tuple[str | None, str, list[Cell]]:
    """One library: bites if any configuration does, survives if every observed one does."""
    found = [_configuration(r, t, *c) for c in configurations]
    seen = [f for f in found if f[1]]
    if not seen:
        return None, "", []
    kinds = {kind for kind, _, _, _ in seen}
    first = next((fork for _, _, _, fork in seen if fork is not None))
    kind = "bites" if "bites" in kinds else "survives" if kinds == {"survives"} else None
    verb = {"bites": "bites", "survives": "survives fork"}.get(kind or "", "says nothing")
    words = f"{_named(label, first)} {verb}: " + "; ".join(w for _, w, _, _ in seen)
    return kind, words, [c for _, _, cells, _ in seen for c in cells]


def libraries(r: RunResults, t: TargetResult) -> Verdict:
    fork = r.cell(t.id, "fork_held_lock", "fork")
    if fork is not None and fork.outcome == Outcome.SKIPPED:
        return Verdict(status=NOT_OBSERVABLE, summary="fork is not available")
    found = [f for lib in LIBRARIES if (f := _library(r, t, *lib))[1]]
    ev = tuple(anchor(c) for _, _, cells in found for c in cells)
    summary = " | ".join(words for _, words, _ in found)
    kinds = [kind for kind, _, _ in found]
    if "bites" in kinds:
        return Verdict(status=CONFIRMED, summary=summary, evidence=ev)
    if "survives" in kinds:
        return Verdict(status=INCONCLUSIVE, evidence=ev, summary=(
            summary + "; no library observed here bites under fork, and these few cannot "
            "speak for the rest"))
    return Verdict(status=NOT_OBSERVABLE, summary=summary or "no library was observed",
                   evidence=ev)
