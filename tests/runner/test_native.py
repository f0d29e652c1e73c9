"""The runner's layout of py-spy's JSON (labrunner.native, standard library only): py-spy's
own text layout plus the GIL holder, from a dump py-spy 0.4.3 wrote on this machine of a
process whose thread sleeps in C with the GIL held (tests/integration/programs/gil_in_c.py)."""

from __future__ import annotations

import json
from pathlib import Path

from lab.report.causes import GIL_IN_C, cause_of
from lab.runner import native

DUMP = Path(__file__).resolve().parents[1] / "golden" / "stacks" / "py-spy-gil-holder.json"


def test_the_holder_asleep_in_c_is_named_which_py_spys_text_shows_as_idle():
    text = native.render(json.loads(DUMP.read_text()))
    lines = text.splitlines()
    assert lines[0].startswith("GIL holder: thread ") and lines[0].endswith(
        ' "gil-holder" (idle+gil)')
    # py-spy's order (oldest thread first) and layout: "Thread TID (state): "name"", frames.
    assert lines[1].startswith("Thread ") and lines[1].endswith(' (idle): "MainThread"')
    holder = next(i for i, x in enumerate(lines) if x.endswith('(idle+gil): "gil-holder"'))
    assert holder > 1 and "    sleep (libc.so.6)" in lines[holder:]
    assert "    hold_the_gil (gil_in_c.py:9)" in lines[holder:]
    assert native.stripped(text) is not None  # the scan's reader still parses the layout
    why = cause_of(f"=== pid 1 (cell main process) python3\n{native.HEADING}\n{text}", "fork")
    assert why.name == GIL_IN_C
    assert why.evidence == '"gil-holder" waits in clock_nanosleep (libc.so.6) under ' \
                           'hold_the_gil (gil_in_c.py:9)'


def test_no_holder_is_said_and_odd_fields_are_not_trusted():
    text = native.render([{"thread_name": "MainThread", "os_thread_id": 7, "active": True,
                           "owns_gil": False, "frames": [{"name": "f", "short_filename":
                                                          "x.py", "line": 3}, "junk", None]},
                          "junk", {"thread_name": 5, "os_thread_id": "x", "frames": "no"}])
    assert text.splitlines() == ["GIL holder: none", "Thread ? (idle)",
                                 'Thread 7 (active): "MainThread"', "    f (x.py:3)"]


def test_read_gives_py_spys_own_words_where_it_read_no_stacks(tmp_path):
    (tmp_path / "7.txt").write_text("")
    (tmp_path / "7.err").write_text("Error: Failed to find python version from target\n")
    assert native.read(str(tmp_path), 7, 1000) == \
        "Error: Failed to find python version from target"
    (tmp_path / "8.txt").write_text(DUMP.read_text())
    assert native.read(str(tmp_path), 8, 1000).startswith("GIL holder: thread ")
    assert len(native.read(str(tmp_path), 8, 100)) == 100  # capped
    (tmp_path / "9.txt").write_text(DUMP.read_text()[:500])  # cut short: said as it is
    assert native.read(str(tmp_path), 9, 1000).startswith("[")
    assert native.read(str(tmp_path), 10, 1000) is None


def test_a_py_spy_that_does_not_finish_is_stopped_and_says_so(tmp_path, monkeypatch):
    slow = tmp_path / "py-spy"
    slow.write_text("#!/bin/sh\nexec sleep 30\n")
    slow.chmod(0o755)
    monkeypatch.setattr(native, "TOOL", str(slow))
    dump = native.Dump([4242], str(tmp_path))
    assert not dump.done()
    dump.stop()
    assert dump.done()
    said = native.read(str(tmp_path), 4242, 1000)
    assert said == (f"py-spy did not finish within {native.GRACE_S:g} s and was stopped (a "
                    "loaded machine, or a process it could not read)")
    assert not native.has_stacks(said)
