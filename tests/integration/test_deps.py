"""A user's dependencies against the real engine: real packages from PyPI installed by each
target's own interpreter, a second run that fetches nothing, a pin one target cannot have, and
the paths that need no internet: a local wheelhouse with no network at all, and a local index
served on 127.0.0.1."""

from __future__ import annotations

import base64
import csv
import hashlib
import http.server
import importlib.metadata
import io
import os
import re
import textwrap
import threading
import time
import uuid
import zipfile
from pathlib import Path

import pytest

from lab.results import TargetStatus

from .conftest import lab, load_results, only_run

SIX = ["cp39", "cp311", "cp313", "cp314", "cp315", "pp311"]
# What the program prints from inside each run: the versions it imported, under its method.
APP = textwrap.dedent('''
    import multiprocessing
    import sys

    import attr

    try:
        import numpy
    except ImportError:  # where the requirement's marker leaves it out (PyPy)
        numpy = None


    @attr.s
    class Job:
        n = attr.ib()


    def work(job):
        return int(numpy.arange(job.n).sum()) if numpy else sum(range(job.n))


    if __name__ == "__main__":
        with multiprocessing.Pool(2) as pool:
            assert pool.map(work, [Job(3), Job(4)]) == [3, 6]
        print("numpy", numpy.__version__ if numpy else None, "attrs", attr.__version__,
              sys.implementation.name)
''')
INTERPRETER_TAG = {"cp39": "cp39-cp39-", "cp311": "cp311-cp311-", "cp313": "cp313-cp313-",
                   "cp314": "cp314-cp314-", "cp315": "cp315-cp315-", "pp311": "pp311-pypy311"}


def program(tmp_path_factory, text: str, name: str = "app.py") -> Path:
    home = tmp_path_factory.mktemp("mine")
    (home / name).write_text(text)
    return home / name


def targets_of(data: dict) -> dict[str, dict]:
    return {t["id"]: t for t in data["targets"]}


def test_six_targets_each_get_their_own_wheels_and_a_second_run_fetches_nothing(
        tmp_path_factory):
    app = program(tmp_path_factory, APP)
    # The marker is evaluated by each target's own interpreter: PyPy gets attrs only. The
    # constraint names no package that is installed, and makes this test's requirements its
    # own: the first run fetches, whatever an earlier run of the test left on the engine.
    (app.parent / "pins.txt").write_text(f"labtest-run-{uuid.uuid4().hex}==0\n")
    (app.parent / "requirements.txt").write_text(
        "-c pins.txt\nattrs\nnumpy ; implementation_name == 'cpython'\n")
    out = tmp_path_factory.mktemp("runs")
    args = ("check", "--targets", ",".join(SIX), "--timeout", "60", "--out", str(out),
            "--no-progress", "--requirements", str(app.parent / "requirements.txt"), str(app))
    started = time.monotonic()
    first = lab(*args)
    first_s = time.monotonic() - started
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    run = only_run(out)
    data = load_results(run)
    assert data["schema_version"] >= 6
    numpy_of = {}
    for tid, t in targets_of(data).items():
        deps = t["dependencies"]
        got = {p["name"].lower(): p for p in deps["installed"]}
        assert deps["reused"] is False and deps["source"] == "index"
        assert got["attrs"]["tags"] == "py3-none-any"
        assert deps["interpreter_tag"].startswith(INTERPRETER_TAG[tid]), deps
        if tid == "pp311":
            assert "numpy" not in got, got
            continue
        # The wheel the target's own interpreter chose carries the target's own tags, and its
        # hash is the file's.
        assert got["numpy"]["tags"].startswith(INTERPRETER_TAG[tid]), (tid, got["numpy"])
        assert re.fullmatch(r"[0-9a-f]{64}", got["numpy"]["sha256"] or ""), got["numpy"]
        numpy_of[tid] = got["numpy"]["version"]
        # The program imported exactly what was recorded, under every start method.
        for c in data["results"]:
            if c["target"] == tid and c["scenario"] == "check:app.py":
                assert c["outcome"] == "ok", (tid, c["start_method"], c["detail"])
                assert f"numpy {got['numpy']['version']} attrs" in c["output"], c["output"]
    # Versions differ per target, as the wheels on PyPI do: the oldest and newest CPython do
    # not share a numpy.
    assert numpy_of["cp39"] != numpy_of["cp315"], numpy_of
    html = (run / "index.html").read_text()
    assert "Your dependencies, per target" in html
    for tid in SIX:
        assert f'id="deps-{tid}"' in html and (tid == "pp311" or numpy_of[tid] in html)

    out2 = tmp_path_factory.mktemp("runs")
    started = time.monotonic()
    second = lab(*[out2.as_posix() if a == str(out) else a for a in args])
    second_s = time.monotonic() - started
    assert second.returncode == 0, second.stdout[-3000:]
    again = targets_of(load_results(only_run(out2)))
    for tid, t in targets_of(data).items():
        assert again[tid]["dependencies"]["reused"] is True, tid  # nothing fetched
        assert again[tid]["dependencies"]["image_id"] == t["dependencies"]["image_id"]
        assert again[tid]["dependencies"]["installed"] == t["dependencies"]["installed"]
    print(f"first run {first_s:.0f} s, second {second_s:.0f} s")


