"""What the terminal says around a run: the plan first (targets, scenarios, cells, images to
build, an estimate of the wall time), the findings last (outcomes, hangs, what changed between
versions, the claims, the report's address). Plain text; pure functions of their inputs.
"""

from __future__ import annotations

import re
import textwrap
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from lab.results import CHECK_METHODS, Outcome, RunResults, TargetResult, TargetStatus


@dataclass(frozen=True, kw_only=True)
class Absent:
    """Optional targets left out for one reason: one line however many share it."""

    targets: list[TargetResult]
    source: str  # "registry", "python-build-standalone", ...
    reason: str
    own: dict[str, str]  # target id -> what its reason names of its own (archive, image)


_OWN_PART = (re.compile(r" \((?:It is )?(?P<name>cpython-[^()\s]*\.tar\.gz)\.?\)"),  # archive
             re.compile(r"^cannot pull (?P<name>\S+): "),  # a registry image
             # where this target's archive was looked for: each names its own file pattern
             re.compile(r" (?P<name>No local archive matched: .*?)\.(?= Offline\?)"))


def absent_groups(columns: Iterable[TargetResult]) -> list[Absent]:
    """The optional targets that could not be had, grouped by what kept them out: their
    reasons with what names each one's own archive or image taken out (the full reason is in
    results.json and each target's tooltip)."""
    groups: dict[tuple[str, str], list[TargetResult]] = {}
    own: dict[str, str] = {}
    for t in columns:
        if not t.left_out:
            continue
        reason = first_line(t.reason)
        mine = [t.implementation + " " + t.flavour_version]
        for part in _OWN_PART:
            mine += [m.group("name") for m in part.finditer(reason)]
            reason = part.sub("", reason)
        own[t.id] = " · ".join(mine)
        source = {"archive": "python-build-standalone", "registry": "registry"}.get(t.kind,
                                                                                  t.kind)
        groups.setdefault((source, reason), []).append(t)
    return [Absent(targets=ts, source=src, reason=why, own={t.id: own[t.id] for t in ts})
            for (src, why), ts in groups.items()]


def hang_groups(results: RunResults) -> list[tuple[str, list[str]]]:
    """(scenario · method[ · container], targets where it hung), in cell order: the report's
    deadlock groups (``lab.report.stacks``), as the terminal names them."""
    return [(label, targets) for label, targets, _ in named_hangs(results)]


def named_hangs(results: RunResults) -> list[tuple[str, list[str], list[str]]]:
    """As ``hang_groups``, with what the stacks show, a line per cause: "lock copied in its
    held state on cp39, cp311: child_takes_lock at fork_held_lock.py:24: LOCK.acquire()"."""
    from lab.report.causes import cause_key, cause_of, merged
    from lab.report.stacks import hang_groups as groups

    out = []
    for g in groups(results.results, cause_key):
        # one line per cause and frame (numbers aside: addresses, line numbers, shown as "…"
        # where they differ): a target whose evidence is another frame (PyPy's scan, say)
        # gets a line of its own
        by_cause: dict[tuple[str, str], list[str]] = {}
        shown: dict[tuple[str, str], list] = {}
        for sg in g.stack_groups:
            for cell in sg.cells:
                cause = cause_of(cell.stacks, g.start_method)
                by_cause.setdefault(cause.key, []).append(cell.target)
                shown.setdefault(cause.key, []).append(cause)
        causes = []
        for key, ts in by_cause.items():
            evidence = merged(shown[key]).evidence
            causes.append(f"{key[0]} on {', '.join(ts)}"
                          + (f": {_clip(evidence, 160)}" if evidence else ""))
        out.append((f"{g.scenario} · {g.start_method or '-'}"
                    + (f" · {g.container}" if g.container else ""), g.targets, causes))
    return out


def first_line(reason: str | None) -> str:
    """A reason's first line; one that is empty or only line breaks says so."""
    lines = (reason or "").strip().splitlines()
    return lines[0] if lines else "no reason recorded"


def _clip(reason: str, width: int = 320) -> str:
    """A reason on one terminal line or two, cut at a word (the whole one is in the report)."""
    return textwrap.shorten(reason, width, placeholder=" … (the rest in the report)")


def findings_text(results: RunResults, html: Path, *, changes: Iterable[str] = (),
                  claims: Iterable[str] = ()) -> str:
    counts: dict[str, int] = defaultdict(int)
    for c in results.results:
        counts[c.outcome] += 1
    ran = [t.id for t in results.targets if t.status == TargetStatus.OK]
    lines = [f"findings: {len(results.results)} cells: "
             + ", ".join(f"{n} {o}" for o, n in sorted(counts.items(), key=lambda x: -x[1]))
             + ("" if results.run.complete else " (partial run: only what finished)")]
    for t in results.targets:
        if t.status != TargetStatus.OK and not t.left_out:
            lines.append(f"  {t.id}: {t.status}: {_clip(first_line(t.reason))}")
    for t in results.targets:
        missing = (t.dependencies or {}).get("not_installed") if t.status == TargetStatus.OK \
            else None
        for line, why in (missing or {}).items() if isinstance(missing, dict) else ():
            why = str(why).removeprefix(f"{t.id}: ")
            lines.append(f"  {t.id}: cannot have {line}, so the scenarios that need it are "
                         f"skipped: {_clip(first_line(why))}")
    for g in absent_groups(results.targets):
        lines.append(f"  {', '.join(t.id for t in g.targets)}: not available here (optional, "
                     f"{g.source}): {_clip(g.reason)}")
    if hang_groups(results):
        lines.append("hung (found stuck or past their deadline, killed, stacks in the report):")
        for label, where, causes in named_hangs(results):
            lines.append(f"  {label}: {len(where)}/{len(ran)} targets ({', '.join(where)})")
            lines += [f"    {cause}" for cause in causes]
    changes = list(changes)
    if changes:
        lines.append("changed between versions:")
        lines += [f"  {c}" for c in changes]
    claims = list(claims)
    if claims:
        lines.append("claims:")
        lines += [f"  {c}" for c in claims]
    lines.append(f"report: {html.resolve().as_uri()}")
    return "\n".join(lines)


def check_table(results: RunResults, scenario: str) -> tuple[str, bool]:
    """`lab check`'s table: one line per target, each run's outcome, then why each run that
    failed, crashed or could not run did (its first error line; a hung run's stacks are in
    the findings and the report). Returns the text and whether every run ended ok."""
    methods = list(CHECK_METHODS)
    width = max([len(t.id) for t in results.targets] + [6])
    lines = [f"{'target':<{width}}  " + "  ".join(f"{m:<10}" for m in methods)]
    clean = results.run.complete
    why: list[str] = []
    for t in results.targets:
        if t.status != TargetStatus.OK:
            lines.append(f"{t.id:<{width}}  {t.status}")
            why.append(f"  {t.id}: {t.status}: {first_line(t.reason)}")
            clean = False
            continue
        row = []
        for m in methods:
            c = results.cell(t.id, scenario, m)
            row.append(f"{c.outcome if c else '-':<10}")
            if c and c.outcome != Outcome.OK:
                clean = False
                if c.outcome not in (Outcome.SKIPPED, Outcome.HUNG):
                    why.append(f"  {t.id} {m}: {c.outcome}: {first_line(c.detail)}")
        lines.append(f"{t.id:<{width}}  " + "  ".join(row))
    lines += [line[:300] for line in why]
    if not any(c.scenario == scenario for c in results.results):
        clean = False
    return "\n".join(lines), clean
