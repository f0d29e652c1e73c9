"""Hung cells grouped for a reader: by scenario and start method, then by stacks that are the
same apart from paths, addresses and pids; and the frame the hung child waits in."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from lab.report.page import render_html, render_stacks_html
from lab.report.stacks import gil_holder, hang_groups, normalized, stuck_frame
from lab.results import RunResults, load

SIX = Path(__file__).resolve().parents[1] / "golden" / "run-default-six-targets-v3.json"
HUNG = json.loads((SIX.parent / "stacks" / "hung.json").read_text())


def only(run: RunResults, ids: set[str]) -> RunResults:
    return dataclasses.replace(run, targets=[t for t in run.targets if t.id in ids],
                               results=[c for c in run.results if c.target in ids])


def group(run: RunResults, scenario: str, method: str):
    return next(g for g in hang_groups(run.results)
                if g.scenario == scenario and g.start_method == method)


def test_real_stacks_that_are_the_same_make_one_group_and_different_ones_two():
    six = load(SIX)
    same = group(only(six, {"cp311", "cp313"}), "fork_held_lock", "fork")
    assert [sg.targets for sg in same.stack_groups] == [["cp311", "cp313"]]
    apart = group(only(six, {"cp39", "cp311"}), "fork_held_lock", "fork")
    assert [sg.targets for sg in apart.stack_groups] == [["cp39"], ["cp311"]]
    # The report lists the groups; the stacks page shows each group's stacks once, each
    # target's own behind a click.
    for run, shown in ((only(six, {"cp311", "cp313"}), 1), (only(six, {"cp39", "cp311"}), 2)):
        html = render_html(run)
        block = html[html.index('id="hang-fork_held_lock-fork"'):]
        block = block[:block.index('<div class="problem', 10)]
        assert block.count('<li class="stackgroup">') == shown
        page = render_stacks_html(run)
        block = page[page.index('id="hang-fork_held_lock-fork"'):]
        block = block[:block.index("<h2", 10)]
        assert block.count('<pre class="shared">') == shown
        assert block.count("its own stacks") == 2


STACKS = """=== pid 41 (cell main process) /usr/bin/python3.13 -m labrunner --result /tmp/c/7/r
Current thread 0x00007f1c2a1b2740 (most recent call first):
  File "/usr/lib/python3.13/multiprocessing/popen_fork.py", line 27 in poll
  File "/opt/lab/labrunner/scenarios/fork_held_lock.py", line 42 in run

=== pid 52 (child process) /usr/bin/python3.13 -m labrunner cell
Thread 0x00007f1c29000000 (most recent call first):
  File "/usr/lib/python3.13/threading.py", line 359 in wait
Current thread 0x00007f1c2a1b2740 (most recent call first):
  File "/opt/lab/labrunner/scenarios/fork_held_lock.py", line 24 in child_takes_lock
      LOCK.acquire()
  File "/usr/lib/python3.13/multiprocessing/process.py", line 313 in _bootstrap"""


def test_stacks_differing_only_in_pids_addresses_folders_and_library_lines_are_the_same():
    other = (STACKS.replace("pid 41", "pid 7").replace("pid 52", "pid 9")
             .replace("7f1c2a1b2740", "7fee00000001").replace("/usr/lib/python3.13/",
                                                              "/usr/local/lib/python3.13/")
             .replace("line 359", "line 320").replace("/tmp/c/7/", "/tmp/c/12/"))
    assert normalized(other) == normalized(STACKS)
    # The lab's own line numbers and the functions do count.
    assert normalized(STACKS.replace("line 24 in", "line 25 in")) != normalized(STACKS)
    assert normalized(STACKS.replace("in wait", "in _wait")) != normalized(STACKS)


def test_the_stuck_frame_is_the_child_s_innermost_with_the_source_the_runner_wrote():
    frame = stuck_frame(STACKS)
    assert frame is not None
    assert frame.where == "fork_held_lock.py:24 in child_takes_lock"
    assert frame.source == "LOCK.acquire()"
    main_only = STACKS.split("\n\n")[0]
    assert stuck_frame(main_only).where == "popen_fork.py:27 in poll"  # no child: the main
    assert stuck_frame("garbage") is None


def test_cells_whose_stacks_differ_only_in_native_frames_are_grouped_by_the_cause_they_show():
    """cp314's and cp315's OpenMP hangs show GOMP_parallel (the scan beside py-spy), cp313's
    only py-spy's address in libgomp: the same Python stacks, two causes, two groups, so that
    each group's cause is its own cells'."""
    import json

    from lab.report.causes import cause_key
    from lab.results import Cell

    fixtures = json.loads((Path(__file__).resolve().parents[1] / "golden" / "stacks"
                           / "hung.json").read_text())
    cells = [Cell(target=t, scenario="openmp_fork", start_method="fork", outcome="hung",
                  stacks=fixtures[f"{t}/openmp_fork/fork/{kind}"])
             for t, kind in (("cp313", "native"), ("cp315", "beside"))]
    cells.append(dataclasses.replace(cells[1], target="cp314"))
    assert normalized(cells[0].stacks or "") == normalized(cells[1].stacks or "")
    (group,) = hang_groups(cells, cause_key)
    assert [sg.targets for sg in group.stack_groups] == [["cp313"], ["cp315", "cp314"]]
    (group,) = hang_groups(cells)  # without it: one group, whose first cell speaks for all
    assert [sg.targets for sg in group.stack_groups] == [["cp313", "cp315", "cp314"]]


def test_the_gil_holder_is_the_one_py_spy_saw_else_why_it_was_not_read():
    assert gil_holder(HUNG["cp311/check_gil_in_c/fork/native"]) == 'thread 10 "gil-holder" ' \
                                                                  '(idle+gil)'
    child = ("=== pid 9 (cell main process) p\n--- native stacks (py-spy): x\nGIL holder: "
             "thread 1 (active+gil)\n=== pid 10 (child process) p\n--- native stacks "
             "(py-spy): x\nGIL holder: none\nThread 10 (idle)\n")
    assert gil_holder(child) == "none"  # the hung child's, not the parent's
    unread = "(native stacks not read: py-spy reads CPython only and this is PyPy; faul"
    assert gil_holder(unread + "thandler's stacks follow)\n\n=== pid 3 (child process) p") \
        == "not read (py-spy reads CPython only and this is PyPy)"
    assert gil_holder(HUNG["cp311/fork_held_lock/fork"]) is None  # no native stacks at all


def test_each_stack_group_in_the_report_says_the_gil_holder_py_spy_saw_or_why_not():
    run = load(SIX.parent / "run-default-2026-12-04.json")
    gil = HUNG["cp311/check_gil_in_c/fork/native"]
    run = dataclasses.replace(run, results=[
        dataclasses.replace(c, stacks=gil) if (c.target, c.scenario, c.start_method)
        == ("cp311", "fork_held_lock", "fork") else c for c in run.results])
    html = render_html(run)
    block = html[html.index('id="hang-fork_held_lock-fork"'):]
    block = block[:block.index('<div class="problem', 10)]
    assert block.count(" · GIL holder (py-spy): ") == 2  # cp311's and pp311's; the others'
    # stacks predate the line and say nothing of it
    assert 'GIL holder (py-spy): thread 10 &#34;gil-holder&#34; (idle+gil)' in block
    assert "GIL holder (py-spy): not read (py-spy reads CPython only and this is PyPy)" in block
    assert "GIL held while waiting in C" in block
