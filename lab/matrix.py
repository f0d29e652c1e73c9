"""The matrix: which targets exist and how each one's image is made, loaded from TOML.

Pure data and selection, no Docker: ``targets.toml`` in this package is the default matrix;
``lab.toml`` (or ``--config``) adds or overrides bases and targets by id.
"""

from __future__ import annotations

import os
import platform as _platform
import re
import subprocess
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

from lab.errors import ConfigError

DEFAULT_MIRROR = "http://deb.debian.org/debian"

# Docker platform -> Debian architecture.
DEBIAN_ARCH = {
    "linux/amd64": "amd64",
    "linux/386": "i386",
    "linux/arm64": "arm64",
    "linux/arm/v7": "armhf",
    "linux/riscv64": "riscv64",
    "linux/s390x": "s390x",
    "linux/ppc64le": "ppc64el",
}

# What a host CPU runs without emulation (i386 runs natively on x86-64 kernels).
NATIVE = {
    "x86_64": {"linux/amd64", "linux/386"},
    "amd64": {"linux/amd64", "linux/386"},
    "aarch64": {"linux/arm64"},
    "arm64": {"linux/arm64"},
}

BASE_KEYS = {"suite", "packages", "mirror", "variant"}
TARGET_KEYS = {
    "id", "implementation", "version", "python", "base", "image", "platform", "default",
    "deadline_scale", "optional", "archive", "freethreaded", "python_gil",
}
# An archive target's interpreter is unpacked here: python-build-standalone's ``python/`` tree.
ARCHIVE_PREFIX = "/opt/python"
PBS = "python-build-standalone"  # `archive = "python-build-standalone"`: look it up by version
ARCHIVES_ENV = "LAB_PYTHON_ARCHIVES"  # local files or folders of archives, os.pathsep-separated
GROUPS = ("default", "native", "emulated", "registry", "archive", "all")
ENGINE_KEYS = {"host", "context", "platforms", "timing", "cert_path", "files"}
# How a job's files reach its container: bind-mounted from this machine, or copied through the
# engine's API (an engine on another machine cannot see this one's folders).
FILE_MODES = ("bind", "copy")
ENGINE_SCHEMES = ("unix://", "tcp://", "ssh://", "npipe://")


@dataclass(frozen=True, kw_only=True)
class DebianBase:
    """A Debian root filesystem made by the lab's bootstrap; shared by the targets that name it."""

    name: str
    suite: str
    packages: tuple[str, ...]
    mirror: str = DEFAULT_MIRROR
    variant: str = "minbase"


@dataclass(frozen=True, kw_only=True)
class ArchiveSpec:
    """Where an archive target's interpreter comes from: an explicit ``url`` with its
    ``sha256``, or (both None) python-build-standalone's build of the target's version and
    flavour as pbs-installer lists it. ``local`` files and folders of archives (lab.toml's
    ``python_archives``, then LAB_PYTHON_ARCHIVES) are looked in first."""

    url: str | None = None
    sha256: str | None = None
    local: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class Target:
    """One interpreter on one platform. ``id`` is stable and joins everything about it."""

    id: str
    implementation: str
    version: str
    python: str
    platform: str = "linux/amd64"
    base: DebianBase | None = None
    image: str | None = None  # a registry image such as python:3.12-slim
    host_python: str | None = None  # run directly on the host, no container
    default: bool = True
    deadline_scale: float = 1.0
    # Included where its image can be had; where not, listed as "not available here" with
    # the reason, and the run is not partial because of it.
    optional: bool = False
    # A python-build-standalone install_only archive unpacked at ARCHIVE_PREFIX on `base`.
    archive: ArchiveSpec | None = None
    freethreaded: bool = False  # the matrix's word; the probe observes what the build is
    python_gil: str | None = None  # PYTHON_GIL in its containers ("0" or "1"); None: unset

    @property
    def kind(self) -> str:
        if self.host_python:
            return "host"
        if self.archive is not None:
            return "archive"
        return "registry" if self.image else "debian"

    @property
    def flavour_version(self) -> str:
        """The version as a column heading: ``3.14``, or ``3.14t`` for a free-threaded build."""
        return self.version + ("t" if self.freethreaded else "")

    @property
    def arch(self) -> str:
        return DEBIAN_ARCH[self.platform]

    @property
    def emulated(self) -> bool:
        return self.host_python is None and self.platform not in native_platforms()

    @property
    def version_key(self) -> tuple[int, ...]:
        return tuple(int(p) for p in self.version.split(".") if p.isdigit())


