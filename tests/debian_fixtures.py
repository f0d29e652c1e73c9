"""Small, real Debian artefacts for tests: ``.deb`` files (ar + control.tar + data.tar.xz), a
Packages index, and an InRelease clearsigned by a key the test generates. Only the content is
small; the formats are the real ones, read by python-debian and pysequoia as the lab reads
Debian's."""

from __future__ import annotations

import hashlib
import io
import lzma
import tarfile
from dataclasses import dataclass
from pathlib import Path

import pysequoia

from lab.images.debian import TrustedKey

MTIME = 1_795_000_000  # 2026-11-18
# (type, content or link target, mode, uid, gid)
Entry = tuple[str, bytes | str, int, int, int]


def _tar(entries: dict[str, Entry]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for name, (kind, body, mode, uid, gid) in entries.items():
            info = tarfile.TarInfo(name)
            # A fixed time: the same package made twice (once for the pool, once for the
            # index's SHA256) must be the same bytes, even when a second ticks in between.
            info.mode, info.uid, info.gid, info.mtime = mode, uid, gid, MTIME
            if kind == "dir":
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            elif kind == "sym":
                info.type, info.linkname = tarfile.SYMTYPE, str(body)
                tar.addfile(info)
            elif kind == "hard":
                info.type, info.linkname = tarfile.LNKTYPE, str(body)
                tar.addfile(info)
            else:
                data = body if isinstance(body, bytes) else body.encode()
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _ar(members: list[tuple[str, bytes]]) -> bytes:
    out = bytearray(b"!<arch>\n")
    for name, data in members:
        header = f"{name:<16}{0:<12}{0:<6}{0:<6}{0o100644:<8o}{len(data):<10}`\n"
        out += header.encode()
        out += data
        if len(data) % 2:
            out += b"\n"
    return bytes(out)


def make_deb(name: str, version: str, files: dict[str, Entry], *, arch: str = "amd64") -> bytes:
    control = (f"Package: {name}\nVersion: {version}\nArchitecture: {arch}\n"
               f"Maintainer: test\nDescription: test package\n").encode()
    control_tar = _tar({"./control": ("file", control, 0o644, 0, 0)})
    data_tar = lzma.compress(_tar({"./": ("dir", b"", 0o755, 0, 0), **files}))
    return _ar([("debian-binary", b"2.0\n"), ("control.tar", control_tar),
                ("data.tar.xz", data_tar)])


@dataclass
class Stanza:
    name: str
    version: str = "1.0"
    priority: str = "optional"
    depends: str = ""
    pre_depends: str = ""
    provides: str = ""
    arch: str = "amd64"
    deb: bytes = b""


def packages_text(stanzas: list[Stanza], pool: str = "pool/main") -> str:
    paras = []
    for s in stanzas:
        deb = s.deb or make_deb(s.name, s.version, {}, arch=s.arch)
        lines = [f"Package: {s.name}", f"Version: {s.version}", f"Architecture: {s.arch}",
                 f"Priority: {s.priority}",
                 f"Filename: {pool}/{s.name}_{s.version}_{s.arch}.deb",
                 f"Size: {len(deb)}", f"SHA256: {hashlib.sha256(deb).hexdigest()}"]
        for field, value in (("Depends", s.depends), ("Pre-Depends", s.pre_depends),
                             ("Provides", s.provides)):
            if value:
                lines.append(f"{field}: {value}")
        paras.append("\n".join(lines) + "\n")
    return "\n".join(paras)


def generated_key(name: str = "Test Archive <archive@example.com>"
                  ) -> tuple[pysequoia.Tsk, TrustedKey]:
    tsk = pysequoia.Tsk.generate(name)
    return tsk, TrustedKey.of(tsk.extract_certificate(), name)


def clearsign(tsk: pysequoia.Tsk, text: str) -> bytes:
    signed = pysequoia.sign(tsk.signer(), text.encode(), mode=pysequoia.SignatureMode.CLEAR)
    return bytes(signed)


def write_mirror(root: Path, suite: str, stanzas: list[Stanza], tsk: pysequoia.Tsk, *,
                 arch: str = "amd64", date: str = "Tue, 24 Nov 2026 08:00:00 UTC",
                 valid_until: str | None = None) -> Path:
    """A Debian-shaped mirror folder: dists/SUITE/InRelease, Packages.xz, pool/*.deb."""
    for s in stanzas:
        deb = s.deb or make_deb(s.name, s.version, {}, arch=s.arch)
        path = root / "pool" / "main" / f"{s.name}_{s.version}_{s.arch}.deb"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(deb)
    index = lzma.compress(packages_text(stanzas).encode())
    rel_path = f"main/binary-{arch}/Packages.xz"
    dists = root / "dists" / suite
    (dists / f"main/binary-{arch}").mkdir(parents=True, exist_ok=True)
    (dists / rel_path).write_bytes(index)
    release = (f"Origin: Test\nSuite: {suite}\nCodename: {suite}\nDate: {date}\n"
               + (f"Valid-Until: {valid_until}\n" if valid_until else "")
               + f"Architectures: {arch}\nComponents: main\nSHA256:\n"
               f" {hashlib.sha256(index).hexdigest()} {len(index)} {rel_path}\n")
    (dists / "InRelease").write_bytes(clearsign(tsk, release))
    return root
