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