@dataclass(frozen=True, kw_only=True)
class EngineSpec:
    """A Docker engine the lab may use, as ``[engine.NAME]`` in lab.toml gives it: a ``host``
    URL (unix://, tcp:// with TLS from ``cert_path``, ssh://) or a Docker CLI ``context``; with
    neither, the environment's (DOCKER_HOST, else the local socket)."""

    name: str
    host: str | None = None
    context: str | None = None
    platforms: tuple[str, ...] = ()  # what it runs natively; () = ask the engine
    timing: bool = True  # may run timing cells
    cert_path: str | None = None  # ca.pem, cert.pem, key.pem (as DOCKER_CERT_PATH)
    files: str | None = None  # "bind" or "copy"; None: bind for a unix:// socket, else copy

    @property
    def where(self) -> str:
        if self.context:
            return f"context {self.context}"
        return self.host or "the environment's engine"


DEFAULT_ENGINE = EngineSpec(name="default")


@dataclass(frozen=True, kw_only=True)
class Matrix:
    bases: dict[str, DebianBase] = field(default_factory=dict)
    targets: tuple[Target, ...] = ()
    engines: dict[str, EngineSpec] = field(default_factory=dict)
    python_archives: tuple[str, ...] = ()  # lab.toml's local archives, files or folders

    def select_engines(self, names: list[str] | None) -> list[EngineSpec]:
        """The engines a command uses: those named, else every configured one, else the
        environment's."""
        if not names:
            return list(self.engines.values()) or [DEFAULT_ENGINE]
        chosen = []
        for name in dict.fromkeys(names):
            if name not in self.engines:
                known = ", ".join(self.engines) or "none configured"
                raise ConfigError(f"unknown engine {name!r} (configured: {known}). Add an "
                                  f"[engine.{name}] table to lab.toml, or drop it from --engines.")
            chosen.append(self.engines[name])
        return chosen

    @property
    def ids(self) -> list[str]:
        return [t.id for t in self.targets]

    def get(self, target_id: str) -> Target:
        for t in self.targets:
            if t.id == target_id:
                return t
        raise self._unknown(target_id)

    def _unknown(self, token: str) -> ConfigError:
        import difflib

        close = difflib.get_close_matches(token.lower(), self.ids, n=1, cutoff=0.5)
        hint = f" Did you mean {close[0]}?" if close else ""
        return ConfigError(
            f"unknown target {token!r}: valid ids are {', '.join(self.ids)}.{hint} "
            "Pick from `lab list` or add it to lab.toml."
        )

    def resolve(self, token: str) -> str:
        """A target id from what a user typed: an id in any case (``CP311``), or a version
        (``3.14`` is cp314, ``3.14t`` the free-threaded cp314t, ``pypy3.11`` is pp311) among
        the targets of this machine's own platform. A version several targets share is an
        error that lists them."""
        wanted = token.strip()
        by_lower = {i.lower(): i for i in self.ids}
        if wanted.lower() in by_lower:
            return by_lower[wanted.lower()]
        m = re.fullmatch(r"(?i)(python|cpython|cp|pypy|pp)?\s*(\d)\.?(\d{1,2})(t?)", wanted)
        if m:
            impl = "pypy" if (m.group(1) or "").lower() in ("pypy", "pp") else "cpython"
            version = f"{m.group(2)}.{m.group(3)}"
            found = [t.id for t in self.targets if t.implementation == impl
                     and t.version == version and t.platform == primary_platform()
                     and t.freethreaded == bool(m.group(4))]
            if len(found) == 1:
                return found[0]
            if found:
                raise ConfigError(f"{token!r} matches {', '.join(found)}: name one of them "
                                  "with --targets.")
        raise self._unknown(wanted)


