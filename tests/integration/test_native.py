"""Native stacks of hung processes (issue 27, item 1): py-spy, fetched by the host's pip
against its pinned hash, in the runner layer; read from outside a hung cell whose container
still drops every capability; and a plain "not read" where py-spy cannot read the target."""

from __future__ import annotations

import hashlib
import threading
import zipfile
from pathlib import Path

import pytest

import docker
from lab.images import tools
from lab.images.plan import cache_dir
from lab.matrix import load_matrix
from lab.report.causes import GIL_IN_C, cause_of
from lab.runner.native import HEADING

from .conftest import lab, load_results, only_run, run_cells, scenario

PROGRAMS = Path(__file__).parent / "programs"


@pytest.fixture(scope="module")
def py_spy():
    """The real wheel from the index (the user's pip settings), once, into the real cache."""
    got = tools.ensure("amd64", cache_dir())
    assert not isinstance(got, str), got
    return got


def _hung_fork_child(engine, image_of, target_id, tmp_path, run_id):
    target = load_matrix().get(target_id)
    seen: list[list[str] | None] = []
    done = threading.Event()
    client = docker.from_env()

    def watch():  # every container of this run, inspected while its cells run and hang
        while not done.is_set():
            for c in client.containers.list(filters={"label": f"lab.run={run_id}"}):
                try:
                    seen.append(c.attrs["HostConfig"]["CapDrop"])
                except KeyError:
                    pass
            done.wait(0.2)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        [cell] = run_cells(engine, image_of(target_id), target, tmp_path,
                           [scenario("fork_held_lock", "fork", deadline=3)], run_id=run_id)
    finally:
        done.set()
        watcher.join()
        client.close()
    return cell, seen


def test_a_hung_cpython_child_has_its_native_stack_and_the_container_keeps_no_capability(
        engine, image_of, tmp_path, unique_run_id, py_spy):
    cell, seen = _hung_fork_child(engine, image_of, "cp311", tmp_path, unique_run_id)
    assert cell.outcome == "hung"
    assert seen and all(caps == ["ALL"] for caps in seen), seen
    stacks = cell.stacks or ""
    [child] = [s for s in stacks.split("=== pid") if "(child process)" in s]
    assert HEADING in child
    native = child.split(HEADING, 1)[1]
    assert 'Thread ' in native and '"MainThread"' in native and "(idle)" in native
    assert native.lstrip().startswith("GIL holder: none\n")  # it waits with the GIL released
    assert "PyThread_acquire_lock" in native  # the C frame under the Python one
    assert "child_takes_lock (labrunner/scenarios/fork_held_lock.py:24)" in native


def test_pypy_says_its_native_stacks_are_not_read_and_keeps_faulthandlers(
        engine, image_of, tmp_path, unique_run_id, py_spy):
    cell, _ = _hung_fork_child(engine, image_of, "pp311", tmp_path, unique_run_id)
    assert cell.outcome == "hung"
    stacks = cell.stacks or ""
    assert stacks.startswith("(native stacks not read: py-spy reads CPython only and this is "
                             "PyPy; faulthandler's stacks follow)")
    assert HEADING not in stacks and "in child_takes_lock" in stacks


def _wheel(path):
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(f"py_spy-{tools.PY_SPY_VERSION}.data/scripts/py-spy", b"\x7fELF not it")
        z.writestr(f"py_spy-{tools.PY_SPY_VERSION}.dist-info/METADATA", "Name: py-spy\n")
    return path


def test_a_wheel_that_does_not_match_the_pinned_hash_is_refused(tmp_path):
    """Real pip, offline, from a wheelhouse whose wheel has the right name and the wrong
    bytes: --require-hashes refuses it, in one line, and nothing is cached."""
    house = tmp_path / "house"
    house.mkdir()
    whl = _wheel(house / (f"py_spy-{tools.PY_SPY_VERSION}-py2.py3-none-manylinux1_x86_64."
                          "manylinux_2_5_x86_64.whl"))
    assert hashlib.sha256(whl.read_bytes()).hexdigest() != tools.PY_SPY_WHEELS["amd64"].sha256
    got = tools.ensure("amd64", tmp_path / "cache", wheelhouse=house)
    assert isinstance(got, str) and "cannot get py-spy" in got
    assert "sha256 is not the one the lab pins" in got
    assert "\n" not in got and tools.cached("amd64", tmp_path / "cache") is None


def test_prepare_says_per_architecture_what_hung_cells_will_lack(tmp_path):
    m = load_matrix()
    targets = [m.get("cp314-arm64"), m.get("cp311"), m.get("pp311")]
    lines = tools.prepare(targets, tmp_path / "cache", wheelhouse=tmp_path)  # an empty house
    assert len(lines) == 2
    assert any("arm64" in x and "emulation" in x and "of cp314-arm64 keep" in x for x in lines)
    assert any("in the wheelhouse" in x and "hung cells of cp311, pp311 keep faulthandler's"
               in x for x in lines)


def test_deps_export_puts_py_spy_in_the_wheelhouse_for_an_offline_run(tmp_path, monkeypatch):
    house = tmp_path / "house"
    written, lacking = tools.export([load_matrix().get("cp311")], house)
    assert lacking == [] and [p.name for p in house.iterdir()] == written
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")  # no index from here on
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    got = tools.ensure("amd64", tmp_path / "cache", wheelhouse=house)
    assert not isinstance(got, str), got
    assert got.stat().st_mode & 0o111 and got.stat().st_size > 1 << 20


def test_a_thread_asleep_in_c_with_the_gil_is_named_as_its_holder(tmp_path, py_spy):
    """py-spy's own text says "idle" for every waiting thread, GIL or not; the runner's layout
    of its JSON names the holder, and the hang is named from it."""
    out = tmp_path / "runs"
    proc = lab("check", "--targets", "cp311,cp314", "--start-methods", "fork", "--timeout",
               "4", "--out", str(out), "--no-progress", str(PROGRAMS / "gil_in_c.py"))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    run = only_run(out)
    cells = [c for c in load_results(run)["results"] if c["scenario"] == "check:gil_in_c.py"]
    assert {c["target"] for c in cells} == {"cp311", "cp314"}
    for cell in cells:
        assert cell["outcome"] == "hung", cell["detail"]
        native = cell["stacks"].split(HEADING, 1)[1]
        assert '\nGIL holder: thread ' in native and ' "gil-holder" (idle+gil)\n' in native
        assert 'Thread ' in native and '(idle+gil): "gil-holder"' in native
        assert "(idle): \"MainThread\"" in native  # waiting for the GIL, without it
        why = cause_of(cell["stacks"], "fork")
        assert why.name == GIL_IN_C and "under hold_the_gil (gil_in_c.py:9)" in why.evidence
    html = (run / "index.html").read_text()
    assert GIL_IN_C in html and 'GIL holder (py-spy): thread ' in html
    assert GIL_IN_C in proc.stdout  # the terminal's findings name it too
