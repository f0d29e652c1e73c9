"""Debian root filesystems without root on the host: debootstrap's two stages, redone.

First stage: the ``data.tar`` of every required package (python-debian's DebFile), rewritten
into one tar *stream* in Python with merged /usr and Debian's own (root) ownership in the
headers. Nothing is extracted on the host, so no privilege is needed; the engine imports the
stream. Second stage: ``second_stage_script`` runs dpkg inside a container made from that image
(root only inside the container, no network), in the order debootstrap's ``debian-common``
uses. Reference: debootstrap's ``functions`` and ``scripts/debian-common`` (first_stage_install,
second_stage_install, merge_usr).
"""

from __future__ import annotations

import io
import posixpath
import re
import tarfile
import threading
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from debian import debfile

from lab.errors import BuildFailed
from lab.images.debian import Package, Selection, relations

# Top-level folders that become symlinks into /usr (debootstrap's merge_usr list).
MERGED_DIRS = ("bin", "lib", "lib32", "lib64", "libo32", "libx32", "sbin")
# dpkg installs these first, one at a time, before unpacking the rest (second_stage_install).
CORE_ORDER = ("base-passwd", "base-files", "dpkg", "libc6", "perl-base", "mawk")
INNER_DIR = "/lab-bootstrap"
SCRIPT = f"{INNER_DIR}/second-stage"
TARGET = "/target"  # the volume the new root filesystem is made on
ENTER = f"{TARGET}{INNER_DIR}/enter"
# Character devices maintainer scripts use (debootstrap's setup_devices makes these too).
DEVICES = (("null", 1, 3), ("zero", 1, 5), ("full", 1, 7), ("random", 1, 8),
           ("urandom", 1, 9), ("tty", 5, 0))


def enter_script() -> str:
    """Runs in the first-stage image: copies that root into the volume at /target, which sits
    on the engine's own disk (dpkg's many small writes are several times faster there than
    through a storage driver such as fuse-overlayfs), and runs the second stage chrooted in it.
    """
    mknods = "\n".join(f'mknod -m 666 "$T/dev/{n}" c {a} {b}' for n, a, b in DEVICES)
    nodes = " ".join(f'"$T/dev/{n}"' for n, _, _ in DEVICES)
    return f"""#!/bin/sh
# The lab's bootstrap, second stage, outer part; written by lab/images/rootfs.py.
set -eu
T={TARGET}
echo "lab-bootstrap [$(date +%s.%N)]: copying the first stage to the volume"
cd /
tar -cf - --one-file-system --warning=no-file-changed --exclude=./target --exclude=./.dockerenv . \
  | tar -xpf - -C "$T"
mkdir -p "$T/dev" "$T/proc" "$T/sys" "$T/tmp"
chmod 1777 "$T/tmp"
{mknods}
chroot "$T" /bin/sh {SCRIPT}
rm -f {nodes}
rm -rf "$T{INNER_DIR}"
"""
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9+.-]+$")  # Debian Policy 5.6.1


