"""What a user asks to have installed, read and checked on the host before anything runs:
requirement files (their ``-r``/``-c`` includes inlined), PEP 751 ``pylock.toml`` files,
``--with`` specs, a project folder with its extras, a local wheelhouse; and the host's own pip
settings (``pip config list``: index URLs, find-links, certificate, proxy), which the
dependencies step (``deps.py``) hands to pip in each target's container."""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
import tomllib
import urllib.parse
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from lab.errors import ConfigError

# pip options the host's configuration may set that matter to fetching, by pip's own names.
PIP_SETTINGS = ("index-url", "extra-index-url", "find-links", "trusted-host", "cert",
                "client-cert", "proxy", "timeout", "default-timeout", "retries", "no-index",
                "pre", "only-binary", "no-binary", "prefer-binary")


PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY", "http_proxy",
              "https_proxy", "no_proxy", "all_proxy")


# Folders never copied from a user's tree (a project here, a `lab check` program's folder).
SKIPPED_DIRS = {"__pycache__", ".git", ".hg", ".svn", ".venv", "venv", ".tox", ".mypy_cache",
                ".pytest_cache", ".ruff_cache", "node_modules"}


@dataclass(frozen=True, kw_only=True)
class Requirements:
    """What a run asks to have installed, read and checked on the host."""

    lines: tuple[str, ...] = ()  # requirement lines, -r includes inlined, pylock pins
    constraints: tuple[str, ...] = ()  # -c includes
    project: Path | None = None  # a folder with a pyproject.toml or setup.py
    extras: tuple[str, ...] = ()
    wheelhouse: Path | None = None  # offline: install from this folder only
    sources: tuple[str, ...] = ()  # what they came from, for the report
    # Lines a run can do without (a named built-in scenario's packages): where one cannot be
    # had for a target, that target runs without it and only the scenarios needing it skip.
    optional: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.lines or self.project)

    def without(self, dropped: Iterable[str]) -> Requirements:
        """The same requirements less ``dropped`` lines (optional ones)."""
        gone = set(dropped)
        return dataclasses.replace(
            self, lines=tuple(ln for ln in self.lines if ln not in gone),
            optional=tuple(ln for ln in self.optional if ln not in gone),
            sources=tuple(s for s in self.sources if s.removeprefix("--with ") not in gone))

    def names(self, name: str) -> bool:
        """Whether a requirement line asks for ``name`` (compared as PEP 503 normalizes)."""
        want = re.sub(r"[-_.]+", "-", name).lower()
        for line in self.lines:
            m = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", line)
            if m and re.sub(r"[-_.]+", "-", m.group(1)).lower() == want:
                return True
        return False

    def requested(self) -> list[str]:
        """What was asked for, as a user would write it."""
        asked = [ln for ln in self.lines if not ln.startswith("-")]
        if self.project is not None:
            extras = f"[{','.join(self.extras)}]" if self.extras else ""
            asked.append(f"{self.project.name}{extras} (project)")
        return asked


def read_requirements(files: Iterable[Path] = (), *, specs: Iterable[str] = (),
                      project: str | None = None,
                      wheelhouse: Path | None = None) -> Requirements:
    """``--requirements FILE`` (requirements.txt or pylock.toml, repeatable), ``--with SPEC``,
    ``--project DIR[extra,...]`` and ``--wheelhouse DIR``; a problem is one ConfigError."""
    lines: list[str] = []
    constraints: list[str] = []
    sources: list[str] = []
    for f in files:
        path = Path(f)
        sources.append(str(path))
        if path.name == "pylock.toml" or re.fullmatch(r"pylock\.[^.]+\.toml", path.name):
            lines += _pylock(path)
        else:
            _inline(path, lines, constraints, seen=set())
    for spec in specs:
        spec = spec.strip()
        if not spec or spec.startswith("-") or _is_local(spec):
            raise ConfigError(f"--with {spec!r} is not a requirement (a name with an optional "
                              "version, such as 'numpy>=2' or 'attrs==25.4.0'). Give a "
                              "project folder with --project.")
        lines.append(spec)
        sources.append(f"--with {spec}")
    folder: Path | None = None
    extras: tuple[str, ...] = ()
    if project is not None:
        folder, extras = _project(project)
        sources.append(f"--project {project}")
    if wheelhouse is not None:
        wheelhouse = Path(wheelhouse).expanduser()
        if not wheelhouse.is_dir():
            raise ConfigError(f"--wheelhouse {wheelhouse} is not a folder. Give the folder "
                              "`lab deps export` wrote, or one of wheels.")
    return Requirements(lines=tuple(lines), constraints=tuple(constraints), project=folder,
                        extras=extras, wheelhouse=wheelhouse, sources=tuple(sources))


def _is_local(line: str) -> bool:
    return line.startswith((".", "/", "~", "file:")) or line.startswith(("-e ", "--editable"))


