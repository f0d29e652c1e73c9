from __future__ import annotations

import dataclasses
import io
import json
import os
import tarfile
import threading
from pathlib import Path

from lab.matrix import load_matrix
from lab.run.containers import JobContext, JsonlTail, Note, cells_only
from lab.run.containers import run_job as run_job_events
from lab.run.records import ArchiveTail
from lab.run.scheduler import plan_runs

from .fakes import FakeEngine, runner_writes_all_ok


def job_and_ctx(tmp_path: Path, phase: str = "behaviour", **kw):
    target = load_matrix().get("cp311")
    plan = plan_runs([target])
    job = plan.behaviour[0] if phase == "behaviour" else plan.timing[0]
    if "cpuset" in kw:
        job = dataclasses.replace(job, cpuset=kw["cpuset"])
    ctx = JobContext(run_id="r1", run_dir=tmp_path, target=target, image_tag="lab-target:x",
                     stop=kw.get("stop", threading.Event()))
    return job, ctx, None


def run_job(engine, job, ctx):
    """The job's cells in plan order (run_job yields them as they arrive)."""
    order = {(c.scenario, c.start_method, c.container): i for i, c in enumerate(job.cells)}
    return sorted(cells_only(run_job_events(engine, job, ctx)),
                  key=lambda c: order[(c.scenario, c.start_method, c.container)])


def test_every_planned_cell_comes_back_once_and_the_container_is_removed(tmp_path):
    job, ctx, _ = job_and_ctx(tmp_path)
    engine = FakeEngine()
    events = list(run_job_events(engine, job, ctx))
    cells = cells_only(events)
    # each cell once, as the runner reported it (no callback, nothing returned twice)
    assert [(c.scenario, c.start_method) for c in cells] == [
        (c.scenario, c.start_method) for c in job.cells]
    assert all(c.outcome == "ok" and c.target == "cp311" for c in cells)
    assert not any(isinstance(e, Note) for e in events)
    assert engine.removed == ["c0"]
    assert cells[0].concurrent == [] and not cells[0].exclusive  # the run stamps neighbours


def test_a_crashed_cell_is_held_until_the_container_s_end_to_note_an_oom_kill(tmp_path):
    def crash_then_oom(out: Path, plan):
        recs = [{"kind": "cell", "index": 0, "outcome": "crashed", "detail": "signal 9"},
                {"kind": "cell", "index": 1, "outcome": "ok"}]
        (out / "results.jsonl").write_text("".join(json.dumps({**r, "record_version": 1}) +
                                                   "\n" for r in recs))
        return {"ExitCode": 137, "OOMKilled": True}

    job, ctx, _ = job_and_ctx(tmp_path)
    cells = cells_only(run_job_events(FakeEngine(crash_then_oom), job, ctx))
    assert cells[0].scenario == job.cells[1].scenario and cells[0].outcome == "ok"
    crashed = next(c for c in cells if c.scenario == job.cells[0].scenario
                   and c.start_method == job.cells[0].start_method)
    assert crashed.outcome == "crashed" and crashed.detail == "signal 9 (OOM kill noted)"
    assert len(cells) == len(job.cells)


def test_container_is_hardened_and_labelled(tmp_path):
    job, ctx, _ = job_and_ctx(tmp_path, "timing", cpuset="0,1")
    engine = FakeEngine()
    cells = run_job(engine, job, ctx)
    spec = engine.started[0]
    assert spec.labels["lab.managed"] == "true" and spec.labels["lab.run"] == "r1"
    assert spec.labels["lab.target"] == "cp311"
    assert spec.user == "10001:10001" and spec.cpuset_cpus == "0,1"
    assert spec.command[:3] == ["/usr/bin/python3.11", "-m", "labrunner"]
    assert all(c.exclusive and c.concurrent == [] and c.kind == "timing" for c in cells)


def test_the_container_can_read_its_plan_whatever_the_umask(tmp_path):
    job, ctx, _ = job_and_ctx(tmp_path)
    old = os.umask(0o077)
    try:
        run_job(FakeEngine(), job, ctx)
    finally:
        os.umask(old)
    plan = tmp_path / "work" / job.name / "plan.json"
    assert plan.stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "work").stat().st_mode & 0o777 == 0o700  # only the user reaches it


def test_container_variants_get_their_limits_and_every_job_its_scratch(tmp_path):
    target = load_matrix().get("cp311")
    job = next(j for j in plan_runs([target]).behaviour if j.container == "cpus=1")
    _, ctx, _ = job_and_ctx(tmp_path)
    engine = FakeEngine()
    cells = run_job(engine, job, ctx)
    spec = engine.started[0]
    assert spec.nano_cpus == 1_000_000_000 and spec.cpuset_cpus is None
    assert all(c.container == "cpus=1" and c.scenario == "cpu_limits" for c in cells)
    plan = json.loads((tmp_path / "work" / job.name / "plan.json").read_text())
    assert plan["scratch"].startswith("/tmp/") and "user_dir" not in plan


