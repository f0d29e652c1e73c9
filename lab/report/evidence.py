"""What a verdict is: its status, its words and the cells it rests on, and a cell's anchor in
the report. Shared by the modules that judge claims (``verdicts``, ``forks``) and those that
link to cells."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from lab.results import Cell

CONFIRMED = "confirmed"
REFUTED = "refuted"
INCONCLUSIVE = "inconclusive"
NOT_OBSERVABLE = "not observable"


@dataclass(frozen=True, kw_only=True)
class Verdict:
    status: str
    summary: str
    evidence: tuple[str, ...] = ()  # cell anchors


@dataclass(frozen=True, kw_only=True)
class Claim:
    number: str  # "1" to "8", with "6a" and "6b" for the two statements of the seed's sixth
    text: str
    verdicts: dict[str, Verdict]  # by target id, plus "macOS" / "Windows" for claim 3
    note: str = ""
    extra_columns: tuple[str, ...] = field(default_factory=tuple)


def anchor(cell: Cell) -> str:
    raw = f"cell-{cell.target}-{cell.scenario}-{cell.start_method or 'none'}"
    if cell.container:
        raw += f"-{cell.container}"
    return re.sub(r"[^A-Za-z0-9_.:=-]", "_", raw)
