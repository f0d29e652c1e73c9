"""Other platforms: i386 natively, arm64 under qemu-user emulation, the host's interpreter."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from lab.images.plan import emulation_problem

from .conftest import lab, load_results, only_run


@pytest.mark.slow
def test_i386_and_arm64_are_observed_in_their_containers(tmp_path: Path, engine):
    problem = emulation_problem("arm64")
    assert problem is None, f"arm64 emulation is not set up ({problem}); .ci/run installs it"
    proc = lab("run", "--targets", "cp311-i386,cp311-arm64", "--scenarios",
               "probe,fork_held_lock,fork_warning", "--quick", "--out", str(tmp_path),
               "--no-progress", timeout=1800)
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = load_results(only_run(tmp_path))
    rows = {t["id"]: t for t in data["targets"]}
    i386, arm64 = rows["cp311-i386"], rows["cp311-arm64"]
    assert i386["probe"]["pointer_bits"] == 32 and i386["emulated"] is False
    assert arm64["probe"]["machine"] == "aarch64" and arm64["emulated"] is True
    assert arm64["platform"] == "linux/arm64" and i386["platform"] == "linux/386"
    # Behaviour counts under emulation: the held-lock deadlock is observed there too.
    cells = {(c["target"], c["scenario"], c["start_method"]): c for c in data["results"]}
    assert cells[("cp311-arm64", "fork_held_lock", "fork")]["outcome"] == "hung"
    assert cells[("cp311-arm64", "fork_held_lock", "spawn")]["outcome"] == "ok"
    assert all(c["emulated"] for c in data["results"] if c["target"] == "cp311-arm64")
    html = (only_run(tmp_path) / "index.html").read_text()
    assert "emulated" in html


def test_host_python_runs_beside_containers(tmp_path: Path, engine):
    python = shutil.which("python3") or sys.executable
    proc = lab("run", "--targets", "cp39", "--host-python", python, "--scenarios",
               "probe,fork_held_lock,process_startup", "--quick", "--out", str(tmp_path),
               "--no-progress")
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = load_results(only_run(tmp_path))
    rows = {t["id"]: t for t in data["targets"]}
    host = next(t for t in data["targets"] if t["kind"] == "host")
    assert host["id"].startswith("host-cp") and host["image"] is None
    assert host["platform"].startswith("linux/")
    assert host["probe"]["executable"]  # observed by the runner, on the host
    assert rows["cp39"]["probe"]["version"].startswith("3.9")
    cells = [c for c in data["results"] if c["target"] == host["id"]]
    assert {c["scenario"] for c in cells} == {"probe", "fork_held_lock", "process_startup"}
    fork = next(c for c in cells if c["scenario"] == "fork_held_lock"
                and c["start_method"] == "fork")
    assert fork["outcome"] == "hung" and "child_takes_lock" in fork["stacks"]
    assert "host-native" in (only_run(tmp_path) / "index.html").read_text()
