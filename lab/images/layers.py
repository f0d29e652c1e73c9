"""One image layer from a tree someone else made (a python-build-standalone archive, the
packages pip installed in a target's container), re-packed so that nothing in it is trusted:
every member must sit under the tree's root, be a file, folder or link that stays inside it;
owners become root, set-id and group/other write bits are dropped, and sizes and member counts
are capped. What breaks a rule is a BuildFailed naming the member."""

from __future__ import annotations

import io
import tarfile
import tempfile
from collections.abc import Iterable
from typing import IO, Any

from lab.errors import BuildFailed


def repack(src: tarfile.TarFile, *, root: str, prefix: str, label: str, max_bytes: int,
           max_members: int, what: str) -> tuple[IO[bytes], set[str]]:
    """The members of ``src`` under ``root/``, laid out at ``prefix`` (an absolute path), as
    an open temporary tar file at its start (the caller closes it), and the absolute paths it
    holds. ``src`` may be a stream (mode ``r|``): each member is read once, in order. ``what``
    ends the messages: what a well-formed tree of this kind holds."""
    prefix = prefix.strip("/")
    out = tempfile.TemporaryFile(prefix="lab-layer-")
    total = count = 0
    names: set[str] = set()
    try:
        with tarfile.open(fileobj=out, mode="w") as dst:
            for parent in _parents(prefix):
                dst.addfile(_dir(parent))
            for member in src:
                count += 1
                if count > max_members:
                    raise BuildFailed(f"{label} has more than {max_members} members")
                name = _inside(member.name, root, label, what)
                if name is None:
                    continue  # the root itself
                info = tarfile.TarInfo(f"{prefix}/{name}")
                info.mtime, info.uid, info.gid, info.uname, info.gname = (
                    member.mtime, 0, 0, "root", "root")
                info.mode = member.mode & 0o755
                if member.isdir():
                    info.type = tarfile.DIRTYPE
                    dst.addfile(info)
                elif member.issym():
                    info.type, info.linkname = tarfile.SYMTYPE, member.linkname
                    _symlink_inside(name, member.linkname, root, label)
                    dst.addfile(info)
                elif member.islnk():
                    target = _inside(member.linkname, root, label, what)
                    if target is None:
                        raise BuildFailed(f"{label}: {member.name} is a hard link to {root}/")
                    info.type, info.linkname = tarfile.LNKTYPE, f"{prefix}/{target}"
                    dst.addfile(info)
                elif member.isreg():
                    total += member.size
                    if total > max_bytes:
                        raise BuildFailed(f"{label} unpacks to more than {max_bytes >> 20} MB")
                    info.size = member.size
                    dst.addfile(info, src.extractfile(member))
                else:
                    raise BuildFailed(f"{label}: {member.name} is a device, fifo or other "
                                      f"special file; {what} has none")
                names.add(f"/{prefix}/{name}")
    except BaseException:
        out.close()
        raise
    out.seek(0)
    return out, names


def tar_of(files: dict[str, bytes], *, executable: dict[str, bytes] | None = None) -> bytes:
    """A tar of the lab's own files (path -> content), with the folders they need: folders
    0755 and files 0644 (``executable`` ones 0755), owned by root, dated 0 (the same files,
    the same bytes)."""
    buf = io.BytesIO()
    run = executable or {}
    with tarfile.open(fileobj=buf, mode="w") as tar:
        folders: set[str] = set()
        for name, data in sorted({**files, **run}.items()):
            parts = name.split("/")[:-1]
            for i in range(1, len(parts) + 1):
                if (folder := "/".join(parts[:i])) not in folders:
                    folders.add(folder)
                    tar.addfile(_dir(folder))
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o755 if name in run else 0o644
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _parents(path: str) -> list[str]:
    parts = path.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]


def _dir(name: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.mode = tarfile.DIRTYPE, 0o755
    return info


def _inside(name: str, root: str, label: str, what: str) -> str | None:
    """``name`` relative to ``root/`` (None for the root itself); BuildFailed if outside."""
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if name.startswith("/") or ".." in parts or not parts or parts[0] != root:
        raise BuildFailed(f"{label}: member {name!r} is not under {root}/; {what} holds one "
                          f"{root}/ tree")
    return "/".join(parts[1:]) or None


def _symlink_inside(name: str, linkname: str, root: str, label: str) -> None:
    """A symlink's target must resolve inside the tree (python3 -> python3.13, ../lib/...)."""
    if linkname.startswith("/"):
        raise BuildFailed(f"{label}: {root}/{name} links to the absolute path {linkname!r}")
    depth = len(name.split("/")) - 1
    for part in linkname.split("/"):
        depth += -1 if part == ".." else 0 if part in ("", ".") else 1
        if depth < 0:
            raise BuildFailed(f"{label}: {root}/{name} links outside {root}/ ({linkname!r})")


class ChunkReader(io.RawIOBase):
    """A file-like reader over an iterator of byte chunks, such as ``archive`` gives (tarfile's
    stream mode reads it as it comes, never all at once)."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = iter(chunks)
        self._rest = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._rest:
            try:
                self._rest = next(self._chunks)
            except StopIteration:
                return 0
        n = min(len(buffer), len(self._rest))
        buffer[:n] = self._rest[:n]
        self._rest = self._rest[n:]
        return n
