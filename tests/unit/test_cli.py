from __future__ import annotations

import time
from pathlib import Path

import pytest

from lab.cli import main
from lab.errors import Interrupted


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


def test_doctor_reports_the_missing_engine(no_engine, capsys, monkeypatch):
    # The mirror is refused at once on loopback, and the archives are not looked up on the
    # internet: a unit test stays on this machine (tests/unit/conftest.py).
    from lab.images import doctor

    monkeypatch.setenv("LAB_DEBIAN_MIRROR", "http://127.0.0.1:1/debian")
    monkeypatch.setattr(doctor, "check_archives", lambda targets: doctor.Check(
        name="python archives", level="ok", detail="not looked up in this test"))
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
    assert "*  cp39" in out and "cp311-arm64" in out and "fork_held_lock" in out


def test_report_of_a_missing_file(capsys, tmp_path):
    assert main(["report", str(tmp_path / "nope.json")]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_report_renders_a_golden_run(tmp_path: Path, capsys):
    golden = Path(__file__).resolve().parents[1] / "golden" / "run-cp39-cp315-quick.json"
    out = tmp_path / "r.html"
    assert main(["report", str(golden), "-o", str(out)]) == 0
    assert out.read_text().startswith("<!doctype html>")



# -- a command line that is hard to misuse (issue 11) -------------------------------------------
@pytest.mark.parametrize(("argv", "says"), [
    (["run", "--target", "cp311"], "did you mean --targets?"),
    (["run", "--quik"], "did you mean --quick?"),
    (["check", "--timout", "5", "x.py"], "did you mean --timeout?"),
    (["rn"], "did you mean run?"),
])
def test_abbreviated_or_misspelt_options_are_errors_with_a_suggestion(capsys, argv, says):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    assert says in capsys.readouterr().err


@pytest.mark.parametrize(("typed", "chosen"), [
    ("3.14", "cp314"), ("CP311", "cp311"), ("pypy3.11", "pp311"), ("python3.9", "cp39"),
    ("3.14t", "cp314t"), ("cp313T", "cp313t"), ("cp311-ARM64", "cp311-arm64"),
])
def test_versions_and_any_case_select_targets(typed, chosen):
    from lab.matrix import load_matrix, select_targets

    assert [t.id for t in select_targets(load_matrix(), ids=[typed])] == [chosen]


def test_3_12_is_the_official_image_or_the_archive_so_it_names_both():
    from lab.errors import ConfigError
    from lab.matrix import load_matrix, select_targets

    with pytest.raises(ConfigError, match=r"'3.12' matches cp312-slim, cp312: name one"):
        select_targets(load_matrix(), ids=["3.12"])


def test_a_version_several_targets_share_is_an_error_listing_them(tmp_path):
    from lab.errors import ConfigError
    from lab.matrix import load_matrix, select_targets

    cfg = tmp_path / "lab.toml"
    cfg.write_text('[[target]]\nid = "cp311-dbg"\nimplementation = "cpython"\nversion = "3.11"\n'
                   'python = "/usr/bin/python3.11-dbg"\nbase = "bookworm"\n')
    with pytest.raises(ConfigError, match="'3.11' matches cp311, cp311-dbg"):
        select_targets(load_matrix(cfg), ids=["3.11"])


def test_unknown_targets_and_scenarios_suggest_the_nearest(capsys, tmp_path):
    assert main(["run", "--targets", "cp3144", "--out", str(tmp_path)]) == 2
    assert "Did you mean cp314?" in capsys.readouterr().err
    assert main(["run", "--scenarios", "fork_held_lok", "--out", str(tmp_path)]) == 2
    assert "Did you mean fork_held_lock?" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["run", "check", "build", "list", "clean", "doctor",
                                     "report"])
