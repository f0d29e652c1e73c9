"""Several Docker engines. The second one is a real dockerd on this machine with its own
socket, data root and exec root, no bridge and no iptables, started and stopped by these
tests; it is reached through a unix:// host and through a Docker CLI context (made with the
SDK). It also listens on tcp://127.0.0.1 (loopback only, no TLS), where the lab treats it as an
engine on another machine: files go in and results come out through its API. It starts empty:
bases reach it by streaming from the first engine."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from docker.context import ContextAPI

from lab.engine import MANAGED, Engine, endpoint
from lab.errors import LabError
from lab.matrix import EngineSpec
from lab.run.engines import remove_leftovers
from lab.runner.scenarios import CATALOG

from .conftest import REPO, lab, lab_containers, load_results, only_run, wait_for
from .test_interrupts import cells_done, run_dir, start_lab

SCHEMA = json.loads((REPO / "lab" / "schema" / "results.schema.json").read_text())
# A hazard that hangs or not by chance (a thread writing while another forks): compared as
# "hung or ok" between runs, not as one outcome.
BY_CHANCE = {"fork_held_io"}
HANGING = "fork_held_lock,queue_join_before_drain,fork_warning"


# An administrator's tool: a non-root user's PATH on Debian has no /usr/sbin.
DOCKERD = shutil.which("dockerd") or shutil.which("dockerd", path="/usr/sbin:/sbin")


class SecondEngine:
    """A dockerd of the tests' own: start(), stop() (SIGTERM, as systemd would) and start()
    again on the same data root."""

    def __init__(self, root: Path, storage_driver: str) -> None:
        self.root = root
        self.url = f"unix://{root}/docker.sock"
        with socket.socket() as probe:  # a free loopback port
            probe.bind(("127.0.0.1", 0))
            self.tcp = f"tcp://127.0.0.1:{probe.getsockname()[1]}"
        self.driver = storage_driver
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        (self.root / "daemon.json").write_text("{}")  # not the machine's /etc/docker one
        cmd = [DOCKERD or "dockerd", "--config-file", str(self.root / "daemon.json"),
               "--data-root", str(self.root / "data"), "--exec-root", str(self.root / "exec"),
               "--pidfile", str(self.root / "docker.pid"), "-H", self.url, "-H", self.tcp,
               "--bridge=none", "--iptables=false", "--ip-masq=false",
               "--storage-driver", self.driver]
        if os.geteuid() != 0:
            cmd = ["sudo", "-n", *cmd]
        with open(self.root / "dockerd.log", "ab") as log:  # the daemon keeps its own copy
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError("the second dockerd exited: "
                                     + (self.root / "dockerd.log").read_text()[-2000:])
            try:
                Engine.connect(self.spec("probe"), ping_timeout=1).close()
                return
            except LabError:
                time.sleep(0.5)
        raise AssertionError("the second dockerd did not answer in 60 s")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        pid = int((self.root / "docker.pid").read_text())
        subprocess.run(([] if os.geteuid() == 0 else ["sudo", "-n"]) +
                       ["kill", "-TERM", str(pid)], check=True)
        self.proc.wait(timeout=60)

    def spec(self, name: str = "second") -> EngineSpec:
        return EngineSpec(name=name, host=self.url)

    def connect(self) -> Engine:
        return Engine.connect(self.spec())


@pytest.fixture(scope="module")
def second(engine: Engine) -> Iterator[SecondEngine]:
    if DOCKERD is None:
        pytest.fail("dockerd is needed to start a second engine: apt-get install docker.io "
                    "(.ci/setup test does)")
    if os.geteuid() != 0 and subprocess.run(["sudo", "-n", "true"],
                                            capture_output=True).returncode != 0:
        pytest.fail("starting a second Docker engine needs root or passwordless sudo")
    root = Path(tempfile.mkdtemp(prefix="lab2-", dir="/tmp"))  # short: a socket path
    daemon = SecondEngine(root, engine.facts().storage_driver)
    daemon.start()
    try:
        yield daemon
    finally:
        try:
            if daemon.proc is None or daemon.proc.poll() is not None:
                daemon.start()
            e = daemon.connect()
            try:
                remove_leftovers(e, everything=True)
            finally:
                e.close()
        except (LabError, AssertionError):
            pass
        daemon.stop()
        subprocess.run(([] if os.geteuid() == 0 else ["sudo", "-n"]) +
                       ["rm", "-rf", str(root)], check=False)


def two_engines(tmp_path: Path, second: SecondEngine, *, first: str = "main",
                other: str = 'host = "{url}"') -> Path:
    toml = tmp_path / "lab.toml"
    toml.write_text(f'[engine.{first}]\nhost = "{endpoint()}"\n\n'
                    f'[engine.second]\n{other.format(url=second.url)}\n')
    return toml


def outcomes(data: dict[str, Any]) -> dict[tuple[str, str, str | None, str | None], str]:
    return {(c["target"], c["scenario"], c["start_method"], c.get("container")): c["outcome"]
            for c in data["results"] if c["kind"] == "behaviour"}


PROBE_FACTS = ("start_methods", "default_start_method", "gil_enabled", "pickle_protocol")


# Every probe and hazard scenario of the default run (not those that install packages when
# named: tests/integration/test_libraries.py has them), and one timing scenario so that both
# engines' timing lanes run (the other timing scenarios add minutes and no observation this
# test compares).
COMPARED = ",".join([s for s, m in CATALOG.items() if m["kind"] == "behaviour"
                     and not m.get("requires")] + ["countdown"])


@pytest.mark.alone  # deadlines of 6 s: a machine shared with other tests turns starts into hangs
def test_the_default_matrix_across_two_engines_matches_one_engine(engine, second, tmp_path):
    one = lab("run", "--quick", "--scenarios", COMPARED, "--out", str(tmp_path / "one"),
              "--no-progress")
    assert one.returncode == 0, one.stderr[-3000:]
    toml = two_engines(tmp_path, second)
    two = lab("run", "--quick", "--scenarios", COMPARED, "--config", str(toml),
              "--out", str(tmp_path / "two"), "--no-progress")
    assert two.returncode == 0, two.stderr[-3000:]
    ref, got = load_results(only_run(tmp_path / "one")), load_results(only_run(tmp_path / "two"))
    jsonschema.validate(got, SCHEMA)
    # Both engines did work, and say who they are.
    placed = {t["id"]: t["engine"] for t in got["targets"]}
    assert set(placed.values()) == {"main", "second"}, placed
    engines = got["run"]["engines"]
    assert engines["main"]["id"] == engine.facts().id
    # Two daemons of one machine share its ID (its key) and host name: the address tells them
    # apart.
    assert engines["second"]["where"] == second.url
    assert all(engines[n]["cpus"] and engines[n]["storage_driver"] for n in engines)
    for c in got["results"]:
        assert c["engine"] == placed[c["target"]]
    # The second engine started empty: its bases came from the first, streamed.
    on_second = [t for t in got["targets"] if t["engine"] == "second"]
    assert any((t["base"] or {}).get("streamed_from") == "main" for t in on_second)
    # What was observed is the same as on one engine.
    for t in got["targets"]:
        r = next(x for x in ref["targets"] if x["id"] == t["id"])
        if t.get("optional") and t["status"] == "unavailable":  # no registry here
            assert r["status"] == "unavailable" and r["optional"]
            continue
        assert t["status"] == r["status"] == "ok"
        for key in PROBE_FACTS:
            assert t["probe"].get(key) == r["probe"].get(key), (t["id"], key)
    a, b = outcomes(ref), outcomes(got)
    assert set(a) == set(b)
    for key in a:
        if key[1] in BY_CHANCE:
            assert {a[key], b[key]} <= {"ok", "hung"}, key
        else:
            assert a[key] == b[key], key
    # Nothing left on either engine.
    assert lab_containers(engine, **{"lab.run": only_run(tmp_path / "two").name}) == []
    e2 = second.connect()
    try:
        assert lab_containers(e2) == []
    finally:
        e2.close()


def test_the_second_engine_through_a_context(second, tmp_path):
    config = tmp_path / "docker-config"
    config.mkdir()
    (config / "config.json").write_text("{}")
    os.environ["DOCKER_CONFIG"] = str(config)  # where the SDK writes the context
    try:
        ContextAPI.create_context("lab-second", host=second.url)
    finally:
        del os.environ["DOCKER_CONFIG"]
    env = {**os.environ, "DOCKER_CONFIG": str(config)}
    toml = tmp_path / "lab.toml"
    toml.write_text('[engine.by-context]\ncontext = "lab-second"\n\n'
                    f'[engine.gone]\nhost = "unix://{tmp_path}/no-engine.sock"\n')
    doctor = lab("doctor", "--config", str(toml), env=env, timeout=120)
    lines = doctor.stdout.splitlines()
    assert next(x for x in lines if "engine by-context:" in x).startswith("[ok  ]")
    assert "(context lab-second)" in doctor.stdout
    assert next(x for x in lines if "engine gone:" in x).startswith("[FAIL]")
    assert doctor.returncode == 1  # one engine failed; the others were still checked
    r = lab("run", "--config", str(toml), "--engines", "by-context", "--targets", "cp311",
            "--scenarios", "probe", "--out", str(tmp_path / "runs"), "--no-progress", env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    data = load_results(only_run(tmp_path / "runs"))
    assert data["run"]["engines"]["by-context"]["where"] == f"{second.url} (context lab-second)"
    assert data["targets"][0]["engine"] == "by-context"
    # An engine that cannot be reached at the start: its targets unavailable, the rest run.
    r = lab("run", "--config", str(toml), "--targets", "cp311,cp314", "--scenarios", "probe",
            "--out", str(tmp_path / "partial"), "--no-progress", env=env)
    data = load_results(only_run(tmp_path / "partial"))
    rows = {t["id"]: t for t in data["targets"]}
    gone = [t for t in rows.values() if t["engine"] == "gone"]
    assert r.returncode == 1 and len(gone) == 1, r.stderr[-2000:]
    assert gone[0]["status"] == "unavailable" and "no-engine.sock" in gone[0]["reason"]
    ran = [t for t in rows.values() if t["engine"] == "by-context"][0]
    assert ran["status"] == "ok" and any(c["target"] == ran["id"] for c in data["results"])


def test_an_engine_lost_mid_run_leaves_the_other_engine_s_targets_complete(
        engine, second, tmp_path):
    toml = two_engines(tmp_path, second)
    out = tmp_path / "runs"
    proc = start_lab("run", "--config", str(toml), "--targets", "cp311,cp314", "--scenarios",
                     HANGING, "--out", str(out), "--no-progress")
    try:
        def cell_on_second() -> bool:  # a cell, not an image build, ran there
            d = run_dir(out)
            if d is None or not (d / "cells.jsonl").exists():
                return False
            cells = [json.loads(x) for x in (d / "cells.jsonl").read_text().splitlines()]
            return any(c.get("engine") == "second" for c in cells)
        wait_for(cell_on_second, 180, "a finished cell on the second engine")
        second.stop()
        _, err = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.communicate()
        second.start()
    assert proc.returncode == 1, err[-3000:]  # partial, not "no engine"
    data = load_results(run_dir(out))
    assert data["run"]["complete"] is False
    placed = {t["id"]: t["engine"] for t in data["targets"]}
    mine = next(t for t, e in placed.items() if e == "main")
    lost = next(t for t, e in placed.items() if e == "second")
    def cells_of(t: str) -> set[tuple[str, str | None]]:
        return {(c["scenario"], c["start_method"]) for c in data["results"] if c["target"] == t}
    # Every cell of both targets is there: the first engine's all finished, none an error.
    assert cells_of(mine) == cells_of(lost) and len(cells_of(mine)) > 3
    assert all(c["outcome"] != "error" for c in data["results"] if c["target"] == mine)
    # The second's cells that did not finish are errors that say why, one line each.
    errors = [c for c in data["results"] if c["target"] == lost and c["outcome"] == "error"]
    assert errors and all(c["detail"] and "\n" not in c["detail"] for c in errors)
    assert any("second" in n for n in data["run"]["notes"]) or any(
        "engine second lost" in c["detail"] for c in errors)
    assert (run_dir(out) / "index.html").exists()
    # Nothing left on the first engine; the second keeps the stopped run's containers until it
    # is back and the next run (or `lab clean`) on it sweeps them, as after a SIGKILL.
    assert lab_containers(engine, **{"lab.run": run_dir(out).name}) == []
    nxt = lab("run", "--config", str(toml), "--engines", "second", "--targets", "cp311",
              "--scenarios", "probe", "--out", str(tmp_path / "next"), "--no-progress")
    assert nxt.returncode == 0, nxt.stderr[-2000:]
    e2 = second.connect()
    try:
        assert lab_containers(e2, **{"lab.run": run_dir(out).name}) == []
    finally:
        e2.close()
    # `lab clean` goes over every engine named, and says which it could not reach.
    toml2 = tmp_path / "clean.toml"
    toml2.write_text(f'[engine.second]\nhost = "{second.url}"\n\n'
                     f'[engine.gone]\nhost = "unix://{tmp_path}/no-engine.sock"\n')
    r = lab("clean", "--config", str(toml2))
    assert r.returncode == 1, r.stderr
    assert "second: removed" in r.stdout and "gone: not cleaned" in r.stderr
    e2 = second.connect()
    try:
        kinds = {i.labels.get("lab.kind") for i in e2.images({MANAGED: "true"})}
    finally:
        e2.close()
    assert kinds <= {"base"}  # target images gone, bases kept (no --all)


def test_an_engine_reached_over_tcp_gets_files_and_returns_results_through_its_api(
        second, tmp_path):
    """tcp:// may be another machine, which cannot see this one's folders: nothing is
    bind-mounted; the plan and the user's files are copied in and results read back through
    the engine's API, with the same outcomes as a bind-mounted run."""
    toml = tmp_path / "lab.toml"
    toml.write_text(f'[engine.remote]\nhost = "{second.tcp}"\n')
    r = lab("run", "--config", str(toml), "--targets", "cp311", "--scenarios",
            "probe,fork_held_lock", "--out", str(tmp_path / "runs"), "--no-progress")
    assert r.returncode == 0, r.stderr[-3000:]
    run = only_run(tmp_path / "runs")
    data = load_results(run)
    assert data["run"]["engines"]["remote"]["files"] == "copy"
    assert data["targets"][0]["probe"]["start_methods"]
    hung = [c for c in data["results"] if c["scenario"] == "fork_held_lock"
            and c["start_method"] == "fork"]
    assert hung[0]["outcome"] == "hung" and "(child process)" in hung[0]["stacks"]
    assert not list((run / "work").glob("*/results.jsonl"))  # nothing came by the host's disk
    # A user's program and its files: copied in, read-only to it, and the folder it runs in is
    # the engine's own volume, not this machine's.
    prog = tmp_path / "prog"
    prog.mkdir()
    (prog / "data.txt").write_text("from the host\n")
    (prog / "main.py").write_text(
        "import os, sys\n"
        "print(open('data.txt').read().strip())\n"
        "mine = [l for l in open('/proc/self/mountinfo') if l.split()[4] == '/lab']\n"
        "print('MOUNT', mine[0].split()[3] if mine else 'none')\n"
        "try:\n"
        "    open('data.txt', 'a').write('x')\n"
        "except OSError as e:\n"
        "    print('READONLY', e.errno)\n")
    r = lab("check", "--config", str(toml), "--targets", "cp311", "--start-methods", "spawn",
            "--out", str(tmp_path / "check"), "--no-progress", str(prog / "main.py"))
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    cells = load_results(only_run(tmp_path / "check"))["results"]
    out = "\n".join(c["output"] or "" for c in cells)
    assert "from the host" in out and "READONLY 13" in out, out
    mount = next(line.split()[1] for line in out.splitlines() if line.startswith("MOUNT"))
    assert "/volumes/" in mount and str(tmp_path) not in mount, mount


