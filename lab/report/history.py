"""Runs side by side: the runs under one output folder, oldest first, and what each changed
against the run before it (the index page) or against the previous run of each of its targets
(a run's own page). Pure functions of the results files; only run folders are read (never
``latest`` or another link), and at most MAX_RUNS of the newest.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from lab.errors import ConfigError
from lab.report.compare import compare_runs
from lab.report.sanitize import sanitize_results
from lab.results import Outcome, RunResults, TargetStatus, load

MAX_RUNS = 60  # the newest; an index of hundreds of runs would take seconds to make


@dataclass(frozen=True, kw_only=True)
class Entry:
    name: str  # the run folder's name (its id)
    results: RunResults


@dataclass(frozen=True, kw_only=True)
class TargetChange:
    target: str
    previous: str | None  # the run it is compared with: the newest earlier one that ran it
    changes: list[tuple[str, str, str]]  # (what, before, now)


@dataclass(frozen=True, kw_only=True)
class History:
    """A run among its neighbours, for its own page."""

    previous: str | None
    next: str | None
    targets: list[TargetChange]


def runs_in(out: Path, *, limit: int = MAX_RUNS) -> list[Entry]:
    """The run folders under ``out`` that hold a results.json, oldest first (run ids start
    with their date and time). A folder that cannot be read is left out."""
    try:
        folders = sorted(p for p in out.iterdir() if p.is_dir() and not p.is_symlink())
    except OSError:
        return []
    entries = []
    for folder in folders[-limit:]:
        path = folder / "results.json"
        if path.is_symlink() or not path.is_file():
            continue
        try:
            entries.append(Entry(name=folder.name, results=load(path)))
        except ConfigError:
            continue
    return entries


def only(run: RunResults, target: str) -> RunResults:
    return dataclasses.replace(run, targets=[t for t in run.targets if t.id == target],
                               results=[c for c in run.results if c.target == target])


def versions(run: RunResults) -> list[tuple[str, str]]:
    """(target, interpreter version as its probe saw it, else the matrix's)."""
    return [(t.id, str(t.probe.get("version") or t.version)) for t in run.targets]


def differences(new: RunResults, old: RunResults) -> list[str]:
    """What differs between two runs, one short line each (empty: nothing)."""

    lines = []
    ids_new, ids_old = {t.id for t in new.targets}, {t.id for t in old.targets}
    if added := sorted(ids_new - ids_old):
        lines.append(f"added {', '.join(added)}")
    if gone := sorted(ids_old - ids_new):
        lines.append(f"dropped {', '.join(gone)}")
    was = dict(versions(old))
    for tid, v in versions(new):
        if tid in was and was[tid] != v:
            lines.append(f"{tid} {was[tid]} → {v}")
    changes = compare_runs(new, old)
    outcomes = [c for c in changes if c.old in Outcome.values() and c.new in Outcome.values()]
    facts = [c for c in changes if c not in outcomes and "· timings" not in c.what
             and c.what.count(" · ") == 1]
    timings = [c for c in changes if c not in outcomes and c not in facts]
    for group, word in ((outcomes, "outcome"), (facts, "interpreter fact"),
                        (timings, "timing")):
        if group:
            lines.append(f"{len(group)} {word}{'s' if len(group) > 1 else ''} changed")
    return lines


def history_of(run_dir: Path, run: RunResults,
               entries: list[Entry] | None = None) -> History | None:
    """``run`` among the runs beside it in its output folder (``entries``: those runs, when
    the caller has read them already); None when it has none."""

    entries = runs_in(run_dir.parent) if entries is None else entries
    names = [e.name for e in entries]
    if run_dir.name not in names or len(entries) < 2:
        return None
    i = names.index(run_dir.name)
    targets = []
    for t in run.targets:
        before = next((e for e in reversed(entries[:i])
                       if any(x.id == t.id and x.status == TargetStatus.OK
                              for x in e.results.targets)), None)
        if before is None:
            targets.append(TargetChange(target=t.id, previous=None, changes=[]))
            continue
        found = compare_runs(sanitize_results(only(run, t.id)),
                             sanitize_results(only(before.results, t.id)))
        targets.append(TargetChange(target=t.id, previous=before.name,
                                    changes=[(c.what, c.old, c.new) for c in found]))
    return History(previous=names[i - 1] if i > 0 else None,
                   next=names[i + 1] if i + 1 < len(names) else None, targets=targets)
