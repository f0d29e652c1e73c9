"""Archive targets without the internet: a python-build-standalone shaped archive is made from
an interpreter the lab already has (Debian trixie's python3.13 and its standard library, laid
out as ``python/bin/python3`` and ``python/lib/python3.13``), then served from a local folder
(LAB_PYTHON_ARCHIVES, with SHA256SUMS) and over HTTP on 127.0.0.1 (archive = { url, sha256 }).
The lab checks the hash, unpacks it at /opt/python and runs the probe in it; a wrong hash is
build_failed, naming both hashes, and nothing is unpacked.

Debian's python3.13 links the system's libexpat and zlib, where a real python-build-standalone
build carries its own: so the test's target sits on the lab's trixie base (which has them), not
on the matrix's `pbs` base."""

from __future__ import annotations

import contextlib
import functools
import gzip
import hashlib
import http.server
import io
import os
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

import docker

from .conftest import lab, load_results, only_run

pytestmark = pytest.mark.slow

TARGET = """python_archives = []
[[target]]
id = "{tid}"
implementation = "cpython"
version = "3.13"
python = "/opt/python/bin/python3"
base = "trixie"
default = false
{archive}
"""


@pytest.fixture(scope="module")
def pbs_folder(image_of, tmp_path_factory) -> Path:
    """A folder with cpython-3.13.N+DATE-x86_64-unknown-linux-gnu-install_only.tar.gz and its
    SHA256SUMS, made from the cp313 image's /usr/bin/python3.13 and /usr/lib/python3.13."""
    client = docker.from_env()
    # A lab image carries the labels of the run that built it (lab.managed, lab.host and the
    # pid of that run's harness, long gone), and a container inherits its image's labels: any
    # lab run beside this test would sweep it as a killed run's leftover, mid-copy (seen in
    # CI: 404 on get_archive). Its own labels override them.
    container = client.containers.create(image_of("cp313"), command=["true"], labels={
        "lab.managed": "false", "lab.host": "", "lab.pid": "", "lab.run": ""})
    try:
        version = container.image.labels.get("lab.packages", "")
        micro = next(v.split("=")[1].split("-")[0] for v in version.split(",")
                     if v.startswith("python3.13="))
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as out:
            out.addfile(_dir("python"))
            out.addfile(_dir("python/bin"))
            out.addfile(_dir("python/lib"))
            for src, dest in (("/usr/bin/python3.13", "python/bin"),
                              ("/usr/lib/python3.13", "python/lib")):
                stream, _ = container.get_archive(src)
                with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as part:
                    for member in part:
                        if "__pycache__" in member.name or (
                                member.issym() and member.linkname.startswith("/")):
                            continue  # Debian's /etc/python3.13/sitecustomize.py link
                        member.name = f"{dest}/{member.name}"
                        out.addfile(member, part.extractfile(member) if member.isreg() else None)
            link = tarfile.TarInfo("python/bin/python3")
            link.type, link.linkname = tarfile.SYMTYPE, "python3.13"
            out.addfile(link)
    finally:
        container.remove(force=True)
    folder = tmp_path_factory.mktemp("pbs")
    name = f"cpython-{micro}+20261126-x86_64-unknown-linux-gnu-install_only.tar.gz"
    data = gzip.compress(buf.getvalue(), compresslevel=1)
    (folder / name).write_bytes(data)
    (folder / "SHA256SUMS").write_text(f"{hashlib.sha256(data).hexdigest()}  {name}\n")
    return folder


def _dir(name: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.mode = tarfile.DIRTYPE, 0o755
    return info


@contextlib.contextmanager
def served(folder: Path) -> Iterator[str]:
    handler = functools.partial(_Quiet, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def _archive(folder: Path) -> tuple[str, str]:
    name = next(p.name for p in folder.iterdir() if p.name.endswith(".tar.gz"))
    return name, (folder / "SHA256SUMS").read_text().split()[0]


def run(tmp_path: Path, tid: str, archive: str, *, env: dict[str, str] | None = None,
        cache: Path) -> tuple[int, dict, str]:
    toml = tmp_path / "lab.toml"
    toml.write_text(TARGET.format(tid=tid, archive=archive))
    r = lab("run", "--config", str(toml), "--targets", tid, "--scenarios", "probe", "--out",
            str(tmp_path / "runs"), "--no-progress",
            env={**os.environ, "LAB_CACHE_DIR": str(cache), **(env or {})})
    data = load_results(only_run(tmp_path / "runs"))
    return r.returncode, {t["id"]: t for t in data["targets"]}[tid], r.stdout + r.stderr


def test_an_archive_from_a_local_folder_runs_the_probe(pbs_folder, engine, tmp_path):
    name, sha = _archive(pbs_folder)
    code, row, out = run(tmp_path, "cp313-folder", 'archive = "python-build-standalone"',
                         env={"LAB_PYTHON_ARCHIVES": str(pbs_folder)}, cache=tmp_path / "cache")
    assert code == 0, out[-3000:]
    assert row["status"] == "ok" and row["kind"] == "archive"
    assert row["archive"]["filename"] == name and row["archive"]["sha256"] == sha
    assert row["archive"]["vouched_by"] == str(pbs_folder / "SHA256SUMS")
    assert row["archive"]["url"] == (pbs_folder / name).as_uri()
    # the probe ran in the unpacked interpreter, not the base's own /usr/bin/python3.13
    assert row["probe"]["executable"] == "/opt/python/bin/python3"
    assert row["probe"]["prefix"] == "/opt/python"
    assert row["probe"]["version"].startswith("3.13.")
    # verified into the cache by its hash
    assert (tmp_path / "cache" / "archive" / "sha256" / sha[:2] / sha).is_file()


def test_an_archive_over_http_with_its_checksum_runs_the_probe(pbs_folder, engine, tmp_path):
    name, sha = _archive(pbs_folder)
    with served(pbs_folder) as url:
        code, row, out = run(tmp_path, "cp313-http",
                             f'archive = {{ url = "{url}/{name}", sha256 = "{sha}" }}',
                             cache=tmp_path / "cache")
    assert code == 0, out[-3000:]
    assert row["status"] == "ok" and row["archive"]["url"] == f"{url}/{name}"
    assert row["archive"]["vouched_by"] == "target cp313-http's archive.sha256"
    assert row["probe"]["executable"] == "/opt/python/bin/python3"


def test_a_wrong_checksum_is_build_failed_naming_both_hashes(pbs_folder, engine, tmp_path):
    name, sha = _archive(pbs_folder)
    wrong = hashlib.sha256(b"not the archive").hexdigest()
    with served(pbs_folder) as url:
        code, row, out = run(tmp_path, "cp313-wrong",
                             f'archive = {{ url = "{url}/{name}", sha256 = "{wrong}" }}',
                             cache=tmp_path / "cache")
    assert code == 1
    assert row["status"] == "build_failed", row
    assert sha in row["reason"] and wrong in row["reason"]
    assert not row["image"]
    assert not list((tmp_path / "cache" / "archive" / "sha256").rglob("*"))  # kept no copy
    assert "cp313-wrong: build failed" in out or "cp313-wrong: build_failed" in out
