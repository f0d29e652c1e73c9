"""Faults contained and reported, against the real engine; none may leave a container."""

from __future__ import annotations

import threading

from lab.matrix import load_matrix

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


def test_output_without_end_fills_the_containers_tmpfs_not_the_hosts_disk(
        engine, image_of, tmp_path, unique_run_id):
    cells = run_cells(engine, image_of("cp311"), CP311, tmp_path,
                      [selftest("flood", deadline=60, mib=1024), scenario("probe")],
                      parallel=1, run_id=unique_run_id)
    flood = cells[0]
    # The cell fills its 256 MB tmpfs, then cannot even write its result: an honest failure.
    assert flood.outcome == "failed", flood
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


def test_a_results_symlink_to_a_host_file_is_an_error_and_never_followed(
        engine, image_of, tmp_path, unique_run_id):
    secret = tmp_path / "host-secret.jsonl"
    secret.write_text('{"kind": "cell", "index": 1, "outcome": "ok", "detail": "HOST-SECRET"}\n')
    cells = run_cells(engine, image_of("cp311"), CP311, tmp_path / "job",
                      [selftest("symlink_results", target=str(secret)), scenario("probe")],
                      parallel=1, run_id=unique_run_id)
    assert [c.outcome for c in cells] == ["error", "error"]
    assert all("symbolic link" in (c.detail or "") for c in cells)
    assert not any("HOST-SECRET" in repr(c) for c in cells)  # the target was never read
    assert lab_containers(engine, **{"lab.run": unique_run_id}) == []
