"""The lab's own Debian bootstrap against the real mirror, through a local mirror on 127.0.0.1
that the tests start: tampered files, bad or unpinned signatures, interrupts sent to the lab's
PID alone, a build as a non-root user. Each leaves no container and no half-made image."""

from __future__ import annotations

import hashlib
import http.server
import os
import re
import shutil
import signal
import site
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pysequoia
import pytest
import requests

from lab.engine import MANAGED
from lab.images.debian import PINNED_KEYS, TrustedKey
from lab.matrix import DEFAULT_MIRROR

from .conftest import LAB, REPO, lab, lab_containers, load_results, only_run, wait_for

UPSTREAM = os.environ.get("LAB_DEBIAN_MIRROR") or DEFAULT_MIRROR


class LocalMirror:
    """An HTTP mirror on 127.0.0.1 that relays Debian's and can change what it serves."""

    def __init__(self, *, tamper: Callable[[str, bytes], bytes] | None = None,
                 slow: Callable[[str], bool] | None = None) -> None:
        self.tamper = tamper or (lambda path, body: body)
        self.slow = slow or (lambda path: False)
        self.requests: list[str] = []
        mirror = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
                path = self.path.removeprefix("/debian/")
                mirror.requests.append(path)
                upstream = requests.get(f"{UPSTREAM}/{path}", timeout=60)
                if upstream.status_code != 200:
                    self.send_error(upstream.status_code)
                    return
                body = mirror.tamper(path, upstream.content)
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                try:
                    if mirror.slow(path):
                        for i in range(0, len(body), 512):  # about 5 KB/s: a long download
                            self.wfile.write(body[i:i + 512])
                            self.wfile.flush()
                            time.sleep(0.1)
                    else:
                        self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/debian"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def local_mirror() -> Iterator[Callable[..., LocalMirror]]:
    made: list[LocalMirror] = []

    def make(**kw: object) -> LocalMirror:
        made.append(LocalMirror(**kw))  # type: ignore[arg-type]
        return made[-1]

    yield make
    for m in made:
        m.close()


def config(tmp_path: Path, mirror: str, *, packages: str = '"python3.11"',
           suite: str = "bookworm") -> tuple[Path, str]:
    """A lab.toml with one target on a base of its own (a fresh name: never built before)."""
    name = "t" + uuid.uuid4().hex[:8]
    cfg = tmp_path / "lab.toml"
    cfg.write_text(f'[base.{name}]\nsuite = "{suite}"\npackages = [{packages}]\n'
                   f'mirror = "{mirror}"\n[[target]]\nid = "{name}"\nimplementation = "cpython"\n'
                   f'version = "3.11"\npython = "/usr/bin/python3.11"\nbase = "{name}"\n')
    return cfg, name


def env_with_cache(cache: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "LAB_DEBIAN_MIRROR"}
    return {**env, "LAB_CACHE_DIR": str(cache)}


def nothing_left(engine, name: str) -> None:
    assert engine.images({MANAGED: "true", "lab.base": name}) == []
    assert engine.images({MANAGED: "true", "lab.target": name}) == []
    assert [i for i in engine.images({MANAGED: "true", "lab.kind": "stage1"})
            if name in " ".join(i.tags)] == []
    assert [c for c in lab_containers(engine) if name in c] == []
    assert [v for v, labels in engine.volumes({MANAGED: "true"})
            if labels.get("lab.kind") == "bootstrap" and not _alive(labels)] == []


def _alive(labels: dict[str, str]) -> bool:
    """A bootstrap volume of another lab process still at work (pytest-xdist runs several)."""
    pid = labels.get("lab.pid", "")
    return pid.isdigit() and os.path.exists(f"/proc/{pid}")


def cache_is_sound(cache: Path) -> list[str]:
    """Every cached file hashes to its name; nothing partial is left. Returns the hashes."""
    store = cache / "archive" / "sha256"
    hashes = []
    for p in store.glob("*/*") if store.exists() else []:
        assert hashlib.sha256(p.read_bytes()).hexdigest() == p.name, p
        hashes.append(p.name)
    partial = cache / "archive" / "partial"
    assert not partial.exists() or list(partial.iterdir()) == []
    return hashes


