"""The runner's stack scan names code addresses from an ELF file's exported functions, and
names py-spy's bare addresses from the library's unwind table and the jumps into them."""

from __future__ import annotations

import os
import struct
from pathlib import Path

from lab.runner import elf, native, scan


def _mapped(name: str) -> str:
    with open("/proc/self/maps") as fh:
        for line in fh:
            path = line.split(None, 5)[-1].strip()
            if os.path.basename(path).startswith(name):
                return path
    raise AssertionError(f"{name} is not mapped")


def test_a_shared_librarys_exported_functions_are_read_with_their_extent():
    e_type, symbols = elf.exported(_mapped("libc.so"))
    assert e_type == 3  # a shared object: addresses are offsets from its load base
    names = {name: (start, end) for start, end, name in symbols}
    assert "malloc" in names and names["malloc"][0] < names["malloc"][1]
    assert symbols == sorted(symbols)
    # its unwind table is read too: the function that holds malloc's fifth byte starts there
    start, _ = elf.entered_by_jump(_mapped("libc.so"), names["malloc"][0] + 4)
    assert start == names["malloc"][0]


def test_what_is_not_an_elf_file_has_no_symbols(tmp_path):
    junk = tmp_path / "libjunk.so"
    junk.write_bytes(b"\x7fELF" + b"\x00" * 60)
    assert elf.exported(str(junk)) == (0, [])
    assert elf.exported(str(tmp_path / "missing.so")) == (0, [])


def test_a_process_that_is_gone_has_nothing_to_scan():
    gone = 2 ** 22 + 1  # above the kernel's largest pid
    assert scan._stack_pointer(gone, gone) is None
    assert scan.Snapshot(gone).threads == {}
    assert scan.Snapshot(gone).entered(0x7F0000001000) is None


PY_SPY = """Thread 23 (idle): "MainThread"
    0x7f28e7d32773 (libgomp.so.1.0.0)
    0x7f28e7d3100f (libgomp.so.1.0.0)
    0x7f28e7edd056 (libffi.so.8.5.0)
    ffi_call (libffi.so.8.5.0)
    0x7f28e7efb081 (_ctypes.cpython-315-x86_64-linux-gnu.so)
    parallel_region (labrunner/scenarios/openmp_fork.py:43)
    0x7f28e8590fba (libc.so.6)
Thread 24 (idle): "Worker"
    wait4 (libc.so.6)
    0x7f28e8590fba (libc.so.6)
"""


def test_py_spys_threads_whose_innermost_frames_are_bare_addresses_are_found():
    # libgomp and libffi (the run of addresses before the first named frame); not libc, whose
    # bare address is outermost, nor a thread whose innermost frame py-spy named
    # and the outermost libgomp address, whose caller (an exported function) left no frame
    assert native.stripped(PY_SPY) == {
        23: ({"libgomp.so.1.0.0", "libffi.so.8.5.0"}, {"ffi_call", "parallel_region"},
             [(0x7F28E7D3100F, "libgomp.so.1.0.0")])}
    assert native.stripped("") == {}


def test_a_scan_adds_to_py_spy_only_the_exported_functions_of_those_libraries_it_did_not_name():
    found = {23: ["0x1f773 (libgomp.so.1.0.0)", "GOMP_parallel+0x46 (libgomp.so.1.0.0)",
                  "ffi_call+0xcd (libffi.so.8.5.0)", "PyObject_SetAttr+0x6a (python3.15)",
                  "GOMP_parallel (libgomp.so.1.0.0; a function's address)"],
             24: ["GOMP_barrier+0x10 (libgomp.so.1.0.0)"]}
    assert scan.beside_py_spy(snapshot(found), native.stripped(PY_SPY)) == (
        "Thread 23 (scan):\n    GOMP_parallel+0x46 (libgomp.so.1.0.0)")
    assert scan.beside_py_spy(snapshot({23: ["0x1f773 (libgomp.so.1.0.0)"]}),
                              native.stripped(PY_SPY)) == ""
    assert scan.render(found).startswith("Thread 23 (scan):\n    0x1f773 (libgomp.so.1.0.0)\n")


def test_the_c_librarys_functions_are_not_added_beside_py_spy():
    py_spy = ('Thread 16 (idle): "QueueFeederThread"\n    0x7f35203e5a02 (libc.so.6)\n'
              "    Queue._feed (multiprocessing/queues.py:268)\n")
    found = {16: ["clock_gettime+0x19 (libc.so.6)", "pthread_cond_timedwait+0xd1 (libc.so.6)"]}
    assert native.stripped(py_spy) == {
        16: ({"libc.so.6"}, {"Queue._feed"}, [(0x7F35203E5A02, "libc.so.6")])}
    assert scan.beside_py_spy(snapshot(found), native.stripped(py_spy)) == ""
    old = {16: ["sem_wait+0x10 (libc-2.31.so)"]}  # bullseye's file name
    assert scan.beside_py_spy(snapshot(old), {16: ({"libc-2.31.so"}, set(), [])}) == ""


