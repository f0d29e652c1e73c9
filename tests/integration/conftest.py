"""Integration tests: a real Docker engine, real images. Marked ``docker``; run by make test
and CI, where a missing engine is an error, never a skip."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from lab.engine import MANAGED, Engine
from lab.images.builder import ImageBuilder
from lab.images.plan import plan_image
from lab.matrix import Target, load_matrix
from lab.results import Cell
from lab.run.containers import JobContext, cells_only, run_job
from lab.run.scheduler import CellSpec, Job

REPO = Path(__file__).resolve().parents[2]
LAB = [sys.executable, "-m", "lab"]


def pytest_collection_modifyitems(items):
    for item in items:
        if "integration" in str(item.fspath):
            item.add_marker(pytest.mark.docker)


@pytest.fixture(scope="session")
def engine() -> Iterator[Engine]:
    e = Engine.connect()  # fails loudly when no engine answers
    yield e
    e.close()


def lab(*args: str, timeout: float = 900, **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*LAB, *args], cwd=kw.pop("cwd", REPO), capture_output=True, text=True,
                          timeout=timeout, **kw)


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def lab_containers(engine: Engine, **labels: str) -> list[str]:
    return [c.name for c in engine.containers({MANAGED: "true", **labels})]


def load_results(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / "results.json").read_text())


def only_run(out: Path) -> Path:
    runs = [p for p in out.iterdir() if p.is_dir() and not p.is_symlink()]
    assert len(runs) == 1, runs
    return runs[0]


@pytest.fixture(scope="session")
def image_of(engine: Engine, tmp_path_factory):
    builder = ImageBuilder(log_dir=tmp_path_factory.mktemp("build-logs"))
    cache: dict[str, str] = {}

    def get(target_id: str) -> str:
        if target_id not in cache:
            cache[target_id] = builder.ensure(
                engine, plan_image(load_matrix().get(target_id))).tag
        return cache[target_id]
    return get


def run_cells(engine: Engine, image: str, target: Target, run_dir: Path,
              cells: list[CellSpec], *, parallel: int = 2, run_id: str = "itest",
              stop: threading.Event | None = None, phase: str = "behaviour") -> list[Cell]:
    job = Job(target_id=target.id, phase=phase, cells=tuple(cells), parallel=parallel,
              exclusive=False, deadline_scale=1.0, emulated=target.emulated)
    ctx = JobContext(run_id=run_id, run_dir=run_dir, target=target, image_tag=image,
                     stop=stop or threading.Event())
    # in the order planned (run_job yields them as they finish; errors last)
    order = {(c.scenario, c.start_method, c.container): i for i, c in enumerate(job.cells)}
    return sorted(cells_only(run_job(engine, job, ctx)),
                  key=lambda c: order[(c.scenario, c.start_method, c.container)])


def selftest(name: str, deadline: float = 20, **params: Any) -> CellSpec:
    return CellSpec(scenario=f"selftest.{name}", start_method=None, kind="behaviour",
                    deadline_s=deadline, params=params)


def scenario(name: str, method: str | None = None, deadline: float = 30) -> CellSpec:
    return CellSpec(scenario=name, start_method=method, kind="behaviour", deadline_s=deadline,
                    params={"quick": True})


@pytest.fixture
def unique_run_id(request) -> str:
    return "it" + str(abs(hash(request.node.nodeid)) % 10**8) + f"-{os.getpid()}"