class _Chunks(io.RawIOBase):
    """A write-only sink whose bytes are taken out in chunks (the tar stream's buffer)."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, b: bytes) -> int:  # type: ignore[override]
        self._buf += b
        return len(b)

    def take(self) -> bytes:
        out = bytes(self._buf)
        self._buf.clear()
        return out


def _normal(name: str) -> str:
    """A member name without ``./``, leading or trailing slashes."""
    return posixpath.normpath("/" + name).lstrip("/")


def merged_path(name: str) -> str:
    top, _, rest = name.partition("/")
    if top in MERGED_DIRS:
        return f"usr/{top}/{rest}" if rest else f"usr/{top}"
    return name


def symlink_survives_merge(path: str, target: str) -> bool:
    """Whether a relative symlink at ``path`` still points where it did once its top folder
    moves under /usr (debootstrap's can_usrmerge_symlink): it must not climb out of it."""
    if target.startswith("/"):
        return True
    parts = [p for p in target.split("/") if p not in ("", ".")]
    ups = 0
    while parts and parts[0] == "..":
        ups += 1
        parts.pop(0)
    if ".." in parts:
        return False  # non-minimal target; never in the archive
    return ups < len(posixpath.dirname(path).split("/"))


def first_stage(debs: Sequence[tuple[Package, Path]], *, stop: threading.Event | None = None,
                extra_files: Iterable[tuple[str, bytes, int]] = ()) -> Iterator[bytes]:
    """The first-stage root filesystem as tar chunks.

    Every package's data goes in, the first occurrence of a path winning (debootstrap extracts
    with ``tar -k``); ``bin``, ``lib*`` and ``sbin`` are rewritten under ``usr/`` and become
    symlinks; dpkg's empty database is added, as ``first_stage_install`` makes it.
    """
    sink = _Chunks()
    out = tarfile.open(fileobj=sink, mode="w|", format=tarfile.PAX_FORMAT)  # noqa: SIM115
    seen: set[str] = set()
    merged_used: set[str] = set()

    def emit(info: tarfile.TarInfo, fileobj: io.BufferedReader | io.BytesIO | None = None
             ) -> None:
        if info.name in seen:
            return
        seen.add(info.name)
        out.addfile(info, fileobj)

    def ensure_dirs(path: str) -> None:
        parts = path.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            d = "/".join(parts[:i])
            if d not in seen:
                emit(_dir(d))

    for pkg, path in debs:
        if stop is not None and stop.is_set():
            raise BuildFailed("stopped while assembling the first stage")
        try:
            deb = debfile.DebFile(str(path))
        except (debfile.DebError, OSError, EOFError) as exc:
            raise BuildFailed(f"cannot read {pkg.deb_name} ({exc}): the cached file is "
                              "damaged; remove ~/.cache/lab/archive and retry.") from exc
        try:
            data = deb.data.tgz()
            for member in data:
                name = _normal(member.name)
                if not name:
                    continue
                top = name.split("/", 1)[0]
                if top in MERGED_DIRS:
                    merged_used.add(top)
                    if name == top and (member.issym() or member.isdir()):
                        continue  # the folder itself: a symlink of ours stands in its place
                    if member.issym() and not symlink_survives_merge(name, member.linkname):
                        raise BuildFailed(
                            f"{pkg.name}: relative symlink /{name} -> {member.linkname} crosses "
                            "the top-level folder, so /usr cannot be merged (Debian Policy "
                            "10.5 forbids such links; the package is broken).")
                info = tarfile.TarInfo(merged_path(name))
                info.type, info.mode, info.mtime = member.type, member.mode, member.mtime
                info.uid, info.gid = member.uid, member.gid
                info.uname, info.gname = member.uname, member.gname
                if member.islnk():
                    info.linkname = merged_path(_normal(member.linkname))
                elif member.issym():
                    info.linkname = member.linkname
                if member.isfile():
                    info.size = member.size
                ensure_dirs(info.name)
                if member.isfile():
                    emit(info, data.extractfile(member))  # type: ignore[arg-type]
                else:
                    emit(info)
                chunk = sink.take()
                if chunk:
                    yield chunk
        except (debfile.DebError, tarfile.TarError, EOFError, OSError) as exc:
            raise BuildFailed(f"cannot read {pkg.deb_name} ({exc}): the cached file is "
                              "damaged; remove ~/.cache/lab/archive and retry.") from exc
        finally:
            deb.close()
    for top in MERGED_DIRS:
        if top in merged_used:
            emit(_dir(f"usr/{top}"))
            link = tarfile.TarInfo(top)
            link.type, link.linkname, link.mode = tarfile.SYMTYPE, f"usr/{top}", 0o777
            emit(link)
    for d in ("var/lib/dpkg/info", "var/lib/dpkg/updates", "etc", "tmp", "proc", "sys", "dev"):
        ensure_dirs(d + "/x")
    for name, content, mode in [
        ("var/lib/dpkg/status", b"", 0o644),
        ("var/lib/dpkg/available", b"", 0o644),
        ("etc/fstab", b"# UNCONFIGURED FSTAB FOR BASE SYSTEM\n", 0o644),
        *extra_files,
    ]:
        ensure_dirs(name)
        info = tarfile.TarInfo(name)
        info.size, info.mode = len(content), mode
        emit(info, io.BytesIO(content))
    out.close()
    yield sink.take()


def _dir(name: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.mode = tarfile.DIRTYPE, 0o755
    return info


def _check_name(name: str) -> str:
    if not _NAME_RE.match(name):
        raise BuildFailed(f"{name!r} is not a Debian package name (Policy 5.6.1).")
    return name


def predep_rounds(selection: Selection) -> tuple[list[list[str]], list[str]]:
    """debootstrap installs the extra packages that others Pre-Depend on first (each with what
    they need), then unpacks and configures the rest. Returns (rounds, rest) of names."""
    extra = {p.name: p for p in selection.extra}
    required = {p.name for p in selection.required}
    rounds: list[list[str]] = []
    done: set[str] = set()
    for pkg in selection.extra:
        for alts in relations(pkg.pre_depends):
            names = [a["name"] for a in alts if a["name"] in extra]
            if not names or names[0] in done or any(a["name"] in required for a in alts):
                continue
            group = _closure_within(names[0], extra) - required - done
            if group:
                rounds.append(sorted(group))
                done |= group
    rest = [n for n in extra if n not in done]
    return rounds, rest


def _closure_within(root: str, pool: dict[str, Package]) -> set[str]:
    out, queue = set(), [root]
    while queue:
        name = queue.pop()
        if name in out or name not in pool:
            continue
        out.add(name)
        pkg = pool[name]
        for text in (pkg.pre_depends, pkg.depends):
            for alts in relations(text):
                queue.extend(a["name"] for a in alts[:1])
    return out


def second_stage_script(selection: Selection, *, uid: int, user: str = "lab") -> str:
    """The POSIX sh script dpkg's second stage runs in the container, as root there.

    Follows debootstrap's second_stage_install for minbase: feign dpkg, install the core
    packages one by one, unpack every required package, configure them (with policy-rc.d and a
    fake start-stop-daemon), then install the base's packages, pre-dependencies first.
    ``--force-unsafe-io`` skips dpkg's fsyncs: a crash means a rebuild, never a bad image, since
    the image is committed only after the script succeeds.
    """
    names = {p.name for p in selection.all}
    required = [_check_name(p.name) for p in selection.required]
    core = [n for n in CORE_ORDER if n in names]
    rounds, rest = predep_rounds(selection)
    for n in [*rest, *(n for r in rounds for n in r)]:
        _check_name(n)

    def debs(ns: Iterable[str]) -> str:
        return " ".join(f"$D/{n}.deb" for n in ns)

    lines = [
        "#!/bin/sh",
        "# Second stage of the lab's Debian bootstrap; written by lab/images/rootfs.py.",
        "set -eu",
        "export DEBIAN_FRONTEND=noninteractive DEBCONF_NONINTERACTIVE_SEEN=true LC_ALL=C",
        "export PATH=/usr/sbin:/usr/bin:/sbin:/bin",
        f"D={INNER_DIR}/debs",
        # Seconds since boot on every step, so the log shows where the time goes.
        'step() { echo "lab-bootstrap [$(date +%s.%N)]: $*"; }',
        "dpkgq() { dpkg --force-unsafe-io \"$@\" </dev/null; }",
        "step 'feigning dpkg'",
        'ver=$(dpkg-deb -f "$D/dpkg.deb" Version)',
        "printf 'Package: dpkg\\nVersion: %s\\nMaintainer: unknown\\nStatus: install ok "
        "installed\\n\\n' \"$ver\" >> /var/lib/dpkg/status",
        "touch /var/lib/dpkg/info/dpkg.list",
        "ldconfig",
        "ln -sf mawk /usr/bin/awk",
    ]
    for name in core:
        if name == "mawk":
            lines.append("rm -f /usr/bin/awk")
        lines += [f"step 'installing core package {name}'",
                  f"dpkgq --force-depends --install {debs([name])}"]
        if name == "dpkg":
            lines.append("[ -e /etc/localtime ] || ln -sf /usr/share/zoneinfo/UTC /etc/localtime")
    lines += [
        f"step 'unpacking {len(required)} required packages'",
        f"dpkgq --force-depends --unpack {debs(required)}",
        "printf '#!/bin/sh\\nexit 101\\n' > /usr/sbin/policy-rc.d",
        "chmod 755 /usr/sbin/policy-rc.d",
        "ssd=$(command -v start-stop-daemon || true)",
        'if [ -n "$ssd" ]; then mv "$ssd" "$ssd.REAL"; '
        "printf '#!/bin/sh\\necho\\necho \"Warning: Fake start-stop-daemon called, doing "
        "nothing\"\\n' > \"$ssd\"; chmod 755 \"$ssd\"; fi",
        "echo 'apt apt' > /var/lib/dpkg/cmethopt",
        "step 'configuring required packages'",
        "dpkgq --configure --pending --force-configure-any --force-depends",
    ]
    for group in rounds:
        lines += [f"step 'installing pre-dependencies {' '.join(group)}'",
                  "dpkgq --force-overwrite --force-confold --skip-same-version "
                  f"--install {debs(group)}"]
    if rest:
        lines += [
            f"step 'unpacking {len(rest)} base packages'",
            f"dpkgq --force-overwrite --force-confold --skip-same-version --unpack {debs(rest)}",
            "step 'configuring base packages'",
            "dpkgq --force-confold --skip-same-version --configure -a",
        ]
    lines += [
        'if [ -n "$ssd" ]; then mv "$ssd.REAL" "$ssd"; fi',
        "rm -f /usr/sbin/policy-rc.d",
        "step 'checking the package database'",
        "dpkg --audit",
        f"echo '{user}:x:{uid}:{uid}:{user}:/tmp:/usr/sbin/nologin' >> /etc/passwd",
        f"echo '{user}:x:{uid}:' >> /etc/group",
        "rm -rf /var/cache/apt/archives/*.deb /var/lib/apt/lists/* /var/cache/debconf/*-old "
        "/var/lib/dpkg/*-old",
        f"rm -rf {INNER_DIR}",
        "step done",
    ]
    return "\n".join(lines) + "\n"


def stage_two_archive(selection: Selection, debs: dict[str, Path], script: str
                      ) -> Iterator[bytes]:
    """The tar stream ``put_archive`` copies into the volume: both scripts and every package
    as ``lab-bootstrap/debs/NAME.deb``."""
    sink = _Chunks()
    tar = tarfile.open(fileobj=sink, mode="w|", format=tarfile.PAX_FORMAT)  # noqa: SIM115
    for d in ("lab-bootstrap", "lab-bootstrap/debs"):
        tar.addfile(_dir(d))
    for inner, text in ((SCRIPT, script), (f"{INNER_DIR}/enter", enter_script())):
        info = tarfile.TarInfo(inner.lstrip("/"))
        body = text.encode()
        info.size, info.mode = len(body), 0o755
        tar.addfile(info, io.BytesIO(body))
    for pkg in selection.all:
        path = debs[pkg.name]
        info = tarfile.TarInfo(f"lab-bootstrap/debs/{_check_name(pkg.name)}.deb")
        info.size, info.mode = path.stat().st_size, 0o644
        with open(path, "rb") as fh:
            tar.addfile(info, fh)
        yield sink.take()
    tar.close()
    yield sink.take()
