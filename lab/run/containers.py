"""Containers: how one job's container is started, watched, read and always removed.

The runner writes framed JSON records to ``results.jsonl`` in a folder bind-mounted from the run
folder, so every finished cell is on the host's disk at once and stdout is never scraped. The
host polls with its own deadline (the SDK's ``wait`` can block forever); a container that dies,
is OOM-killed or overruns turns its unreported cells into ``crashed``/``error`` rows with the
reason. ``HostProcess`` runs the same runner with a host interpreter instead (``--host-python``).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import socket
import subprocess
import tarfile
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

from lab.engine import MANAGED, ContainerSpec, Engine
from lab.errors import EngineUnavailable, LabError
from lab.images.plan import stage_runner
from lab.matrix import Target
from lab.results import Cell, Outcome
from lab.run.records import MAX_RESULTS_BYTES, ArchiveTail, JsonlTail, record_problem
from lab.run.scheduler import CellSpec, Job

POLL_S = 0.25
# No file a cell container writes grows past this (RLIMIT_FSIZE): the results channel, the one
# file it writes on the host, stays bounded on the host's disk. The host reads MAX_RESULTS_BYTES
# of it at most; the rest is the margin a last record may need.
MAX_CHANNEL_BYTES = MAX_RESULTS_BYTES + (1 << 20)
COPY_POLL_S = 1.0  # results read through an engine's API (engine.files == "copy")
INNER_ROOT = "/lab"  # in "copy" mode a volume, holding both folders below
INNER_OUT = "/lab/out"
INNER_USER = "/lab/user"  # the user's files (scenario files, a `lab check` script), read-only
INNER_SCRATCH = "/tmp/lab-cells"  # cells' own files, on the container's size-capped tmpfs


def run_labels(run_id: str, target_id: str) -> dict[str, str]:
    return {MANAGED: "true", "lab.run": run_id, "lab.target": target_id,
            "lab.host": socket.gethostname(), "lab.pid": str(os.getpid())}


class Workload(Protocol):
    """A started runner: a container or a host process."""

    def exited(self) -> tuple[bool, int | None, bool]: ...  # (done, exit code, oom killed)
    def stop(self) -> None: ...
    def cleanup(self) -> None: ...
    def diagnostics(self) -> str: ...


class ContainerWorkload:
    def __init__(self, engine: Engine, spec: ContainerSpec,
                 files: bytes | None = None) -> None:
        self.engine = engine
        self.spec = spec
        self.cid: str | None = None
        self.cid = engine.start(spec, files=None if files is None else [files],
                                files_at=INNER_ROOT)

    def exited(self) -> tuple[bool, int | None, bool]:
        assert self.cid
        state = self.engine.state(self.cid)
        return state.stopped, state.exit_code, state.oom_killed

    def stop(self) -> None:
        if self.cid:
            self.engine.kill(self.cid)

    def cleanup(self) -> None:
        if self.cid:
            self.engine.remove_container(self.cid, quiet=True)

    def diagnostics(self) -> str:
        if not self.cid:
            return ""
        try:
            return self.engine.logs_tail(self.cid, lines=30)
        except LabError:
            return ""


class HostProcess:
    """The runner started directly with a host interpreter, in its own session."""

    def __init__(self, python: str, out_dir: Path, stage_dir: Path) -> None:
        stage_runner(stage_dir)
        env = dict(os.environ)
        env["PYTHONPATH"] = str(stage_dir)
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        self.log = open(out_dir / "runner.log", "wb")
        self.stage_dir = stage_dir
        self.proc = subprocess.Popen(
            [python, "-m", "labrunner", "run", "--plan", str(out_dir / "plan.json"),
             "--out", str(out_dir)],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT, env=env,
            start_new_session=True,
        )

    def exited(self) -> tuple[bool, int | None, bool]:
        code = self.proc.poll()
        return code is not None, code, False

    def stop(self) -> None:
        """SIGTERM: the runner kills its cells' process groups (each cell has a session of its
        own, so killing the runner's group alone would orphan them), then SIGKILL."""
        if self.proc.poll() is not None:
            return
        self._signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._signal(signal.SIGKILL)

    def _signal(self, sig: int) -> None:
        try:
            os.killpg(self.proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def cleanup(self) -> None:
        self.stop()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        self.log.close()
        shutil.rmtree(self.stage_dir, ignore_errors=True)

    def diagnostics(self) -> str:
        try:
            return Path(self.log.name).read_text(errors="replace")[-3000:]
        except OSError:
            return ""


def job_files(out_dir: Path, user_dir: Path | None) -> bytes:
    """A tar of what a container reads, for an engine that cannot see this machine's folders:
    ``out/`` (the plan, and the results channel, the one file the container may write) and
    ``user/`` (the user's files, owned by root: read-only to the runner). Only regular files
    and folders are copied; the folders are the lab's own copies."""
    buffer = io.BytesIO()

    def add(name: str, mode: int, data: bytes | None = None) -> None:
        info = tarfile.TarInfo(name)
        info.mode, info.uid, info.gid, info.mtime = mode, 0, 0, int(time.time())
        if data is None:
            info.type = tarfile.DIRTYPE
            tar.addfile(info)
        else:
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))

    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        add("out", 0o755)  # as on the host: one file to write, none to make
        add("out/plan.json", 0o644, (out_dir / "plan.json").read_bytes())
        add("out/results.jsonl", 0o666, b"")
        if user_dir is not None:
            add("user", 0o755)
            for folder, dirs, files in os.walk(user_dir):
                rel = Path(folder).relative_to(user_dir)
                for d in sorted(dirs):
                    if not (Path(folder) / d).is_symlink():
                        add(str(Path("user", rel, d)), 0o755)
                for f in sorted(files):
                    path = Path(folder) / f
                    if path.is_file() and not path.is_symlink():
                        add(str(Path("user", rel, f)), 0o755 if os.access(path, os.X_OK)
                            else 0o644, path.read_bytes())
    return buffer.getvalue()


