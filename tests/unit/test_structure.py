"""The shape of the house, enforced: the stage folders and what each may import, no import
circle, modules and report functions of a readable size, the docker SDK behind one module, no
user-facing text that names a path outside the repository, and the unit tests' own guard."""

from __future__ import annotations

import ast
import os
import socket
import subprocess
from pathlib import Path

import pytest

from tests.unit.conftest import Escaped

ROOT = Path(__file__).resolve().parents[2]
LAB = ROOT / "lab"
STAGES = ("images", "run", "report")
MAX_MODULE_LINES = 600
MAX_REPORT_FUNCTION_LINES = 80
# What each stage may not import: images come first and know nothing of runs or reports; a
# run knows no report; the report reads results files only, so any old run re-renders.
FORBIDDEN = {
    "images": ("lab.run", "lab.report", "lab.cli"),
    "run": ("lab.report", "lab.cli"),
    "report": ("lab.run", "lab.images", "lab.engine", "lab.cli"),
}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


HOST = {module_name(p): p for p in sorted(LAB.rglob("*.py")) if "runner" not in p.parts}


def imports_of(path: Path) -> list[tuple[str, int]]:
    """Every module ``path`` imports (lazy imports in functions too; not TYPE_CHECKING
    blocks), with its line. ``from lab.x import y`` counts as lab.x.y where y is a module."""
    tree = ast.parse(path.read_text())
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip |= {id(n) for n in ast.walk(node)}
    found = []
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            found += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for a in node.names:
                sub = f"{node.module}.{a.name}"
                found.append((sub if sub in HOST else node.module, node.lineno))
    return found


def graph() -> dict[str, set[str]]:
    return {name: {m for m, _ in imports_of(path) if m in HOST and m != name}
            for name, path in HOST.items()}


def test_the_folders_name_the_stages_and_little_else_sits_at_the_top():
    top = sorted(p.name for p in LAB.iterdir() if not p.name.startswith((".", "__")))
    for stage in (*STAGES, "runner"):
        assert (LAB / stage / "__init__.py").is_file(), stage
    modules = [n for n in top if n.endswith(".py")]
    assert modules == ["engine.py", "errors.py", "matrix.py", "results.py"], top
    # The command line is a package of its own: its words (parser) and its commands.
    assert sorted(p.name for p in (LAB / "cli").glob("*.py")) == [
        "__init__.py", "commands.py", "parser.py"]
    assert not (LAB / "bench.py").exists() and (ROOT / "bin" / "bench.py").is_file()


def test_there_is_no_import_circle():
    edges = graph()
    assert "lab.report.history" in edges["lab.report.page"]  # the graph sees real edges
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                circle = path[path.index(nxt):] + [nxt]
                pytest.fail("import circle: " + " -> ".join(circle))
            if nxt not in state:
                visit(nxt)
        path.pop()
        state[node] = 2

    for name in sorted(edges):
        if name not in state:
            visit(name)


def forbidden_imports(paths: list[Path], forbidden: tuple[str, ...]) -> list[str]:
    return [f"{module_name(p) if p.is_relative_to(ROOT) else p.name}:{line} imports {m}"
            for p in paths for m, line in imports_of(p)
            if any(m == f or m.startswith(f + ".") for f in forbidden)]


@pytest.mark.parametrize("stage", sorted(FORBIDDEN))
def test_each_stage_imports_only_what_comes_before_it(stage: str):
    bad = forbidden_imports(sorted((LAB / stage).rglob("*.py")), FORBIDDEN[stage])
    assert not bad, bad


def test_only_the_engine_module_imports_docker():
    bad = [f"{name}:{line}" for name, path in HOST.items() for m, line in imports_of(path)
           if m.split(".")[0] == "docker" and name != "lab.engine"]
    assert not bad, bad
    assert any(m == "docker" for m, _ in imports_of(LAB / "engine.py"))


def test_no_host_module_is_over_the_limit():
    long = {name: n for name, path in HOST.items()
            if (n := len(path.read_text().splitlines())) > MAX_MODULE_LINES}
    assert not long, long


def test_no_report_function_is_over_the_limit():
    long = []
    for path in sorted((LAB / "report").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                n = node.end_lineno - node.lineno + 1  # type: ignore[operator]
                if n > MAX_REPORT_FUNCTION_LINES:
                    long.append(f"{path.name}:{node.lineno} {node.name} ({n} lines)")
    assert not long, long


def test_no_user_facing_text_names_a_path_outside_the_repository():
    outside = ("../shared", "shared/PLATFORM.md", "shared/BEHAVIOURS.md")
    hits = [f"{p.relative_to(ROOT)}:{i}" for p in sorted(LAB.rglob("*"))
            if p.is_file() and p.suffix in (".py", ".j2", ".toml")
            for i, line in enumerate(p.read_text().splitlines(), 1)
            if any(o in line for o in outside)]
    assert not hits, hits


def test_a_checker_that_sees_a_violation_says_so(tmp_path):
    """The checks above would fail: each one finds what it looks for in a module made for it."""
    # The module is made outside the source tree: one written into lab/ would be seen, half
    # made or already gone, by the checks above running beside this one (pytest-xdist).
    fake = tmp_path / "probe.py"
    fake.write_text("import docker\nfrom lab.run.runs import Run\n")
    found = [m for m, _ in imports_of(fake)]
    assert "docker" in found and "lab.run.runs" in found
    assert forbidden_imports([fake], FORBIDDEN["report"]) == ["probe.py:2 imports lab.run.runs"]


def test_the_unit_guard_stops_a_subprocess_a_live_socket_and_the_network(tmp_path):
    with pytest.raises(Escaped, match="start a subprocess"):
        subprocess.run(["true"])
    with pytest.raises(Escaped, match="os.fork"):
        os.fork()
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(tmp_path / "engine.sock"))
    server.listen()
    try:
        with pytest.raises(Escaped, match="a live socket"), socket.socket(socket.AF_UNIX) as s:
            s.connect(str(tmp_path / "engine.sock"))
    finally:
        server.close()
    with pytest.raises(Escaped, match="network connection"), socket.socket() as s:
        s.connect(("192.0.2.1", 80))
    assert os.environ["DOCKER_HOST"].startswith("unix:///nonexistent/")
