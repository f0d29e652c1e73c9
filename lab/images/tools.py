"""The lab's own tools in the images: py-spy, which reads a hung process's native stacks.

faulthandler shows Python frames and thread ids only. py-spy (a static binary, shipped in a
PyPI wheel) also shows each thread's name, whether it holds the GIL, whether it is running or
waiting, and the C frames beneath (``PyThread_acquire_lock_timed``, ``GOMP_parallel``). It is
chosen over pystack because it is one binary for every CPython target of an architecture,
whatever the target's version, where pystack is an extension module that must be installed for
(and run by) an interpreter it supports.

The wheel is fetched once by the host's pip, so the user's pip settings (index, certificate,
proxy) apply, or taken from ``--wheelhouse`` offline; it must match the pinned sha256 below,
and the binary is cached in the lab's cache. The runner layer holds it where it is cached
(``plan.runner_archive``), and the image's tag says whether it does, so an image never claims
a tool it lacks. Nothing is downloaded at run time in a cell. Where it cannot be had, the one
line says why and hung cells keep faulthandler's stacks.

py-spy reads CPython with the GIL only: not PyPy, not free-threaded builds; and it cannot
attach under user-mode emulation (qemu does not emulate ptrace). The runner says so per cell.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from lab.matrix import Target

PY_SPY_VERSION = "0.4.3"
INNER_PATH = "opt/lab/tools/py-spy"  # in the runner layer, mode 0755
MAX_BINARY_BYTES = 64 << 20


@dataclass(frozen=True)
class Wheel:
    platform: str  # pip's --platform
    sha256: str


# The wheels PyPI serves for PY_SPY_VERSION, by Docker architecture; their hashes are PyPI's.
PY_SPY_WHEELS = {
    "amd64": Wheel("manylinux_2_5_x86_64",
                   "8a4277225f470d394a85cca0cdd944bef87f0097b6f20150a6dd3ac2e92806b8"),
    "i386": Wheel("manylinux_2_5_i686",
                 "a21b6958bf1200ff225c4f360834a77f7e12556ac11dcd863e26c9345b468783"),
}


def cached(arch: str, cache: Path) -> Path | None:
    """The py-spy binary for ``arch`` in the lab's cache folder ``cache``, or None."""
    wheel = PY_SPY_WHEELS.get(arch)
    if wheel is None:
        return None
    path = _binary_path(arch, cache)
    return path if path.is_file() else None


def binary_sha256(arch: str, cache: Path) -> str | None:
    """The sha256 of the cached binary (what the image tag records), or None."""
    path = cached(arch, cache)
    return hashlib.sha256(path.read_bytes()).hexdigest() if path else None


def prepare(targets: Iterable[Target], cache: Path, *,
            wheelhouse: Path | None = None) -> list[str]:
    """Make sure py-spy is cached for the architecture of each target: one line per
    architecture where it cannot be had, naming the targets whose hung cells will lack it."""
    by_arch: dict[str, list[str]] = {}
    for t in targets:
        by_arch.setdefault(t.arch, []).append(t.id)
    lines = []
    for arch, ids in sorted(by_arch.items()):
        got = ensure(arch, cache, wheelhouse=wheelhouse)
        if isinstance(got, str):
            lines.append(f"native stacks: {got}; hung cells of {', '.join(ids)} keep "
                         "faulthandler's stacks only")
    return lines


def ensure(arch: str, cache: Path, *, wheelhouse: Path | None = None) -> Path | str:
    """The py-spy binary for ``arch``: from the cache, else from the wheel (the wheelhouse's,
    or downloaded by the host's pip). A string says in one line why it cannot be had."""
    wheel = PY_SPY_WHEELS.get(arch)
    if wheel is None:
        return (f"py-spy is not used on {arch} (its wheels are for amd64 and i386, and under "
                "emulation it could not attach)")
    path = cached(arch, cache)
    if path is not None:
        return path
    with tempfile.TemporaryDirectory(prefix="lab-py-spy-") as tmp:
        got = _fetch(wheel, Path(tmp), wheelhouse)
        if isinstance(got, str):
            return got
        return _unpack(got, _binary_path(arch, cache))


def export(targets: Iterable[Target], dest: Path) -> tuple[list[str], list[str]]:
    """py-spy's wheels for the targets' architectures, checked against the pins, copied into
    the wheelhouse ``dest`` (``lab deps export``), so that an offline run has native stacks:
    (the files written, one line per architecture that could not have it)."""
    written, lines = [], []
    for arch in sorted({t.arch for t in targets}):
        wheel = PY_SPY_WHEELS.get(arch)
        if wheel is None:
            continue  # no py-spy is used there: nothing for an offline run to miss
        with tempfile.TemporaryDirectory(prefix="lab-py-spy-") as tmp:
            got = _fetch(wheel, Path(tmp), None)
            if isinstance(got, str):
                lines.append(f"native stacks ({arch}): {got}")
                continue
            dest.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(got, dest / got.name)
            written.append(got.name)
    return written, lines


def _fetch(wheel: Wheel, dest: Path, wheelhouse: Path | None) -> Path | str:
    reqs = dest / "requirements.txt"
    reqs.write_text(f"py-spy=={PY_SPY_VERSION} --hash=sha256:{wheel.sha256}\n")
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--platform", wheel.platform, "--require-hashes", "-r", str(reqs),
           "--dest", str(dest / "out"), "--quiet", "--disable-pip-version-check"]
    if wheelhouse is not None:
        cmd += ["--no-index", "--find-links", str(wheelhouse)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"cannot get py-spy {PY_SPY_VERSION} ({exc})"
    found = sorted((dest / "out").glob("py_spy-*.whl"))
    if proc.returncode != 0 or not found:
        said = proc.stderr + proc.stdout
        lines = [x for x in said.splitlines() if x.strip()]
        why = lines[-1].strip() if lines else f"pip exited {proc.returncode}"
        if "do not match the hashes" in said.lower():
            why = f"its sha256 is not the one the lab pins, {wheel.sha256[:12]}…: refused"
        where = "in the wheelhouse" if wheelhouse else "from the index"
        return f"cannot get py-spy {PY_SPY_VERSION} {where} ({why[:200]})"
    return found[0]


def _unpack(whl: Path, path: Path) -> Path | str:
    """The binary out of the (hash-checked) wheel, into the cache, executable."""
    member = f"py_spy-{PY_SPY_VERSION}.data/scripts/py-spy"
    try:
        with zipfile.ZipFile(whl) as z:
            info = z.getinfo(member)
            if info.file_size > MAX_BINARY_BYTES:
                return f"py-spy's wheel holds a {info.file_size >> 20} MB binary: refused"
            data = z.read(member)
    except (OSError, KeyError, zipfile.BadZipFile) as exc:
        return f"py-spy's wheel is not as expected ({exc})"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".part")
    tmp.write_bytes(data)
    os.chmod(tmp, 0o755)
    os.replace(tmp, path)
    return path


def _binary_path(arch: str, cache: Path) -> Path:
    return cache / "tools" / f"py-spy-{PY_SPY_VERSION}-{arch}"
