"""Run the in-container runner directly with the host interpreter (no Docker)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from lab.images.plan import stage_runner


def run_plan(tmp: Path, cells: list[dict[str, Any]], *, parallel: int = 4,
             python: str = sys.executable, user_dir: Path | None = None,
             extra: dict[str, Any] | None = None, stage: Path | None = None,
             ) -> dict[tuple[str, str | None], dict[str, Any]]:
    """Stage the runner as ``labrunner`` (as in the images), run ``cells``, return records."""
    stage = stage or stage_runner(tmp / "stage")
    out = tmp / "out"
    out.mkdir()
    plan = out / "plan.json"
    body: dict[str, Any] = {"parallel": parallel, "cells": cells}
    if user_dir is not None:
        body["user_dir"] = str(user_dir)
    body.update(extra or {})
    plan.write_text(json.dumps(body))
    proc = subprocess.run(
        [python, "-m", "labrunner", "run", "--plan", str(plan), "--out", str(out)],
        env={"PYTHONPATH": str(stage), "PATH": "/usr/bin:/bin"}, capture_output=True,
        text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert records[0]["kind"] == "start" and records[-1]["kind"] == "done"
    return {(r["scenario"], r["start_method"]): r for r in records if r["kind"] == "cell"}


@pytest.fixture
def runner(tmp_path: Path):
    def go(cells: list[dict[str, Any]], **kw: Any):
        return run_plan(tmp_path, cells, **kw)
    return go
