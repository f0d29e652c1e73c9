"""py-spy for the runner layers: fetched by the host's pip against a pinned hash, unpacked
from its wheel into the cache, or one line saying why not."""

from __future__ import annotations

import zipfile

from lab.images import tools


def _wheel(path, binary=b"\x7fELF py-spy"):
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(f"py_spy-{tools.PY_SPY_VERSION}.data/scripts/py-spy", binary)
        z.writestr(f"py_spy-{tools.PY_SPY_VERSION}.dist-info/METADATA", "Name: py-spy\n")
    return path


def test_the_binary_comes_out_of_the_wheel_executable(tmp_path):
    whl = _wheel(tmp_path / "py_spy.whl")
    got = tools._unpack(whl, tmp_path / "cache" / "tools" / "py-spy")
    assert got.read_bytes() == b"\x7fELF py-spy"
    assert got.stat().st_mode & 0o777 == 0o755


def test_a_wheel_without_the_binary_is_one_line(tmp_path):
    whl = tmp_path / "odd.whl"
    with zipfile.ZipFile(whl, "w") as z:
        z.writestr("something/else", b"")
    got = tools._unpack(whl, tmp_path / "py-spy")
    assert isinstance(got, str) and "not as expected" in got and "\n" not in got
