from __future__ import annotations

import time
from pathlib import Path

import pytest

from lab.cli import main


@pytest.fixture
def no_engine(monkeypatch, tmp_path):
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-docker.sock")


def test_no_engine_is_one_clear_line_fast(no_engine, capsys, tmp_path):
    started = time.monotonic()
    code = main(["run", "--targets", "cp39", "--out", str(tmp_path / "runs"), "--no-progress"])
    took = time.monotonic() - started
    err = capsys.readouterr().err.strip()
    assert code == 3
    assert took < 5
    assert len(err.splitlines()) == 1, err
    assert "Docker engine not reachable at unix://" in err and "Start Docker" in err
    assert not (tmp_path / "runs").exists()  # nothing half-made


def test_doctor_reports_the_missing_engine(no_engine, capsys):
    assert main(["doctor"]) == 1
    assert "[FAIL] docker engine" in capsys.readouterr().out


def test_unknown_target_lists_valid_ids_and_builds_nothing(capsys, tmp_path):
    code = main(["run", "--targets", "cp39,cp27", "--out", str(tmp_path / "runs")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "'cp27'" in err and "cp39, cp311" in err
    assert not (tmp_path / "runs").exists()


def test_malformed_config_names_the_bad_key(capsys, tmp_path):
    cfg = tmp_path / "lab.toml"
    cfg.write_text('[[target]]\nid = "x"\nimplementation = "cpython"\nversion = "3.12"\n'
                   'python = "/p"\nimage = "python:3.12-slim"\ntimeout = 3\n')
    assert main(["list", "--config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "unknown key 'timeout'" in err


def test_unknown_scenario(capsys, tmp_path):
    assert main(["run", "--scenarios", "nope", "--out", str(tmp_path)]) == 2
    assert "unknown scenario nope" in capsys.readouterr().err


def test_list_shows_targets_and_scenarios(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "* cp39" in out and "cp311-arm64" in out and "fork_held_lock" in out


def test_report_of_a_missing_file(capsys, tmp_path):
    assert main(["report", str(tmp_path / "nope.json")]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_report_renders_a_golden_run(tmp_path: Path, capsys):
    golden = Path(__file__).resolve().parents[1] / "golden" / "run-cp39-cp315-quick.json"
    out = tmp_path / "r.html"
    assert main(["report", str(golden), "-o", str(out)]) == 0
    assert out.read_text().startswith("<!doctype html>")

