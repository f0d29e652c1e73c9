"""The user's own code: scenario files (``lab run --scenario-file``), programs
(``lab check SCRIPT``) and test suites (``lab test PATH``), checked on the host and copied into
the run folder.

The host never executes a scenario file: it reads its declarations (``KIND``,
``START_METHODS``, ``DEADLINE_S``, ``TITLE``, the docstring, ``run``) with :mod:`ast`. Copies go
to ``work/user`` in the run folder, which containers mount read-only at ``/lab/user``:
``lab_scenarios/<id>.py`` for scenario files, ``script/`` for a checked program's folder and
its ``--file``\\s, or for a tested project's folder.
"""

from __future__ import annotations

import ast
import keyword
import os
import re
import shutil
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lab.errors import ConfigError
from lab.images.requirements import SKIPPED_DIRS
from lab.results import CHECK_METHODS, START_METHODS
from lab.runner.scenarios import CATALOG, USER_PACKAGE

KINDS = ("behaviour", "timing")
MAX_DEADLINE_S = 3600.0
MAX_COPY_BYTES = 64 * 1024 * 1024  # a checked program's folder in the container
MAX_COPY_FILES = 5000


@dataclass(frozen=True, kw_only=True)
class ScenarioFile:
    id: str
    path: Path
    kind: str
    start_methods: tuple[str, ...]
    deadline_s: float
    title: str
    claim: str | None
    requires: tuple[str, ...] = ()  # REQUIRES: what the file needs installed, pip's words
    env: tuple[tuple[str, str], ...] = ()  # ENV: set in its cells

    def meta(self) -> dict[str, Any]:
        """Its catalog entry, as the scheduler plans with it and the report shows it."""
        return {"kind": self.kind, "start_methods": list(self.start_methods),
                "deadline_s": self.deadline_s, "title": self.title, "claim": self.claim,
                "source": str(self.path), "requires": list(self.requires),
                "env": dict(self.env)}


@dataclass(frozen=True, kw_only=True)
class CheckSpec:
    """`lab check`: a program, its arguments and the files it needs beside it."""

    script: Path
    args: tuple[str, ...] = ()
    start_methods: tuple[str, ...] = CHECK_METHODS
    timeout_s: float = 60.0
    extra: tuple[tuple[Path, str], ...] = ()  # --file paths from elsewhere: (source, dest)
    env: tuple[tuple[str, str], ...] = ()  # --env NAME=VALUE, set in every run

    @property
    def id(self) -> str:
        return f"check:{self.script.name}"

    @property
    def home(self) -> Path:
        """The folder copied into the container, as the program sees it."""
        return self.script.parent

    def meta(self) -> dict[str, Any]:
        return {"kind": "behaviour", "start_methods": list(self.start_methods),
                "deadline_s": self.timeout_s, "title": f"python {self.script.name} "
                + " ".join(self.args), "claim": None, "source": str(self.script),
                "script": {"path": f"script/{self.script.name}", "args": list(self.args)},
                "env": dict(self.env)}


@dataclass(frozen=True, kw_only=True)
class SuiteSpec:
    """`lab test`: a project's pytest suite, run from its folder's copy with these arguments."""

    project: Path
    args: tuple[str, ...] = ()  # pytest's own, after `--`
    start_methods: tuple[str, ...] = CHECK_METHODS
    timeout_s: float = 900.0  # the whole suite's, in one run
    test_timeout_s: float = 60.0  # one test's: past it the test is hung and the suite goes on
    env: tuple[tuple[str, str], ...] = ()
    extra: tuple[tuple[Path, str], ...] = ()

    @property
    def id(self) -> str:
        return f"test:{self.project.name}"

    @property
    def home(self) -> Path:
        return self.project

    def meta(self) -> dict[str, Any]:
        return {"kind": "behaviour", "start_methods": list(self.start_methods),
                "deadline_s": self.timeout_s,
                "title": " ".join(["pytest", *self.args]), "claim": None,
                "source": str(self.project),
                "script": {"path": "script", "args": list(self.args),
                           "suite": {"test_timeout_s": self.test_timeout_s}},
                "env": dict(self.env)}


