"""Faults contained and reported, against the real engine; none may leave a container."""

from __future__ import annotations

import threading

from lab.matrix import load_matrix
from lab.run.scheduler import CellSpec

from .conftest import lab_containers, run_cells, scenario, selftest

CP311 = load_matrix().get("cp311")


def test_oom_is_crashed_with_the_kill_noted(engine, image_of, tmp_path, unique_run_id):
    cells = run_cells(engine, image_of("cp311"), CP311, tmp_path,
                      [selftest("oom", mib=4096), scenario("probe")], run_id=unique_run_id)
    oom, probe = cells
    assert oom.outcome == "crashed", oom
    assert oom.signal == "SIGKILL" and "OOM" in (oom.detail or "")
    assert probe.outcome == "ok"
    assert lab_containers(engine, **{"lab.run": unique_run_id}) == []


def test_fork_bomb_hits_the_pids_limit_and_other_containers_are_intact(
        engine, image_of, tmp_path, unique_run_id):
    image = image_of("cp311")
    results = {}

    def other():
        results["other"] = run_cells(engine.__class__.connect(), image, CP311, tmp_path / "b",
                                     [scenario("probe"), scenario("fork_held_lock", "spawn")],
                                     run_id=unique_run_id, phase="neighbour")

    t = threading.Thread(target=other)
    t.start()
    bomb = run_cells(engine, image, CP311, tmp_path / "a", [selftest("forkbomb", deadline=60)],
                     run_id=unique_run_id)[0]
    t.join()
    assert bomb.outcome == "ok", bomb
    assert 100 < bomb.measurements["forks_before_limit"] < 512
    assert "Resource temporarily unavailable" in bomb.measurements["fork_error"]
    assert [c.outcome for c in results["other"]] == ["ok", "ok"]
    assert lab_containers(engine, **{"lab.run": unique_run_id}) == []


def test_huge_output_is_truncated_with_a_marker(engine, image_of, tmp_path, unique_run_id):
    cell = run_cells(engine, image_of("cp311"), CP311, tmp_path,
                     [selftest("noisy", deadline=60, kib=10 * 1024)], run_id=unique_run_id)[0]
    assert cell.outcome == "ok"
    assert "bytes truncated" in (cell.output or "")
    assert len(cell.output or "") < 64 * 1024


def test_output_without_end_is_stopped_in_the_container_not_on_the_hosts_disk(
        engine, image_of, tmp_path, unique_run_id):
    from lab.run.containers import MAX_CHANNEL_BYTES

    cells = run_cells(engine, image_of("cp311"), CP311, tmp_path,
                      [selftest("flood", deadline=60, mib=1024), scenario("probe")],
                      parallel=1, run_id=unique_run_id)
    flood = cells[0]
    # Its output file, on the container's tmpfs, stops at the container's file-size limit:
    # the write fails (EFBIG), the cell says so and reports, its output kept head and tail.
    assert flood.outcome == "ok", flood
    assert "File too large" in flood.measurements["stopped_by"], flood.measurements
    assert flood.measurements["wrote_kib"] * 1024 <= MAX_CHANNEL_BYTES
    assert "bytes truncated" in (flood.output or "") and len(flood.output or "") < 64 * 1024
    assert cells[1].outcome == "ok"  # the next cell had its space back
    on_host = sum(p.stat().st_size for p in tmp_path.rglob("*") if p.is_file())
    assert on_host < 2 * 1024 * 1024, on_host


def test_malformed_result_and_missing_record_are_errors_and_the_run_goes_on(
        engine, image_of, tmp_path, unique_run_id):
    cells = run_cells(engine, image_of("cp311"), CP311, tmp_path / "a",
                      [selftest("badresult"), scenario("probe")], parallel=1,
                      run_id=unique_run_id)
    assert cells[0].outcome == "error" and "malformed" in (cells[0].detail or "")
    assert cells[1].outcome == "ok"
    # The runner itself dies: cells that never reported are errors with the reason.
    cells = run_cells(engine, image_of("cp311"), CP311, tmp_path / "b",
                      [selftest("kill_runner"), scenario("probe")], parallel=1,
                      run_id=unique_run_id)
    assert all(c.outcome == "error" for c in cells)
    assert "before this cell reported" in (cells[1].detail or "")
    assert lab_containers(engine, **{"lab.run": unique_run_id}) == []