@dataclass(frozen=True, kw_only=True)
class JobContext:
    run_id: str
    run_dir: Path
    target: Target
    image_tag: str | None
    stop: threading.Event
    user_dir: Path | None = None  # copies of the user's files, mounted read-only


@dataclass(frozen=True)
class Note:
    """What a job is waiting for, as it happens (the progress display shows it)."""

    text: str


def cells_only(events: Iterable[Cell | Note]) -> list[Cell]:
    """Run a job to its end and keep its cells (for callers with no progress display)."""
    return [e for e in events if isinstance(e, Cell)]


def _cell_from_record(rec: dict[str, Any], spec: CellSpec, job: Job, ctx: JobContext) -> Cell:
    def num(key: str) -> float | None:
        v = rec.get(key)
        return float(v) if isinstance(v, int | float) else None

    raw = rec.get("outcome")
    detail = rec.get("detail")
    if raw in Outcome.values():
        outcome = Outcome(raw)
    else:
        detail = f"runner reported an unknown outcome {raw!r}"
        outcome = Outcome.ERROR
    code = rec.get("exit_code")
    cpus = rec.get("cpus")
    measurements = rec.get("measurements")
    return Cell(
        target=ctx.target.id, scenario=spec.scenario, start_method=spec.start_method,
        outcome=outcome,
        duration_s=num("duration_s"),
        measurements=measurements if isinstance(measurements, dict) else {},
        warnings=[w for w in rec.get("warnings") or [] if isinstance(w, dict)],
        stacks=rec.get("stacks") if isinstance(rec.get("stacks"), str) else None,
        detail=str(detail) if detail is not None else None,
        output=rec.get("output") if isinstance(rec.get("output"), str) else None,
        exit_code=code if isinstance(code, int) else None,
        signal=rec.get("signal") if isinstance(rec.get("signal"), str) else None,
        kind=spec.kind,
        cpus=[c for c in cpus if isinstance(c, int)] if isinstance(cpus, list) else None,
        exclusive=job.exclusive,
        emulated=job.emulated,
        deadline_s=num("deadline_s"),
        cpu=rec.get("cpu") if isinstance(rec.get("cpu"), dict) else None,
        container=spec.container,
        quiet=rec.get("quiet") if isinstance(rec.get("quiet"), dict) else None,
        attempts=[a for a in rec["attempts"] if isinstance(a, dict)][:10]
        if isinstance(rec.get("attempts"), list) else None,
        engine=None if ctx.target.host_python else job.engine,
        gil_enabled=rec["gil_enabled"] if isinstance(rec.get("gil_enabled"), bool) else None,
    )