def host_machine() -> str:
    return _platform.machine().lower()


def native_platforms() -> set[str]:
    return NATIVE.get(host_machine(), set())


def primary_platform() -> str:
    """The platform a bare version means: this machine's own (linux/amd64 on x86-64)."""
    return "linux/arm64" if host_machine() in ("aarch64", "arm64") else "linux/amd64"


def _check_keys(where: str, table: dict[str, Any], known: set[str]) -> None:
    for key in table:
        if key not in known:
            raise ConfigError(
                f"{where} has an unknown key {key!r} (known: {', '.join(sorted(known))}). "
                "Fix the spelling or remove it."
            )


def _parse_base(source: str, name: str, raw: Any) -> DebianBase:
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: [base.{name}] must be a table. Fix the file.")
    _check_keys(f"{source}: [base.{name}]", raw, BASE_KEYS)
    if "suite" not in raw or not raw.get("packages"):
        raise ConfigError(f"{source}: [base.{name}] needs `suite` and `packages`. Add them.")
    packages = raw["packages"]
    if not isinstance(packages, list) or not all(isinstance(p, str) for p in packages):
        raise ConfigError(f"{source}: [base.{name}].packages must be a list of package names.")
    return DebianBase(
        name=name,
        suite=str(raw["suite"]),
        packages=tuple(packages),
        mirror=str(raw.get("mirror", DEFAULT_MIRROR)),
        variant=str(raw.get("variant", "minbase")),
    )


def _parse_engine(source: str, name: str, raw: Any) -> EngineSpec:
    where = f"{source}: [engine.{name}]"
    if not isinstance(raw, dict):
        raise ConfigError(f"{where} must be a table. Fix the file.")
    _check_keys(where, raw, ENGINE_KEYS)
    host, context = raw.get("host"), raw.get("context")
    if (host is None) == (context is None):
        raise ConfigError(f"{where} needs exactly one of `host` (a URL such as "
                          "ssh://user@box) or `context` (a Docker CLI context). Add one.")
    if host is not None and (not isinstance(host, str) or not host.startswith(ENGINE_SCHEMES)):
        raise ConfigError(f"{where}.host must be a URL starting with "
                          f"{', '.join(ENGINE_SCHEMES)}; got {host!r}. Fix it.")
    if context is not None and (not isinstance(context, str) or not context):
        raise ConfigError(f"{where}.context must be a context name (`docker context ls`).")
    platforms = raw.get("platforms", [])
    if not isinstance(platforms, list) or any(p not in DEBIAN_ARCH for p in platforms):
        raise ConfigError(f"{where}.platforms must be a list of platforms from "
                          f"{', '.join(DEBIAN_ARCH)}; got {platforms!r}.")
    timing = raw.get("timing", True)
    if not isinstance(timing, bool):
        raise ConfigError(f"{where}.timing must be true or false; got {timing!r}.")
    cert_path = raw.get("cert_path")
    if cert_path is not None and (not isinstance(cert_path, str) or host is None
                                  or not host.startswith("tcp://")):
        raise ConfigError(f"{where}.cert_path is a folder of TLS files for a tcp:// host. "
                          "Give it as a string beside a tcp:// host, or remove it.")
    files = raw.get("files")
    if files is not None and files not in FILE_MODES:
        raise ConfigError(f"{where}.files must be \"bind\" (the engine sees this machine's "
                          f"folders) or \"copy\" (it does not); got {files!r}.")
    return EngineSpec(name=name, host=host, context=context, platforms=tuple(platforms),
                      timing=timing, cert_path=cert_path, files=files)


