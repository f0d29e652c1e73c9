"""Ctrl-C, SIGTERM, SIGKILL and a vanishing engine: nothing left behind, finished cells kept."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

from lab.run.engines import remove_leftovers

from .conftest import LAB, REPO, lab, lab_containers, load_results, wait_for

HANGING = "fork_held_lock,queue_join_before_drain,fork_warning"


def start_lab(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen([*LAB, *args], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env,
                            start_new_session=True)


def run_dir(out: Path) -> Path | None:
    runs = [p for p in out.iterdir() if p.is_dir() and not p.is_symlink()] if out.exists() else []
    return runs[0] if runs else None


def cells_done(out: Path) -> int:
    d = run_dir(out)
    if d is None or not (d / "cells.jsonl").exists():
        return 0
    return len((d / "cells.jsonl").read_text().splitlines())


def hanging_run(out: Path, *, cells: int, env: dict[str, str] | None = None
                ) -> tuple[subprocess.Popen[str], str]:
    """Start `lab run` on cp311's hanging scenarios; return once ``cells`` have finished."""
    proc = start_lab("run", "--targets", "cp311", "--scenarios", HANGING, "--out", str(out),
                     "--no-progress", env=env)
    try:
        wait_for(lambda: cells_done(out) >= cells, 120, f"{cells} finished cell(s)")
    except AssertionError:
        proc.kill()
        proc.communicate()
        raise
    return proc, run_dir(out).name


def test_ctrl_c_mid_run_cleans_up_fast_and_keeps_finished_cells(engine, image_of, tmp_path):
    image_of("cp311")
    out = tmp_path / "runs"
    proc, run_id = hanging_run(out, cells=2)
    assert lab_containers(engine, **{"lab.run": run_id})  # mid-run: a container is running
    sent = time.monotonic()
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
    _, err = proc.communicate(timeout=30)
    took = time.monotonic() - sent
    assert proc.returncode == 130, err
    assert took < 10, took
    assert "interrupted; kept" in err
    data = load_results(run_dir(out))
    assert data["run"]["complete"] is False and data["run"]["interrupted"] is True
    assert len(data["results"]) >= 2
    assert all(c["outcome"] != "error" for c in data["results"])  # no invented rows
    assert lab_containers(engine, **{"lab.run": run_id}) == []
    # The partial run renders and says it is partial.
    assert "Partial run" in (run_dir(out) / "index.html").read_text()


def test_sigterm_mid_run_is_an_interrupt_exit_143(engine, image_of, tmp_path):
    """What `timeout`, a cancelled CI job or systemd do: SIGTERM to the lab's own process
    only (its containers get no signal from a terminal)."""
    image_of("cp311")
    out = tmp_path / "runs"
    proc, run_id = hanging_run(out, cells=2)
    assert lab_containers(engine, **{"lab.run": run_id})
    sent = time.monotonic()
    os.kill(proc.pid, signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    took = time.monotonic() - sent
    assert proc.returncode == 143, err
    assert took < 10, took
    assert "interrupted; kept" in err and "(SIGTERM)" in err
    data = load_results(run_dir(out))
    assert data["run"]["complete"] is False and data["run"]["interrupted"] is True
    assert len(data["results"]) >= 2
    assert lab_containers(engine, **{"lab.run": run_id}) == []
    assert "Partial run" in (run_dir(out) / "index.html").read_text()


def test_ctrl_c_as_the_container_starts_leaves_nothing(engine, image_of, tmp_path):
    image_of("cp311")
    out = tmp_path / "runs"
    proc = start_lab("run", "--targets", "cp311", "--scenarios", HANGING, "--out", str(out),
                     "--no-progress")
    wait_for(lambda: run_dir(out) is not None and bool(
        lab_containers(engine, **{"lab.run": run_dir(out).name})), 60, "a container")
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert lab_containers(engine, **{"lab.run": run_dir(out).name}) == []
    assert load_results(run_dir(out))["run"]["interrupted"] is True


def test_sigkilled_harness_leftovers_are_removed_by_the_next_run(engine, image_of, tmp_path):
    image_of("cp311")
    out = tmp_path / "runs"
    proc, run_id = hanging_run(out, cells=1)
    wait_for(lambda: bool(lab_containers(engine, **{"lab.run": run_id})), 30, "a container")
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=10)
    assert lab_containers(engine, **{"lab.run": run_id})  # the leak a SIGKILL makes
    # `lab report` renders what the dead run persisted, marked partial.
    r = lab("report", str(run_dir(out)))
    assert r.returncode == 0, r.stderr
    assert "Partial run" in (run_dir(out) / "index.html").read_text()
    # The next run sweeps leftovers of dead harnesses on this host (under pytest-xdist another
    # worker's run may sweep them first; either way they must be gone).
    nxt = lab("run", "--targets", "cp311", "--scenarios", "probe", "--out",
              str(tmp_path / "next"), "--no-progress")
    assert nxt.returncode == 0, nxt.stderr
    assert lab_containers(engine, **{"lab.run": run_id}) == []


class SocketProxy:
    """A unix socket that relays to the real Docker socket until cut()."""

    def __init__(self, path: Path, target: str = "/var/run/docker.sock") -> None:
        self.path, self.target = str(path), target
        self.listener = socket.socket(socket.AF_UNIX)
        self.listener.bind(self.path)
        self.listener.listen(64)
        self.conns: list[socket.socket] = []
        self.alive = True
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while self.alive:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.socket(socket.AF_UNIX)
            upstream.connect(self.target)
            self.conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(a: socket.socket, b: socket.socket) -> None:
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def cut(self) -> None:
        self.alive = False
        self.listener.close()
        os.unlink(self.path)
        for c in self.conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
                c.close()
            except OSError:
                pass


def test_engine_lost_mid_run_is_one_clear_error_and_keeps_results(engine, image_of, tmp_path):
    image_of("cp311")
    proxy = SocketProxy(tmp_path / "docker.sock")
    out = tmp_path / "runs"
    env = {**os.environ, "DOCKER_HOST": f"unix://{tmp_path}/docker.sock"}
    proc, _ = hanging_run(out, cells=2, env=env)
    try:
        proxy.cut()
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 3, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("lab: error: Docker engine not reachable")
    assert "Partial results kept" in last
    data = load_results(run_dir(out))
    assert data["run"]["complete"] is False and len(data["results"]) >= 2
    # The engine itself is fine: the containers of the lost run are swept like a killed run's.
    remove_leftovers(engine)
    assert lab_containers(engine, **{"lab.run": run_dir(out).name}) == []
    json.loads((run_dir(out) / "results.json").read_text())
