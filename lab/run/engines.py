"""The engines of a run: reached once at its start (what each runs natively, its CPUs, which
ones are down), and the lab's leftovers on them (containers and volumes of a killed run)
removed by label."""

from __future__ import annotations

import dataclasses
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass

from lab.engine import MANAGED, Engine, EngineFacts
from lab.errors import (
    EngineUnavailable,
)
from lab.matrix import NATIVE, EngineSpec, native_platforms
from lab.run.scheduler import EngineSlot


@dataclass(frozen=True, kw_only=True)
class Survey:
    """The engines of a run as found at its start."""

    slots: list[EngineSlot]
    facts: dict[str, EngineFacts]
    where: dict[str, str]
    down: dict[str, str]  # name -> why it could not be reached
    files: dict[str, str] = dataclasses.field(default_factory=dict)  # name -> bind or copy


def survey_engines(specs: tuple[EngineSpec, ...],
                   connect: Callable[[EngineSpec], Engine]) -> Survey:
    """Reach every engine once: what it runs natively (lab.toml's word, else its
    architecture), its CPUs, and which ones are down. Raises EngineUnavailable only when
    none answers."""
    slots, facts, where, down, files = [], {}, {}, {}, {}
    for spec in specs:
        try:
            engine = connect(spec)
        except EngineUnavailable as exc:
            down[spec.name] = str(exc)
            slots.append(EngineSlot(name=spec.name, timing=spec.timing,
                                    platforms=frozenset(spec.platforms or native_platforms())))
            continue
        try:
            found = engine.facts()
        finally:
            engine.close()
        facts[spec.name], where[spec.name], files[spec.name] = found, engine.where, engine.files
        native = spec.platforms or tuple(NATIVE.get(found.arch.lower(), ()))
        slots.append(EngineSlot(name=spec.name, platforms=frozenset(native), cpus=found.cpus,
                                timing=spec.timing))
    if not facts:
        raise EngineUnavailable(next(iter(down.values())) if len(down) == 1 else
                                "no Docker engine reachable: " + "; ".join(
                                    f"{n}: {r}" for n, r in down.items()))
    return Survey(slots=slots, facts=facts, where=where, down=down, files=files)


def remove_leftovers(engine: Engine, *, run_id: str | None = None,
                     everything: bool = False) -> list[str]:
    """Remove lab containers and volumes (a bootstrap's): of ``run_id``; or all
    (``everything``); or, by default, those whose harness on this host is gone (killed with
    SIGKILL, say)."""
    labels = {MANAGED: "true"}
    if run_id:
        labels["lab.run"] = run_id
    me = socket.gethostname()

    def doomed(found: dict[str, str]) -> bool:
        if everything or run_id:
            return True
        pid = found.get("lab.pid", "")
        return found.get("lab.host") == me and pid.isdigit() and not _alive(int(pid))

    removed = []
    for c in engine.containers(labels):
        if doomed(c.labels):
            engine.remove_container(c.id, quiet=True)
            removed.append(c.name)
    for name, found in engine.volumes(labels):  # after the containers that use them
        if doomed(found):
            engine.remove_volume(name)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
