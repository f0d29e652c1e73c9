"""The runner's stack scan names code addresses from an ELF file's exported functions."""

from __future__ import annotations

import os

from lab.runner import scan


def _mapped(name: str) -> str:
    with open("/proc/self/maps") as fh:
        for line in fh:
            path = line.split(None, 5)[-1].strip()
            if os.path.basename(path).startswith(name):
                return path
    raise AssertionError(f"{name} is not mapped")


def test_a_shared_librarys_exported_functions_are_read_with_their_extent():
    e_type, symbols = scan._dynsym(_mapped("libc.so"))
    assert e_type == 3  # a shared object: addresses are offsets from its load base
    names = {name: (start, end) for start, end, name in symbols}
    assert "malloc" in names and names["malloc"][0] < names["malloc"][1]
    assert symbols == sorted(symbols)


def test_what_is_not_an_elf_file_has_no_symbols(tmp_path):
    junk = tmp_path / "libjunk.so"
    junk.write_bytes(b"\x7fELF" + b"\x00" * 60)
    assert scan._dynsym(str(junk)) == (0, [])
    assert scan._dynsym(str(tmp_path / "missing.so")) == (0, [])


def test_a_process_that_is_gone_has_nothing_to_scan():
    gone = 2 ** 22 + 1  # above the kernel's largest pid
    assert scan._stack_pointer(gone, gone) is None
    assert scan.process(gone) == ""
