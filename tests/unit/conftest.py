"""Unit tests are fast and touch nothing outside the process: no Docker engine, no
subprocess, no network. An autouse guard makes each of those an immediate, named failure
instead of a slow or machine-dependent pass; fakes at the docker boundary live in fakes.py.
A test that needs the real thing belongs in tests/runner/ (the host interpreter) or
tests/integration/ (a real engine)."""

from __future__ import annotations

import os
import socket
import stat
import subprocess

import pytest


class Escaped(AssertionError):
    """A unit test reached outside its process."""


def _refuse(what: str):
    def refuse(*args, **kwargs):
        raise Escaped(f"a unit test tried to {what}; use tests/unit/fakes.py, or move the test "
                      "to tests/runner/ or tests/integration/")
    return refuse


_real_connect = socket.socket.connect


def _escape(sock: socket.socket, why: str) -> None:
    sock.close()  # else its finalizer warns in whichever test runs next
    raise Escaped(f"a unit test tried to {why}; use tests/unit/fakes.py, or move the test to "
                  "tests/runner/ or tests/integration/")


def _guarded_connect(self: socket.socket, address) -> None:
    """Loopback stays allowed (a test may point a client at 127.0.0.1:1 to see it refused);
    a live Unix socket (a Docker engine's) and any other address do not."""
    if self.family == socket.AF_UNIX and isinstance(address, str | bytes):
        path = os.fsdecode(address)
        try:
            live = stat.S_ISSOCK(os.stat(path).st_mode)
        except OSError:
            live = False  # no such socket: the connect fails on its own, as the test expects
        if live:
            _escape(self, f"connect to {path}, a live socket such as a Docker engine's")
    elif self.family in (socket.AF_INET, socket.AF_INET6):
        host = str(address[0])
        if not (host.startswith("127.") or host in ("::1", "localhost")):
            _escape(self, f"open a network connection to {address!r}")
    _real_connect(self, address)


@pytest.fixture(autouse=True)
def _stay_in_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(socket.socket, "connect", _guarded_connect)
    monkeypatch.setattr(subprocess.Popen, "__init__", _refuse("start a subprocess"))
    for name in ("fork", "forkpty", "posix_spawn", "posix_spawnp", "system"):
        if hasattr(os, name):
            monkeypatch.setattr(os, name, _refuse(f"call os.{name}()"))
    # Whatever the environment says, no engine is configured: a test that forgets a fake
    # fails on a socket that does not exist instead of talking to the machine's engine.
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/lab-unit-tests/docker.sock")
    monkeypatch.delenv("DOCKER_CONTEXT", raising=False)
