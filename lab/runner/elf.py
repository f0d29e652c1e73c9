# IN-CONTAINER CODE: standard library only, Python 3.9+ and PyPy; never imports lab.*.
"""What a stripped ELF library still says about its code: the functions it exports (its
``.dynsym``), where each of its functions starts (the unwind table, ``.eh_frame_hdr``, which
stripping keeps because exceptions and unwinders need it), and which exported functions jump
to a given function's start (a tail call: ``jmp`` or a conditional ``jcc`` with a 32-bit
displacement, which is how x86 code hands its frame on to another function).

Debian strips libgomp. py-spy unwinds it from the same table and shows its frames as bare
addresses, and where ``GOMP_parallel`` ends in a tail jump to an internal function
(``gomp_team_end`` on libgomp 10 and 12), no ``GOMP_`` frame is left on the stack at all: the
jump is what shows it was entered from there. Little-endian files only (x86_64, i386).
"""

import bisect
import os
import re
import struct

MAX_ELF_BYTES = 64 << 20  # a library larger than this is not read
_PT_LOAD, _PT_GNU_EH_FRAME = 1, 0x6474E550
_JUMP = re.compile(rb"\xe9|\x0f[\x80-\x8f]")  # jmp rel32, jcc rel32
_EXPORTED = {}  # path -> (ELF type, [(start, end, name)] sorted)
_ENTERED = {}  # (path, start) -> [jumps]


def _read(path):
    try:
        if os.path.getsize(path) <= MAX_ELF_BYTES:
            with open(path, "rb") as fh:
                data = fh.read()
            if data[:4] == b"\x7fELF" and data[5] == 1:
                return data
    except OSError:
        pass
    return None


def exported(path):
    """(e_type, sorted [(start, end, name)]) of the functions an ELF file exports ((0, []) for
    what is not one, or cannot be read)."""
    if path not in _EXPORTED:
        found = (0, [])
        data = _read(path)
        try:
            if data:
                found = _dynsym(data)
        except (struct.error, ValueError, IndexError):
            pass
        _EXPORTED[path] = found
    return _EXPORTED[path]


def _layout(data):
    """(wide, e_type, section headers, program headers) of an ELF file."""
    wide = data[4] == 2
    e_type = struct.unpack_from("<H", data, 16)[0]
    if wide:
        phoff, shoff = struct.unpack_from("<QQ", data, 0x20)
        phentsize, phnum, shentsize, shnum = struct.unpack_from("<HHHH", data, 0x36)
        section, program = "<IIQQQQIIQQ", "<IIQQQQQQ"
    else:
        phoff, shoff = struct.unpack_from("<II", data, 0x1C)
        phentsize, phnum, shentsize, shnum = struct.unpack_from("<HHHH", data, 0x2A)
        section, program = "<IIIIIIIIII", "<IIIIIIII"
    sections = [struct.unpack_from(section, data, shoff + i * shentsize) for i in range(shnum)]
    programs = []
    for i in range(phnum):
        fields = struct.unpack_from(program, data, phoff + i * phentsize)
        if wide:  # type, flags, offset, vaddr, paddr, filesz, memsz, align
            programs.append((fields[0], fields[2], fields[3], fields[5]))
        else:  # type, offset, vaddr, paddr, filesz, memsz, flags, align
            programs.append((fields[0], fields[1], fields[2], fields[4]))
    return wide, e_type, sections, programs


def _dynsym(data):
    wide, e_type, sections, _ = _layout(data)
    symbol = "<IBBHQQ" if wide else "<IIIBBH"
    out = []
    for _name, kind, _flags, _addr, offset, size, link, _info, _align, entsize in sections:
        if kind != 11 or not entsize:  # SHT_DYNSYM
            continue
        strings = sections[link][4]
        for j in range(size // entsize):
            fields = struct.unpack_from(symbol, data, offset + j * entsize)
            if wide:
                name_at, info, _other, _shndx, value, length = fields
            else:
                name_at, value, length, info, _other, _shndx = fields
            if info & 0xF != 2 or not value or not length:  # STT_FUNC, defined, sized
                continue
            end = data.index(b"\0", strings + name_at)
            out.append((value, value + length,
                        data[strings + name_at:end].decode("ascii", "replace")))
    out.sort()
    return e_type, out


def _offset(programs, vaddr):
    """The file offset of a loaded address (None where no PT_LOAD segment holds it)."""
    for kind, offset, start, size in programs:
        if kind == _PT_LOAD and start <= vaddr < start + size:
            return vaddr - start + offset
    return None


def function_starts(data, programs):
    """The sorted start addresses of every function the unwind table (``.eh_frame_hdr``'s
    search table) covers ([] where it has none, or one encoded otherwise than GCC and clang
    write it: pc-relative pointer, 4-byte count, a table of data-relative 4-byte pairs)."""
    hdr = next(((offset, vaddr) for kind, offset, vaddr, _ in programs
                if kind == _PT_GNU_EH_FRAME), None)
    if hdr is None:
        return []
    at, vaddr = hdr
    version, _ptr_enc, count_enc, table_enc = data[at:at + 4]
    if version != 1 or count_enc != 0x03 or table_enc != 0x3B:
        return []
    count = struct.unpack_from("<I", data, at + 8)[0]
    table = struct.unpack_from(f"<{2 * count}i", data, at + 12)
    return sorted(vaddr + table[2 * i] for i in range(count))


def entered_by_jump(path, where):
    """(start, ["GOMP_parallel+0x77", ...]) for the code at ``where`` (an address relative to
    the file's load base): the start of the function that holds it, from the unwind table, and
    each exported function's jump to that start, at its offset. None where the file cannot say
    (no table, not an ELF file, or ``where`` is at a function's first byte)."""
    data = _read(path)
    try:
        if not data:
            return None
        _, _, _, programs = _layout(data)
        starts = function_starts(data, programs)
        k = bisect.bisect_right(starts, where) - 1
        if k < 0 or starts[k] == where:
            return None
        start = starts[k]
        if (path, start) not in _ENTERED:
            _ENTERED[path, start] = _jumps_to(data, programs, exported(path)[1], start)
    except (struct.error, ValueError, IndexError):
        return None
    return start, _ENTERED[path, start]


def _jumps_to(data, programs, symbols, target):
    found = []
    for start, end, name in symbols:
        at = _offset(programs, start)
        if at is None or start <= target < end:  # a function's own jumps stay inside it
            continue
        code = data[at:at + end - start]
        for m in _JUMP.finditer(code):
            after = m.end() + 4
            if after <= len(code):
                rel = struct.unpack_from("<i", code, m.end())[0]
                if start + after + rel == target:
                    found.append(f"{name}+{m.start():#x}")
    return found