def test_lab_build_makes_each_target_s_image_where_a_run_would_use_it(engine, second,
                                                                      tmp_path):
    toml = two_engines(tmp_path, second, other=f'host = "{second.tcp}"\ntiming = false')
    r = lab("build", "--config", str(toml), "--targets", "cp311,cp314")
    assert r.returncode == 0, r.stderr[-3000:]
    built = {(line.split(":")[0], line.rsplit(" on ", 1)[1]) for line in r.stdout.splitlines()
             if " on " in line}
    # Each target on its own engine, and both on main too: the timing lane (second has
    # timing = false), so a run after this builds nothing.
    assert {("cp311", "main"), ("cp314", "main")} <= built and len(built) == 3, r.stdout
    on_second = next(t for t, e in built if e == "second")
    e2 = second.connect()
    try:
        tags = {tag for i in e2.images({MANAGED: "true"}) for tag in i.tags}
    finally:
        e2.close()
    assert any(f"{on_second}-" in tag or f":{on_second}" in tag for tag in tags), tags
    run = lab("run", "--config", str(toml), "--targets", "cp311,cp314", "--scenarios",
              "probe", "--out", str(tmp_path / "runs"), "--no-progress")
    assert run.returncode == 0 and "images: every image already built" in run.stdout, \
        run.stdout[-2000:] + run.stderr[-2000:]


