"""`lab test`'s runner side with the host interpreter (no Docker): a pytest suite per start
method, each test's outcome read from the lab's plugin, a hung test named with its stacks while
the tests after it still run, and a suite that forces its own start method seen."""

from __future__ import annotations

import multiprocessing
import shutil
from pathlib import Path

import pytest

from lab.run.usercode import stage_user_dir, suite_spec

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "workers"
METHODS = [m for m in ("fork", "spawn", "forkserver")
           if m in multiprocessing.get_all_start_methods()]


def suite_cells(tmp: Path, project: Path, methods: tuple[str, ...], *,
                args: tuple[str, ...] = (), test_timeout: float = 4.0):
    spec = suite_spec(project, args, methods, timeout_s=120, test_timeout_s=test_timeout)
    user = stage_user_dir(tmp / "user", [], spec)
    assert user is not None
    meta = spec.meta()
    cells = [{"scenario": spec.id, "start_method": m, "deadline_s": spec.timeout_s,
              "script": meta["script"]} for m in methods]
    return user, cells


def outcomes_in(rec):
    return {t[0]: (t[1], t[2]) for t in rec["measurements"]["tests"]}


@pytest.mark.slow
def test_every_test_has_its_outcome_and_a_hung_one_is_named_while_the_rest_run(runner, tmp_path):
    user, cells = suite_cells(tmp_path, EXAMPLE, tuple(METHODS))
    recs = runner(cells, user_dir=user)
    fork = recs[("test:workers", "fork")]
    got = outcomes_in(fork)
    assert fork["outcome"] == "hung", fork["detail"]
    assert got["test_workers.py::test_lock_held_by_a_thread_at_fork"][0] == "hung"
    assert got["test_workers.py::test_after_the_hang"][0] == "passed"  # ran after the hang
    assert got["test_workers.py::test_pool_squares"][0] == "passed"
    assert got["test_workers.py::test_lambda_target"][0] == "passed"
    assert got["test_uses_attrs.py::test_attrs_from_the_requirements"][0] == "passed"
    assert "### test_workers.py::test_lock_held_by_a_thread_at_fork hung" in fork["stacks"]
    assert "take_the_lock" in fork["stacks"]  # the child's stack: where it waits
    assert fork["measurements"]["attempts"] == 2
    for method in METHODS:
        if method == "fork":
            continue
        rec = recs[("test:workers", method)]
        got = outcomes_in(rec)
        assert rec["outcome"] == "failed", rec["detail"]
        lam = got["test_workers.py::test_lambda_target"]
        assert lam[0] == "failed" and "pickle" in lam[1].lower(), lam
        assert got["test_workers.py::test_lock_held_by_a_thread_at_fork"][0] == "passed"
        assert rec["measurements"]["start_method_in_effect"] == method
        assert rec["measurements"]["start_method_choices"] == []


def test_a_suite_that_forces_spawn_is_seen_with_where_it_did_it(runner, tmp_path):
    project = tmp_path / "forced"
    shutil.copytree(EXAMPLE, project)
    (project / "conftest.py").write_text(
        "import multiprocessing\nmultiprocessing.set_start_method('spawn', force=True)\n")
    user, cells = suite_cells(tmp_path, project, ("fork",),
                              args=("-k", "lambda or pool"))
    rec = runner(cells, user_dir=user)[("test:forced", "fork")]
    choice, = rec["measurements"]["start_method_choices"]
    assert choice["method"] == "spawn" and choice["force"] is True
    assert choice["where"].endswith("conftest.py:2")
    assert rec["measurements"]["start_method_asked"] == "fork"
    assert rec["measurements"]["start_method_in_effect"] == "spawn"
    assert outcomes_in(rec)["test_workers.py::test_lambda_target"][0] == "failed"
    assert rec["measurements"]["counts"] == {"failed": 1, "passed": 1}


def test_outcomes_from_phases_skip_xfail_error_and_a_collection_error(runner, tmp_path):
    project = tmp_path / "kinds"
    project.mkdir()
    (project / "test_kinds.py").write_text('''
import pytest

@pytest.fixture
def broken():
    raise RuntimeError("fixture broke")

def test_skip():
    pytest.skip("not here")

@pytest.mark.xfail(reason="known bug", strict=False)
def test_xfail():
    assert False

def test_error(broken):
    pass

def test_fails():
    assert 1 == 2, "one is not two"
''')
    user, cells = suite_cells(tmp_path, project, ("spawn",))
    rec = runner(cells, user_dir=user)[("test:kinds", "spawn")]
    got = outcomes_in(rec)
    assert got["test_kinds.py::test_skip"] == ("skipped", "Skipped: not here")
    assert got["test_kinds.py::test_xfail"] == ("xfail", "known bug")
    assert got["test_kinds.py::test_error"][0] == "error"
    assert "fixture broke" in got["test_kinds.py::test_error"][1]
    assert got["test_kinds.py::test_fails"][0] == "failed"
    assert "one is not two" in got["test_kinds.py::test_fails"][1]
    assert rec["outcome"] == "failed"
    assert rec["measurements"]["counts"] == {"skipped": 1, "xfail": 1, "error": 1, "failed": 1}


def test_a_collection_error_is_the_cells_failure(runner, tmp_path):
    project = tmp_path / "broken"
    project.mkdir()
    (project / "test_broken.py").write_text("import no_such_module_here\n")
    user, cells = suite_cells(tmp_path, project, ("spawn",))
    rec = runner(cells, user_dir=user)[("test:broken", "spawn")]
    (where, line), = rec["measurements"]["collect_errors"]
    assert where == "test_broken.py" and "no_such_module_here" in line
    assert rec["outcome"] == "failed"
    assert rec["detail"].startswith("collection error in test_broken.py:")