def run_one(cfg: Path, target: str, out: Path, env: dict[str, str], *extra: str
            ) -> subprocess.CompletedProcess[str]:
    return lab("run", "--config", str(cfg), "--targets", ",".join([target, *extra]),
               "--scenarios", "probe", "--out", str(out), "--no-progress", env=env)


def test_a_tampered_deb_is_build_failed_naming_file_and_hashes(engine, image_of, tmp_path,
                                                                local_mirror):
    image_of("cp39")  # the other target: must still run
    victim = re.compile(r"pool/main/p/python3\.11/python3\.11-minimal_.*\.deb$")

    def flip(path: str, body: bytes) -> bytes:
        return body[:-1] + bytes([body[-1] ^ 1]) if victim.search(path) else body

    mirror = local_mirror(tamper=flip)
    cfg, name = config(tmp_path, mirror.url)
    cache = tmp_path / "cache"
    proc = run_one(cfg, name, tmp_path / "runs", env_with_cache(cache), "cp39")
    assert proc.returncode == 1, proc.stderr[-3000:]
    rows = {t["id"]: t for t in load_results(only_run(tmp_path / "runs"))["targets"]}
    reason = rows[name]["reason"]
    assert rows[name]["status"] == "build_failed", rows[name]
    assert re.search(r"python3\.11-minimal_\S+\.deb", reason) and "does not match" in reason
    assert rows["cp39"]["status"] == "ok"
    good = [p for p in mirror.requests if victim.search(p)]
    assert good, "the tampered file was requested"
    nothing_left(engine, name)
    hashes = cache_is_sound(cache)
    expected = re.search(r"signed index's ([0-9a-f]{64})", reason)
    assert expected and expected.group(1) not in hashes


def build_failed_through(engine, tmp_path: Path, local_mirror,
                         tamper: Callable[[str, bytes], bytes]) -> str:
    """Build a fresh base through a local mirror that tampers; return the row's reason after
    checking it is build_failed and that nothing was left."""
    cfg, name = config(tmp_path, local_mirror(tamper=tamper).url)
    proc = run_one(cfg, name, tmp_path / "runs", env_with_cache(tmp_path / "cache"))
    assert proc.returncode == 1, proc.stderr[-2000:]
    row = load_results(only_run(tmp_path / "runs"))["targets"][0]
    assert row["status"] == "build_failed", row
    nothing_left(engine, name)
    cache_is_sound(tmp_path / "cache")
    return str(row["reason"])


def test_a_tampered_packages_index_is_build_failed(engine, tmp_path, local_mirror):
    def edit(path: str, body: bytes) -> bytes:
        return body + b"\0" if path.endswith("binary-amd64/Packages.xz") else body

    reason = build_failed_through(engine, tmp_path, local_mirror, edit)
    assert "main/binary-amd64/Packages.xz" in reason and "does not match" in reason


def test_a_changed_inrelease_fails_the_signature_naming_the_key(engine, tmp_path, local_mirror):
    def edit(path: str, body: bytes) -> bytes:
        return body.replace(b"Codename: bookworm", b"Codename: bookwork", 1) \
            if path.endswith("InRelease") else body

    reason = build_failed_through(engine, tmp_path, local_mirror, edit)
    assert "does not verify" in reason
    assert any(fpr in reason for fpr in PINNED_KEYS)


def test_a_release_signed_by_a_key_that_is_not_pinned_is_refused(engine, tmp_path,
                                                                  local_mirror):
    mallory = pysequoia.Tsk.generate("Mallory <mallory@example.com>")
    mallory_ids = TrustedKey.of(mallory.extract_certificate(), "mallory").ids

    def resign(path: str, body: bytes) -> bytes:
        if not path.endswith("InRelease"):
            return body
        text = body.split(b"\n\n", 1)[1].split(b"-----BEGIN PGP SIGNATURE-----")[0]
        text = b"\n".join(ln[2:] if ln.startswith(b"- ") else ln for ln in text.split(b"\n"))
        return bytes(pysequoia.sign(mallory.signer(), text.rstrip(b"\n") + b"\n",
                                    mode=pysequoia.SignatureMode.CLEAR))

    reason = build_failed_through(engine, tmp_path, local_mirror, resign)
    named = re.search(r"signed by key ([0-9A-F]{40})", reason)
    assert named and "which is not pinned" in reason
    assert named.group(1) in mallory_ids  # the key that really signed it, by fingerprint