def test_sigterm_mid_run_on_two_engines_leaves_no_container_on_either(
        engine, second, tmp_path):
    toml = two_engines(tmp_path, second, other=f'host = "{second.tcp}"')
    # Each target's image made on its engine first, so that both engines run cells at once.
    warm = lab("run", "--config", str(toml), "--targets", "cp311,cp314", "--scenarios", "probe",
               "--out", str(tmp_path / "warm"), "--no-progress")
    assert warm.returncode == 0, warm.stderr[-3000:]
    out = tmp_path / "runs"
    proc = start_lab("run", "--config", str(toml), "--targets", "cp311,cp314", "--scenarios",
                     HANGING, "--out", str(out), "--no-progress")
    e2 = second.connect()
    try:
        def busy_on_both() -> bool:
            d = run_dir(out)
            return d is not None and bool(lab_containers(engine, **{"lab.run": d.name})) and \
                bool(lab_containers(e2, **{"lab.run": d.name})) and cells_done(out) >= 1
        try:
            wait_for(busy_on_both, 240, "a container on each engine and a finished cell")
        except AssertionError:
            proc.kill()
            proc.communicate()
            raise
        os.kill(proc.pid, signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 143, err[-3000:]
        assert "interrupted; kept" in err and "(SIGTERM)" in err
        d = run_dir(out)
        assert d is not None
        data = load_results(d)
        assert data["run"]["complete"] is False and data["run"]["interrupted"] is True
        assert data["results"] and all(c["outcome"] != "error" for c in data["results"])
        assert "Partial run" in (d / "index.html").read_text()
        assert lab_containers(engine, **{"lab.run": d.name}) == []
        assert lab_containers(e2, **{"lab.run": d.name}) == []
    finally:
        e2.close()


class SshServer:
    """An sshd of the test's own on 127.0.0.1, letting in the user running the tests with a
    key made for it. Through it the docker SDK (paramiko) runs `docker system dial-stdio` on
    the "remote" side, which reaches that side's engine: here, this machine's own."""

    def __init__(self, root: Path) -> None:
        self.root = root
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.user = pwd.getpwuid(os.getuid()).pw_name
        self.url = f"ssh://{self.user}@127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        r = self.root
        keygen = ["ssh-keygen", "-q", "-t", "ed25519", "-N", ""]
        subprocess.run([*keygen, "-f", str(r / "host_key")], check=True)
        subprocess.run([*keygen, "-f", str(r / "client_key")], check=True)
        shutil.copy(r / "client_key.pub", r / "authorized_keys")
        os.chmod(r / "authorized_keys", 0o644)
        (r / "sshd_config").write_text(
            f"Port {self.port}\nListenAddress 127.0.0.1\nHostKey {r}/host_key\n"
            f"AuthorizedKeysFile {r}/authorized_keys\nPidFile {r}/sshd.pid\nStrictModes no\n"
            "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n"
            "PermitRootLogin prohibit-password\n")
        # The client's side, as a user would have it: ~/.ssh/config and known_hosts.
        home = r / "home"
        (home / ".ssh").mkdir(parents=True)
        (home / ".ssh" / "config").write_text(
            f"Host 127.0.0.1\n  IdentityFile {r}/client_key\n")
        host_key = (r / "host_key.pub").read_text().split()
        (home / ".ssh" / "known_hosts").write_text(
            f"[127.0.0.1]:{self.port} {host_key[0]} {host_key[1]}\n")
        sudo = [] if os.geteuid() == 0 else ["sudo", "-n"]
        subprocess.run([*sudo, "mkdir", "-p", "/run/sshd"], check=True)
        with open(r / "sshd.log", "wb") as log:
            self.proc = subprocess.Popen([*sudo, shutil.which("sshd") or "/usr/sbin/sshd", "-D",
                                          "-e", "-f", str(r / "sshd_config")], stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        wait_for(lambda: self._answers(), 30, "sshd on 127.0.0.1")

    def _answers(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError("sshd exited: " + (self.root / "sshd.log").read_text()[-2000:])
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", self.port)) == 0

    def env(self) -> dict[str, str]:
        return {**os.environ, "HOME": str(self.root / "home")}

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            pid = (self.root / "sshd.pid").read_text().strip()
            subprocess.run(([] if os.geteuid() == 0 else ["sudo", "-n"]) + ["kill", pid],
                           check=False)
            self.proc.wait(timeout=30)


@pytest.fixture
def ssh_server(tmp_path: Path) -> Iterator[SshServer]:
    if shutil.which("sshd") is None and not Path("/usr/sbin/sshd").exists():
        pytest.fail("sshd is needed to reach an engine over ssh: apt-get install "
                    "openssh-server (.ci/setup test does)")
    root = tmp_path / "ssh"
    root.mkdir()
    server = SshServer(root)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_an_engine_reached_over_ssh(engine, ssh_server, tmp_path):
    """ssh://user@host as a user writes it, with their ~/.ssh/config and known_hosts: the SDK's
    own ssh transport (paramiko) and, as for any engine that may be elsewhere, files copied."""
    toml = tmp_path / "lab.toml"
    toml.write_text(f'[engine.over-ssh]\nhost = "{ssh_server.url}"\n')
    env = ssh_server.env()
    doctor = lab("doctor", "--config", str(toml), env=env, timeout=120)
    line = next(x for x in doctor.stdout.splitlines() if "engine over-ssh:" in x)
    assert line.startswith("[ok  ]"), doctor.stdout
    r = lab("run", "--config", str(toml), "--targets", "cp311", "--scenarios",
            "probe,fork_held_lock", "--out", str(tmp_path / "runs"), "--no-progress", env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    data = load_results(only_run(tmp_path / "runs"))
    facts = data["run"]["engines"]["over-ssh"]
    assert facts["where"] == ssh_server.url and facts["files"] == "copy"
    assert facts["id"] == engine.facts().id  # the engine behind the ssh server: this one
    assert data["targets"][0]["status"] == "ok" and data["targets"][0]["probe"]["start_methods"]
    hung = next(c for c in data["results"] if c["scenario"] == "fork_held_lock"
                and c["start_method"] == "fork")
    assert hung["outcome"] == "hung" and "(child process)" in hung["stacks"]
    assert lab_containers(engine, **{"lab.run": only_run(tmp_path / "runs").name}) == []
    # A key the server does not know: the engine is unreachable, with a one-line reason.
    (ssh_server.root / "authorized_keys").write_text("")
    r = lab("run", "--config", str(toml), "--targets", "cp311", "--scenarios", "probe",
            "--out", str(tmp_path / "refused"), "--no-progress", env=env)
    assert r.returncode == 3, r.stderr[-2000:]
    err = r.stderr.strip().splitlines()
    assert len(err) == 1 and ssh_server.url in err[0] and "over-ssh" in err[0], err


def test_a_container_made_from_a_lab_image_is_not_swept_as_the_builders_leftover(engine,
                                                                                 image_of):
    """A layer committed by a run kept that run's labels (lab.host, its pid, long dead), so a
    container made from the image later looked like a killed run's leftover to any run's
    sweep (a .ci/run lost a test's container to it mid-copy). The commit blanks them."""
    from lab.images.layers import tar_of

    builder = {MANAGED: "true", "lab.run": "r-gone", "lab.host": socket.gethostname(),
               "lab.pid": "999999999"}
    ref = "lab-test-labels:blank"
    engine.commit_layer(image_of("cp311"), tar_of({"x.txt": b"x"}), repository=ref.split(":")[0],
                        tag="blank", changes=[], labels={MANAGED: "true", "lab.kind": "test"},
                        command=["true"], container_labels=builder)
    try:
        labels = engine.image(ref).labels
        assert labels["lab.kind"] == "test" and labels[MANAGED] == "true"
        assert labels.get("lab.pid") == labels.get("lab.host") == labels.get("lab.run") == ""
        client = engine._client
        made = client.api.create_container(ref, command=["true"])  # labels: the image's only
        try:
            assert made["Id"][:12] not in " ".join(remove_leftovers(engine))
            assert client.api.inspect_container(made["Id"])  # still there
        finally:
            client.api.remove_container(made["Id"], force=True)
    finally:
        engine.remove_image(ref)