def _parse_target(source: str, raw: Any, bases: dict[str, DebianBase]) -> Target:
    if not isinstance(raw, dict) or "id" not in raw:
        raise ConfigError(f"{source}: every [[target]] needs an `id`. Add one.")
    tid = str(raw["id"])
    where = f"{source}: target {tid!r}"
    _check_keys(where, raw, TARGET_KEYS)
    for key in ("implementation", "version", "python"):
        if key not in raw:
            raise ConfigError(f"{where} is missing `{key}`. Add it.")
    if ("base" in raw) == ("image" in raw):
        raise ConfigError(f"{where} needs exactly one of `base` (Debian) or `image` (registry).")
    archive = _parse_archive(where, raw)
    if archive is not None and "base" not in raw:
        raise ConfigError(f"{where} has an `archive`, which is unpacked on a Debian base: add "
                          "`base` (the matrix's is \"pbs\").")
    if archive is not None and not str(raw["python"]).startswith(ARCHIVE_PREFIX + "/"):
        raise ConfigError(f"{where}.python must be under {ARCHIVE_PREFIX}/, where the archive "
                          f"is unpacked (for example {ARCHIVE_PREFIX}/bin/python3); got "
                          f"{raw['python']!r}.")
    base = None
    if "base" in raw:
        if raw["base"] not in bases:
            raise ConfigError(
                f"{where} names base {raw['base']!r}, which is not defined "
                f"(defined: {', '.join(sorted(bases))}). Add a [base.{raw['base']}] table."
            )
        base = bases[raw["base"]]
    plat = str(raw.get("platform", "linux/amd64"))
    if plat not in DEBIAN_ARCH:
        raise ConfigError(
            f"{where} has platform {plat!r}; supported: {', '.join(DEBIAN_ARCH)}. Fix it."
        )
    return Target(
        id=tid,
        implementation=str(raw["implementation"]),
        version=str(raw["version"]),
        python=str(raw["python"]),
        platform=plat,
        base=base,
        image=str(raw["image"]) if "image" in raw else None,
        default=bool(raw.get("default", True)),
        deadline_scale=float(raw.get("deadline_scale", 1.0)),
        optional=_flag(where, raw, "optional"),
        archive=archive,
        freethreaded=_flag(where, raw, "freethreaded"),
        python_gil=_python_gil(where, raw),
    )


def _python_gil(where: str, raw: dict[str, Any]) -> str | None:
    value = raw.get("python_gil")
    if value is None:
        return None
    if value not in (0, 1) or isinstance(value, bool):
        raise ConfigError(f"{where}.python_gil must be 0 (GIL off: free-threaded builds only) "
                          f"or 1 (GIL on); got {value!r}. It sets PYTHON_GIL in the target's "
                          "containers.")
    return str(value)


def _parse_archive(where: str, raw: dict[str, Any]) -> ArchiveSpec | None:
    value = raw.get("archive")
    if value is None:
        return None
    if value == PBS:
        return ArchiveSpec()
    if isinstance(value, dict):
        _check_keys(f"{where}.archive", value, {"url", "sha256"})
        url, sha = value.get("url"), value.get("sha256")
        if not isinstance(url, str) or not url.startswith(("http://", "https://", "file://")):
            raise ConfigError(f"{where}.archive.url must be an http(s):// or file:// URL of an "
                              f"install_only .tar.gz; got {url!r}.")
        if not isinstance(sha, str) or not re.fullmatch(r"[0-9a-fA-F]{64}", sha):
            raise ConfigError(f"{where}.archive needs `sha256`, the archive's 64 hex digits "
                              "(it is checked before anything is unpacked). Add it.")
        return ArchiveSpec(url=url, sha256=sha.lower())
    raise ConfigError(f"{where}.archive must be \"{PBS}\" (looked up by version) or a table "
                      f"{{ url = ..., sha256 = ... }}; got {value!r}.")


