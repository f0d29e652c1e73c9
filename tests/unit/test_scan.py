"""The runner's stack scan names code addresses from an ELF file's exported functions."""

from __future__ import annotations

import os

from lab.runner import native, scan


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
    assert scan.threads(gone) == {}


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
    assert native.stripped(PY_SPY) == {
        23: ({"libgomp.so.1.0.0", "libffi.so.8.5.0"}, {"ffi_call", "parallel_region"})}
    assert native.stripped("") == {}


def test_a_scan_adds_to_py_spy_only_the_exported_functions_of_those_libraries_it_did_not_name():
    found = {23: ["0x1f773 (libgomp.so.1.0.0)", "GOMP_parallel+0x46 (libgomp.so.1.0.0)",
                  "ffi_call+0xcd (libffi.so.8.5.0)", "PyObject_SetAttr+0x6a (python3.15)",
                  "GOMP_parallel (libgomp.so.1.0.0; a function's address)"],
             24: ["GOMP_barrier+0x10 (libgomp.so.1.0.0)"]}
    assert scan.beside_py_spy(found, native.stripped(PY_SPY)) == (
        "Thread 23 (scan):\n    GOMP_parallel+0x46 (libgomp.so.1.0.0)")
    assert scan.beside_py_spy({23: ["0x1f773 (libgomp.so.1.0.0)"]},
                              native.stripped(PY_SPY)) == ""
    assert scan.render(found).startswith("Thread 23 (scan):\n    0x1f773 (libgomp.so.1.0.0)\n")


def test_the_c_librarys_functions_are_not_added_beside_py_spy():
    py_spy = ('Thread 16 (idle): "QueueFeederThread"\n    0x7f35203e5a02 (libc.so.6)\n'
              "    Queue._feed (multiprocessing/queues.py:268)\n")
    found = {16: ["clock_gettime+0x19 (libc.so.6)", "pthread_cond_timedwait+0xd1 (libc.so.6)"]}
    assert native.stripped(py_spy) == {16: ({"libc.so.6"}, {"Queue._feed"})}
    assert scan.beside_py_spy(found, native.stripped(py_spy)) == ""
    old = {16: ["sem_wait+0x10 (libc-2.31.so)"]}  # bullseye's file name
    assert scan.beside_py_spy(old, {16: ({"libc-2.31.so"}, set())}) == ""
