"""A fake Docker engine for unit tests: the docker boundary is the only thing faked."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lab.engine import ContainerSpec, ContainerState
from lab.errors import DockerError

Script = Callable[[Path, dict[str, Any]], dict[str, Any]]


def runner_writes_all_ok(out: Path, plan: dict[str, Any]) -> dict[str, Any]:
    """Simulate the runner: one ok record per planned cell, then done."""
    lines: list[dict[str, Any]] = [{"kind": "start"}]
    for i, cell in enumerate(plan["cells"]):
        lines.append({"kind": "cell", "index": i, "scenario": cell["scenario"],
                      "start_method": cell["start_method"], "outcome": "ok",
                      "duration_s": 0.1, "measurements": {"i": i}, "cpus": [0, 1]})
    lines.append({"kind": "done"})
    (out / "results.jsonl").write_text("".join(json.dumps({**x, "record_version": 1}) + "\n"
                                               for x in lines))
    return {"ExitCode": 0}


class FakeEngine:
    where = "unix:///fake.sock"

    def __init__(self, script: Script = runner_writes_all_ok, *, fail_start: bool = False):
        self.script = script
        self.fail_start = fail_start
        self.started: list[ContainerSpec] = []
        self.removed: list[str] = []
        self.killed: list[str] = []
        self.states: dict[str, dict[str, Any]] = {}

    def start(self, spec: ContainerSpec) -> str:
        if self.fail_start:
            raise DockerError("create container: no space left on device")
        cid = f"c{len(self.started)}"
        self.started.append(spec)
        out = Path(next(iter(spec.binds)))
        plan = json.loads((out / "plan.json").read_text())
        final = self.script(out, plan)
        self.states[cid] = {"Status": final.get("Status", "exited"), **final}
        return cid

    def state(self, cid: str) -> ContainerState:
        return ContainerState.from_docker(self.states[cid])

    def kill(self, cid: str) -> None:
        self.killed.append(cid)
        self.states[cid] = {"Status": "exited", "ExitCode": 137}

    def remove_container(self, cid: str, *, quiet: bool = False) -> None:
        self.removed.append(cid)

    def logs_tail(self, cid: str, *, lines: int = 50) -> str:
        return "runner log tail"

    def close(self) -> None:
        pass
