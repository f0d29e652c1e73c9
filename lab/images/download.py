"""Downloads the lab trusts only by hash: HTTP with retries for transient errors (never for a
wrong hash), and a content-addressed cache (``DebCache``) shared by every suite, architecture,
run and lab process. Nothing enters the cache until it matches the SHA256 that something
trusted vouched for (a signed Debian index, a python archive's checksum); a partial or corrupt
download never does. No Docker here.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import hashlib
import os
import re
import socket
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, BinaryIO

import requests

from lab.errors import BuildFailed, ImageUnavailable

ATTEMPTS = 3  # transient network errors (a DNS hiccup, a reset) are retried, hashes never
CONNECT_TIMEOUT_S = 10.0
READ_TIMEOUT_S = 30.0
CHUNK = 1 << 16
SIGNED_INDEX = "the signed index"  # who vouches for a .deb's hash
DOWNLOAD_WORKERS = 8


# -- fetching --------------------------------------------------------------------------------
class Stopped(BuildFailed):
    """The run was interrupted while the archive was being read."""


def _check_stop(stop: threading.Event | None, what: str) -> None:
    if stop is not None and stop.is_set():
        raise Stopped(f"stopped while {what}")


_sessions = threading.local()


def _session() -> requests.Session:
    """One HTTP session per thread: connections are kept alive, so a name lookup and a
    connect happen once per download worker rather than once per package (a slow resolver
    cost 5 s per connection where this was measured)."""
    s = getattr(_sessions, "session", None)
    if s is None:
        s = _sessions.session = requests.Session()
    return s


@contextlib.contextmanager
def _open_url(url: str) -> Iterator[BinaryIO]:
    """A readable stream for http(s):// or file:// (a local mirror)."""
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme == "file":
        with open(urllib.parse.unquote(parsed.path), "rb") as fh:
            yield fh
        return
    if parsed.scheme not in ("http", "https"):
        raise ImageUnavailable(
            f"mirror URL {url!r} is neither http(s):// nor file://. Fix the base's `mirror` "
            "or LAB_DEBIAN_MIRROR.")
    resp = _session().get(url, stream=True, timeout=(CONNECT_TIMEOUT_S, READ_TIMEOUT_S))
    try:
        if resp.status_code != 200:
            raise _HttpStatus(resp.status_code)
        resp.raw.decode_content = True
        yield resp.raw
    finally:
        resp.close()