def test_runner_dying_turns_unreported_cells_into_errors(tmp_path):
    def dies_after_two(out: Path, plan):
        runner_writes_all_ok(out, plan)
        lines = (out / "results.jsonl").read_text().splitlines()[:3]
        (out / "results.jsonl").write_text("\n".join(lines) + "\n")
        return {"ExitCode": 137}

    job, ctx, _ = job_and_ctx(tmp_path)
    cells = run_job(FakeEngine(dies_after_two), job, ctx)
    assert [c.outcome for c in cells[:2]] == ["ok", "ok"]
    assert all(c.outcome == "error" for c in cells[2:])
    assert "exited with code 137 before this cell reported" in cells[2].detail
    assert cells[2].output == "runner log tail"


def test_oom_kill_marks_cells_crashed(tmp_path):
    def oom(out: Path, plan):
        (out / "results.jsonl").write_text('{"kind": "start", "record_version": 1}\n')
        return {"ExitCode": 137, "OOMKilled": True}

    job, ctx, _ = job_and_ctx(tmp_path)
    cells = run_job(FakeEngine(oom), job, ctx)
    assert all(c.outcome == "crashed" for c in cells)
    assert "OOM" in cells[0].detail


def test_malformed_record_is_reported_and_the_rest_survive(tmp_path):
    def garbage(out: Path, plan):
        runner_writes_all_ok(out, plan)
        lines = (out / "results.jsonl").read_text().splitlines()
        lines[2] = "{not json"
        (out / "results.jsonl").write_text("\n".join(lines) + "\n")
        return {"ExitCode": 0}

    job, ctx, _ = job_and_ctx(tmp_path)
    cells = run_job(FakeEngine(garbage), job, ctx)
    assert cells[1].outcome == "error" and "malformed result record" in cells[1].detail
    assert [c.outcome for c in cells if c is not cells[1]] == ["ok"] * (len(cells) - 1)


def test_unknown_outcome_and_bad_index_are_errors(tmp_path):
    def weird(out: Path, plan):
        recs = [{"kind": "cell", "index": 0, "outcome": "splendid"},
                {"kind": "cell", "index": 999, "outcome": "ok"}, {"kind": "done"}]
        (out / "results.jsonl").write_text("".join(json.dumps({**r, "record_version": 1}) +
                                                   "\n" for r in recs))
        return {"ExitCode": 0}

    job, ctx, _ = job_and_ctx(tmp_path)
    cells = run_job(FakeEngine(weird), job, ctx)
    assert cells[0].outcome == "error" and "splendid" in cells[0].detail
    assert "bad index 999" in cells[1].detail


def test_host_deadline_kills_and_removes(tmp_path, monkeypatch):
    def never_exits(out: Path, plan):
        return {"Status": "running"}

    monkeypatch.setattr("lab.run.scheduler.CONTAINER_OVERHEAD_S", -10_000)
    job, ctx, _ = job_and_ctx(tmp_path)
    engine = FakeEngine(never_exits)
    cells = run_job(engine, job, ctx)
    assert engine.killed == ["c0"] and engine.removed == ["c0"]
    assert all("host deadline" in c.detail for c in cells)


def test_stop_event_interrupts_and_keeps_only_what_finished(tmp_path):
    stop = threading.Event()
    stop.set()
    job, ctx, _ = job_and_ctx(tmp_path, stop=stop)
    engine = FakeEngine(lambda out, plan: {"Status": "running"})
    cells = run_job(engine, job, ctx)
    assert engine.removed == ["c0"]
    assert cells == []  # nothing finished; a partial run shows no invented rows


def test_container_that_cannot_start_becomes_error_rows(tmp_path):
    job, ctx, _ = job_and_ctx(tmp_path)
    cells = run_job(FakeEngine(fail_start=True), job, ctx)
    assert all(c.outcome == "error" and "no space left" in c.detail for c in cells)


def test_jsonl_tail_reads_only_complete_lines(tmp_path):
    path = tmp_path / "r.jsonl"
    tail = JsonlTail(path)
    assert tail.read() == []
    path.write_text('{"a": 1}\n{"b"')
    assert tail.read() == [{"a": 1}]
    with open(path, "a") as fh:
        fh.write(': 2}\n[1]\n')
    assert tail.read() == [{"b": 2}, "a result record that is not an object"]




def test_a_symlinked_results_channel_is_refused_and_its_target_never_read(tmp_path):
    secret = tmp_path / "host-secret"
    secret.write_text('{"kind": "cell", "index": 0, "outcome": "ok", "detail": "SECRET"}\n')
    channel = tmp_path / "results.jsonl"
    channel.symlink_to(secret)
    tail = JsonlTail(channel)
    first = tail.read()
    assert len(first) == 1 and isinstance(first[0], str)
    assert "symbolic link" in first[0] and "SECRET" not in first[0]
    assert tail.read() == []  # reported once, never read later


