"""The record protocol between the runner (in a container, untrusted) and the host: how the
host reads the runner's JSON-lines channel, which records it accepts, and the outcomes a cell
can have. The runner's side is ``lab/runner/harness.py``, which stamps every record with
``record_version``; a record of another version (an image made by another lab version) is a
problem reported on the cells, never guessed at.
"""

from __future__ import annotations

import errno
import json
import os
import stat
import tarfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from lab.images.layers import ChunkReader
from lab.runner.protocol import RECORD_KINDS, RECORD_VERSION

MAX_RECORD_BYTES = 4 * 1024 * 1024  # one cell record; larger is a broken channel
MAX_RESULTS_BYTES = 64 * 1024 * 1024  # everything one job may send back


def record_problem(rec: dict[str, Any]) -> str | None:
    """Why the host does not accept a parsed record (None: it does)."""
    version = rec.get("record_version")
    if version != RECORD_VERSION:
        return (f"a result record of version {version!r}; this lab reads version "
                f"{RECORD_VERSION}: the image was made by another lab version (`lab clean`, "
                "then run again)")
    if rec.get("kind") not in RECORD_KINDS:
        return f"a result record of an unknown kind {rec.get('kind')!r}"
    return None


class _Channel:
    """A growing JSON-lines file that a container writes, read as complete new lines.

    The container is untrusted: only a regular file is read (never through a symbolic link)
    and no more than MAX_RESULTS_BYTES in all. Each such problem is reported once, as a str.
    Subclasses say how the file's new bytes are had (``_fetch``)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.offset = 0
        self.buffer = b""
        self.refused: str | None = None

    def _fetch(self, budget: int) -> bytes:
        """Up to ``budget`` bytes from ``self.offset`` on (b"": none yet); raises _Refused."""
        raise NotImplementedError

    def read(self) -> list[dict[str, Any] | str]:
        """Parsed records; a str for a line that is not a JSON object (a broken record) or for
        a channel the host refuses to read."""
        if self.refused is not None:
            return []
        try:
            data = self._fetch(MAX_RESULTS_BYTES - self.offset)
        except _Refused as exc:
            self.refused = str(exc)
            return [self.refused]
        self.offset += len(data)
        if self.offset >= MAX_RESULTS_BYTES:
            self.refused = (f"{self.name} grew past {MAX_RESULTS_BYTES} bytes; the rest "
                            "was not read")
            data += b"\n"  # what complete lines there are still count
        self.buffer += data
        out: list[dict[str, Any] | str] = []
        while b"\n" in self.buffer:
            line, self.buffer = self.buffer.split(b"\n", 1)
            if not line.strip():
                continue
            if len(line) > MAX_RECORD_BYTES:
                out.append(f"a result record of {len(line)} bytes (limit {MAX_RECORD_BYTES})")
                continue
            try:
                rec = json.loads(line)
            except ValueError as exc:
                out.append(f"a malformed result record ({exc})")
                continue
            out.append(rec if isinstance(rec, dict) else "a result record that is not an object")
        if self.refused is not None:
            out.append(self.refused)
        return out


class JsonlTail(_Channel):
    """The channel as a file in a folder bind-mounted into the container. It is opened
    without following a symlink (a link to a host file would otherwise make the host read it)."""

    def __init__(self, path: Path) -> None:
        super().__init__(path.name)
        self.path = path

    def _open(self) -> int | None:
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except FileNotFoundError:
            return None
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise _Refused(f"{self.name} is a symbolic link, which the host does not "
                               "follow: the results channel was tampered with") from exc
            return None
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise _Refused(f"{self.name} is not a regular file: the results channel was "
                           "tampered with")
        return fd

    def _fetch(self, budget: int) -> bytes:
        fd = self._open()
        if fd is None:
            return b""
        chunks = []
        try:
            os.lseek(fd, self.offset, os.SEEK_SET)
            while budget > 0 and (chunk := os.read(fd, min(budget, 1 << 20))):
                chunks.append(chunk)
                budget -= len(chunk)
        finally:
            os.close(fd)
        return b"".join(chunks)


class ArchiveTail(_Channel):
    """The channel as a file inside the container, read through the engine's archive API
    (an engine on another machine shares no folder with this one). ``fetch`` returns the tar
    stream Docker gives for the file, or None while there is no such file. Docker puts a
    symbolic link in the tar as a link, which is refused, never followed; the stream is read
    as it comes and never unpacked to disk."""

    def __init__(self, name: str, fetch: Callable[[], Iterable[bytes] | None]) -> None:
        super().__init__(name)
        self.fetch = fetch

    def _fetch(self, budget: int) -> bytes:
        stream = self.fetch()
        if stream is None:
            return b""
        try:
            with tarfile.open(fileobj=ChunkReader(stream), mode="r|") as tar:
                member = tar.next()
                if member is None:
                    return b""
                if not member.isreg():
                    raise _Refused(f"{self.name} is not a regular file (a symbolic link is "
                                   "not followed): the results channel was tampered with")
                if member.size <= self.offset:
                    return b""
                f = tar.extractfile(member)
                assert f is not None
                skip = self.offset
                while skip > 0 and (chunk := f.read(min(skip, 1 << 20))):
                    skip -= len(chunk)
                return f.read(min(budget, member.size - self.offset))
        except tarfile.TarError as exc:
            raise _Refused(f"{self.name} came back as a broken archive ({exc})") from exc


class _Refused(Exception):
    pass