def _inline(path: Path, lines: list[str], constraints: list[str], *, seen: set[Path],
            into: list[str] | None = None) -> None:
    """A requirements file's lines, its ``-r``/``-c`` includes read in place (relative to it)."""
    target = lines if into is None else into
    try:
        real = path.resolve()
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the requirements file {path} ({exc}). Check the "
                          "path.") from exc
    if real in seen:
        raise ConfigError(f"{path} includes itself (-r). Remove the loop.")
    seen.add(real)
    for number, raw in enumerate(text.replace("\\\n", " ").splitlines(), 1):
        line = re.sub(r"(^|\s)#.*$", "", raw).strip()
        if not line:
            continue
        include = re.match(r"^(-r|--requirement|-c|--constraint)(\s+|=)(\S+)$", line)
        if include:
            nested = (path.parent / include.group(3)).expanduser()
            into_list = constraints if include.group(1) in ("-c", "--constraint") else target
            _inline(nested, lines, constraints, seen=seen, into=into_list)
            continue
        if _is_local(line):
            raise ConfigError(f"{path}:{number}: {line!r} is a local path; the lab installs "
                              "from an index or a wheelhouse. Give the project with --project "
                              "DIR.")
        target.append(line)


def _pylock(path: Path) -> list[str]:
    """A PEP 751 lock file's packages as pinned requirements with their hashes and markers."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read the lock file {path} ({exc}). Give a pylock.toml "
                          "(PEP 751).") from exc
    out = []
    for pkg in data.get("packages") or []:
        if not isinstance(pkg, dict) or not isinstance(pkg.get("name"), str):
            continue
        if pkg.get("directory") or pkg.get("vcs") or not pkg.get("version"):
            raise ConfigError(f"{path}: package {pkg.get('name')!r} comes from a folder or a "
                              "repository, not an index. Give it with --project DIR.")
        hashes = sorted({f"sha256:{h['sha256']}" for f in [*(pkg.get("wheels") or []),
                                                             pkg.get("sdist") or {}]
                         if isinstance(f, dict) and isinstance(h := f.get("hashes"), dict)
                         and isinstance(h.get("sha256"), str)})
        line = f"{pkg['name']}=={pkg['version']}"
        if isinstance(pkg.get("marker"), str):
            line += f" ; {pkg['marker']}"
        out.append(line + "".join(f" --hash={h}" for h in hashes))
    if not out:
        raise ConfigError(f"{path} lists no packages. Give a pylock.toml with [[packages]].")
    return out


def _project(text: str) -> tuple[Path, tuple[str, ...]]:
    """``DIR`` or ``DIR[extra,other]``, as pip takes it."""
    m = re.fullmatch(r"(?P<dir>.+?)(\[(?P<extras>[A-Za-z0-9._,\s-]*)\])?", text)
    assert m is not None
    folder = Path(m.group("dir")).expanduser()
    extras = tuple(e.strip() for e in (m.group("extras") or "").split(",") if e.strip())
    if not ((folder / "pyproject.toml").is_file() or (folder / "setup.py").is_file()):
        raise ConfigError(f"--project {folder}: no pyproject.toml or setup.py there. Give the "
                          "folder pip would install (`pip install DIR`).")
    return folder.resolve(), extras


# -- the host's pip settings --------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class PipSettings:
    """The fetching options of the host's pip (its config files and PIP_* variables)."""

    options: dict[str, str] = field(default_factory=dict)  # pip's name -> value
    proxies: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of_host(cls) -> PipSettings:
        """Ask the host's own pip (``pip config list``: its files and environment); no pip:
        no settings but the proxy variables."""
        try:
            proc = subprocess.run([sys.executable, "-m", "pip", "config", "list"],
                                  capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.SubprocessError):
            return cls(proxies=_proxies(os.environ))
        return cls.parse(proc.stdout, os.environ)

    @classmethod
    def parse(cls, listing: str, environ: dict[str, str] | os._Environ[str]) -> PipSettings:
        """``pip config list``'s lines (``global.cert='...'``, ``:env:.index-url='...'``), the
        environment over the files and a command's section over ``global``, as pip ranks
        them."""
        rank = {"global": 0, "download": 1, "install": 1, ":env:": 2}
        found: dict[str, tuple[int, str]] = {}
        for line in listing.splitlines():
            m = re.fullmatch(r"([^.]+)\.([a-z-]+)='(.*)'", line.strip())
            if not m or m.group(2) not in PIP_SETTINGS:
                continue
            level = rank.get(m.group(1), 0)
            if m.group(2) not in found or level >= found[m.group(2)][0]:
                found[m.group(2)] = (level, m.group(3))
        return cls(options={k: v for k, (_, v) in found.items()}, proxies=_proxies(environ))

    def urls(self) -> list[str]:
        return [u for k in ("index-url", "extra-index-url", "find-links")
                for u in self.options.get(k, "").split() if "://" in u]

    def fingerprint(self) -> dict[str, str]:
        """What changes what pip would install (not the proxy or the timeout)."""
        return {k: v for k, v in self.options.items()
                if k not in ("proxy", "timeout", "default-timeout", "retries", "cert",
                             "client-cert")}


def _proxies(environ: dict[str, str] | os._Environ[str]) -> dict[str, str]:
    return {k: v for k in PROXY_VARS if (v := environ.get(k))}


def loopback(url: str) -> bool:
    host = urllib.parse.urlsplit(url).hostname or ""
    return host == "localhost" or host.startswith("127.") or host == "::1"