def suite_spec(path: Path, args: Iterable[str], start_methods: Iterable[str], *,
              timeout_s: float, test_timeout_s: float, env: Iterable[str] = ()) -> SuiteSpec:
    """Validate `lab test`'s input: PATH is the project's folder (or a test file or folder in
    it, which becomes pytest's first argument); a problem is one ConfigError line."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: no such folder. Give your project's folder (where you "
                          "would run pytest), or a test file in it.")
    real = path.resolve()
    args = [str(a) for a in args]
    if args[:1] == ["--"]:
        args = args[1:]
    if real.is_file():
        real, args = real.parent, [real.name, *args]
    methods = _methods(start_methods)
    for name, value in (("--timeout", timeout_s), ("--test-timeout", test_timeout_s)):
        if not 0 < value <= MAX_DEADLINE_S:
            raise ConfigError(f"{name} must be between 0 and {MAX_DEADLINE_S:.0f} seconds, "
                              f"got {value:g}.")
    return SuiteSpec(project=real, args=tuple(args), start_methods=tuple(methods),
                    timeout_s=float(timeout_s), test_timeout_s=float(test_timeout_s),
                    env=parse_env(env))


def _methods(start_methods: Iterable[str]) -> list[str]:
    methods = list(start_methods)
    bad = [m for m in methods if m not in CHECK_METHODS]
    if bad or not methods or len(set(methods)) != len(methods):
        raise ConfigError(f"--start-methods: {', '.join(bad) or 'empty or repeated'} is not "
                          f"valid; use a list drawn from {', '.join(CHECK_METHODS)}.")
    return methods


def _literal(path: Path, tree: ast.Module, name: str) -> Any:
    for node in tree.body:
        if isinstance(node, ast.Assign):
            targets, value = node.targets, node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            targets, value = [node.target], node.value
        else:
            continue
        if any(isinstance(t, ast.Name) and t.id == name for t in targets):
            try:
                return ast.literal_eval(value)
            except ValueError as exc:
                raise ConfigError(f"{path}: {name} must be a plain literal, not an expression. "
                                  "Write its value out.") from exc
    return None


def load_scenario_file(path: Path) -> ScenarioFile:
    """Read and check one scenario file; a problem is one ConfigError line."""
    try:
        source = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read scenario file {path} ({exc}). Check the path.") from exc
    try:
        tree = ast.parse(source, filename=str(path))
    except SyntaxError as exc:
        raise ConfigError(f"scenario file {path} is not valid Python (line {exc.lineno}: "
                          f"{exc.msg}). Fix it.") from exc
    sid = Path(path).stem
    if not sid.isidentifier() or keyword.iskeyword(sid) or sid.startswith("_"):
        raise ConfigError(f"scenario file {path}: its name must be a Python identifier (it "
                          "becomes the scenario id). Rename the file.")
    if sid in CATALOG:
        raise ConfigError(f"scenario file {path}: {sid!r} is a built-in scenario id. Rename the "
                          "file.")
    if not any(isinstance(n, ast.FunctionDef) and n.name == "run" for n in tree.body):
        raise ConfigError(f"scenario file {path} defines no `run(ctx)` function at module "
                          "level. Add one (see docs/your-code.md, Scenario files).")
    kind = _literal(path, tree, "KIND")
    if kind not in KINDS:
        raise ConfigError(f"scenario file {path}: KIND must be one of {', '.join(KINDS)}, "
                          f"got {kind!r}. Set it.")
    methods = _literal(path, tree, "START_METHODS")
    if methods == "each":
        methods = list(START_METHODS)
    if (not isinstance(methods, list | tuple) or not methods
            or any(m not in START_METHODS for m in methods) or len(set(methods)) != len(methods)):
        raise ConfigError(f"scenario file {path}: START_METHODS must be a list drawn from "
                          f"{', '.join(START_METHODS)} (or \"each\"), got {methods!r}. Set it.")
    deadline = _literal(path, tree, "DEADLINE_S")
    if (not isinstance(deadline, int | float) or isinstance(deadline, bool)
            or not 0 < deadline <= MAX_DEADLINE_S):
        raise ConfigError(f"scenario file {path}: DEADLINE_S must be a number of seconds "
                          f"between 0 and {MAX_DEADLINE_S:.0f}, got {deadline!r}. Set it.")
    claim = ast.get_docstring(tree)
    title = _literal(path, tree, "TITLE")
    if title is not None and not isinstance(title, str):
        raise ConfigError(f"scenario file {path}: TITLE must be a string. Fix it.")
    title = title or (claim.splitlines()[0] if claim else sid)
    requires = _literal(path, tree, "REQUIRES") or []
    if not isinstance(requires, list | tuple) or not all(isinstance(r, str) for r in requires):
        raise ConfigError(f"scenario file {path}: REQUIRES must be a list of requirement "
                          f"strings (such as [\"numpy>=2\"]), got {requires!r}. Fix it.")
    env = _literal(path, tree, "ENV") or {}
    if not isinstance(env, dict) or not all(isinstance(v, str) for v in env.values()):
        raise ConfigError(f"scenario file {path}: ENV must be a dict of strings (such as "
                          f"{{\"OMP_NUM_THREADS\": \"1\"}}), got {env!r}. Fix it.")
    return ScenarioFile(id=sid, path=Path(path).resolve(), kind=kind,
                        start_methods=tuple(methods), deadline_s=float(deadline),
                        title=title, claim=claim, requires=tuple(requires),
                        env=parse_env((f"{k}={v}" for k, v in env.items()),
                                      where=f"scenario file {path}: ENV"))


def load_scenario_files(paths: Iterable[Path]) -> list[ScenarioFile]:
    files: list[ScenarioFile] = []
    for path in paths:
        sf = load_scenario_file(path)
        if any(f.id == sf.id for f in files):
            raise ConfigError(f"two scenario files are named {sf.id!r} ({path}). Rename one.")
        files.append(sf)
    return files


_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Set by the lab itself in every cell: a user's value would break the cell, not configure it.
RESERVED_ENV = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "LAB_")


def parse_env(items: Iterable[str], *, where: str = "--env") -> tuple[tuple[str, str], ...]:
    """``NAME=VALUE`` pairs (``OMP_NUM_THREADS=1``); a problem is one ConfigError line."""
    out: dict[str, str] = {}
    for item in items:
        name, eq, value = str(item).partition("=")
        if not eq or not _ENV_NAME.fullmatch(name):
            raise ConfigError(f"{where} {item!r} is not NAME=VALUE (a variable name, '=', its "
                              "value), such as OMP_NUM_THREADS=1.")
        if name.startswith(RESERVED_ENV):
            raise ConfigError(f"{where} {name}: the lab sets it in every cell itself. Choose "
                              "another variable.")
        out[name] = value
    return tuple(out.items())


def check_spec(script: Path, args: Iterable[str], files: Iterable[Path],
               start_methods: Iterable[str], timeout_s: float,
               env: Iterable[str] = ()) -> CheckSpec:
    """Validate `lab check`'s input; a problem is one ConfigError line."""
    script = Path(script)
    if not script.is_file():
        raise ConfigError(f"{script}: no such file. Give the path of a Python program.")
    if not os.access(script, os.R_OK):
        raise ConfigError(f"{script} is not readable. Check its permissions.")
    methods = _methods(start_methods)
    if not 0 < timeout_s <= MAX_DEADLINE_S:
        raise ConfigError(f"--timeout must be between 0 and {MAX_DEADLINE_S:.0f} seconds, got "
                          f"{timeout_s:g}.")
    home = script.resolve().parent
    extra: list[tuple[Path, str]] = []
    for f in files:
        f = Path(f)
        if not f.exists():
            raise ConfigError(f"--file {f}: no such file or folder. Check the path.")
        real = f.resolve()
        dest = real.relative_to(home).as_posix() if real.is_relative_to(home) else real.name
        if dest in (".", script.name) or any(d == dest for _, d in extra):
            raise ConfigError(f"--file {f} would land on {dest!r}, which is already taken. "
                              "Give each file once.")
        extra.append((real, dest))
    return CheckSpec(script=script.resolve(), args=tuple(args), start_methods=tuple(methods),
                     timeout_s=float(timeout_s), extra=tuple(extra), env=parse_env(env))


