"""`lab test` against the real engine on the six default targets: the example suite
(docs/examples/workers), copied out of the repo, with its requirements installed per target;
each test's outcome per start method, the hung test named with its stacks while the tests
after it still ran, a conftest.py that forces spawn reported as forced, the exit codes and
junit.xml."""

from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ET

import jsonschema
import pytest

from .conftest import REPO, lab, load_results, only_run

SCHEMA = json.loads((REPO / "lab" / "schema" / "results.schema.json").read_text())
EXAMPLE = REPO / "docs" / "examples" / "workers"
SIX = ["cp39", "cp311", "cp313", "cp314", "cp315", "pp311"]
FORKSERVER_DEFAULT = {"cp314", "cp315"}
METHODS = ("default", "fork", "spawn", "forkserver")
HANG = "test_workers.py::test_lock_held_by_a_thread_at_fork"
LAMBDA = "test_workers.py::test_lambda_target"
PASS_EVERYWHERE = ("test_workers.py::test_pool_squares", "test_workers.py::test_after_the_hang",
                   "test_uses_attrs.py::test_attrs_from_the_requirements")

# alone: 24 pytest runs at once load the machine enough to push other tests' runs past
# their deadlines, and this one's own 8 s test deadline is an observation too.
pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.alone]


def run_suite(tmp_path_factory, *args: str, conftest: str | None = None,
              targets: list[str] = SIX):
    project = tmp_path_factory.mktemp("project") / "workers"
    shutil.copytree(EXAMPLE, project)
    if conftest is not None:
        (project / "conftest.py").write_text(conftest)
    out = tmp_path_factory.mktemp("runs")
    proc = lab("test", "--targets", ",".join(targets), "--test-timeout", "8", "--out",
               str(out), "--no-progress", "-r", str(project / "requirements.txt"), *args,
               cwd=project.parent)
    run = only_run(out)
    return proc, load_results(run), run


def per_test(data: dict) -> dict[tuple[str, str], dict[str, list]]:
    return {(c["target"], c["start_method"]): {t[0]: t[1:] for t in c["measurements"]["tests"]}
            for c in data["results"] if c["scenario"] == "test:workers"}


@pytest.fixture(scope="module")
def six(tmp_path_factory):
    return run_suite(tmp_path_factory, "workers")


def test_each_test_has_its_outcome_per_start_method_and_target(six):
    proc, data, run = six
    assert proc.returncode == 1, proc.stdout + proc.stderr  # tests failed and hung
    jsonschema.validate(data, SCHEMA)
    runs = per_test(data)
    assert set(runs) == {(t, m) for t in SIX for m in METHODS}
    for (tid, method), tests in runs.items():
        used = method if method != "default" else (
            "forkserver" if tid in FORKSERVER_DEFAULT else "fork")
        for name in PASS_EVERYWHERE:  # attrs: installed from the requirements, per target
            assert tests[name][0] == "passed", (tid, method, name, tests[name])
        if used == "fork":
            assert tests[LAMBDA][0] == "passed"
            assert tests[HANG][0] == "hung", (tid, method, tests[HANG])
        else:
            assert tests[LAMBDA][0] == "failed" and "<locals>.<lambda>" in tests[LAMBDA][1]
            assert tests[HANG][0] == "passed", (tid, method, tests[HANG])
    cell = next(c for c in data["results"]
                if (c["target"], c["start_method"]) == ("cp313", "fork")
                and c["scenario"] == "test:workers")
    assert cell["outcome"] == "hung" and HANG in cell["detail"]
    assert f"### {HANG} hung" in cell["stacks"]
    assert "take_the_lock" in cell["stacks"]  # the child's own stack: where it waits
    assert cell["measurements"]["attempts"] == 2  # it went on after the hang
    deps = {t["id"]: t["dependencies"] for t in data["targets"] if t["id"] in SIX}
    assert all(any(p["name"] == "attrs" for p in d["installed"]) for d in deps.values())
    assert all(any(p["name"] == "pytest" for p in d["installed"]) for d in deps.values())


def test_the_terminal_names_the_differing_tests_grouped(six):
    proc, _, _ = six
    out = proc.stdout
    assert "tests: 5 in 24 of 24 runs; 3 pass in every run" in out
    lam = next(line for line in out.splitlines() if line.startswith(f"  {LAMBDA}: "))
    assert "fails under spawn and forkserver on every target and under default on " \
           "cp314, cp315" in lam and "<locals>.<lambda>" in lam
    hang = next(line for line in out.splitlines() if line.startswith(f"  {HANG}: "))
    assert "hangs under fork on every target and under default on cp39, cp311, cp313, " \
           "pp311" in hang
    assert "claims:" not in out


def test_junit_has_every_test_of_every_run_named_with_target_and_method(six):
    _, _, run = six
    root = ET.parse(run / "junit.xml").getroot()
    cases = {c.get("name"): c for c in root.iter("testcase") if "::" in (c.get("name") or "")}
    assert len(cases) == 5 * 24
    hung = cases[f"{HANG} [cp311 fork]"]
    assert hung.get("classname") == "cp311.fork"
    assert hung.find("failure").get("type") == "hung"
    assert cases[f"{LAMBDA} [cp314 default]"].find("failure") is not None
    assert cases[f"{LAMBDA} [cp313 default]"].find("failure") is None
    assert not list(cases[f"{PASS_EVERYWHERE[0]} [pp311 spawn]"])


def test_a_conftest_that_forces_spawn_is_reported_as_forced(tmp_path_factory):
    proc, data, run = run_suite(
        tmp_path_factory, "workers", "--", "-k", "lambda or pool",
        conftest="import multiprocessing\nmultiprocessing.set_start_method('spawn', "
                 "force=True)\n")
    assert proc.returncode == 1
    for (tid, method), tests in per_test(data).items():
        assert tests[LAMBDA][0] == "failed", (tid, method)  # spawn in every run
        assert set(tests) == {LAMBDA, PASS_EVERYWHERE[0]}  # -k reached pytest
    forced = next(line for line in proc.stdout.splitlines() if "forced" in line)
    assert "the suite chose spawn itself (set_start_method('spawn', force=True) at " \
           "conftest.py:2)" in forced
    assert "cp39 fork" in forced and "cp314 default" in forced and "cp39 spawn" not in forced
    html = (run / "index.html").read_text()
    assert "the suite chose spawn itself" in html


def test_exit_0_when_every_counted_run_passes(tmp_path_factory):
    proc, data, _ = run_suite(tmp_path_factory, "--fail-on", "fork", "workers", "--", "-k",
                              "lambda or pool", targets=["cp311", "cp314"])
    assert proc.returncode == 0, proc.stdout + proc.stderr  # lambda fails, but not under fork
    assert any(t[1] == "failed" for c in data["results"] for t in
               c["measurements"].get("tests", []))
