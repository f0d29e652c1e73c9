"""`lab run --host-python`: the runner with a host interpreter, no container, no engine."""

from __future__ import annotations

import pytest

from lab.cli import main


@pytest.fixture
def no_engine(monkeypatch, tmp_path):
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-docker.sock")


def test_host_python_alone_needs_no_docker(no_engine, tmp_path, capsys):
    import sys
    out = tmp_path / "runs"
    code = main(["run", "--host-python", sys.executable, "--scenarios", "probe",
                 "--out", str(out), "--no-progress"])
    assert code == 0, capsys.readouterr().err
    run = next(p for p in out.iterdir() if p.is_dir() and not p.is_symlink())
    html = (run / "index.html").read_text()
    assert "host-native" in html and "Docker engine</th><td>not used" in html


def test_bad_host_python_is_one_line(capsys, tmp_path):
    assert main(["run", "--host-python", str(tmp_path / "nope"), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "does not run" in err


def test_run_watchdog_stops_a_run_and_keeps_what_finished(no_engine, tmp_path, capsys):
    import json
    import subprocess
    import sys
    import time
    out = tmp_path / "runs"
    started = time.monotonic()
    code = main(["run", "--host-python", sys.executable, "--scenarios",
                 "fork_held_lock,pickle_target", "--timeout", "3",
                 "--out", str(out), "--no-progress"])
    took = time.monotonic() - started
    assert code == 1  # partial
    assert took < 15, took  # not the 6 s x waves the cells would take, plus slack
    run = next(p for p in out.iterdir() if p.is_dir() and not p.is_symlink())
    data = json.loads((run / "results.json").read_text())
    assert data["run"]["complete"] is False
    assert any("watchdog" in n for n in data["run"]["notes"])
    # What finished in 3 s is kept; the cell that needed its 6 s deadline (fork_held_lock
    # hangs under fork) is absent, not an error.
    assert data["results"] and all(c["outcome"] == "ok" for c in data["results"])
    assert ("fork_held_lock", "fork") not in {(c["scenario"], c["start_method"])
                                              for c in data["results"]}
    assert "the run is partial" in capsys.readouterr().err
    # The runner took its hung cells down with it: nothing of this run is left on the host.
    time.sleep(0.5)
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert str(run) not in ps