class _HttpStatus(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(f"HTTP {code}")
        self.code = code


def _read_some(fh: BinaryIO) -> bytes:
    """Up to CHUNK bytes as soon as any arrive (``read`` would wait for all of them, so a
    slow mirror would delay noticing a stop)."""
    read1 = getattr(fh, "read1", None)
    return read1(CHUNK) if read1 is not None else fh.read(CHUNK)


def _reach_error(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    text = " ".join(str(exc).split())
    # requests nests the cause: "HTTPSConnectionPool(...): Max retries exceeded ... ([Errno -2]
    # Name or service not known)"; the errno part is what a reader needs.
    if (m := re.search(r"\[Errno -?\d+\] [^'\")]+", text)) is not None:
        return m.group(0).strip()
    return text[:200]


class Unreachable(ImageUnavailable):
    """A URL could not be read (after retries): ``why`` says why in a few words."""

    def __init__(self, url: str, why: str) -> None:
        super().__init__(f"cannot fetch {url} ({why})")
        self.url, self.why = url, why


_NETWORK_ERRORS = (requests.RequestException, OSError, _HttpStatus)


def _retrying(url: str, stop: threading.Event | None, attempt: Callable[[], Any]) -> Any:
    """Run ``attempt`` up to ATTEMPTS times on network errors (not on 404, a bad hash, or a
    name the resolver says does not exist: a hiccup is "temporary failure", EAI_AGAIN)."""
    for n in range(1, ATTEMPTS + 1):
        try:
            return attempt()
        except _NETWORK_ERRORS as exc:
            final = (n == ATTEMPTS or isinstance(exc, FileNotFoundError)
                     or (isinstance(exc, _HttpStatus) and exc.code < 500)
                     or _reach_error(exc).startswith(f"[Errno {socket.EAI_NONAME}]"))
            if final:
                raise Unreachable(url, _reach_error(exc)) from exc
            for _ in range(int(5 * n)):
                _check_stop(stop, f"waiting to retry {url}")
                time.sleep(0.2)
    raise AssertionError("unreachable")


def fetch_bytes(url: str, *, limit: int, stop: threading.Event | None = None) -> bytes:
    """The body of ``url``, at most ``limit`` bytes. Raises ImageUnavailable if unreachable."""

    def attempt() -> bytes:
        buf = bytearray()
        with _open_url(url) as fh:
            while chunk := fh.read(CHUNK):
                _check_stop(stop, f"downloading {url}")
                buf += chunk
                if len(buf) > limit:
                    raise BuildFailed(f"{url} is larger than {limit} bytes: not a Debian index.")
        return bytes(buf)

    return _retrying(url, stop, attempt)


# -- the content-addressed cache -------------------------------------------------------------
class DebCache:
    """Verified files by SHA256 under ``root/sha256/``, shared by every suite, architecture,
    run and lab process. A file enters only complete and matching its expected hash (written to
    a private temporary name, then renamed), so a partial or corrupt download never does.
    Downloads run in parallel; one in flight per hash in this process."""

    def __init__(self, root: Path, *, workers: int = DOWNLOAD_WORKERS) -> None:
        self.root = root
        self.store = root / "sha256"
        self.tmp = root / "partial"
        self.store.mkdir(parents=True, exist_ok=True)
        self.tmp.mkdir(parents=True, exist_ok=True)
        self._pool = cf.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="lab-dl")
        self._inflight: dict[str, cf.Future[Path]] = {}
        self._open: set[BinaryIO] = set()  # streams being read, closed at once on a stop
        self._lock = threading.Lock()
        self.downloaded_bytes = 0
        self.reused = 0

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def path_for(self, sha256: str) -> Path:
        return self.store / sha256[:2] / sha256

    def get(self, url: str, *, sha256: str, size: int | None, label: str,
            stop: threading.Event | None = None, limit: int | None = None,
            vouched_by: str = SIGNED_INDEX) -> Path:
        """The verified file for ``sha256``, downloading it from ``url`` if needed. ``size``
        None: not known in advance (then ``limit`` caps it); ``vouched_by`` names where the
        expected hash came from, for the mismatch message."""
        return self.get_many([(url, sha256, size, label)], stop=stop, limit=limit,
                             vouched_by=vouched_by)[0]

    def get_many(self, items: Sequence[tuple[str, str, int | None, str]], *,
                 stop: threading.Event | None = None, limit: int | None = None,
                 vouched_by: str = SIGNED_INDEX) -> list[Path]:
        """Paths for (url, sha256, size, label) items, in order; downloads run in parallel.

        Waits in short steps so that a stop is noticed within a fraction of a second."""
        futures = [self._submit(url, sha, size, label, stop, limit, vouched_by)
                   for url, sha, size, label in items]
        try:
            pending = set(futures)
            while pending:
                if stop is not None and stop.is_set():
                    self._abort_open()
                _check_stop(stop, "downloading packages")
                _, pending = cf.wait(pending, timeout=0.2, return_when=cf.FIRST_EXCEPTION)
                for f in futures:
                    if f.done() and f.exception() is not None:
                        raise f.exception()  # type: ignore[misc]
            return [f.result() for f in futures]
        except BaseException:
            for f in futures:
                f.cancel()
            # Running downloads notice the stop (or finish) within a chunk; wait for them so
            # no temporary file outlives this call.
            cf.wait(futures, timeout=READ_TIMEOUT_S)
            raise

    def _abort_open(self) -> None:
        """Close every stream being read: a worker blocked in recv wakes up at once."""
        with self._lock:
            streams = list(self._open)
        for fh in streams:
            with contextlib.suppress(Exception):
                fh.close()

    def _submit(self, url: str, sha256: str, size: int | None, label: str,
                stop: threading.Event | None, limit: int | None,
                vouched_by: str) -> cf.Future[Path]:
        with self._lock:
            final = self.path_for(sha256)
            if final.is_file() and size in (None, final.stat().st_size):
                done: cf.Future[Path] = cf.Future()
                done.set_result(final)
                self.reused += 1
                return done
            fut = self._inflight.get(sha256)
            if fut is None or (fut.done() and fut.exception() is not None) or fut.cancelled():
                fut = self._pool.submit(self._download, url, sha256, size, label, stop, limit,
                                        vouched_by)
                self._inflight[sha256] = fut
            return fut

    def _download(self, url: str, sha256: str, size: int | None, label: str,
                  stop: threading.Event | None, limit: int | None, vouched_by: str) -> Path:
        final = self.path_for(sha256)
        if final.is_file() and size in (None, final.stat().st_size):
            return final
        if limit is not None and size is not None and size > limit:
            raise BuildFailed(f"{label}: {size} bytes is over the limit of {limit}.")
        tmp = self.tmp / f"{sha256}.{os.getpid()}.{threading.get_ident()}.part"

        def attempt() -> tuple[str, int]:
            h = hashlib.sha256()
            got = 0
            with _open_url(url) as src, open(tmp, "wb") as dst:
                with self._lock:
                    self._open.add(src)
                try:
                    while chunk := _read_some(src):
                        _check_stop(stop, f"downloading {label}")
                        got += len(chunk)
                        if size is not None and got > size:
                            break  # longer than the index says: a mismatch, whatever follows
                        if limit is not None and got > limit:
                            raise BuildFailed(f"{label} from {url} is larger than {limit} "
                                              "bytes; nothing was kept.")
                        h.update(chunk)
                        dst.write(chunk)
                finally:
                    with self._lock:
                        self._open.discard(src)
            return h.hexdigest(), got

        try:
            actual, got = _retrying(url, stop, attempt)
            if got != (size if size is not None else got) or actual != sha256:
                expected = f"{sha256} ({size} bytes)" if size is not None else sha256
                raise BuildFailed(
                    f"{label} from {url}: SHA256 {actual} ({got} bytes) does not match "
                    f"{vouched_by}'s {expected}. The file is tampered with or broken; nothing "
                    "was unpacked or imported and the cache kept no copy.")
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, final)
            with self._lock:
                self.downloaded_bytes += got
            return final
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()

    def sweep_partial(self, older_than_s: float = 3600.0) -> None:
        """Remove temporary files left by a lab process that was killed mid-download."""
        cutoff = time.time() - older_than_s
        for p in self.tmp.glob("*.part"):
            with contextlib.suppress(OSError):
                if p.stat().st_mtime < cutoff:
                    p.unlink()
