"""Optional requirements: a named built-in scenario's packages (``Requirements.optional``).

A target that cannot have one of them still runs: its dependencies are installed without that
package, and only the scenarios that import it are skipped, each with the one line pip's failure
came to (``deps.explain_failure``). The user's own requirements stay all-or-nothing: a target
that cannot have them is unavailable, as before.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TypeVar

from lab.images.deps import DependencyUnavailable, Inputs
from lab.images.requirements import Requirements

D = TypeVar("D")


def _name(line: str) -> str:
    m = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", line)
    return re.sub(r"[-_.]+", "-", m.group(1)).lower() if m else line


def blamed(message: str, optional: tuple[str, ...], lines: tuple[str, ...] = ()) -> list[str]:
    """The optional lines a failure's one line names (pip names the package it could not
    have); none when it names one of the other ``lines`` instead (the user's own, which no
    drop can help), all of them when it names no line at all."""
    words = {re.sub(r"[-_.]+", "-", w).lower() for w in re.findall(r"[A-Za-z0-9._-]+", message)}
    named = [ln for ln in optional if _name(ln) in words]
    if named or any(_name(ln) in words for ln in lines if ln not in optional):
        return named
    return list(optional)


def ensure_optional(ensure: Callable[[Requirements, Inputs], D], reqs: Requirements,
                    inputs: Inputs, prepare: Callable[[Requirements], Inputs]
                    ) -> tuple[D | None, Requirements, dict[str, str]]:
    """``ensure(reqs, inputs)``, dropping optional lines that cannot be had, one failure at a
    time. Returns what ``ensure`` made (None when nothing was left to install), the
    requirements it was made from, and {line: why} for each line dropped. A failure that no
    optional line can explain is raised."""
    missing: dict[str, str] = {}
    while True:
        try:
            return ensure(reqs, inputs), reqs, missing
        except DependencyUnavailable as exc:
            optional = tuple(ln for ln in reqs.optional if ln in reqs.lines)
            dropped = blamed(str(exc), optional, reqs.lines)
            if not dropped:
                raise
            missing.update({ln: str(exc) for ln in dropped})
            reqs = reqs.without(dropped)
            if not reqs:
                return None, reqs, missing
            inputs = prepare(reqs)