def test_an_unreachable_mirror_makes_its_targets_unavailable_and_the_rest_run(
        engine, image_of, tmp_path):
    image_of("cp39")
    cfg, name = config(tmp_path, "http://127.0.0.1:9/debian")
    proc = run_one(cfg, name, tmp_path / "runs", env_with_cache(tmp_path / "cache"), "cp39")
    assert proc.returncode == 1
    rows = {t["id"]: t for t in load_results(only_run(tmp_path / "runs"))["targets"]}
    assert rows[name]["status"] == "unavailable"
    assert "127.0.0.1:9/debian/dists/bookworm/InRelease" in rows[name]["reason"]
    assert rows["cp39"]["status"] == "ok"


def start(cfg: Path, target: str, out: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    # Its own session, so the signal below reaches the lab's PID alone, as `kill -INT` does.
    return subprocess.Popen([*LAB, "run", "--config", str(cfg), "--targets", target,
                             "--scenarios", "probe", "--out", str(out), "--no-progress"],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)


def interrupt(proc: subprocess.Popen[str]) -> tuple[float, str]:
    sent = time.monotonic()
    os.kill(proc.pid, signal.SIGINT)  # the PID only, not the group
    try:
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    return time.monotonic() - sent, err


def test_sigint_to_the_pid_during_downloads_ends_fast_and_keeps_nothing(
        engine, tmp_path, local_mirror):
    mirror = local_mirror(slow=lambda path: path.startswith("pool/"))
    cfg, name = config(tmp_path, mirror.url)
    cache = tmp_path / "cache"
    proc = start(cfg, name, tmp_path / "runs", env_with_cache(cache))
    wait_for(lambda: sum(p.startswith("pool/") for p in mirror.requests) >= 4, 120,
             "downloads to start")
    time.sleep(1)
    took, err = interrupt(proc)
    assert proc.returncode == 130, err[-2000:]
    assert took < 10, took
    nothing_left(engine, name)
    hashes = cache_is_sound(cache)
    assert len(hashes) <= 1  # at most the (complete, verified) Packages index
    assert load_results(only_run(tmp_path / "runs"))["run"]["interrupted"] is True


def test_sigint_to_the_pid_during_the_second_stage_leaves_no_container_or_image(
        engine, tmp_path):
    cfg, name = config(tmp_path, UPSTREAM)
    proc = start(cfg, name, tmp_path / "runs", env_with_cache(tmp_path / "cache"))

    def second_stage() -> bool:
        return any(c.labels.get("lab.kind") == "bootstrap" and
                   c.labels.get("lab.base") == name
                   for c in engine.containers({MANAGED: "true"}))

    wait_for(second_stage, 240, "the second stage's container")
    time.sleep(2)
    took, err = interrupt(proc)
    assert proc.returncode == 130, err[-2000:]
    assert took < 10, took
    time.sleep(1)  # anything still running in the harness would create images now
    nothing_left(engine, name)
    assert not second_stage()


def readable_lab(dest: Path) -> str:
    """The lab and the packages of this virtualenv, copied into ``dest`` (made readable by
    all), as a PYTHONPATH: the checkout and its virtualenv may live under a private home
    folder (mode 0700, like root's) that the unprivileged user cannot enter."""
    dest.mkdir(parents=True)
    skip = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(REPO / "lab", dest / "src" / "lab", ignore=skip)
    shutil.copytree(site.getsitepackages()[0], dest / "site", ignore=skip, symlinks=True)
    for root, dirs, files in os.walk(dest):
        for name in dirs:
            os.chmod(os.path.join(root, name), 0o755)
        for name in files:
            path = os.path.join(root, name)
            if not os.path.islink(path):
                os.chmod(path, os.stat(path).st_mode | 0o444)
    os.chmod(dest, 0o755)
    return os.pathsep.join([str(dest / "src"), str(dest / "site")])


def interpreter_for(kw: dict[str, object], env: dict[str, str]) -> str:
    """A Python of this virtualenv's version that the unprivileged user can execute (this
    venv's may live under /root, or a pyenv there), able to import the lab from
    ``env["PYTHONPATH"]``."""
    version = f"{sys.version_info[0]}.{sys.version_info[1]}"
    for cand in (os.path.realpath(sys.executable), f"/usr/bin/python{version}",
                 f"/usr/local/bin/python{version}", "/usr/bin/python3"):
        try:
            probe = subprocess.run(
                [cand, "-c", "import sys, lab.images.debian; "
                             f"assert sys.version_info[:2] == {sys.version_info[:2]!r}"],
                env=env, capture_output=True, timeout=60, cwd="/",
                **kw)  # type: ignore[call-overload]
        except OSError:
            continue
        if probe.returncode == 0:
            return cand
    raise AssertionError(f"no Python {version} that a non-root user can run: install "
                         f"python{version}")


def test_a_base_builds_as_a_non_root_user_in_the_docker_group(engine, tmp_path):
    """No root on the host: the unprivileged user builds a base it never had, end to end."""
    home = Path(tempfile.mkdtemp(prefix="lab-nonroot-"))
    code: Path | None = None
    try:
        cfg, name = config(home, UPSTREAM)
        env = {**env_with_cache(home / "cache"), "HOME": str(home)}
        kw: dict[str, object] = {"umask": 0o077}  # a careful user's: containers still read
        if os.geteuid() == 0:
            import grp

            docker_gid = grp.getgrnam("docker").gr_gid
            uid = 10000 + os.getpid() % 50000
            shutil.chown(home, uid, uid)
            os.chmod(home, 0o700)
            cfg.chmod(0o644)
            kw.update(user=uid, group=uid, extra_groups=[docker_gid])
            code = Path(tempfile.mkdtemp(prefix="lab-code-"))
            os.chmod(code, 0o755)
            env["PYTHONPATH"] = readable_lab(code / "lab")
            python = interpreter_for(kw, env)
        else:
            python = sys.executable
        out = home / "runs"
        # From the user's own folder: the checkout may be one the user cannot enter.
        proc = subprocess.run([python, "-m", "lab", "run", "--config", str(cfg), "--targets", name,
                               "--scenarios", "probe", "--out", str(out), "--no-progress"],
                              cwd=home, env=env, capture_output=True, text=True, timeout=900,
                              **kw)  # type: ignore[call-overload]
        assert proc.returncode == 0, proc.stderr[-3000:]
        data = load_results(only_run(out))
        row = data["targets"][0]
        assert row["status"] == "ok" and row["probe"]["version"].startswith("3.11")
        assert row["base"]["built"] is True and row["base"]["signed_by"] in PINNED_KEYS
        assert row["base"]["packages"]["python3.11"].startswith("3.11")
        assert row["base"]["suite"] == "bookworm" and row["base"]["release_date"]
        labels = engine.image(row["base"]["image_id"]).labels
        assert labels["lab.signed-by"] == row["base"]["signed_by"]
        assert labels["lab.packages"].startswith("python3.11=")
        # The user can delete their own runs, although the container wrote as uid 10001.
        rm = subprocess.run([python, "-c", "import shutil, sys; shutil.rmtree(sys.argv[1])",
                             str(out)], capture_output=True, text=True, timeout=60, cwd=home,
                            **kw)  # type: ignore[call-overload]
        assert rm.returncode == 0, rm.stderr[-2000:]
        assert not out.exists()
    finally:
        for i in engine.images({MANAGED: "true"}):
            if any(name in t for t in i.tags):
                engine.remove_image(i.id)
        shutil.rmtree(home, ignore_errors=True)
        if code is not None:
            shutil.rmtree(code, ignore_errors=True)
