"""The in-container code imports only the standard library and parses for Python 3.9."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

from lab.runner.scenarios import CATALOG

RUNNER = Path(__file__).resolve().parents[2] / "lab" / "runner"
FILES = sorted(RUNNER.rglob("*.py"))


def test_there_is_runner_code():
    assert len(FILES) >= 10


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.relative_to(RUNNER).as_posix())
def test_parses_as_python_39(path: Path):
    ast.parse(path.read_text(), filename=str(path), feature_version=(3, 9))


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.relative_to(RUNNER).as_posix())
def test_imports_only_stdlib_or_relative(path: Path):
    tree = ast.parse(path.read_text())
    # A program run as a script (not a package module) imports its siblings by name.
    siblings = ({p.stem for p in path.parent.glob("*.py")} if not
                (path.parent / "__init__.py").exists() else set())
    # deps.py runs pip from the wheel the host hands it (its path put on sys.path first).
    stdlib = sys.stdlib_module_names | siblings | ({"pip"} if path.name == "deps.py" else set())
    # A scenario that declares its packages imports their modules, inside functions only.
    declared = {m for name, meta in CATALOG.items() if path.parent.name == "scenarios"
                and meta.get("module", name) == path.stem for m in meta.get("imports") or ()}
    lazy = {id(n) for f in ast.walk(tree) if isinstance(f, ast.FunctionDef)
            for n in ast.walk(f)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: stays inside the runner package
                continue
            names = [node.module or ""]
        else:
            continue
        for name in names:
            top = name.split(".")[0]
            if top in declared:
                assert id(node) in lazy, f"{path.name}:{node.lineno} imports {name} at the top"
                continue
            assert top in stdlib, f"{path.name}:{node.lineno} imports {name}, not stdlib"
            assert top != "lab", f"{path.name}:{node.lineno} imports host code"


def test_no_syntax_newer_than_39_sneaks_in_via_annotations():
    # `X | Y` in annotations parses on 3.9 but fails at runtime without
    # `from __future__ import annotations`; the runner has no annotations at all.
    for path in FILES:
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef):
                assert node.returns is None, f"{path.name}:{node.lineno} has an annotation"
                assert all(a.annotation is None for a in node.args.args), path.name


def test_the_code_lints_clean():
    """ruff (with the banned-API rule that keeps the docker SDK in lab/engine.py) and mypy, as
    `make lint` runs them: a boundary broken in a commit fails the tests, not only the lint."""
    import subprocess

    root = RUNNER.parents[1]
    venv_bin = Path(sys.executable).parent
    for argv in ([venv_bin / "ruff", "check", "lab", "tests", "bin"],
                 [venv_bin / "ruff", "check", "--target-version", "py39", "lab/runner"],
                 [venv_bin / "mypy"]):
        proc = subprocess.run([str(a) for a in argv], cwd=root, capture_output=True, text=True,
                              timeout=300)
        assert proc.returncode == 0, f"{' '.join(map(str, argv[1:]))}:\n{proc.stdout[-3000:]}"
