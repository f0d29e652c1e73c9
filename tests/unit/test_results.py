from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from lab.errors import ConfigError
from lab.results import SCHEMA_VERSION, Cell, CellSink, from_dict, load, to_dict

GOLDEN = Path(__file__).resolve().parents[1] / "golden"
SCHEMA = Path(__file__).resolve().parents[2] / "lab" / "schema" / "results.schema.json"


def golden_files() -> list[Path]:
    return sorted(GOLDEN.glob("*.json"))


@pytest.mark.parametrize("path", golden_files(), ids=lambda p: p.name)
def test_golden_files_match_the_schema_and_round_trip(path: Path):
    data = json.loads(path.read_text())
    jsonschema.validate(data, json.loads(SCHEMA.read_text()))
    results = from_dict(data)
    again = to_dict(results)
    jsonschema.validate(again, json.loads(SCHEMA.read_text()))
    assert from_dict(again) == results


def test_reader_ignores_unknown_keys():
    data = json.loads(golden_files()[0].read_text())
    data["future_top_level"] = 1
    data["run"]["future"] = {"x": 1}
    data["targets"][0]["future"] = True
    data["results"][0]["future"] = [1]
    assert from_dict(data).run.id == data["run"]["id"]


def test_newer_schema_is_refused_clearly(tmp_path: Path):
    data = json.loads(golden_files()[0].read_text())
    data["schema_version"] = SCHEMA_VERSION + 1
    path = tmp_path / "results.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match="schema_version"):
        load(path)


def test_not_a_results_file(tmp_path: Path):
    (tmp_path / "x.json").write_text("[1, 2]")
    with pytest.raises(ConfigError, match="not a lab results file"):
        load(tmp_path / "x.json")


def test_partial_run_is_recovered_from_cells_jsonl(tmp_path: Path):
    data = json.loads(golden_files()[0].read_text())
    head = dict(data, results=[])
    (tmp_path / "run.json").write_text(json.dumps(head))
    sink = CellSink(tmp_path / "cells.jsonl")
    cells = from_dict(data).results[:3]
    for c in cells:
        sink.add(c)
    sink.close()
    with open(tmp_path / "cells.jsonl", "a") as fh:
        fh.write('{"target": "torn')  # the harness died mid-write
    recovered = load(tmp_path)
    assert recovered.results == cells
    assert recovered.run.complete is False


def test_cell_key():
    c = Cell(target="cp39", scenario="probe", start_method=None, outcome="ok")
    assert c.key == ("cp39", "probe", None, None)
