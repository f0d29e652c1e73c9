"""Interpreters from python-build-standalone ``install_only`` archives, for versions and
flavours (free-threaded 3.13t, 3.14t, 3.15t; 3.10 and 3.12) that Debian does not ship.

Where an archive comes from, first match wins:

1. the target's own ``archive = { url, sha256 }``;
2. a local file or folder of archives (lab.toml's ``python_archives``, LAB_PYTHON_ARCHIVES),
   matched by python-build-standalone's file names, with its hash from a ``SHA256SUMS`` file
   beside it, a ``NAME.sha256`` file, or pbs-installer's list;
3. pbs-installer's list (a PyPI package, kept in step with python-build-standalone's
   releases): the newest build of the version and flavour for the target's architecture.

The archive enters the lab's cache only whole and matching its SHA256, so nothing is unpacked
before the hash is checked. It is then laid out at /opt/python as one image layer: every member
must sit under ``python/``, be a file, folder or link, and stay inside the tree; owners become
root and set-id and group/other write bits are dropped.
"""

from __future__ import annotations

import dataclasses
import re
import tarfile
import threading
import urllib.parse
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from lab.errors import BuildFailed, ImageUnavailable
from lab.images.layers import repack
from lab.matrix import ARCHIVE_PREFIX, ARCHIVES_ENV, PBS, Target

# python-build-standalone's architecture names (pbs-installer's ``arch``), per platform.
PBS_ARCH = {"linux/amd64": "x86_64", "linux/arm64": "aarch64"}
SUMS_FILE = "SHA256SUMS"
MAX_ARCHIVE_BYTES = 512 << 20  # install_only archives are 20-80 MB
MAX_UNPACKED_BYTES = 2 << 30
MAX_MEMBERS = 50_000
ARCHIVES_HINT = (f"Put the archive and its SHA256SUMS in a folder named by {ARCHIVES_ENV} "
                 "(docs/matrix.md: Python versions Debian does not ship).")
_NAME = re.compile(
    r"cpython-(?P<version>\d+\.\d+\.\d+(?:(?:a|b|rc)\d+)?)\+(?P<build>\d{8})-"
    r"(?P<arch>[a-z0-9_]+)-unknown-linux-gnu-(?P<ft>freethreaded-)?"
    r"install_only(?:_stripped)?\.tar\.gz")


@dataclass(frozen=True, kw_only=True)
class ArchiveSource:
    """A resolved archive: where to read it, the SHA256 it must have, and who said so."""

    url: str  # http(s):// or file://
    sha256: str
    filename: str
    vouched_by: str  # where the hash comes from: "pbs-installer 2026.10.25's list", ...
    version: str | None = None  # the full version when the name or the list tells it
    # Where local archives were looked for and not found (said if the download fails).
    not_local: str = ""

    def labels(self) -> dict[str, str]:
        return {"lab.archive-url": self.url, "lab.archive-sha256": self.sha256,
                "lab.archive-file": self.filename, "lab.archive-vouched-by": self.vouched_by,
                "lab.archive-version": self.version or ""}

    @classmethod
    def from_labels(cls, labels: dict[str, str]) -> ArchiveSource | None:
        if not labels.get("lab.archive-sha256"):
            return None
        return cls(url=labels.get("lab.archive-url", ""), sha256=labels["lab.archive-sha256"],
                   filename=labels.get("lab.archive-file", ""),
                   vouched_by=labels.get("lab.archive-vouched-by", ""),
                   version=labels.get("lab.archive-version") or None)

    def to_json(self) -> dict[str, Any]:
        return {"url": self.url, "sha256": self.sha256, "filename": self.filename,
                "vouched_by": self.vouched_by, "version": self.version}


def wanted_name(target: Target) -> str:
    """The file name pattern a local archive for ``target`` has, for messages."""
    ft = "freethreaded-" if target.freethreaded else ""
    arch = PBS_ARCH.get(target.platform, target.platform)
    return f"cpython-{target.version}.*-{arch}-unknown-linux-gnu-{ft}install_only*.tar.gz"


def resolve(target: Target) -> ArchiveSource:
    """The archive ``target`` is made from. Raises ImageUnavailable, one line, when none can
    be named (no build for this version, flavour or architecture; no checksum)."""
    spec = target.archive
    if spec is None:
        raise ImageUnavailable(f"target {target.id} has no archive")
    if spec.url is not None and spec.sha256 is not None:
        name = urllib.parse.unquote(urllib.parse.urlparse(spec.url).path.rsplit("/", 1)[-1])
        return ArchiveSource(url=spec.url, sha256=spec.sha256, filename=name,
                             vouched_by=f"target {target.id}'s archive.sha256")
    if target.implementation != "cpython":
        raise ImageUnavailable(f"{PBS} builds CPython only; {target.id} is "
                               f"{target.implementation}. Give archive = {{ url, sha256 }}.")
    looked: list[str] = []
    for place in spec.local:
        found = _local(Path(place), target, looked)
        if found is not None:
            return found
    try:
        return dataclasses.replace(_listed(target), not_local="; ".join(looked))
    except ImageUnavailable as exc:
        if looked:
            raise ImageUnavailable(f"{exc}; and no local archive matched ({'; '.join(looked)})"
                                   ) from None
        raise


_pbs_lock = threading.Lock()


