"""Hangs named from their stacks: each rule on stacks real cells wrote (tests/golden/stacks/
hung.json, from this machine's runs), and "unknown" where they show nothing."""

from __future__ import annotations

import json
import re
from pathlib import Path

from lab.report.causes import (
    GIL_IN_C,
    GRPC,
    IO_LOCK,
    JOIN_BEFORE_DRAIN,
    LOCK_HELD,
    OPENMP,
    UNKNOWN,
    Cause,
    cause_of,
    merged,
)

STACKS = json.loads((Path(__file__).resolve().parents[1] / "golden" / "stacks" / "hung.json")
                    .read_text())


def test_a_forked_child_waiting_in_acquire_is_a_lock_copied_held():
    c = cause_of(STACKS["cp311/fork_held_lock/fork"], "fork")
    assert c.name == LOCK_HELD
    assert c.evidence.startswith("child_takes_lock at fork_held_lock.py:24: LOCK.acquire()")
    # py-spy's C frame beneath it, where it read one
    c = cause_of(STACKS["cp311/fork_held_lock/fork/native"], "fork")
    assert c.name == LOCK_HELD and "PyThread_acquire_lock_timed" in c.evidence


def test_the_same_wait_in_a_child_that_was_not_forked_is_not_a_copied_lock():
    assert cause_of(STACKS["cp311/fork_held_lock/fork"], "spawn").name == UNKNOWN


def test_pypys_approximate_lines_show_no_evidence_so_its_hang_is_unknown():
    c = cause_of(STACKS["pp311/fork_held_lock/fork"], "fork")
    assert c.name == UNKNOWN and c.evidence == ""


def test_a_forked_child_in_a_logging_flush_is_the_buffered_io_lock():
    c = cause_of(STACKS["cp311/fork_held_io/fork"], "fork")
    assert c.name == IO_LOCK and c.evidence.startswith("flush at __init__.py:")


def test_join_with_the_feeder_still_sending_is_join_before_drain():
    c = cause_of(STACKS["cp314/queue_join_before_drain/fork"], "fork")
    assert c.name == JOIN_BEFORE_DRAIN and c.evidence.startswith("_feed at queues.py:")
    # Only the parent's join in view (the spawned child left no stack): no evidence.
    assert cause_of(STACKS["cp311/queue_join_before_drain/spawn"], "spawn").name == UNKNOWN


def test_native_library_frames_name_the_library():
    child = ("=== pid 9 (child process) python3 x.py\nCurrent thread 0x1 (most recent call "
             "first):\n  File \"/w/x.py\", line 3 in work\n--- native stacks (py-spy): thread "
             "names, GIL holder, C frames\nThread 9 (idle): \"MainThread\"\n    {frame}\n")
    c = cause_of(child.format(frame="gomp_team_barrier_wait_end (libgomp.so.1)"), "fork")
    assert c.name == OPENMP and "gomp_team_barrier_wait_end" in c.evidence
    c = cause_of(child.format(frame="GOMP_parallel (libgomp.so.1)"), "spawn")
    assert c.name == UNKNOWN  # not forked: whatever it is, it is not the pool copied by fork
    c = cause_of(child.format(frame="grpc_completion_queue_next (cygrpc.so)"), "fork")
    assert c.name == GRPC


def test_no_stacks_is_unknown():
    assert cause_of(None, "fork").name == UNKNOWN
    assert cause_of("", None).name == UNKNOWN


def test_a_forked_child_waiting_inside_libgomp_is_openmp_after_fork():
    for target in ("cp39", "cp311"):
        c = cause_of(STACKS[f"{target}/openmp_fork/fork/native"], "fork")
        assert c.name == OPENMP
        assert c.evidence.startswith("lib.GOMP_parallel(body, None, ")  # the call, comment cut
        assert c.evidence.endswith(" (libgomp.so.1.0.0)")  # the native frame it waits in


def test_a_gomp_call_without_a_native_frame_inside_libgomp_is_not_evidence_enough():
    native = STACKS["cp311/openmp_fork/fork/native"]
    python_only = re.sub(r"--- native stacks.*?(?==== pid|\Z)", "", native, flags=re.S)
    assert "GOMP_parallel" in python_only
    assert cause_of(python_only, "fork").name == UNKNOWN
    # PyPy: py-spy cannot read it, and faulthandler shows only ctypes' own frames
    assert cause_of(STACKS["pp311/openmp_fork/fork"], "fork").name == UNKNOWN
    assert cause_of(native, "spawn").name != OPENMP  # not forked: not OpenMP after fork