def _flag(where: str, raw: dict[str, Any], key: str) -> bool:
    value = raw.get(key, False)
    if not isinstance(value, bool):
        raise ConfigError(f"{where}.{key} must be true or false; got {value!r}.")
    return value


def _read_toml(text: str, source: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source} is not valid TOML ({exc}). Fix the file.") from exc


def merge(matrix: Matrix, data: dict[str, Any], source: str) -> Matrix:
    """Add or override bases and targets (by id) from one parsed TOML document."""
    _check_keys(source, data, {"base", "target", "engine", "python_archives"})
    local = data.get("python_archives", [])
    if isinstance(local, str):
        local = [local]
    if not isinstance(local, list) or not all(isinstance(p, str) for p in local):
        raise ConfigError(f"{source}: `python_archives` must be a path or a list of paths "
                          "(files or folders of python-build-standalone archives).")
    base_dir = Path(source).parent if source != "targets.toml" else Path.cwd()
    archives = matrix.python_archives + tuple(
        str((base_dir / Path(p).expanduser()).resolve()) for p in local)
    engines = dict(matrix.engines)
    raw_engines = data.get("engine") or {}
    if not isinstance(raw_engines, dict):
        raise ConfigError(f"{source}: `engine` must be tables ([engine.NAME]).")
    for name, raw in raw_engines.items():
        engines[name] = _parse_engine(source, name, raw)
    bases = dict(matrix.bases)
    for name, raw in (data.get("base") or {}).items():
        bases[name] = _parse_base(source, name, raw)
    # Targets that named a base that was just redefined follow the new definition.
    targets = [replace(t, base=bases[t.base.name]) if t.base else t for t in matrix.targets]
    raw_targets = data.get("target") or []
    if not isinstance(raw_targets, list):
        raise ConfigError(f"{source}: `target` must be an array of tables ([[target]]).")
    for raw in raw_targets:
        new = _parse_target(source, raw, bases)
        for i, old in enumerate(targets):
            if old.id == new.id:
                targets[i] = new
                break
        else:
            targets.append(new)
    return Matrix(bases=bases, targets=tuple(targets), engines=engines,
                  python_archives=archives)


def load_matrix(config: Path | None = None, *, search_dir: Path | None = None) -> Matrix:
    """The default matrix, overlaid by ``config`` or by ``lab.toml`` in ``search_dir``."""
    text = resources.files("lab").joinpath("targets.toml").read_text()
    matrix = merge(Matrix(), _read_toml(text, "targets.toml"), "targets.toml")
    if config is None and search_dir is not None and (search_dir / "lab.toml").is_file():
        config = search_dir / "lab.toml"
    if config is not None:
        try:
            text = Path(config).read_text()
        except OSError as exc:
            raise ConfigError(
                f"cannot read config {config} ({exc.strerror}). Check the path."
            ) from exc
        matrix = merge(matrix, _read_toml(text, str(config)), str(config))
    return with_local_archives(matrix, os.environ.get(ARCHIVES_ENV, ""))


def with_local_archives(matrix: Matrix, env: str) -> Matrix:
    """Every archive target learns where local archives are: lab.toml's ``python_archives``,
    then LAB_PYTHON_ARCHIVES (paths separated by os.pathsep)."""
    local = matrix.python_archives + tuple(
        str(Path(p).expanduser().resolve()) for p in env.split(os.pathsep) if p.strip())
    targets = tuple(replace(t, archive=replace(t.archive, local=local))
                    if t.archive is not None and t.archive.url is None else t
                    for t in matrix.targets)
    return replace(matrix, targets=targets)


@dataclass(frozen=True, kw_only=True)
class Selection:
    """What a command runs: its targets (matrix ones, then host interpreters) and engines."""

    targets: tuple[Target, ...]
    engines: tuple[EngineSpec, ...]

    @property
    def container_targets(self) -> list[Target]:
        return [t for t in self.targets if not t.host_python]