def test_crashed_cell_shows_the_signal(engine, image_of, tmp_path, unique_run_id):
    cell = run_cells(engine, image_of("cp311"), CP311, tmp_path, [selftest("crash")],
                     run_id=unique_run_id)[0]
    assert cell.outcome == "crashed" and cell.signal == "SIGSEGV"


def test_a_cell_cannot_swap_its_results_channel_for_a_link_to_a_host_file(
        engine, image_of, tmp_path, unique_run_id):
    """The channel's folder is not the container's to write: the one file it may write is the
    channel, so a link in its place cannot be made, and the host file is never read."""
    secret = tmp_path / "host-secret.jsonl"
    secret.write_text('{"kind": "cell", "index": 1, "outcome": "ok", "detail": "HOST-SECRET"}\n')
    cells = run_cells(engine, image_of("cp311"), CP311, tmp_path / "job",
                      [selftest("symlink_results", target=str(secret)), scenario("probe")],
                      parallel=1, run_id=unique_run_id)
    assert [c.outcome for c in cells] == ["failed", "ok"], cells
    assert "PermissionError" in (cells[0].detail or ""), cells[0].detail
    assert not any("HOST-SECRET" in repr(c) for c in cells)  # the target was never read
    assert lab_containers(engine, **{"lab.run": unique_run_id}) == []


def test_a_cell_that_writes_without_limit_to_its_channel_is_cut_off_at_the_cap(
        engine, image_of, tmp_path, unique_run_id):
    """A hostile cell writes 256 MiB into the results channel: the container's file-size limit
    stops it at MAX_CHANNEL_BYTES, it can make no other file beside it, the job ends with every
    cell accounted for, and the run folder stays under the bound (the channel, plus what the
    host wrote from at most MAX_RESULTS_BYTES of it)."""
    from lab.run.containers import MAX_CHANNEL_BYTES
    from lab.run.records import MAX_RESULTS_BYTES

    run_dir = tmp_path / "job"
    cells = run_cells(engine, image_of("cp311"), CP311, run_dir,
                      [selftest("flood_channel", deadline=60, mib=256), scenario("probe")],
                      parallel=1, run_id=unique_run_id)
    assert len(cells) == 2 and all(c.outcome == "error" for c in cells), cells
    channels = list(run_dir.rglob("results.jsonl"))
    assert len(channels) == 1 and channels[0].stat().st_size <= MAX_CHANNEL_BYTES
    assert not list(run_dir.rglob("other.jsonl"))
    total = sum(p.stat().st_size for p in run_dir.rglob("*") if p.is_file())
    assert total <= MAX_CHANNEL_BYTES + MAX_RESULTS_BYTES + (1 << 20), total
    assert lab_containers(engine, **{"lab.run": unique_run_id}) == []


def test_a_stuck_cell_is_found_before_its_deadline_and_a_slow_one_is_not(
        engine, image_of, tmp_path, unique_run_id):
    """Item 5 of issue 27: a group whose every thread waits with no timeout is hung at once,
    with the evidence; children that sleep or wait on I/O, then finish, are never called hung;
    a cell busy on a CPU at its deadline is starved, not stuck, and runs on."""
    cells = run_cells(engine, image_of("cp311"), CP311, tmp_path, [
        selftest("stuck", deadline=30),
        # a deadline far past the waits: under a loaded CI machine spawn's children alone
        # take seconds to start, and what is checked is that none is called stuck meanwhile
        *[CellSpec(scenario="selftest.wait_then_finish", start_method=m, kind="behaviour",
                   deadline_s=40, params={"seconds": 4}) for m in ("fork", "spawn",
                                                               "forkserver")],
        selftest("spin", deadline=2, seconds=4),
        selftest("hang", deadline=3),
    ], parallel=6, run_id=unique_run_id)
    stuck, *waiters, spin, hang = cells
    assert stuck.outcome == "hung" and stuck.duration_s < 5, stuck
    assert "before its 30.0 s deadline" in stuck.detail and "futex x1" in stuck.detail
    assert "stuck" in (stuck.stacks or "")  # the stacks that show it come with it
    for cell in waiters:
        assert cell.outcome == "ok", (cell.start_method, cell.detail)
        assert cell.measurements["finished"] == [0, 0, 0]
        assert cell.duration_s >= 4
    assert spin.outcome == "ok" and spin.measurements["spun"] is True, spin.detail
    assert spin.duration_s >= 4
    # a sleep past its deadline: no timeout-free wait, no CPU: the deadline decides
    assert hang.outcome == "hung" and 3 <= hang.duration_s < 6, hang
    assert "no result within the 3.0 s deadline" in hang.detail
