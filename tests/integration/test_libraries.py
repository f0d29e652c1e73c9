"""Native libraries after fork (issue 27, item 3). openmp_fork in every default target's own
container, with Debian's libgomp1 from its base. A fork child hangs in its parallel region,
found stuck before its deadline and named "OpenMP after fork" from its native frames (py-spy's on
CPython, the runner's stack scan on PyPy); spawn and forkserver children, and a fork child
whose team is one thread (OMP_NUM_THREADS=1, the catalog's variant), are fine."""

from __future__ import annotations

import re

import pytest

from lab.matrix import load_matrix
from lab.report.causes import GRPC, OPENMP, cause_of
from lab.run.scheduler import plan_cells
from lab.runner import measurements as M
from lab.runner.scan import HEADING as SCAN_HEADING

from .conftest import lab, load_results, only_run, run_cells

GOMP = re.compile(r"\bGOMP_\w+")
DEFAULT = ("cp39", "cp311", "cp313", "cp314", "cp315", "pp311")


@pytest.mark.parametrize("target_id", DEFAULT)
def test_openmp_after_fork_hangs_the_child_unless_it_is_spawned_or_its_team_is_one_thread(
        engine, image_of, tmp_path, unique_run_id, target_id):
    target = load_matrix().get(target_id)
    cells = plan_cells(["openmp_fork", "openmp_fork_single"])
    assert {c.scenario: dict(c.env or {}) for c in cells}["openmp_fork_single"] == {
        "OMP_NUM_THREADS": "1"}
    got = {(c.scenario, c.start_method): c
           for c in run_cells(engine, image_of(target_id), target, tmp_path, cells,
                              parallel=3, run_id=unique_run_id)}
    fork = got[("openmp_fork", "fork")]
    assert fork.outcome == "hung", (fork.detail, fork.output)
    assert (fork.detail or "").startswith("found hung after"), fork.detail  # before 6 s
    lib = fork.measurements[M.LIBRARY]
    assert lib["name"] == "libgomp" and lib["version"] and "libgomp.so" in lib["file"]
    assert fork.measurements[M.PARENT_REGION_THREADS] >= 2  # a pool was there to lose
    cause = cause_of(fork.stacks, "fork")
    assert cause.name == OPENMP, fork.stacks
    if target.implementation == "pypy":  # py-spy cannot read PyPy: the runner's stack scan
        assert SCAN_HEADING in (fork.stacks or "")
        assert cause.evidence.startswith("GOMP_parallel") and "(libgomp.so" in cause.evidence
    else:
        # a GOMP_ frame on every CPython target: py-spy's own, where the child waits beneath
        # GOMP_parallel (in gomp_team_start); where GOMP_parallel had jumped on (gomp_team_end,
        # its frame gone), the function named from libgomp's unwind table and the GOMP_
        # functions that jump to it; or the scan's, beside py-spy's addresses
        assert GOMP.search(cause.evidence) and "(libgomp.so" in cause.evidence, fork.stacks
        assert "lib.GOMP_parallel(" not in cause.evidence  # not the Python call alone
    for method in ("spawn", "forkserver"):
        c = got[("openmp_fork", method)]
        assert c.outcome == "ok", (method, c.detail)
        assert c.measurements[M.CHILD_COMPLETED_REGION] is True
    for method in ("fork", "spawn", "forkserver"):
        c = got[("openmp_fork_single", method)]
        assert c.outcome == "ok", (method, c.detail)
        assert c.measurements[M.OMP_NUM_THREADS] == "1"
        assert c.measurements[M.PARENT_REGION_THREADS] == c.measurements[
            M.CHILD_REGION_THREADS] == 1


def test_blas_and_grpc_run_where_their_wheels_exist_and_a_target_without_them_says_why(
        engine, tmp_path):
    """Named scenarios that need packages install them for each target (real wheels from the
    index, through the user's pip settings): numpy's OpenBLAS survives fork; gRPC's fork child
    hangs with GRPC_ENABLE_FORK_SUPPORT=0 only. pp311 has no wheel of either: it runs without
    them, its library cells skipped with pip's one line, and one line each says so."""
    proc = lab("run", "--targets", "cp311,pp311", "--scenarios",
               "blas_fork,grpc_fork,grpc_fork_support_off,grpc_fork_support_on",
               "--no-progress", "--out", str(tmp_path), timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = load_results(only_run(tmp_path))
    targets = {t["id"]: t for t in data["targets"]}
    assert targets["pp311"]["status"] == "ok"  # one package never hides the rest
    missing = targets["pp311"]["dependencies"]["not_installed"]
    assert set(missing) == {"numpy", "grpcio"}
    assert missing["numpy"].startswith("pp311: numpy has no wheel for pp311")
    assert ("  pp311: cannot have numpy, so the scenarios that need it are skipped: numpy has "
            "no wheel for pp311") in proc.stdout
    pypy = {(c["scenario"], c["start_method"]): c for c in data["results"]
            if c["target"] == "pp311"}
    assert pypy[("probe", None)]["outcome"] == "ok"
    assert pypy[("blas_fork", "fork")]["outcome"] == "skipped"
    assert pypy[("blas_fork", "fork")]["detail"].startswith(
        "needs numpy, which pp311 cannot have: pp311: numpy has no wheel")
    assert all(c["outcome"] == "skipped" for k, c in pypy.items() if k[0] != "probe")
    installed = {i["name"]: i["version"] for i in targets["cp311"]["dependencies"]["installed"]}
    got = {(c["scenario"], c["start_method"]): c for c in data["results"]
           if c["target"] == "cp311"}
    for method in ("fork", "spawn", "forkserver"):
        blas = got[("blas_fork", method)]
        assert blas["outcome"] == "ok" and blas["measurements"][M.CHILD_COMPLETED_REGION]
        assert blas["measurements"][M.LIBRARY]["version"] == installed["numpy"]
        assert "openblas" in blas["measurements"][M.LIBRARY]["blas"]
        assert got[("grpc_fork_support_on", method)]["outcome"] == "ok"
        lib = got[("grpc_fork", method)]["measurements"][M.LIBRARY]
        assert lib == {"name": "grpcio", "version": installed["grpcio"]}
    off = got[("grpc_fork_support_off", "fork")]
    assert off["outcome"] == "hung"
    assert cause_of(off["stacks"], "fork").name == GRPC
    assert got[("grpc_fork_support_off", "spawn")]["outcome"] == "ok"
    # claim 6b reads them: gRPC bites (through that setting), BLAS survives
    from lab.report.verdicts import judge
    from lab.results import load

    v = {c.number: c for c in judge(load(only_run(tmp_path) / "results.json"))}["6b"]
    assert v.verdicts["cp311"].status == "confirmed"
    assert f"gRPC (grpcio {installed['grpcio']}) bites" in v.verdicts["cp311"].summary
    assert "BLAS (numpy" in v.verdicts["cp311"].summary
    assert "6b. It bites if you are interacting with other libraries: confirmed on 1 (cp311)" \
        in proc.stdout
