"""What a container wrote is untrusted: every string of a results file is made inert (control
characters and lone surrogates replaced) and capped before anything renders it. Jinja2's
autoescaping does the HTML part; this does the rest."""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from lab.results import (
    RunResults,
)

FIELD_LIMIT = 2000  # characters of an ordinary container-provided string


BLOCK_LIMIT = 48 * 1024  # stacks and output


DETAIL_LIMIT = 8 * 1024  # a detail can hold a traceback


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


_SURROGATE = re.compile(r"[\ud800-\udfff]")


def inert(text: str, limit: int = FIELD_LIMIT) -> str:
    """Make a container-provided string safe to show: visible control characters (ANSI
    escapes, NUL), no lone surrogates (invalid UTF-8 that came through), capped length."""
    cut = len(text) - limit
    if cut > 0:
        text = text[:limit]
    text = _SURROGATE.sub("\ufffd", text)
    text = _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)
    if cut > 0:
        text += f"\n[... lab: {cut} more characters cut ...]"
    return text


def sanitize(value: Any, limit: int = FIELD_LIMIT) -> Any:
    if isinstance(value, str):
        return inert(value, limit)
    if isinstance(value, dict):
        return {inert(str(k), 200): sanitize(v, limit) for k, v in list(value.items())[:500]}
    if isinstance(value, list | tuple):
        return [sanitize(v, limit) for v in list(value)[:2000]]
    return value


def sanitize_results(r: RunResults) -> RunResults:
    cells = [dataclasses.replace(
        c,
        measurements=sanitize(c.measurements), warnings=sanitize(c.warnings),
        stacks=inert(c.stacks, BLOCK_LIMIT) if c.stacks else c.stacks,
        output=inert(c.output, BLOCK_LIMIT) if c.output else c.output,
        detail=inert(c.detail, DETAIL_LIMIT) if c.detail else c.detail,
        signal=inert(c.signal, 100) if c.signal else c.signal,
        quiet=sanitize(c.quiet) if isinstance(c.quiet, dict) else None,
        attempts=sanitize(c.attempts) if isinstance(c.attempts, list) else None,
    ) for c in r.results]
    targets = [dataclasses.replace(t, probe=sanitize(t.probe),
                                   reason=inert(t.reason, BLOCK_LIMIT) if t.reason else t.reason,
                                   base=sanitize(t.base) if isinstance(t.base, dict) else None,
                                   dependencies=sanitize(t.dependencies)
                                   if isinstance(t.dependencies, dict) else None)
               for t in r.targets]
    run = dataclasses.replace(r.run, scenarios=sanitize(r.run.scenarios))
    return RunResults(run=run, targets=targets, results=cells, schema_version=r.schema_version)