def test_a_pin_a_target_cannot_have_makes_it_unavailable_and_the_others_run(tmp_path_factory):
    """numpy 2.3.0 needs Python >= 3.11, so 3.9 finds no version; on this machine's PyPy (its
    own ABI tag) it has no wheel, and its sdist cannot build in the image. Each is one line;
    the CPython 3.11 run goes on."""
    app = program(tmp_path_factory, "import numpy\nprint('numpy', numpy.__version__)\n")
    out = tmp_path_factory.mktemp("runs")
    proc = lab("check", "--targets", "cp39,cp311,pp311", "--start-methods", "default",
               "--out", str(out), "--no-progress", "--with", "numpy==2.3.0", str(app))
    assert proc.returncode == 1, proc.stdout
    data = load_results(only_run(out))
    rows = targets_of(data)
    reasons = {tid: rows[tid]["reason"] for tid in ("cp39", "pp311")}
    for tid, reason in reasons.items():
        assert rows[tid]["status"] == TargetStatus.UNAVAILABLE, rows[tid]
        assert "\n" not in reason.strip(), reason
        assert f"{tid}: unavailable: {reason}" in proc.stdout  # the terminal says why
    assert reasons["cp39"].startswith("cp39: no numpy==2.3.0 for cp39-cp39-"), reasons
    assert "offers" in reasons["cp39"] and "2.0.2" in reasons["cp39"]  # what 3.9 can have
    assert reasons["pp311"].startswith("pp311: numpy has no wheel for pp311-pypy311_"), reasons
    assert "offers only its sdist" in reasons["pp311"]
    assert rows["cp311"]["status"] == TargetStatus.OK
    cell = next(c for c in data["results"] if c["target"] == "cp311"
                and c["scenario"] == "check:app.py")
    assert cell["outcome"] == "ok" and "numpy 2.3.0" in cell["output"]


# -- no internet ------------------------------------------------------------------------------
def wheel(dest: Path, name: str, version: str, files: dict[str, bytes]) -> Path:
    """A real wheel, made here: the files, METADATA, WHEEL and a RECORD with their hashes."""
    info = f"{name}-{version}.dist-info"
    files = {**files,
             f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
                                 .encode(),
             f"{info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: lab-tests\nRoot-Is-Purelib: true\n"
                              b"Tag: py3-none-any\n"}
    record = io.StringIO()
    writer = csv.writer(record, lineterminator="\n")
    for path, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        writer.writerow([path, f"sha256={digest}", len(data)])
    writer.writerow([f"{info}/RECORD", "", ""])
    path = dest / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as z:
        for name_, data in {**files, f"{info}/RECORD": record.getvalue().encode()}.items():
            z.writestr(name_, data)
    return path


def pip_wheel_of_this_host(dest: Path) -> Path:
    """This virtualenv's own pip, as a wheel (what a wheelhouse needs to run pip offline)."""
    dist = importlib.metadata.distribution("pip")
    files = {str(f): dist.locate_file(f).read_bytes() for f in dist.files or []
             if "__pycache__" not in str(f) and not str(f).startswith("..")
             and dist.locate_file(f).is_file()}
    path = dest / f"pip-{dist.version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in files.items():
            z.writestr(name, data)
    return path


@pytest.fixture
def wheelhouse(tmp_path) -> Path:
    house = tmp_path / "wheelhouse"
    house.mkdir()
    pip_wheel_of_this_host(house)
    wheel(house, "labdemo", "1.0", {"labdemo/__init__.py": b"WHERE = 'made by the tests'\n"})
    return house


DEMO = "import labdemo\nprint('labdemo says', labdemo.WHERE)\n"