def test_a_forked_childs_rpc_waiting_in_grpc_is_grpc_after_fork_from_the_childs_frame():
    for target in ("cp311", "cp315"):
        c = cause_of(STACKS[f"{target}/grpc_fork_support_off/fork/native"], "fork")
        assert c.name == GRPC
        # the child's own frame, not the parent's server thread (which waits in grpc too)
        assert c.evidence == "_blocking at _channel.py:1152: event = call.next_event()"


def test_pypys_openmp_hang_is_named_from_the_runners_stack_scan():
    """py-spy cannot read PyPy; the runner's scan of each stack found GOMP_parallel in the
    forked child (pp311 here): a frame inside it is preferred to its bare address."""
    c = cause_of(STACKS["pp311/openmp_fork/fork/scan"], "fork")
    assert c.name == OPENMP
    assert c.evidence == "GOMP_parallel+0x46 (libgomp.so.1.0.0)"


def test_openmp_is_named_from_the_scans_gomp_frame_beside_py_spys_bare_addresses():
    """Debian strips libgomp, so py-spy shows a forked child's frames in it as addresses; the
    runner's scan of the same thread's stack adds the exported function it is in. With
    libgomp 16 (cp315 here) that is GOMP_parallel; with libgomp 14 (cp313) the scan finds no
    such frame, and the evidence stays the Python call above py-spy's frame in libgomp."""
    c = cause_of(STACKS["cp315/openmp_fork/fork/beside"], "fork")
    assert c.name == OPENMP
    assert c.evidence == "GOMP_parallel+0x46 (libgomp.so.1.0.0)"
    c = cause_of(STACKS["cp313/openmp_fork/fork/native"], "fork")
    assert c.name == OPENMP
    assert c.evidence.startswith("lib.GOMP_parallel(body, None, ")
    assert c.evidence.endswith(" (libgomp.so.1.0.0)")


def test_openmp_is_named_from_the_gomp_function_that_jumped_where_py_spy_shows_an_address():
    """libgomp 12 (cp311): GOMP_parallel ends in a jump to an internal function, so its frame
    is gone and py-spy's outermost libgomp frame is an address below libffi's. The runner
    names the function from the unwind table and the GOMP_ functions that jump to it."""
    c = cause_of(STACKS["cp311/openmp_fork/fork/unwind"], "fork")
    assert c.name == OPENMP
    assert c.evidence == ("0x1e2d0+0x2d, jumped to by GOMP_parallel_end+0x2b, GOMP_parallel+0x77 "
                          "(libgomp.so.1.0.0)")


def test_one_line_for_several_targets_shows_only_the_numbers_they_share():
    cp39 = Cause(name=JOIN_BEFORE_DRAIN, evidence="_feed at queues.py:251")
    cp311 = Cause(name=JOIN_BEFORE_DRAIN, evidence="_feed at queues.py:250")
    assert merged([cp39, cp311]) == Cause(name=JOIN_BEFORE_DRAIN, evidence="_feed at queues.py:…")
    assert merged([cp39, cp39]) == cp39
    other = Cause(name=OPENMP, evidence="GOMP_parallel+0x46 (libgomp.so.1.0.0)")
    assert merged([other, cp39]) == other  # not one key: the first, unmerged


def test_a_thread_asleep_in_c_with_the_gil_names_the_hang():
    """A lab check program on cp311 whose thread sleeps in a ctypes.PyDLL call: py-spy saw it
    hold the GIL while idle, and the main thread waiting for it."""
    c = cause_of(STACKS["cp311/check_gil_in_c/fork/native"], "fork")
    assert c.name == GIL_IN_C
    assert c.evidence == ('"gil-holder" waits in clock_nanosleep (libc.so.6) under '
                          'hold_the_gil (gil_in_c.py:9)')
    # the same stacks with py-spy's own text (every waiting thread "idle"): nothing to go on
    plain = STACKS["cp311/check_gil_in_c/fork/native"].replace("(idle+gil)", "(idle)")
    assert cause_of(plain, "fork").name == UNKNOWN
    # a forked child stuck on a copied lock holds no GIL: its cause is unchanged
    assert cause_of(STACKS["cp311/fork_held_lock/fork/native"], "fork").name == LOCK_HELD
