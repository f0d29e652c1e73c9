"""Runs side by side: reports/index.html and each run's neighbours and per-target changes."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from lab.report.history import history_of, runs_in
from lab.report.page import render_index, render_run
from lab.results import load, write_json

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "run-cp39-cp315-quick.json"


def save(out: Path, name: str, **changes) -> Path:
    run = load(GOLDEN)
    run = dataclasses.replace(run, run=dataclasses.replace(run.run, id=name), **changes)
    folder = out / name
    folder.mkdir(parents=True)
    write_json(run, folder / "results.json")
    return folder


def test_the_index_lists_every_run_newest_first_with_what_differs(tmp_path):
    base = load(GOLDEN)
    first = save(tmp_path, "20260101-000000-0001")
    newer = [dataclasses.replace(t, probe={**t.probe, "version": "3.15.9"}) if t.id == "cp315"
             else t for t in base.targets]
    flipped = [dataclasses.replace(c, outcome="ok", stacks=None)
               if c.outcome == "hung" and c.target == "cp39" else c for c in base.results]
    save(tmp_path, "20260102-000000-0002", targets=newer, results=flipped)
    save(tmp_path, "20260103-000000-0003", targets=newer, results=flipped)
    (tmp_path / "latest").symlink_to(first.name)  # never read as a run
    (tmp_path / "junk").mkdir()  # a folder with no results: left out
    html = render_index(tmp_path).read_text()
    rows = html.split('<tr id="run-')[1:]
    assert [r.split('"')[0] for r in rows] == ["20260103-000000-0003", "20260102-000000-0002",
                                              "20260101-000000-0001"]
    assert "nothing" in rows[0]  # the third equals the second
    assert "cp315 " in rows[1] and "→ 3.15.9" in rows[1] and "outcomes changed" in rows[1]
    assert "the first run here" in rows[2]
    assert 'href="20260102-000000-0002/index.html"' in html


def test_a_run_page_links_its_neighbours_and_says_what_changed_per_target(tmp_path):
    base = load(GOLDEN)
    save(tmp_path, "20260101-000000-0001")
    flipped = [dataclasses.replace(c, outcome="ok", stacks=None)
               if c.outcome == "hung" and c.target == "cp39" else c for c in base.results]
    second = save(tmp_path, "20260102-000000-0002", results=flipped)
    save(tmp_path, "20260103-000000-0003", results=flipped)
    h = history_of(second, load(second))
    assert h and h.previous == "20260101-000000-0001" and h.next == "20260103-000000-0003"
    by = {tc.target: tc for tc in h.targets}
    assert by["cp315"].changes == [] and by["cp315"].previous == "20260101-000000-0001"
    assert by["cp39"].changes and all(new == "ok" for _, _, new in by["cp39"].changes)
    page = render_run(second).read_text()
    assert 'href="../20260101-000000-0001/index.html" rel="prev"' in page
    assert 'href="../20260103-000000-0003/index.html" rel="next"' in page
    assert 'href="../index.html"' in page
    since = page[page.index('id="since"'):]
    assert "nothing changed since" in since and "cp39 · fork_held_lock · fork: hung → ok" in since
    assert [e.name for e in runs_in(tmp_path)] == [
        "20260101-000000-0001", "20260102-000000-0002", "20260103-000000-0003"]
    json.loads((second / "results.json").read_text())  # untouched