def select(matrix: Matrix, *, ids: list[str] | None = None,
           platforms: list[str] | None = None, host_pythons: Iterable[str] = (),
           engines: list[str] | None = None) -> Selection:
    """The one place a command's targets and engines are chosen: matrix targets by id or
    platform (the default matrix with neither, unless only host interpreters are given), then
    a target per host interpreter (ids kept unique), and the engines named (else every one
    configured, else the environment's). A target named by id is not optional for this run.
    Raises ConfigError, one line, on a bad choice or an empty selection."""
    host_pythons = list(host_pythons)
    chosen = ([] if host_pythons and not (ids or platforms)
              else select_targets(matrix, ids=ids, platforms=platforms))
    # A target named in --targets is wanted: if it cannot be had, the run is partial.
    named = {matrix.resolve(tid) for tid in ids or []}
    chosen = [replace(t, optional=False) if t.id in named else t for t in chosen]
    for path in host_pythons:
        chosen.append(host_target(path, {t.id for t in chosen}))
    if not chosen:
        raise ConfigError("no targets selected: check --targets/--platforms (see `lab list`).")
    return Selection(targets=tuple(chosen), engines=tuple(matrix.select_engines(engines)))


def select_targets(
    matrix: Matrix,
    *,
    ids: list[str] | None = None,
    platforms: list[str] | None = None,
) -> list[Target]:
    """The targets a run uses, in matrix order.

    ``ids`` picks by id; ``platforms`` by platform (``linux/arm64``) or group (see GROUPS).
    With neither, the default matrix (native, ``default = true``).
    """
    if ids:
        wanted = {matrix.resolve(tid) for tid in ids}  # raises with the valid ids
        chosen = [t for t in matrix.targets if t.id in wanted]
    else:
        chosen = []
    for spec in platforms or []:
        if spec in GROUPS:
            group = [t for t in matrix.targets if _in_group(t, spec)]
        elif spec in DEBIAN_ARCH:
            group = [t for t in matrix.targets if t.platform == spec]
        else:
            import difflib

            known = list(GROUPS) + list(DEBIAN_ARCH)
            close = difflib.get_close_matches(spec, known, n=1, cutoff=0.5)
            raise ConfigError(
                f"unknown platform or group {spec!r}: use one of {', '.join(known)}."
                + (f" Did you mean {close[0]}?" if close else "")
            )
        chosen += [t for t in group if t not in chosen]
    if not ids and not platforms:
        chosen = [t for t in matrix.targets if _in_group(t, "default")]
    order = {t.id: i for i, t in enumerate(matrix.targets)}
    return sorted(chosen, key=lambda t: order[t.id])


def _in_group(target: Target, group: str) -> bool:
    if group == "all":
        return True
    if group in ("registry", "archive"):
        return target.kind == group
    if group == "emulated":
        return target.emulated
    if group == "native":
        return not target.emulated
    return target.default and not target.emulated  # "default"


def host_target(path: str, taken: set[str]) -> Target:
    """A target that runs the runner directly with a host interpreter (no container)."""
    probe = (
        "import sys, platform; i = sys.implementation.name; "
        "print(i, '%d.%d' % sys.version_info[:2], platform.system().lower(), platform.machine())"
    )
    try:
        out = subprocess.run(
            [path, "-c", probe], capture_output=True, text=True, timeout=30, check=True
        ).stdout.split()
    except (OSError, subprocess.SubprocessError) as exc:
        raise ConfigError(
            f"--host-python {path} does not run ({exc}). Give the path of a Python 3.9+ "
            "interpreter."
        ) from exc
    impl, version, system, machine = out
    prefix = {"cpython": "cp", "pypy": "pp"}.get(impl, impl[:2])
    tid = f"host-{prefix}{version.replace('.', '')}"
    n, base_id = 2, tid
    while tid in taken:
        tid, n = f"{base_id}-{n}", n + 1
    plat = f"{system}/{machine}"
    return Target(
        id=tid,
        implementation=impl,
        version=version,
        python=path,
        platform=plat,
        host_python=path,
        default=False,
    )