def _copy(src: Path, dest: Path, budget: list[int], outside: Path) -> None:
    """Copy a file or folder (symlinks inside not followed, caches skipped, and no folder that
    holds ``outside``, the run's own: runs may live under the program's folder), within the
    budget: [bytes left, files left]."""
    if src.is_symlink():
        src = src.resolve()  # the user named it: copy what it points at, once
    if src.is_dir():
        dest.mkdir(parents=True, exist_ok=True)
        os.chmod(dest, 0o755)
        for child in sorted(src.iterdir()):
            if child.name in SKIPPED_DIRS or child.is_symlink():
                continue
            if child.is_dir() and outside.is_relative_to(child.resolve()):
                continue
            _copy(child, dest / child.name, budget, outside)
        return
    if not src.is_file():
        return
    budget[0] -= src.stat().st_size
    budget[1] -= 1
    if budget[0] < 0 or budget[1] < 0:
        raise ConfigError(f"the files to copy for the run pass {MAX_COPY_BYTES // 2**20} MB "
                          f"or {MAX_COPY_FILES} files (at {src}). Put the program in a folder "
                          "of its own and name what it needs with --file.")
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dest)
    os.chmod(dest, 0o644)


def stage_user_dir(folder: Path, scenarios: Iterable[ScenarioFile],
                   check: CheckSpec | SuiteSpec | None) -> Path | None:
    """Copy the user's code into ``folder`` (read-only in containers); None if there is none."""
    scenarios = list(scenarios)
    if not scenarios and check is None:
        return None
    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o755)
    budget = [MAX_COPY_BYTES, MAX_COPY_FILES]
    if scenarios:
        pkg = folder / USER_PACKAGE
        pkg.mkdir(exist_ok=True)
        os.chmod(pkg, 0o755)
        (pkg / "__init__.py").write_text('"""Scenario files given to lab run."""\n')
        os.chmod(pkg / "__init__.py", 0o644)
        for sf in scenarios:
            _copy(sf.path, pkg / f"{sf.id}.py", budget, folder.resolve())
    if check is not None:
        home = folder / "script"
        _copy(check.home, home, budget, folder.resolve())  # as the program sees it
        for src, dest in check.extra:
            if not (home / dest).exists():  # inside the folder: already there
                _copy(src, home / dest, budget, folder.resolve())
    for root, dirs, files in os.walk(folder):  # readable by the container's user, whatever umask
        for d in dirs:
            os.chmod(os.path.join(root, d), 0o755)
        for f in files:
            os.chmod(os.path.join(root, f), 0o644)
    return folder


def catalog_with(extra: Mapping[str, Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    return {**CATALOG, **extra}