def _pbs() -> Any:
    """pbs-installer's module, imported once: its list is read at import time (with a
    DeprecationWarning from importlib.resources on Python < 3.13 that is not ours to fix)."""
    with _pbs_lock, warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import pbs_installer
        import pbs_installer._versions  # noqa: F401  (reads the list)
    return pbs_installer


def _pbs_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("pbs-installer")
    except PackageNotFoundError:
        return "?"


def _listed(target: Target) -> ArchiveSource:
    get_download_link = _pbs().get_download_link
    arch = PBS_ARCH.get(target.platform)
    flavour = f"CPython {target.flavour_version}"
    listing = f"pbs-installer {_pbs_version()}'s list"
    if arch is None:
        raise ImageUnavailable(f"{PBS} has no {target.platform} build of {flavour} in "
                               f"{listing}")
    try:
        found, (url, sha256) = get_download_link(target.version, arch=arch, platform="linux",
                                                 free_threaded=target.freethreaded)
    except ValueError:
        raise ImageUnavailable(f"{PBS} has no linux {arch} build of {flavour} in {listing}. "
                               "Upgrade pbs-installer, or give archive = { url, sha256 }."
                               ) from None
    name = urllib.parse.unquote(url.rsplit("/", 1)[-1])
    if not sha256 or not name.endswith(".tar.gz") or "install_only" not in name:
        raise ImageUnavailable(f"{listing} has no checksummed install_only .tar.gz of "
                               f"{flavour} for {arch} (only {name})")
    return ArchiveSource(url=url, sha256=sha256.lower(), filename=name, vouched_by=listing,
                         version=f"{found.major}.{found.minor}.{found.micro}")


def _matches(name: str, target: Target) -> re.Match[str] | None:
    m = _NAME.fullmatch(name)
    if m is None or m["arch"] != PBS_ARCH.get(target.platform):
        return None
    if bool(m["ft"]) != target.freethreaded:
        return None
    if not (m["version"] + ".").startswith(target.version + "."):
        return None
    return m


def _version_key(m: re.Match[str]) -> tuple[Any, ...]:
    nums = [int(x) for x in re.findall(r"\d+", m["version"])]
    final = not re.search(r"[a-z]", m["version"])
    return (nums[:3], final, nums[3:], m["build"], "stripped" not in m.group(0))


def _local(place: Path, target: Target, looked: list[str]) -> ArchiveSource | None:
    """The newest archive for ``target`` in a local file or folder (the user's own, not a
    container's), or None and a line in ``looked`` saying what was there."""
    if place.is_dir():
        names = [p.name for p in place.iterdir() if p.is_file()]
        folder = place
    elif place.is_file():
        names, folder = [place.name], place.parent
    else:
        looked.append(f"{place} does not exist ({ARCHIVES_ENV} or python_archives)")
        return None
    candidates = [(m, n) for n in names if (m := _matches(n, target)) is not None]
    if not candidates:
        looked.append(f"none named {wanted_name(target)} in {place}")
        return None
    m, name = max(candidates, key=lambda c: _version_key(c[0]))
    sha, vouched = _local_sum(folder, name)
    if sha is None:
        raise ImageUnavailable(
            f"{folder / name} has no checksum: put its SHA256 in {folder / SUMS_FILE} "
            f"(sha256sum {name} >> {SUMS_FILE}) or in {name}.sha256, so it can be checked "
            "before it is unpacked")
    return ArchiveSource(url=(folder / name).resolve().as_uri(), sha256=sha, filename=name,
                         vouched_by=vouched, version=m["version"])


def _local_sum(folder: Path, name: str) -> tuple[str | None, str]:
    for sums, label in ((folder / SUMS_FILE, f"{folder / SUMS_FILE}"),
                        (folder / f"{name}.sha256", f"{folder / name}.sha256")):
        if sums.is_file():
            with open(sums, "rb") as fh:
                text = fh.read(1 << 20).decode(errors="replace")
            for line in text.splitlines():
                parts = line.split()
                if not parts or not re.fullmatch(r"[0-9a-fA-F]{64}", parts[0]):
                    continue
                if len(parts) == 1 or parts[-1].lstrip("*").rsplit("/", 1)[-1] == name:
                    return parts[0].lower(), label
    for files in _pbs()._versions.PYTHON_VERSIONS.values():
        for url, sha in files.values():
            if sha and urllib.parse.unquote(url.rsplit("/", 1)[-1]) == name:
                return sha.lower(), f"pbs-installer {_pbs_version()}'s list"
    return None, ""


def python_layer(archive: Path, *, python: str, label: str) -> IO[bytes]:
    """A tar of the verified ``archive``'s ``python/`` tree at ARCHIVE_PREFIX, for one image
    layer: an open temporary file at its start (the caller closes it). Raises BuildFailed,
    naming the member, for anything that is not a plain tree of files, folders and links
    inside ``python/``, or when ``python`` (the target's interpreter path) is not in it."""
    try:
        with tarfile.open(archive, "r:gz") as src:
            out, names = repack(src, root="python", prefix=ARCHIVE_PREFIX, label=label,
                                max_bytes=MAX_UNPACKED_BYTES, max_members=MAX_MEMBERS,
                                what="an install_only archive")
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise BuildFailed(f"{label} is not a readable .tar.gz ({exc})") from exc
    if python not in names:
        out.close()
        raise BuildFailed(f"{label} has no {python[len(ARCHIVE_PREFIX) + 1:]} under python/: "
                          f"not a {PBS} install_only archive for this target's `python`")
    return out