def test_a_wheelhouse_installs_with_no_network_at_all(tmp_path_factory, wheelhouse, tmp_path):
    app = program(tmp_path_factory, DEMO)
    out = tmp_path_factory.mktemp("runs")
    env = {**os.environ, "LAB_CACHE_DIR": str(tmp_path / "cache"),  # no pip cached either
           "PIP_INDEX_URL": "http://127.0.0.1:1/unreachable"}  # ignored: offline
    proc = lab("check", "--targets", "cp311,cp314", "--start-methods", "default,spawn",
               "--out", str(out), "--no-progress", "--wheelhouse", str(wheelhouse),
               "--with", "labdemo", str(app), env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    data = load_results(only_run(out))
    for t in data["targets"]:
        deps = t["dependencies"]
        assert deps["network"] == "none" and deps["source"] == "wheelhouse", deps
        assert [p["name"] for p in deps["installed"]] == ["labdemo"]
    assert all("labdemo says made by the tests" in c["output"] for c in data["results"]
               if c["scenario"] == "check:app.py")


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def serve_index(house: Path, root: Path) -> tuple[http.server.ThreadingHTTPServer, str]:
    """A PEP 503 simple index of ``house``'s wheels on 127.0.0.1, as a private index is."""
    for w in house.glob("*.whl"):
        project = w.name.split("-")[0].lower()
        page = root / "simple" / project
        page.mkdir(parents=True, exist_ok=True)
        sha = hashlib.sha256(w.read_bytes()).hexdigest()
        (page / w.name).write_bytes(w.read_bytes())
        (page / "index.html").write_text(f'<a href="{w.name}#sha256={sha}">{w.name}</a>\n')
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), lambda *a: _Quiet(*a, directory=str(root)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/simple"


def test_a_local_index_is_used_through_the_host_s_pip_settings_and_exported(
        tmp_path_factory, wheelhouse, tmp_path):
    server, url = serve_index(wheelhouse, tmp_path / "index")
    try:
        env = {**os.environ, "LAB_CACHE_DIR": str(tmp_path / "cache"), "PIP_INDEX_URL": url}
        env.pop("PIP_FIND_LINKS", None)
        app = program(tmp_path_factory, DEMO)
        out = tmp_path_factory.mktemp("runs")
        proc = lab("check", "--targets", "cp311", "--start-methods", "default", "--out",
                   str(out), "--no-progress", "--with", "labdemo==1.0", str(app), env=env)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        deps = targets_of(load_results(only_run(out)))["cp311"]["dependencies"]
        assert deps["network"] == "host" and deps["source"] == "index", deps
        demo = next(p for p in deps["installed"] if p["name"] == "labdemo")
        made = wheelhouse / "labdemo-1.0-py3-none-any.whl"
        assert demo["sha256"] == hashlib.sha256(made.read_bytes()).hexdigest()

        export = tmp_path / "exported"
        proc = lab("deps", "export", str(export), "--targets", "cp311", "--with", "labdemo",
                   env=env)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        names = sorted(p.name for p in export.iterdir())
        assert "labdemo-1.0-py3-none-any.whl" in names and any(n.startswith("pip-")
                                                               for n in names), names
    finally:
        server.shutdown()
        server.server_close()


def test_a_project_with_extras_and_a_scenario_file_that_requires_a_package(tmp_path_factory):
    """--project DIR[extra] builds and installs the project as pip install would (its build
    backend fetched by pip), with the extra's requirement; a scenario file's REQUIRES is
    installed for lab run the same way, and its ENV reaches its cells."""
    proj = tmp_path_factory.mktemp("proj")
    (proj / "pyproject.toml").write_text(textwrap.dedent('''
        [build-system]
        requires = ["setuptools>=61"]
        build-backend = "setuptools.build_meta"

        [project]
        name = "labproj"
        version = "0.3"

        [project.optional-dependencies]
        fast = ["attrs"]
    '''))
    (proj / "labproj").mkdir()
    (proj / "labproj" / "__init__.py").write_text("def twice(x):\n    return 2 * x\n")
    app = program(tmp_path_factory, "import attr, labproj\nprint('twice', labproj.twice(21))\n")
    out = tmp_path_factory.mktemp("runs")
    proc = lab("check", "--targets", "cp311", "--start-methods", "default,spawn", "--out",
               str(out), "--no-progress", "--project", f"{proj}[fast]", str(app))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    data = load_results(only_run(out))
    deps = targets_of(data)["cp311"]["dependencies"]
    got = {p["name"]: p for p in deps["installed"]}
    assert got["labproj"]["version"] == "0.3" and got["labproj"]["tags"] == "a folder, built here"
    assert "attrs" in got, got
    assert deps["requested"] == [f"{proj.name}[fast] (project)"]
    assert all("twice 42" in c["output"] for c in data["results"]
               if c["scenario"] == "check:app.py")

    scenario = tmp_path_factory.mktemp("scen") / "needs_attrs.py"
    scenario.write_text(textwrap.dedent('''
        """attrs is importable in every child, under every start method."""
        import os

        KIND = "behaviour"
        START_METHODS = "each"
        DEADLINE_S = 60
        REQUIRES = ["attrs"]
        ENV = {"TEST_GREETING": "hello"}


        def report(conn):
            import attr
            conn.send((attr.__version__, os.environ.get("TEST_GREETING")))


        def run(ctx):
            recv, send = ctx.mp.Pipe(duplex=False)
            child = ctx.start_child(report, send)
            version, greeting = recv.recv()
            child.join()
            ctx.record("attrs", version)
            ctx.record("greeting", greeting)
    '''))
    out = tmp_path_factory.mktemp("runs")
    proc = lab("run", "--targets", "cp311", "--scenarios", "probe", "--scenario-file",
               str(scenario), "--out", str(out), "--no-progress")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    data = load_results(only_run(out))
    cells = [c for c in data["results"] if c["scenario"] == "needs_attrs"]
    assert len(cells) == 3 and all(c["outcome"] == "ok" for c in cells), cells
    installed = {p["name"]: p["version"] for p in
                 targets_of(data)["cp311"]["dependencies"]["installed"]}
    assert all(c["measurements"]["attrs"] == installed["attrs"] for c in cells)
    assert all(c["measurements"]["greeting"] == "hello" for c in cells)
    assert data["run"]["scenarios"]["needs_attrs"]["requires"] == ["attrs"]