def test_every_command_help_has_a_description_examples_and_exit_codes(capsys, command):
    from lab.cli import EXAMPLES

    with pytest.raises(SystemExit):
        main([command, "--help"])
    out = capsys.readouterr().out
    usage, description = out.split("\n\n")[:2]
    assert usage.startswith(f"usage: lab {command}") and len(description.split()) >= 5
    assert "examples:" in out and all(e in out for e in EXAMPLES[command])
    assert out.rstrip().splitlines()[-1].lstrip()[0].isdigit()  # it ends with the exit codes
    from lab.cli import EXIT_CODES

    codes = out.split("exit codes:\n", 1)[1].splitlines()
    assert [c.split()[0] for c in codes] == [code for code, _ in EXIT_CODES[command]]


def test_top_level_help_lists_every_command_with_a_line(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "arguments in, exit code out" not in out  # no maintainer's docstring
    for command in ("run", "check", "build", "list", "clean", "doctor", "report"):
        assert any(line.split()[:1] == [command] and len(line.split()) > 3
                   for line in out.splitlines()), command


def test_quick_says_what_it_changes(capsys):
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "--quick a first look: timing cells stop once their medians are known to 8 % " \
        "instead of 3 %" in out


def test_list_is_a_table_whose_columns_line_up(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-docker.sock")
    assert main(["list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    header = lines[1]
    starts = [header.index(h) for h in ("id", "python", "platform", "needs", "runs here now",
                                        "interpreter")]
    rows = lines[2:lines.index("")]
    assert len(rows) == 16
    for row in rows:
        for col in starts:
            assert row[col] != " " and row[col - 1] == " ", (row, col)
    assert any(r.startswith("*") and " cp39 " in r for r in rows)
    assert all("no: no Docker engine" in r for r in rows)
    assert any("pypy 3.11" in r for r in rows) and any("linux/386" in r for r in rows)
    assert any(" cp314t " in r and "cpython 3.14t" in r and "python-build-standalone" in r
               for r in rows)


def _clidoc():
    """bin/clidoc.py, a maintainer's script outside the package."""
    import importlib.util

    path = Path(__file__).resolve().parents[2] / "bin" / "clidoc.py"
    spec = importlib.util.spec_from_file_location("clidoc", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_cli_reference_matches_the_parsers():
    clidoc = _clidoc()
    assert clidoc.current(clidoc.REFERENCE.read_text()) == clidoc.reference(), (
        "docs/cli.md is stale: run `make docs` (or `.venv/bin/python bin/clidoc.py`)")


def test_the_docs_list_the_eight_claims():
    from lab.report.verdicts import CLAIMS

    readme = (_clidoc().REFERENCE.parent / "claims.md").read_text()
    for number, text in CLAIMS.items():
        assert f"{number}. {text}" in readme


def _terminated_mid_command(then_raise: BaseException | None):
    """A command that receives SIGTERM while it waits, like `lab run` under `timeout`."""
    import os
    import signal

    def command(args):
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the handler interrupts this at once
        except KeyboardInterrupt:
            if then_raise is not None:
                raise then_raise from None
            raise
        raise AssertionError("SIGTERM did not interrupt the command")

    return command


@pytest.mark.parametrize("then_raise", [None, Interrupted("interrupted; kept 3 finished cell(s)")])
def test_sigterm_stops_a_command_like_ctrl_c_and_exits_143(monkeypatch, capsys, then_raise):
    import signal

    import lab.cli

    before = signal.getsignal(signal.SIGTERM)
    monkeypatch.setitem(lab.cli.COMMANDS, "list", _terminated_mid_command(then_raise))
    started = time.monotonic()
    assert main(["list"]) == 143
    assert time.monotonic() - started < 2
    err = capsys.readouterr().err
    assert ("kept 3 finished cell(s) (SIGTERM)" if then_raise else "lab: terminated") in err
    assert signal.getsignal(signal.SIGTERM) is before  # handler restored


def test_ctrl_c_after_a_sigterm_run_still_exits_130(monkeypatch, capsys):
    import lab.cli

    monkeypatch.setitem(lab.cli.COMMANDS, "list", _terminated_mid_command(None))
    assert main(["list"]) == 143

    def ctrl_c(args):
        raise Interrupted("interrupted; kept 0 finished cell(s)")

    monkeypatch.setitem(lab.cli.COMMANDS, "list", ctrl_c)
    assert main(["list"]) == 130
