"""A fake Docker engine for unit tests: the docker boundary is the only thing faked."""

from __future__ import annotations

import io
import json
import tarfile
import tempfile
from collections.abc import Callable, Iterable, Iterator
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
    """``files="copy"``: an engine that cannot see the host's folders. Each container then
    gets a folder of its own (its filesystem), which ``start``'s tar is unpacked into and
    ``file_archive`` reads back as Docker does (a symbolic link stays a link)."""

    where = "unix:///fake.sock"

    def __init__(self, script: Script = runner_writes_all_ok, *, fail_start: bool = False,
                 files: str = "bind"):
        self.script = script
        self.fail_start = fail_start
        self.files = files
        self.roots: dict[str, Path] = {}
        self.started: list[ContainerSpec] = []
        self.removed: list[str] = []
        self.killed: list[str] = []
        self.states: dict[str, dict[str, Any]] = {}

    def start(self, spec: ContainerSpec, *, files: Iterable[bytes] | None = None,
              files_at: str = "/") -> str:
        if self.fail_start:
            raise DockerError("create container: no space left on device")
        cid = f"c{len(self.started)}"
        self.started.append(spec)
        if files is not None:
            assert not spec.binds and files_at in spec.volumes
            root = self.roots[cid] = Path(tempfile.mkdtemp(prefix="fake-container-"))
            with tarfile.open(fileobj=io.BytesIO(b"".join(files))) as tar:
                # tarfile's filters came in 3.11.4; the lab runs on any 3.11 (Debian's 3.11.2)
                trusted = {"filter": "fully_trusted"} if hasattr(tarfile, "data_filter") else {}
                tar.extractall(root / files_at.lstrip("/"), **trusted)
            out = root / "lab" / "out"
        else:
            out = Path(next(iter(spec.binds)))
        plan = json.loads((out / "plan.json").read_text())
        final = self.script(out, plan)
        self.states[cid] = {"Status": final.get("Status", "exited"), **final}
        return cid

    def file_archive(self, cid: str, path: str) -> Iterator[bytes] | None:
        inside = self.roots[cid] / path.lstrip("/")
        if not inside.exists() and not inside.is_symlink():
            return None
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            tar.add(inside, arcname=inside.name, recursive=False)  # a link stays a link
        data = buffer.getvalue()
        return iter([data[i:i + 1000] for i in range(0, len(data), 1000)])

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
