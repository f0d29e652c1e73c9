"""Three real runs into one folder: reports/index.html lists them, and each run's page says
what changed against the run before it."""

from __future__ import annotations

import re

from .conftest import lab

MINE = """[[target]]
id = "mine"
implementation = "cpython"
version = "{version}"
python = "/usr/bin/python{version}"
base = "{base}"
"""


def test_three_runs_side_by_side(engine, tmp_path):
    out = tmp_path / "reports"
    names = []
    for version, base in (("3.11", "bookworm"), ("3.13", "trixie"), ("3.13", "trixie")):
        toml = tmp_path / f"lab-{len(names)}.toml"
        toml.write_text(MINE.format(version=version, base=base))
        r = lab("run", "--config", str(toml), "--targets", "mine", "--scenarios",
                "probe,fork_held_lock", "--out", str(out), "--no-progress")
        assert r.returncode == 0, r.stderr[-3000:]
        names.append(re.search(r"run (\S+) ->", r.stderr).group(1))
    index = (out / "index.html").read_text()
    rows = index.split('<tr id="run-')[1:]
    assert [row.split('"')[0] for row in rows] == names[::-1]  # newest first
    assert "nothing" in rows[0] and "the first run here" in rows[2]
    assert re.search(r"mine 3\.11\.\d+ → 3\.13\.\d+", rows[1]), rows[1]
    # The middle run's page: its neighbours, and what changed for its target.
    page = (out / names[1] / "index.html").read_text()
    assert f'href="../{names[0]}/index.html" rel="prev"' in page
    assert f'href="../{names[2]}/index.html" rel="next"' in page
    since = page[page.index('id="since"'):page.index("</details>", page.index('id="since"'))]
    assert re.search(r"mine · version: 3\.11\.\d+ → 3\.13\.\d+", since), since
    # The first run's page was made again when the second came: it links forward.
    first = (out / names[0] / "index.html").read_text()
    assert f'href="../{names[1]}/index.html" rel="next"' in first
    last = (out / names[2] / "index.html").read_text()
    assert f"nothing changed since <a href=\"../{names[1]}/index.html\">" in last