def missing_cell(spec: CellSpec, job: Job, ctx: JobContext, *, outcome: Outcome, detail: str,
                 output: str = "") -> Cell:
    return Cell(target=ctx.target.id, scenario=spec.scenario, start_method=spec.start_method,
                outcome=outcome, detail=detail, output=output or None, kind=spec.kind,
                exclusive=job.exclusive, emulated=job.emulated, container=spec.container,
                engine=None if ctx.target.host_python else job.engine)


def run_job(engine: Engine | None, job: Job, ctx: JobContext) -> Iterator[Cell | Note]:
    """Run ``job``'s cells, yielding each cell as it finishes (and a Note when the job waits
    for a quiet machine); every planned cell comes out as exactly one Cell. A crashed or error
    cell is held until the container's end is known, so that an OOM kill can be noted on it.
    The caller stamps what ran beside each cell; this function takes no callbacks."""
    work = ctx.run_dir / "work"
    work.mkdir(parents=True, exist_ok=True)
    os.chmod(work, 0o700)  # below it, folders the container must write to are open to all
    out_dir = work / job.name
    out_dir.mkdir(exist_ok=True)
    os.chmod(out_dir, 0o755)
    plan = job.to_plan()
    if not ctx.target.host_python:
        plan["scratch"] = INNER_SCRATCH
    if ctx.user_dir is not None:
        plan["user_dir"] = str(ctx.user_dir) if ctx.target.host_python else INNER_USER
    (out_dir / "plan.json").write_text(json.dumps(plan, indent=1))
    os.chmod(out_dir / "plan.json", 0o644)  # the container's user reads it, whatever the umask
    copying = engine is not None and engine.files == "copy" and not ctx.target.host_python
    if not copying:
        # The container may write one file here, the results channel, and make none: a cell
        # cannot swap the channel for a link or fill the folder with others, and the channel
        # stops growing at MAX_CHANNEL_BYTES (the container's RLIMIT_FSIZE). Copied in
        # instead (job_files) where the engine cannot see this folder.
        channel = out_dir / "results.jsonl"
        channel.touch()
        os.chmod(channel, 0o666)
    tail: JsonlTail | ArchiveTail = JsonlTail(out_dir / "results.jsonl")
    reported: dict[int, Cell] = {}
    problems: list[str] = []
    done_seen = False

    held: dict[int, Cell] = {}  # crashed or error: waiting for the container's end

    def drain() -> Iterator[Cell | Note]:
        nonlocal done_seen
        for rec in tail.read():
            if isinstance(rec, str):
                problems.append(rec)
                continue
            if (problem := record_problem(rec)) is not None:
                problems.append(problem)
                continue
            if rec.get("kind") == "done":
                done_seen = True
            if rec.get("kind") == "wait":
                others, waited = rec.get("others_cpus"), rec.get("waited_s")
                if isinstance(others, int | float) and isinstance(waited, int | float):
                    yield Note(f"waiting for a quiet machine: others use {others:.2f} CPU "
                               f"({waited:.0f} s)")
            if rec.get("kind") != "cell":
                continue
            index = rec.get("index")
            if not isinstance(index, int) or not 0 <= index < len(job.cells):
                problems.append(f"a result record with a bad index {index!r}")
                continue
            if index in reported:
                problems.append(f"a second result record for cell {index}")
                continue
            cell = _cell_from_record(rec, job.cells[index], job, ctx)
            reported[index] = cell
            if cell.outcome in (Outcome.CRASHED, Outcome.ERROR):
                held[index] = cell
            else:
                yield cell

    workload: Workload | None = None
    exit_code: int | None = None
    oom = False
    why = ""
    try:
        if ctx.target.host_python:
            workload = HostProcess(ctx.target.host_python, out_dir, ctx.run_dir / "work" /
                                   f".stage-{job.name}")
        else:
            assert engine is not None and ctx.image_tag is not None
            spec = ContainerSpec(
                image=ctx.image_tag,
                command=[ctx.target.python, "-m", "labrunner", "run",
                         "--plan", f"{INNER_OUT}/plan.json", "--out", INNER_OUT],
                name=f"lab-{ctx.run_id}-{job.name}",
                labels={**run_labels(ctx.run_id, ctx.target.id), "lab.phase": job.phase},
                cpuset_cpus=job.limits.get("cpuset_cpus", job.cpuset),
                nano_cpus=job.limits.get("nano_cpus"),
                # The runner then measures a cell's CPU by the container's cgroup. PYTHON_GIL,
                # where the matrix sets it, is in the environment every child inherits.
                environment={"LAB_IN_CONTAINER": "1", **(
                    {"PYTHON_GIL": ctx.target.python_gil} if ctx.target.python_gil else {})},
                max_file_bytes=MAX_CHANNEL_BYTES,
            )
            if copying:  # the engine cannot see out_dir: files in and results out by its API
                spec = replace(spec, volumes=(INNER_ROOT,))
                workload = ContainerWorkload(engine, spec, files=job_files(out_dir,
                                                                           ctx.user_dir))
                cid = workload.cid
                assert cid is not None
                tail = ArchiveTail("results.jsonl", lambda: engine.file_archive(
                    cid, f"{INNER_OUT}/results.jsonl"))
            else:
                spec = replace(
                    spec, binds={str(out_dir.resolve()): INNER_OUT},
                    ro_binds={str(ctx.user_dir.resolve()): INNER_USER} if ctx.user_dir else {})
                workload = ContainerWorkload(engine, spec)
        deadline = time.monotonic() + job.host_deadline_s
        # Through the API, every read fetches the whole file: read it less often.
        every = COPY_POLL_S if copying else POLL_S
        next_read = 0.0
        while True:
            if time.monotonic() >= next_read:
                next_read = time.monotonic() + every
                yield from drain()
            done, exit_code, oom = workload.exited()
            if done:
                break
            if ctx.stop.is_set():
                why = "run interrupted before this cell finished"
                workload.stop()
                break
            if time.monotonic() >= deadline:
                why = (f"container overran the host deadline of {job.host_deadline_s:.0f} s "
                       "and was killed")
                workload.stop()
                break
            time.sleep(POLL_S)
        yield from drain()
        if not why:
            if oom:
                why = "container was OOM-killed (memory limit) before this cell reported"
            elif not done_seen:
                why = f"runner exited with code {exit_code} before this cell reported"
        diag = workload.diagnostics() if (why or problems) else ""
    except EngineUnavailable:
        raise
    except LabError as exc:
        why = f"could not run the container: {exc}"
        diag = ""
    finally:
        if workload is not None:
            workload.cleanup()
    for index, spec_ in enumerate(job.cells):
        if index in held:
            cell = held[index]
            if oom:
                cell = replace(cell, outcome=Outcome.CRASHED,
                               detail=f"{cell.detail} (OOM kill noted)")
            yield cell
            continue
        if index in reported:
            continue  # already out
        if ctx.stop.is_set():
            continue  # interrupted: a partial run keeps only what finished
        detail = why or ("; ".join(problems) if problems else "no result record came back")
        if problems and why:
            detail = f"{why}; also: {'; '.join(problems)}"
        outcome = Outcome.CRASHED if oom else Outcome.ERROR
        yield missing_cell(spec_, job, ctx, outcome=outcome, detail=detail, output=diag)

