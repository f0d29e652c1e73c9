"""Claims 6a and 6b judged apart: pure Python by the pure-Python hazards, "it bites through
other libraries" per library observed, from cells shaped like the ones a run writes."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from lab.report.evidence import CONFIRMED, INCONCLUSIVE, NOT_OBSERVABLE, REFUTED
from lab.report.verdicts import judge
from lab.results import Cell, load
from lab.runner import measurements as M

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "run-cp39-cp315-quick.json"
# Stacks a hung openmp_fork cell wrote under fork on this machine (cp311: py-spy's native
# frames, libgomp's own as addresses, as Debian strips it)
STACKS = json.loads((GOLDEN.parent / "stacks" / "hung.json").read_text())
LIB = {"name": "libgomp", "file": "/usr/lib/x86_64-linux-gnu/libgomp.so.1.0.0",
       "version": "12.2.0-14+deb12u1"}


def openmp(scenario: str, method: str, outcome: str, **extra: object) -> Cell:
    m = {M.LIBRARY: LIB, M.PARENT_REGION_THREADS: 2}
    if outcome == "ok":
        m |= {M.CHILD_REGION_THREADS: 2, M.CHILD_COMPLETED_REGION: True}
    return Cell(target="cp39", scenario=scenario, start_method=method, outcome=outcome,
                measurements=m, **extra)  # type: ignore[arg-type]


def claims(cells: list[Cell]) -> dict[str, dict]:
    r = load(GOLDEN)
    r = dataclasses.replace(r, results=[c for c in r.results if c.target == "cp39"] + cells)
    return {c.number: c.verdicts["cp39"] for c in judge(r)}


def test_openmp_hanging_only_under_fork_confirms_6b_naming_the_library_and_its_frame():
    cells = [openmp("openmp_fork", "fork", "hung",
                    stacks=STACKS["cp311/openmp_fork/fork/native"]),
             openmp("openmp_fork", "spawn", "ok"), openmp("openmp_fork", "forkserver", "ok"),
             openmp("openmp_fork_single", "fork", "ok")]
    v = claims(cells)
    assert v["6b"].status == CONFIRMED
    assert "OpenMP (libgomp 12.2.0-14+deb12u1) bites" in v["6b"].summary
    assert "(OpenMP after fork: lib.GOMP_parallel(body, None, ctypes.c_uint(0), " \
        "ctypes.c_uint(0)) -> 0x7fee2f385823 (libgomp.so.1.0.0))" in v["6b"].summary
    assert "with OMP_NUM_THREADS=1 the fork child is fine" in v["6b"].summary
    assert len(v["6b"].evidence) == 4
    # 6a stays on the pure-Python hazards, which hung under fork in that run
    assert v["6a"].status == REFUTED and "OpenMP" not in v["6a"].summary


def test_a_library_that_survives_fork_leaves_6b_inconclusive_not_refuted():
    cells = [openmp("openmp_fork", m, "ok") for m in ("fork", "spawn", "forkserver")]
    v = claims(cells)["6b"]
    assert v.status == INCONCLUSIVE and "OpenMP (libgomp 12.2.0-14+deb12u1) survives fork" \
        in v.summary


def test_a_hang_under_every_method_is_not_fork_biting():
    cells = [openmp("openmp_fork", m, "hung") for m in ("fork", "spawn", "forkserver")]
    v = claims(cells)["6b"]
    assert v.status == NOT_OBSERVABLE and "not fork's doing" in v.summary


def test_a_target_without_the_library_says_why():
    why = "libgomp.so.1 cannot be loaded here (...); a base needs Debian's libgomp1"
    cells = [Cell(target="cp39", scenario="openmp_fork", start_method=m, outcome="skipped",
                  detail=why) for m in ("fork", "spawn", "forkserver")]  # type: ignore[arg-type]
    v = claims(cells)["6b"]
    assert v.status == NOT_OBSERVABLE and why in v.summary


def _grpc(scenario: str, method: str, outcome: str) -> Cell:
    return Cell(target="cp39", scenario=scenario, start_method=method, outcome=outcome,
                measurements={M.LIBRARY: {"name": "grpcio", "version": "1.85.3"}},
                stacks=STACKS["cp311/grpc_fork_support_off/fork/native"]
                if outcome == "hung" else None)


def test_grpc_bites_through_the_configuration_that_hangs_and_blas_survives():
    """As on cp311 here: grpcio 1.85.3 by default and with fork support on is fine under fork;
    with GRPC_ENABLE_FORK_SUPPORT=0 the fork child's RPC hangs. numpy's OpenBLAS survives."""
    cells = [_grpc(s, m, "hung" if (s, m) == ("grpc_fork_support_off", "fork") else "ok")
             for s in ("grpc_fork", "grpc_fork_support_off", "grpc_fork_support_on")
             for m in ("fork", "spawn", "forkserver")]
    cells += [Cell(target="cp39", scenario="blas_fork", start_method=m, outcome="ok",
                   measurements={M.LIBRARY: {"name": "numpy", "version": "2.4.6",
                                             "blas": "scipy-openblas",
                                             "blas_version": "0.3.31.188.0"}})
              for m in ("fork", "spawn", "forkserver")]
    v = claims(cells)["6b"]
    assert v.status == CONFIRMED
    blas, grpc = v.summary.split(" | ")
    assert blas == ("BLAS (numpy 2.4.6, scipy-openblas 0.3.31.188.0) survives fork: by default "
                    "the fork child is fine, spawn ok, forkserver ok")
    assert grpc.startswith("gRPC (grpcio 1.85.3) bites: by default the fork child is fine")
    assert ("with GRPC_ENABLE_FORK_SUPPORT=0 the fork child hangs (gRPC after fork: _blocking "
            "at _channel.py:1152: event = call.next_event()), spawn ok, forkserver ok") in grpc
    assert len(v.evidence) == 12
    # BLAS alone surviving says nothing of other libraries
    assert claims(cells[9:])["6b"].status == INCONCLUSIVE
