"""`lab run` end to end against the real engine: oldest and newest CPython, and PyPy."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from lab.images.debian import PINNED_KEYS

from .conftest import REPO, lab, lab_containers, load_results, only_run

SCHEMA = json.loads((REPO / "lab" / "schema" / "results.schema.json").read_text())


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    proc = lab("run", "--targets", "cp39,cp315,pp311", "--quick", "--out", str(out),
               "--no-progress")
    return proc, out


def test_run_exits_zero_and_every_target_is_ok(full_run):
    proc, out = full_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = load_results(only_run(out))
    jsonschema.validate(data, SCHEMA)
    assert [t["id"] for t in data["targets"]] == ["cp39", "cp315", "pp311"]
    assert all(t["status"] == "ok" and t["image"]["id"].startswith("sha256:")
               for t in data["targets"])
    assert data["run"]["complete"] is True
    assert data["run"]["docker"]["version"]
    assert (out / "latest").resolve() == only_run(out).resolve()


def test_the_plan_comes_first_and_the_findings_last(full_run):
    proc, out = full_run
    lines = proc.stdout.splitlines()
    assert lines[0] == ("plan: 3 target(s) (cp39, cp315, pp311); 18 scenario(s); 162 cells in "
                        "12 container(s)")
    assert lines[2].strip().startswith("estimate: about ")
    data = load_results(only_run(out))
    # The hang groups printed are exactly the hung cells of results.json.
    hung: dict[str, list[str]] = {}
    for c in data["results"]:
        if c["outcome"] == "hung":
            hung.setdefault(f"{c['scenario']} · {c['start_method'] or '-'}", []).append(
                c["target"])
    start = lines.index("hung (found stuck or past their deadline, killed, stacks in the report):")
    printed: dict[str, list[str]] = {}
    named: dict[str, list[str]] = {}  # the causes beneath each group, one line each
    label = ""
    for line in lines[start + 1:]:
        if not line.startswith("  "):
            break
        if line.startswith("    "):
            named[label].append(line.strip())
            continue
        label, rest = line.strip().rsplit(": ", 1)
        printed[label] = rest.split("(", 1)[1].rstrip(")").split(", ")
        named[label] = []
    assert printed == hung and hung
    # Every group is named, and the causes cover its targets.
    for label, causes in named.items():
        covered = [t for c in causes for t in c.split(" on ", 1)[1].split(": ", 1)[0].split(", ")]
        assert sorted(covered) == sorted(printed[label]), (label, causes)
    assert any(c.startswith("lock copied in its held state on ")
               for c in named["fork_held_lock · fork"])
    counts = {o: sum(c["outcome"] == o for c in data["results"]) for o in ("ok", "hung")}
    assert lines[lines.index(next(x for x in lines if x.startswith("findings:")))].startswith(
        f"findings: {len(data['results'])} cells: {counts['ok']} ok, {counts['hung']} hung")
    assert sum(1 for x in lines if x[:2] == "  " and x[2:3].isdigit()) == 9  # the claims
    assert lines[-1] == f"report: {(only_run(out) / 'index.html').resolve().as_uri()}"


def test_latest_moves_only_to_a_run_that_observed_something(tmp_path: Path, engine):
    proc = lab("run", "--targets", "cp312-slim", "--scenarios", "probe", "--out", str(tmp_path),
               "--no-progress")
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert not (tmp_path / "latest").exists()
    assert load_results(only_run(tmp_path))["targets"][0]["status"] == "unavailable"


def test_probe_is_observed_in_each_container(full_run):
    _, out = full_run
    targets = {t["id"]: t for t in load_results(only_run(out))["targets"]}
    for tid, version in (("cp39", "3.9."), ("cp315", "3.15."), ("pp311", "3.11.")):
        probe = targets[tid]["probe"]
        assert probe["version"].startswith(version)
        assert probe["default_start_method"] in probe["start_methods"]
        assert probe["uid"] == 10001  # non-root
        assert probe["runner_is_pid1"] is False and "docker-init" in probe["pid1_cmdline"]
        assert probe["executable"] == targets[tid]["python"] or probe["executable"].startswith(
            "/usr/bin/")
    assert targets["pp311"]["probe"]["implementation"] == "pypy"
    assert targets["cp39"]["probe"]["gil_enabled"] is None  # no sys._is_gil_enabled before 3.13
    assert targets["cp315"]["probe"]["gil_enabled"] is True


def test_every_cell_has_an_observed_outcome_in_matrix_order(full_run):
    _, out = full_run
    cells = load_results(only_run(out))["results"]
    assert len(cells) == 3 * 54
    assert [c["target"] for c in cells[:54]] == ["cp39"] * 54
    assert all(c["outcome"] in ("ok", "hung", "skipped") for c in cells), [
        (c["target"], c["scenario"], c["start_method"], c["outcome"], c["detail"])
        for c in cells if c["outcome"] not in ("ok", "hung", "skipped")]
    timing = [c for c in cells if c["kind"] == "timing"]
    assert timing and all(c["exclusive"] and c["concurrent"] == [] and c["cpus"]
                          for c in timing)


def test_cell_cpu_counts_processes_the_cell_never_reaps(full_run):
    _, out = full_run
    cells = load_results(only_run(out))["results"]
    for c in cells:
        if c["scenario"] == "countdown" and c["start_method"] == "forkserver":
            # The forkserver's workers did as much work again as the serial runs.
            assert c["cpu"]["own_scope"] == "container"
            assert c["cpu"]["own_s"] > 1.8 * c["measurements"]["serial_cpu_s"], c["cpu"]


def test_a_hung_cell_shows_where_the_child_blocked(full_run):
    _, out = full_run
    cells = load_results(only_run(out))["results"]
    for tid in ("cp39", "cp315", "pp311"):
        cell = next(c for c in cells if c["target"] == tid and c["scenario"] == "fork_held_lock"
                    and c["start_method"] == "fork")
        assert cell["outcome"] == "hung"
        child = cell["stacks"].split("(child process)", 1)[1]
        assert "labrunner/scenarios/fork_held_lock.py" in child
        assert "in child_takes_lock" in child
        # killed at its deadline, not left to run on: the deadline counts from when the
        # cell's code started, and the interpreter's start-up took up to 3 s under CI's load
        assert cell["duration_s"] < cell["deadline_s"] + 8


def test_report_and_junit_are_written(full_run):
    _, out = full_run
    run = only_run(out)
    html = (run / "index.html").read_text()
    assert "cp315" in html and "fork_held_lock" in html
    assert (run / "junit.xml").is_file()


def test_nothing_is_left_behind(full_run, engine):
    _, out = full_run
    run_id = only_run(out).name
    assert lab_containers(engine, **{"lab.run": run_id}) == []


def test_unavailable_target_does_not_hide_the_others(tmp_path: Path, engine):
    proc = lab("run", "--targets", "cp312-slim,cp39", "--scenarios", "probe",
               "--out", str(tmp_path), "--no-progress")
    assert proc.returncode == 1, proc.stderr[-2000:]
    data = load_results(only_run(tmp_path))
    rows = {t["id"]: t for t in data["targets"]}
    assert rows["cp312-slim"]["status"] == "unavailable"
    assert "python:3.12-slim" in rows["cp312-slim"]["reason"]
    assert rows["cp39"]["status"] == "ok" and rows["cp39"]["probe"]["version"].startswith("3.9")
    assert "cp312-slim: unavailable" in proc.stdout


def test_a_missing_debian_package_is_build_failed(tmp_path: Path, engine):
    cfg = tmp_path / "broken.toml"
    cfg.write_text('[base.broken]\nsuite = "bookworm"\npackages = ["python3.11", '
                   '"no-such-package-lab"]\n[[target]]\nid = "broken"\n'
                   'implementation = "cpython"\nversion = "3.11"\npython = "/usr/bin/python3.11"\n'
                   'base = "broken"\n')
    out = tmp_path / "runs"
    proc = lab("run", "--config", str(cfg), "--targets", "broken,cp39", "--scenarios", "probe",
               "--out", str(out), "--no-progress")
    assert proc.returncode == 1, proc.stderr[-2000:]
    rows = {t["id"]: t for t in load_results(only_run(out))["targets"]}
    assert rows["broken"]["status"] == "build_failed"
    assert "'no-such-package-lab' does not exist in bookworm/main for amd64" in \
        rows["broken"]["reason"]
    assert rows["cp39"]["status"] == "ok"
    # How the working base was made is on its row: suite, signed Release, key, versions.
    base = rows["cp39"]["base"]
    assert base["suite"] == "bullseye" and base["packages"]["python3.9"].startswith("3.9")
    assert base["signed_by"] in PINNED_KEYS and base["release_date"]
    assert engine.image(base["image_id"]).labels["lab.signed-by"] == base["signed_by"]
