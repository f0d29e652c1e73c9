"""PYTHON_GIL (a target's ``python_gil``) reaches every process of a cell, and each cell records
the GIL state it ran with. No free-threaded build can be had here, so PYTHON_GIL=1 on the
default builds of 3.13 and 3.14 (where it is accepted and the GIL stays on) shows the way it
travels: to the cell, and to a child under fork, spawn and forkserver (3.14's default)."""

from __future__ import annotations

from .conftest import lab, load_results, only_run

TARGETS = """
[[target]]
id = "{tid}-gil1"
implementation = "cpython"
version = "{version}"
python = "/usr/bin/python{version}"
base = "{base}"
default = false
python_gil = 1
"""


def test_python_gil_reaches_every_child_and_cells_record_the_gil_they_ran_with(engine,
                                                                               tmp_path):
    (tmp_path / "lab.toml").write_text(
        TARGETS.format(tid="cp313", version="3.13", base="trixie")
        + TARGETS.format(tid="cp314", version="3.14", base="sid"))
    r = lab("run", "--config", str(tmp_path / "lab.toml"), "--targets",
            "cp313-gil1,cp314-gil1,cp311,cp314", "--scenarios", "probe,fork_held_lock",
            "--out", str(tmp_path / "runs"), "--no-progress")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    data = load_results(only_run(tmp_path / "runs"))
    rows = {t["id"]: t for t in data["targets"]}
    for tid in ("cp313-gil1", "cp314-gil1"):
        probe = rows[tid]["probe"]
        assert rows[tid]["python_gil"] == "1" and probe["python_gil_env"] == "1"
        assert probe["py_gil_disabled"] == 0 and probe["gil_enabled"] is True
        assert probe["children_gil"] == {m: {"gil_enabled": True, "python_gil": "1"}
                                         for m in ("fork", "spawn", "forkserver")}, probe
    assert rows["cp314"]["probe"]["python_gil_env"] is None
    assert {m: v["python_gil"] for m, v in rows["cp314"]["probe"]["children_gil"].items()} == {
        "forkserver": None, "fork": None, "spawn": None}
    # 3.11 has no sys._is_gil_enabled: not exposed, in its probe and in its cells
    assert rows["cp311"]["probe"]["children_gil"]["spawn"] == {"gil_enabled": None,
                                                               "python_gil": None}
    cells = data["results"]
    assert len(cells) == 4 * 4
    for c in cells:
        if c["target"] == "cp311":
            assert c["gil_enabled"] is None, c
        elif c["outcome"] == "hung":  # killed before it could say, or while it exited
            assert c["gil_enabled"] in (None, True), c
        else:
            assert c["gil_enabled"] is True, c
    # the probes at least (fork_held_lock's spawn and forkserver cells hang now and then
    # under CI's load, at their 6 s deadline)
    assert {c["target"] for c in cells if c["gil_enabled"] is True} == {
        "cp313-gil1", "cp314-gil1", "cp314"}
    html = (only_run(tmp_path / "runs") / "index.html").read_text()
    assert "PYTHON_GIL=1" in html