def test_a_results_channel_that_is_not_a_regular_file_is_refused(tmp_path):
    channel = tmp_path / "results.jsonl"
    os.mkfifo(channel)
    got = JsonlTail(channel).read()  # a reader that opened a FIFO would block here
    assert len(got) == 1 and "not a regular file" in str(got[0])


def test_the_results_channel_is_read_up_to_a_cap(tmp_path, monkeypatch):
    monkeypatch.setattr("lab.run.records.MAX_RESULTS_BYTES", 100)
    channel = tmp_path / "results.jsonl"
    record = json.dumps({"kind": "cell", "index": 0}) + "\n"
    channel.write_text(record + "x" * 10_000 + "\n" + record)
    tail = JsonlTail(channel)
    got = tail.read()
    assert got[0] == {"kind": "cell", "index": 0}
    assert any(isinstance(g, str) and "grew past 100 bytes" in g for g in got)
    assert tail.offset == 100 and tail.read() == []


def test_a_record_of_another_version_is_refused_and_said(tmp_path):
    def old_image(out: Path, plan):
        recs = [{"kind": "cell", "index": 0, "outcome": "ok", "record_version": 0},
                {"kind": "done", "record_version": 1}]
        (out / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
        return {"ExitCode": 0}

    job, ctx, _ = job_and_ctx(tmp_path)
    cells = run_job(FakeEngine(old_image), job, ctx)
    assert cells[0].outcome == "error"
    assert "version 0; this lab reads version 1" in cells[0].detail


def test_an_engine_that_cannot_see_this_machine_gets_its_files_and_returns_results_by_api(
        tmp_path):
    job, ctx, _ = job_and_ctx(tmp_path)
    user = tmp_path / "user"
    (user / "pkg").mkdir(parents=True)
    (user / "pkg" / "script.py").write_text("print('hi')\n")
    (user / "elsewhere").symlink_to("/etc/passwd")  # never copied, never followed
    ctx = dataclasses.replace(ctx, user_dir=user)
    engine = FakeEngine(files="copy")
    cells = run_job(engine, job, ctx)
    assert len(cells) == len(job.cells) and all(c.outcome == "ok" for c in cells)
    spec = engine.started[0]
    assert spec.binds == {} and spec.ro_binds == {} and spec.volumes == ("/lab",)
    inside = engine.roots["c0"] / "lab"
    # The runner's user may write the channel and make nothing else there.
    assert (inside / "out").stat().st_mode & 0o7777 == 0o755
    assert (inside / "out" / "results.jsonl").stat().st_mode & 0o7777 == 0o666
    assert (inside / "user" / "pkg" / "script.py").read_text() == "print('hi')\n"
    assert (inside / "user" / "pkg" / "script.py").stat().st_mode & 0o777 == 0o644
    assert not (inside / "user" / "elsewhere").exists()
    plan = json.loads((inside / "out" / "plan.json").read_text())
    assert plan["user_dir"] == "/lab/user" and plan["cells"] == job.to_plan()["cells"]
    assert engine.removed == ["c0"]


def test_through_the_api_a_symlinked_results_channel_is_refused(tmp_path):
    def link(out: Path, plan):
        (out.parent / "secret").write_text('{"kind": "done", "record_version": 1}\n')
        # A container cannot do this (the folder is not its to write): the host refuses the
        # link all the same, should an engine let it through.
        (out / "results.jsonl").unlink()
        (out / "results.jsonl").symlink_to(out.parent / "secret")
        return {"ExitCode": 0}

    job, ctx, _ = job_and_ctx(tmp_path)
    cells = run_job(FakeEngine(link, files="copy"), job, ctx)
    assert all(c.outcome == "error" for c in cells)
    assert "not a regular file (a symbolic link is not followed)" in cells[0].detail


def test_the_archive_channel_reads_new_lines_only_and_up_to_a_cap(tmp_path, monkeypatch):
    content = {"data": b""}

    def fetch():
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            info = tarfile.TarInfo("results.jsonl")
            info.size = len(content["data"])
            tar.addfile(info, io.BytesIO(content["data"]))
        return iter([buffer.getvalue()])

    tail = ArchiveTail("results.jsonl", fetch)
    assert tail.read() == []
    content["data"] = b'{"a": 1}\n{"b"'
    assert tail.read() == [{"a": 1}]
    content["data"] += b': 2}\n'
    assert tail.read() == [{"b": 2}] and tail.offset == len(content["data"])
    monkeypatch.setattr("lab.run.records.MAX_RESULTS_BYTES", 40)
    content["data"] += b"x" * 100 + b"\n"
    got = tail.read()
    assert any(isinstance(g, str) and "grew past 40 bytes" in g for g in got)
    assert tail.read() == []
    assert ArchiveTail("r", lambda: iter([b"not a tar" * 100])).read()[0].startswith(
        "r came back as a broken archive")
