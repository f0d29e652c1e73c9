"""Documented facts (``documented.toml``): what the CPython docs say, shown beside observations.

Only the report reads this, to fill its "documented" column and flag mismatches; results never
copy documented values.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any


@dataclass(frozen=True, kw_only=True)
class Fact:
    key: str
    value: Any
    source: str
    low: tuple[int, int]
    high: tuple[int, int]
    platform: str = "linux"
    build: str | None = None  # "free-threaded" or "default"; None: any build


def _version(text: str, default: tuple[int, int]) -> tuple[int, int]:
    if not text:
        return default
    major, minor = text.split(".")
    return int(major), int(minor)


@cache
def facts() -> tuple[Fact, ...]:
    data = tomllib.loads(resources.files("lab.report").joinpath("documented.toml").read_text())
    out = []
    for raw in data["fact"]:
        low, _, high = raw["versions"].partition("-")
        out.append(Fact(key=raw["key"], value=raw["value"], source=raw["source"],
                        low=_version(low, (0, 0)), high=_version(high, (99, 99)),
                        platform=raw.get("platform", "linux"), build=raw.get("build")))
    return tuple(out)


def documented(key: str, *, implementation: str, version: str,
               platform: str = "linux", freethreaded: bool = False) -> Fact | None:
    """The documented value of ``key`` for a CPython version and build (free-threaded or
    default), or None (not documented, or not CPython: PyPy follows its own release notes)."""
    build = "free-threaded" if freethreaded else "default"
    if implementation != "cpython":
        return None
    try:
        major, minor = (int(p) for p in version.split(".")[:2])
    except ValueError:
        return None
    for fact in facts():
        if (fact.key == key and fact.platform == platform and fact.build in (None, build)
                and fact.low <= (major, minor) <= fact.high):
            return fact
    return None