def snapshot(threads: dict[int, list[str]], spans=(), bases=None) -> scan.Snapshot:
    """A snapshot of a process that is gone, given the threads and mappings of one."""
    snap = scan.Snapshot(2 ** 22 + 1)
    snap.threads, snap.spans, snap.bases = threads, list(spans), dict(bases or {})
    return snap


def stripped_library(path: Path) -> Path:
    """A small stripped x86_64 shared object: ``outer`` (exported, 0x100) ends in a tail jump
    (``jmp rel32``) to ``0x140``, an internal function only the unwind table knows; ``caller``
    (exported, 0x180) calls it (``call rel32``), which leaves a frame and is no jump."""
    code = bytearray(0x100)
    code[0x10:0x15] = b"\xe9" + struct.pack("<i", 0x140 - 0x115)  # outer+0x10: jmp 0x140
    code[0x40:0x60] = b"\x90" * 0x20  # the internal function
    code[0x88:0x8D] = b"\xe8" + struct.pack("<i", 0x140 - 0x18D)  # caller+0x8: call 0x140
    hdr = bytes([1, 0x1B, 0x03, 0x3B]) + struct.pack("<iI", 0, 3) + b"".join(
        struct.pack("<ii", start - 0x200, 0) for start in (0x100, 0x140, 0x180))
    names = b"\0outer\0caller\0"
    symbols = bytes(24) + b"".join(struct.pack("<IBBHQQ", at, 0x12, 0, 1, value, 0x20)
                                    for at, value in ((1, 0x100), (7, 0x180)))
    header = (b"\x7fELF\x02\x01\x01" + bytes(9) + struct.pack(
        "<HHIQQQIHHHHHH", 3, 62, 1, 0, 0x40, 0x300, 0, 64, 56, 2, 64, 3, 0))
    programs = (struct.pack("<IIQQQQQQ", 1, 5, 0, 0, 0, 0x400, 0x400, 0x1000)
                + struct.pack("<IIQQQQQQ", 0x6474E550, 4, 0x200, 0x200, 0x200, len(hdr),
                              len(hdr), 4))
    sections = (bytes(64)
                + struct.pack("<IIQQQQIIQQ", 0, 3, 0, 0x240, 0x240, len(names), 0, 0, 1, 0)
                + struct.pack("<IIQQQQIIQQ", 0, 11, 0, 0x260, 0x260, len(symbols), 1, 1, 8,
                              24))
    image = bytearray(0x400)
    for at, part in ((0, header), (0x40, programs), (0x100, code), (0x200, hdr),
                     (0x240, names), (0x260, symbols), (0x300, sections)):
        image[at:at + len(part)] = part
    path.write_bytes(bytes(image))
    return path


def test_a_function_entered_by_a_tail_jump_is_named_with_the_exported_functions_that_jump(
        tmp_path):
    lib = str(stripped_library(tmp_path / "libprobe.so.1"))
    assert [name for _, _, name in elf.exported(lib)[1]] == ["outer", "caller"]
    assert elf.entered_by_jump(lib, 0x148) == (0x140, ["outer+0x10"])  # not caller's call
    assert elf.entered_by_jump(lib, 0x140) is None  # a function's first byte: no return
    assert elf.entered_by_jump(lib, 0x108) == (0x100, [])  # nothing jumps into outer



def test_py_spys_address_whose_caller_left_no_frame_is_named_beside_it(tmp_path):
    lib = str(stripped_library(tmp_path / "libprobe.so.1"))
    base = 0x7F0000000000
    py_spy = ('Thread 9 (idle): "MainThread"\n'
              f"    {base + 0x150:#x} (libprobe.so.1)\n"  # inside the internal function
              f"    {base + 0x148:#x} (libprobe.so.1)\n"  # its caller's frame is gone
              "    ffi_call (libffi.so.8.1.2)\n"
              "    parallel_region (labrunner/scenarios/openmp_fork.py:43)\n")
    found = native.stripped(py_spy)
    assert found == {9: ({"libprobe.so.1"}, {"ffi_call", "parallel_region"},
                         [(base + 0x148, "libprobe.so.1")])}
    snap = snapshot({}, [(base + 0x100, base + 0x300, lib)], {lib: base})
    assert snap.name(base + 0x108) == "outer+0x8 (libprobe.so.1)"
    assert scan.beside_py_spy(snap, found) == (
        "Thread 9 (unwind table):\n    0x140+0x8, jumped to by outer+0x10 (libprobe.so.1)")
    # where the frame above is the same library's, its caller is known: nothing to add
    inner = py_spy.replace("    ffi_call (libffi.so.8.1.2)\n",
                           "    outer (libprobe.so.1)\n    ffi_call (libffi.so.8.1.2)\n")
    assert native.stripped(inner)[9][2] == []
    assert scan.beside_py_spy(snap, native.stripped(inner)) == ""
