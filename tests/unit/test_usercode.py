"""Scenario files and `lab check` input: read without executing, bad input is one line, and
copies are made without following symlinks."""

from __future__ import annotations

import os
import stat
import textwrap
from pathlib import Path

import pytest

from lab.cli import main
from lab.errors import ConfigError
from lab.run.usercode import check_spec, load_scenario_file, load_scenario_files, stage_user_dir

GOOD = '''
"""The claim."""
KIND = "timing"
START_METHODS = ["spawn", "fork"]
DEADLINE_S = 12.5

def run(ctx):
    raise SystemExit("never executed on the host")
'''


def write(tmp: Path, name: str, text: str) -> Path:
    path = tmp / name
    path.write_text(textwrap.dedent(text))
    return path


def test_a_scenario_file_is_read_not_executed(tmp_path):
    sf = load_scenario_file(write(tmp_path, "mine.py", GOOD))
    assert (sf.id, sf.kind, sf.start_methods, sf.deadline_s) == ("mine", "timing",
                                                                 ("spawn", "fork"), 12.5)
    assert sf.title == "The claim." and sf.claim == "The claim."
    assert sf.meta()["source"] == str(tmp_path / "mine.py")


@pytest.mark.parametrize(("name", "text", "says"), [
    ("mine.py", GOOD.replace('KIND = "timing"', 'KIND = "fast"'), "KIND must be one of"),
    ("mine.py", GOOD.replace('["spawn", "fork"]', '["thread"]'), "START_METHODS must be"),
    ("mine.py", GOOD.replace('["spawn", "fork"]', "METHODS"), "plain literal"),
    ("mine.py", GOOD.replace("12.5", "0"), "DEADLINE_S must be"),
    ("mine.py", GOOD.replace("def run(ctx)", "def go(ctx)"), r"defines no `run\(ctx\)`"),
    ("mine.py", GOOD + "\ndef broken(:\n", "not valid Python"),
    ("my-scenario.py", GOOD, "must be a Python identifier"),
    ("probe.py", GOOD, "is a built-in scenario id"),
])
def test_bad_scenario_files_are_one_line_that_says_what_to_do(tmp_path, name, text, says):
    with pytest.raises(ConfigError, match=says) as info:
        load_scenario_file(write(tmp_path, name, text))
    assert len(str(info.value).splitlines()) == 1


def test_two_scenario_files_with_one_name_are_refused(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with pytest.raises(ConfigError, match="two scenario files are named 'mine'"):
        load_scenario_files([write(tmp_path / "a", "mine.py", GOOD),
                             write(tmp_path / "b", "mine.py", GOOD)])


def test_check_input_errors(tmp_path):
    script = write(tmp_path, "prog.py", "print(1)\n")
    with pytest.raises(ConfigError, match="no such file"):
        check_spec(tmp_path / "nope.py", [], [], ["fork"], 10)
    with pytest.raises(ConfigError, match="--start-methods: thread"):
        check_spec(script, [], [], ["fork", "thread"], 10)
    with pytest.raises(ConfigError, match="--timeout"):
        check_spec(script, [], [], ["fork"], 0)
    with pytest.raises(ConfigError, match="--file .*missing"):
        check_spec(script, [], [tmp_path / "missing"], ["fork"], 10)


def test_staging_copies_what_was_named_readable_by_all_without_following_links(tmp_path):
    home = tmp_path / "proj"
    (home / "pkg").mkdir(parents=True)
    script = write(home, "prog.py", "import pkg\n")
    write(home, "sibling.py", "# not named, but in the program's folder\n")
    write(home / "pkg", "__init__.py", "X = 1\n")
    (home / "pkg" / "__pycache__").mkdir()
    (home / "pkg" / "__pycache__" / "junk.pyc").write_bytes(b"x")
    secret = write(tmp_path, "secret.txt", "host secret")
    os.symlink(secret, home / "pkg" / "leak.txt")
    other = tmp_path / "elsewhere"
    other.mkdir()
    data = write(other, "data.csv", "a,b\n")
    old = os.umask(0o077)
    try:
        spec = check_spec(script, ["x"], [home / "pkg", data], ["default"], 10)
        user = stage_user_dir(tmp_path / "user", [], spec)
    finally:
        os.umask(old)
    assert user is not None
    got = sorted(p.relative_to(user).as_posix() for p in user.rglob("*"))
    assert got == ["script", "script/data.csv", "script/pkg", "script/pkg/__init__.py",
                   "script/prog.py", "script/sibling.py"]
    for p in [user, *user.rglob("*")]:
        mode = stat.S_IMODE(p.stat().st_mode)
        assert mode == (0o755 if p.is_dir() else 0o644), (p, oct(mode))


def test_runs_kept_under_the_programs_folder_are_not_copied(tmp_path):
    script = write(tmp_path, "prog.py", "print(1)\n")
    (tmp_path / "reports" / "old-run").mkdir(parents=True)
    (tmp_path / "reports" / "old-run" / "index.html").write_text("old")
    spec = check_spec(script, [], [], ["fork"], 10)
    user = stage_user_dir(tmp_path / "reports" / "new-run" / "work" / "user", [], spec)
    assert user is not None
    assert sorted(p.name for p in (user / "script").iterdir()) == ["prog.py"]


def test_a_program_in_a_crowded_folder_is_refused_with_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setattr("lab.run.usercode.MAX_COPY_FILES", 3)
    for i in range(5):
        write(tmp_path, f"f{i}.txt", "x")
    spec = check_spec(write(tmp_path, "prog.py", "print(1)\n"), [], [], ["fork"], 10)
    with pytest.raises(ConfigError, match="folder of its own") as info:
        stage_user_dir(tmp_path / "runs" / "user", [], spec)
    assert len(str(info.value).splitlines()) == 1


def test_cli_check_bad_input_is_exit_2_and_one_line(capsys, tmp_path):
    code = main(["check", "--start-methods", "fork,thread", "--out", str(tmp_path / "runs"),
                 str(write(tmp_path, "prog.py", "print(1)\n"))])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "thread" in err
    assert not (tmp_path / "runs").exists()


def test_cli_run_bad_scenario_file_is_exit_2_and_one_line(capsys, tmp_path):
    bad = write(tmp_path, "mine.py", GOOD.replace("12.5", "-1"))
    code = main(["run", "--scenario-file", str(bad), "--out", str(tmp_path / "runs")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "DEADLINE_S" in err
    assert not (tmp_path / "runs").exists()
