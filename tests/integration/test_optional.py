"""Optional targets (the default matrix's python:3.X-slim): where their image cannot be had,
they are listed as not available here with the reason, and the run is complete and exits 0,
as `make lab` runs it (the default matrix, no --targets). The test's own optional target
names an image on a registry that cannot answer (localhost:1), so it cannot be had wherever
the test runs."""

from __future__ import annotations

from .conftest import lab, load_results, only_run

TARGET = """[[target]]
id = "{tid}"
implementation = "cpython"
version = "3.12"
python = "/usr/local/bin/python3"
image = "localhost:1/lab-test/python:3.12-slim"
optional = {optional}
default = true
"""


def test_an_optional_target_that_cannot_be_had_leaves_the_run_complete(engine, tmp_path):
    toml = tmp_path / "lab.toml"
    toml.write_text(TARGET.format(tid="absent", optional="true"))
    r = lab("run", "--config", str(toml), "--scenarios", "probe", "--out",
            str(tmp_path / "runs"), "--no-progress")
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert "  absent: not available here (optional, registry): " in r.stdout
    run = only_run(tmp_path / "runs")
    data = load_results(run)
    assert data["run"]["complete"] is True
    rows = {t["id"]: t for t in data["targets"]}
    assert rows["absent"]["status"] == "unavailable" and rows["absent"]["optional"]
    assert "localhost:1" in rows["absent"]["reason"]
    assert rows["cp311"]["status"] == "ok" and not rows["cp311"]["optional"]
    html = (run / "index.html").read_text()
    assert "Partial run" not in html
    absent = html[html.index('id="not-available"'):]
    assert '<b id="target-absent" title="cpython 3.12 · localhost:1/lab-test/python:3.12-slim"' \
        in absent
    assert ">absent</b> (registry): " in absent
    # Named in --targets it is wanted, and so is the same target when it is not optional:
    # either way the run is partial (exit 1).
    for optional, targets in (("true", ["--targets", "absent,cp311"]), ("false", [])):
        toml.write_text(TARGET.format(tid="absent", optional=optional))
        r = lab("run", "--config", str(toml), *targets, "--scenarios", "probe", "--out",
                str(tmp_path / f"strict-{optional}"), "--no-progress")
        assert r.returncode == 1, r.stderr[-2000:]
        assert "absent: unavailable: cannot pull" in r.stdout
