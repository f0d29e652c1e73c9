"""A user's dependencies, installed for each target by that target's own interpreter.

What a run asks for (``Requirements``: requirement files, ``pylock.toml``, ``--with`` specs, a
project folder with its extras, or a local wheelhouse) is installed by pip, run from its wheel
by the target's interpreter in a container made from the target's own image, so wheel tags and
markers are exactly the target's (cp313t, pp311, i686, aarch64). That container is the only one
with a network; it runs as the unprivileged user with no capabilities and a read-only root, pip
installs onto a size-capped tmpfs, and the host copies the tree out through the engine's API,
re-packed by ``layers.repack`` (nothing escapes the tree, nothing special, sizes capped). The
tree becomes one image layer on the target image, ``lab-deps:<target>-<key>``, keyed by the
target image and everything that decides what pip would install: a second run with the same
requirements finds the image and fetches nothing. Cells run from that image, offline as ever.

Fetching honours the user's pip settings: the host's own ``pip config list`` (files and
``PIP_*`` variables: index URLs, find-links, trusted hosts, certificate, proxy, timeout) and
the proxy variables are handed to pip in the container, with the certificate and any local
find-links folder copied in. Offline, ``--wheelhouse DIR`` installs from DIR only, with no
network at all. A requirement that cannot be had for a target is one line naming the package,
the target's tags and what the index offers; that target is unavailable, the others go on.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.parse
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from lab.engine import MANAGED, ContainerSpec, Engine
from lab.errors import BuildFailed, ConfigError, DockerError, ImageUnavailable
from lab.images.layers import ChunkReader, repack, tar_of
from lab.images.plan import RUNNER_HOME, TargetImage, cache_dir
from lab.images.requirements import SKIPPED_DIRS, PipSettings, Requirements, loopback
from lab.matrix import Target

DEPS_HOME = "/opt/deps"  # in the deps image; on PYTHONPATH after the runner
INNER_IN = "/lab-in"  # the step's inputs, copied in through the API (a volume)
INNER_OUT = "/lab-out"  # tmpfs: tags.json, pip.log, report.json, done.json
PROJECT_COPY = "/tmp/project"  # a project is built from a writable copy of it
STEP_TIMEOUT_S = 900.0
POLL_S = 1.0
MAX_TREE_BYTES = 2 << 30  # what pip may install for one target (torch's CUDA wheels do not fit)
TREE_TMPFS = "2g"  # the same, as the size of the memory volume pip installs into
LAB_USER = "10001:10001"
MAX_TREE_MEMBERS = 200_000
MAX_REPORT_BYTES = 16 << 20
MAX_LOG_BYTES = 1 << 20
MAX_INPUT_BYTES = 2 << 30  # requirements, the project, a wheelhouse: what is copied in
DEPS_RECIPE = 1  # bump to rebuild every deps image
_WHEEL = re.compile(r"^(?P<name>[^-]+)-(?P<version>[^-]+)(-\d[^-]*)?-(?P<tags>[^-]+-[^-]+-[^-]+)"
                    r"\.whl$")
_FILE_NAME = re.compile(r"^[A-Za-z0-9._+-]+\.(whl|tar\.gz|zip|tar\.bz2)$")


class DependencyUnavailable(ImageUnavailable):
    """A requirement that cannot be had for one target: that target is unavailable."""


# -- pip itself -----------------------------------------------------------------------------------
def pip_wheel(version: str, *, places: Iterable[Path] = (), offline: bool = False) -> Path:
    """A pip wheel that runs on Python ``version`` (``3.9``): from the lab's cache, a local
    wheelhouse or find-links folder, else downloaded by the host's pip (with the host's
    settings). ImageUnavailable when none can be had."""
    cached = cache_dir() / "pip" / f"py{version}"
    cached.mkdir(parents=True, exist_ok=True)
    for folder in (cached, *places):
        found = sorted((p for p in Path(folder).glob("pip-*-py3-none-any.whl")
                        if _runs_on(p, version)), key=lambda p: _version_key(p.name))
        if found:
            return found[-1]
    if offline:
        raise ImageUnavailable(f"no pip wheel for Python {version} in the wheelhouse; `lab deps "
                               "export` puts one there (or add pip's wheel by hand)")
    with tempfile.TemporaryDirectory(prefix="lab-pip-") as tmp:
        proc = subprocess.run([sys.executable, "-m", "pip", "download", "pip", "--no-deps",
                               "--only-binary=:all:", "--python-version", version,
                               "--dest", tmp, "--quiet"],
                              capture_output=True, text=True, timeout=300)
        got = sorted(Path(tmp).glob("pip-*.whl"))
        if proc.returncode != 0 or not got:
            why = _last_error(proc.stderr + proc.stdout) or f"pip exited {proc.returncode}"
            raise ImageUnavailable(f"cannot get a pip wheel for Python {version} ({why}); "
                                   "offline, use --wheelhouse with one in it")
        dest = cached / got[-1].name
        os.replace(got[-1], dest)
    return dest


def _runs_on(wheel: Path, version: str) -> bool:
    """Whether the wheel's Requires-Python admits ``version`` (a plain >=X.Y check is what
    pip's own releases use)."""
    try:
        with zipfile.ZipFile(wheel) as z:
            meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
            text = z.read(meta).decode(errors="replace")
    except (OSError, zipfile.BadZipFile, StopIteration):
        return False
    m = re.search(r"^Requires-Python:\s*>=\s*(\d+)\.(\d+)", text, re.M)
    want = tuple(int(x) for x in version.split(".")[:2])
    return m is None or want >= (int(m.group(1)), int(m.group(2)))


def _version_key(name: str) -> tuple[int, ...]:
    m = re.match(r"pip-(\d+(?:\.\d+)*)", name)
    return tuple(int(x) for x in m.group(1).split(".")) if m else ()


# -- the step's inputs and its key ----------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class Inputs:
    """What the container gets, prepared once per run: a tar (at INNER_IN) and pip's env."""

    files: dict[str, bytes]  # path under INNER_IN -> content
    env: dict[str, str]
    key: str  # a digest of everything that decides what pip installs, for every target
    network: bool  # False: a wheelhouse, and nothing else
    loopback: bool  # an index on this machine: the container shares the host's network
    places: tuple[Path, ...]  # local folders that may hold a pip wheel


def prepare(reqs: Requirements, settings: PipSettings) -> Inputs:
    files: dict[str, bytes] = {}
    env: dict[str, str] = {}
    budget = [MAX_INPUT_BYTES]
    files["requirements.txt"] = ("\n".join(reqs.lines) + "\n").encode()
    if reqs.constraints:
        files["constraints.txt"] = ("\n".join(reqs.constraints) + "\n").encode()
    if reqs.project is not None:
        _add_tree(files, reqs.project, "project", budget)
    places: list[Path] = []
    offline = reqs.wheelhouse is not None
    if offline:
        assert reqs.wheelhouse is not None
        _add_wheels(files, reqs.wheelhouse, "wheelhouse", budget)
        env.update({"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": f"{INNER_IN}/wheelhouse"})
        places.append(reqs.wheelhouse)
    else:
        for name, value in settings.options.items():
            if name in ("cert", "client-cert"):
                path = Path(value).expanduser()
                try:
                    files[f"{name}.pem"] = path.read_bytes()
                except OSError:
                    continue  # pip on the host would fail the same way; say nothing here
                env[f"PIP_{name.upper().replace('-', '_')}"] = f"{INNER_IN}/{name}.pem"
            elif name == "find-links":
                links = []
                for i, link in enumerate(value.split()):
                    if "://" in link and not link.startswith("file:"):
                        links.append(link)
                    elif ((folder := Path(link.removeprefix("file://")).expanduser()).is_dir()
                          and _add_wheels(files, folder, f"links/{i}", budget)):
                        links.append(f"{INNER_IN}/links/{i}")
                        places.append(folder)
                if links:
                    env["PIP_FIND_LINKS"] = " ".join(links)
            else:
                env[f"PIP_{name.upper().replace('-', '_')}"] = value
        env.update(settings.proxies)
    digest = hashlib.sha256(json.dumps({
        "v": DEPS_RECIPE, "lines": reqs.lines, "constraints": reqs.constraints,
        "extras": reqs.extras, "settings": settings.fingerprint(),
        "files": {k: hashlib.sha256(v).hexdigest() for k, v in sorted(files.items())
                  if not k.endswith(".pem")},
    }, sort_keys=True).encode()).hexdigest()
    return Inputs(files=files, env=env, key=digest[:16], network=not offline,
                  loopback=any(loopback(u) for u in settings.urls()) and not offline,
                  places=tuple(places))


def _add_tree(files: dict[str, bytes], src: Path, prefix: str, budget: list[int]) -> None:
    """A project's folder, as `lab check` copies a program's: no links followed, caches
    skipped, capped."""
    for folder, dirs, names in os.walk(src):
        dirs[:] = sorted(d for d in dirs if d not in SKIPPED_DIRS
                         and not (Path(folder) / d).is_symlink() and d != "reports")
        for name in sorted(names):
            path = Path(folder) / name
            if path.is_symlink() or not path.is_file():
                continue
            data = path.read_bytes()
            budget[0] -= len(data)
            if budget[0] < 0:
                raise ConfigError(f"--project {src} is larger than {MAX_INPUT_BYTES >> 20} MB "
                                  "(without caches). Give the project's own folder.")
            files[f"{prefix}/{path.relative_to(src).as_posix()}"] = data


def _add_wheels(files: dict[str, bytes], folder: Path, prefix: str, budget: list[int]) -> int:
    """The folder's packages (wheels and sdists, no links), copied in; how many."""
    count = 0
    for path in sorted(folder.iterdir()):
        if path.is_symlink() or not path.is_file() or not _FILE_NAME.match(path.name):
            continue
        data = path.read_bytes()
        budget[0] -= len(data)
        if budget[0] < 0:
            raise ConfigError(f"{folder} holds more than {MAX_INPUT_BYTES >> 20} MB of "
                              "packages. Keep only what the run needs (`lab deps export`).")
        files[f"{prefix}/{path.name}"] = data
        count += 1
    return count


# -- the step -------------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class Installed:
    """One package pip installed for a target, from its installation report."""

    name: str
    version: str
    tags: str  # the wheel's tags (cp313-cp313-manylinux_2_17_x86_64...), or how it was built
    sha256: str | None
    file: str  # the file pip installed from

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "tags": self.tags,
                "sha256": self.sha256, "file": self.file}


@dataclass(frozen=True, kw_only=True)
class DepsImage:
    """A target image plus its dependencies: what cells of that target run from."""

    tag: str
    id: str
    installed: tuple[Installed, ...]
    reused: bool  # found, nothing fetched
    network: str  # how the step reached the index: bridge, host or none (a wheelhouse)
    source: str  # "index" or "wheelhouse"
    interpreter_tags: tuple[str, ...] = ()
    seconds: float = 0.0

    def to_json(self, reqs: Requirements) -> dict[str, Any]:
        return {"requested": reqs.requested(), "sources": list(reqs.sources),
                "installed": [i.to_json() for i in self.installed], "image": self.tag,
                "image_id": self.id, "reused": self.reused, "network": self.network,
                "source": self.source, "interpreter_tags": list(self.interpreter_tags),
                "interpreter_tag": own_tag(self.interpreter_tags),
                "seconds": round(self.seconds, 1)}


def deps_tag(target: Target, image: TargetImage, inputs: Inputs) -> str:
    key = hashlib.sha256(f"{image.id}:{inputs.key}".encode()).hexdigest()[:16]
    return f"lab-deps:{target.id}-{key}"


def run_step(engine: Engine, target: Target, image: TargetImage, inputs: Inputs, *,
             pip: Path, args: list[str], labels: dict[str, str], network: str,
             stop: Callable[[], bool] = lambda: False,
             ) -> tuple[dict[str, Any], str, dict[str, Any], IO[bytes] | None]:
    """Run pip (``args`` after ``pip``) in a container of the target's image; returns
    (done.json, pip.log's tail, tags.json, the installed tree re-packed at DEPS_HOME or None
    when pip failed). The container is removed whatever happens."""
    step = {"out": INNER_OUT, "pip": f"{INNER_IN}/{pip.name}", "args": args,
            "env": inputs.env, "linger_s": STEP_TIMEOUT_S, "cwd": "/tmp",
            "copy": [[f"{INNER_IN}/project", PROJECT_COPY]]
            if any(name.startswith("project/") for name in inputs.files) else []}
    files = {**inputs.files, pip.name: pip.read_bytes(),
             "step.json": json.dumps(step).encode()}
    # Where pip installs and the step reports: volumes in the engine's memory, capped in size
    # (a container's own tmpfs mounts cannot be read through the archive API).
    made = {**labels, "lab.kind": "deps", "lab.target": target.id}
    volumes: list[str] = []
    try:
        volumes.append(engine.create_volume(labels=made, tmpfs_size="64m", owner=LAB_USER))
        volumes.append(engine.create_volume(labels=made, tmpfs_size=TREE_TMPFS, owner=LAB_USER))
        spec = ContainerSpec(
            image=image.tag,
            command=[target.python, "-m", "labrunner.deps", f"{INNER_IN}/step.json"],
            name=f"lab-deps-{target.id}-{os.getpid()}-{int(time.time() * 1000) % 10**8}",
            labels=made, volumes=(INNER_IN,), binds={volumes[0]: INNER_OUT, volumes[1]: DEPS_HOME},
            working_dir="/tmp", network=network, tmpfs_size="1g", mem_limit="6g",
            pids_limit=1024, environment={"LAB_IN_CONTAINER": "1", **(
                {"PYTHON_GIL": target.python_gil} if target.python_gil else {})})
        cid = engine.start(spec, files=[tar_of(files)], files_at=INNER_IN)
        try:
            done = _wait_done(engine, cid, stop)
            log = _read(engine, cid, f"{INNER_OUT}/pip.log", MAX_LOG_BYTES, tail=True)
            tags = _json(_read(engine, cid, f"{INNER_OUT}/tags.json", 64 << 10))
            tree = None
            if done.get("exit_code") == 0:
                done["report"] = _json(_read(engine, cid, f"{INNER_OUT}/report.json",
                                             MAX_REPORT_BYTES))
                tree = _tree(engine, cid, f"{target.id} dependencies")
            return done, log.decode(errors="replace"), tags, tree
        finally:
            engine.remove_container(cid, quiet=True)
    finally:
        for volume in volumes:
            engine.remove_volume(volume)


def _wait_done(engine: Engine, cid: str, stop: Callable[[], bool]) -> dict[str, Any]:
    deadline = time.monotonic() + STEP_TIMEOUT_S
    while True:
        found = _read(engine, cid, f"{INNER_OUT}/done.json", 64 << 10)
        if found:
            return _json(found)
        state = engine.state(cid)
        if state.stopped:
            tail = engine.logs_tail(cid, lines=20)
            raise BuildFailed(f"the dependencies step exited with code {state.exit_code} "
                              "before pip finished", log_tail=tail)
        if stop() or time.monotonic() > deadline:
            raise BuildFailed("stopped" if stop() else
                              f"pip did not finish within {STEP_TIMEOUT_S:.0f} s")
        time.sleep(POLL_S)


def _read(engine: Engine, cid: str, path: str, limit: int, *, tail: bool = False) -> bytes:
    """A regular file of the container (never a link), at most ``limit`` bytes (its end with
    ``tail``); b"" when there is none."""
    stream = engine.file_archive(cid, path)
    if stream is None:
        return b""
    try:
        with tarfile.open(fileobj=ChunkReader(stream), mode="r|") as tar:
            member = tar.next()
            if member is None or not member.isreg():
                return b""
            f = tar.extractfile(member)
            assert f is not None
            if tail and member.size > limit:
                f.read(member.size - limit)
            return f.read(limit)
    except tarfile.TarError:
        return b""


def _json(data: bytes) -> dict[str, Any]:
    try:
        value = json.loads(data or b"{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _tree(engine: Engine, cid: str, label: str) -> IO[bytes]:
    try:
        stream = ChunkReader(engine.archive(cid, DEPS_HOME))
        with tarfile.open(fileobj=stream, mode="r|") as src:
            out, _ = repack(src, root="deps", prefix=DEPS_HOME, label=label,
                            max_bytes=MAX_TREE_BYTES, max_members=MAX_TREE_MEMBERS,
                            what="an installed tree")
    except (tarfile.TarError, EOFError) as exc:
        raise BuildFailed(f"{label} came back as a broken archive ({exc})") from exc
    return out


# -- reading what pip did -------------------------------------------------------------------------
def installed_from(report: dict[str, Any]) -> tuple[Installed, ...]:
    """pip's installation report (``--report``, a documented format) as what was installed,
    read defensively: it came from the container."""
    out = []
    for item in report.get("install") or []:
        if not isinstance(item, dict):
            continue
        meta: dict[str, Any] = item["metadata"] if isinstance(item.get("metadata"), dict) else {}
        info: dict[str, Any] = (item["download_info"] if isinstance(item.get("download_info"),
                                                                    dict) else {})
        url = str(info.get("url") or "")[:2000]
        file = urllib.parse.unquote(url.rsplit("/", 1)[-1])[:300]
        archive = info.get("archive_info")
        hashes = archive.get("hashes") if isinstance(archive, dict) else None
        sha = hashes.get("sha256") if isinstance(hashes, dict) else None
        m = _WHEEL.match(file)
        tags = (m.group("tags") if m else "a folder, built here" if "dir_info" in info
                else "an sdist, built here")
        out.append(Installed(name=str(meta.get("name") or "?")[:200],
                             version=str(meta.get("version") or "?")[:100], tags=tags[:300],
                             sha256=sha if isinstance(sha, str) and
                             re.fullmatch(r"[0-9a-f]{64}", sha) else None, file=file))
    return tuple(sorted(out, key=lambda i: i.name.lower()))


def _last_error(log: str) -> str | None:
    """pip's last ``ERROR:`` line, else the log's last line (a traceback's exception)."""
    lines = [ln.strip() for ln in log.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("ERROR:")]
    if errors:
        return errors[-1].removeprefix("ERROR:").strip()[:400]
    return lines[-1][:400] if lines else None


_NO_VERSION = re.compile(r"Could not find a version that satisfies the requirement (?P<req>\S+)"
                         r"(?: \(from versions: (?P<versions>[^)]*)\))?")
_BUILD_FAILED = re.compile(r"(?:Failed to build|Failed building wheel for|"
                           r"Could not build wheels for|"
                           r"Encountered error while generating package metadata\.\s*\S+)"
                           r"\s*(?P<pkg>[A-Za-z0-9._-]+)")
_OTHER_PYTHON = re.compile(r"Package '(?P<pkg>[^']+)' requires a different Python: "
                           r"(?P<have>\S+) not in '(?P<want>[^']+)'")
_NETWORK = ("NewConnectionError", "Network is unreachable", "Name or service not known",
            "Temporary failure in name resolution", "Connection refused", "ConnectTimeout",
            "Max retries exceeded", "No route to host", "ProxyError")


def own_tag(tags: Iterable[str]) -> str | None:
    """The interpreter's most telling tag: its newest manylinux (or musllinux) one, which says
    both its ABI and its glibc, else the first."""
    tags = list(tags)
    return next((t for t in tags if "manylinux" in t or "musllinux" in t),
                tags[0] if tags else None)


def explain_failure(log: str, *, target: Target, tags: Iterable[str], source: str,
                    network: str) -> str:
    """One line: which package could not be had for which target tags, and what the index
    offers (from pip's own words), else pip's last error."""
    tag = own_tag(tags) or "its own tags"
    where = "the wheelhouse" if source == "wheelhouse" else "the index"
    if "CERTIFICATE_VERIFY_FAILED" in log or "SSLError" in log:
        return (f"{target.id}: pip in the container cannot verify the index's certificate; "
                "the host's pip setting `cert` (or PIP_CERT) names the bundle the lab copies "
                "in: point it at the one your proxy's certificate is in")
    if (m := _OTHER_PYTHON.search(log)) is not None:
        return (f"{target.id} ({tag}): {m.group('pkg')} requires Python {m.group('want')}, and "
                f"this target has {m.group('have')}; pin a version that supports it")
    if (m := _NO_VERSION.search(log)) is not None:
        versions = (m.group("versions") or "").strip()
        if versions in ("", "none"):
            offer = f"{where} offers no version for these tags"
        else:
            shown = [v.strip() for v in versions.split(",")]
            offer = (f"{where} offers " + (", ".join(shown) if len(shown) <= 8 else
                                           f"{', '.join(shown[-8:])} (and {len(shown) - 8} "
                                           "older)") + " for these tags")
        if any(s in log for s in _NETWORK) and source != "wheelhouse":
            offer = (f"{where} could not be reached from the container ({network} network); "
                     "offline, use --wheelhouse DIR")
        return f"{target.id}: no {m.group('req')} for {tag}: {offer}"
    if (m := _BUILD_FAILED.search(log)) is not None:
        return (f"{target.id}: {m.group('pkg')} has no wheel for {tag}: {where} offers only "
                "its sdist for these tags, and building it failed in the target's image (no "
                "compiler or build tools there); pin a version with a wheel for this target")
    if any(s in log for s in _NETWORK):
        return (f"{target.id}: {where} could not be reached from the container ({network} "
                "network); check the host's pip settings (index-url, proxy), or use "
                "--wheelhouse DIR offline")
    why = _last_error(log) or "pip failed without saying why"
    return f"{target.id} ({tag}): pip could not install the requirements: {why}"


# -- the whole of it, per target ------------------------------------------------------------------
def ensure_deps(engine: Engine, target: Target, image: TargetImage, reqs: Requirements,
                inputs: Inputs, *, labels: dict[str, str],
                stop: Callable[[], bool] = lambda: False,
                on_stage: Callable[[str], None] = lambda s: None) -> DepsImage:
    """The target's image with ``reqs`` installed, made if missing. Raises
    DependencyUnavailable (this target cannot have them) or BuildFailed."""
    tag = deps_tag(target, image, inputs)
    found = engine.image(tag)
    if found is not None:
        return _from_labels(tag, found.id, found.labels)
    started = time.monotonic()
    source = "index" if inputs.network else "wheelhouse"
    pip = pip_wheel(target.version, places=inputs.places, offline=not inputs.network)
    args = ["install", "--target", DEPS_HOME, "--report", f"{INNER_OUT}/report.json",
            "--prefer-binary", "--no-warn-script-location", "--progress-bar", "off",
            "--no-compile", "-r", f"{INNER_IN}/requirements.txt"]
    if reqs.constraints:
        args += ["-c", f"{INNER_IN}/constraints.txt"]
    if reqs.project is not None:
        extras = f"[{','.join(reqs.extras)}]" if reqs.extras else ""
        args.append(f"{PROJECT_COPY}{extras}")
    done: dict[str, Any] = {}
    for network in _networks(inputs):
        on_stage(f"installing dependencies ({network} network)")
        try:
            done, log, tags, tree = run_step(engine, target, image, inputs, pip=pip, args=args,
                                             labels=labels, network=network, stop=stop)
            break
        except DockerError as exc:
            if network == "bridge" and _no_bridge(str(exc)):
                continue  # this engine has no working bridge: the host's network, then
            raise
    interpreter = tuple(str(t) for t in tags.get("tags") or [] if isinstance(t, str))[:5]
    if tree is None:
        raise DependencyUnavailable(explain_failure(log, target=target, tags=interpreter,
                                                    source=source, network=network))
    installed = installed_from(done.get("report") or {})
    with tree:
        on_stage("saving the dependencies layer")
        meta = {"installed": [i.to_json() for i in installed], "network": network,
                "source": source, "tags": list(interpreter)}
        repo, _, name = tag.partition(":")
        image_id = engine.commit_layer(
            image.tag, tree, repository=repo, tag=name,
            changes=[f"ENV PYTHONPATH={RUNNER_HOME}:{DEPS_HOME} LAB_DEPS={DEPS_HOME}"],
            labels={MANAGED: "true", "lab.kind": "deps", "lab.target": target.id,
                    "lab.base-ref": image.tag, "lab.deps": _label(meta)},
            command=[target.python], container_labels={**labels, "lab.kind": "layer"})
    return DepsImage(tag=tag, id=image_id, installed=installed, reused=False, network=network,
                     source=source, interpreter_tags=interpreter,
                     seconds=time.monotonic() - started)


def _networks(inputs: Inputs) -> list[str]:
    if not inputs.network:
        return ["none"]
    return ["host"] if inputs.loopback else ["bridge", "host"]


def _no_bridge(message: str) -> bool:
    return any(s in message for s in ("docker0", "bridge", "network"))


def _label(meta: dict[str, Any]) -> str:
    # Label values are strings; a LABEL change takes them in double quotes.
    return json.dumps(meta, separators=(",", ":")).replace("\\", "\\\\").replace('"', '\\"')


def _from_labels(tag: str, image_id: str, labels: dict[str, str]) -> DepsImage:
    meta = _json(labels.get("lab.deps", "").encode())
    installed = tuple(Installed(name=str(i.get("name")), version=str(i.get("version")),
                                tags=str(i.get("tags")), sha256=i.get("sha256"),
                                file=str(i.get("file")))
                      for i in meta.get("installed") or [] if isinstance(i, dict))
    return DepsImage(tag=tag, id=image_id, installed=installed, reused=True,
                     network=str(meta.get("network") or "?"),
                     source=str(meta.get("source") or "?"),
                     interpreter_tags=tuple(meta.get("tags") or ()))


def export(engine: Engine, target: Target, image: TargetImage, reqs: Requirements,
           inputs: Inputs, dest: Path, *, labels: dict[str, str]) -> list[str]:
    """Download (never install) what ``target`` needs into ``dest``, with the pip wheel its
    interpreter runs: a wheelhouse to carry to a machine without a network. Returns the file
    names written."""
    pip = pip_wheel(target.version, places=inputs.places, offline=not inputs.network)
    args = ["download", "--dest", DEPS_HOME, "--prefer-binary", "--progress-bar", "off",
            "-r", f"{INNER_IN}/requirements.txt"]
    if reqs.constraints:
        args += ["-c", f"{INNER_IN}/constraints.txt"]
    if reqs.project is not None:
        extras = f"[{','.join(reqs.extras)}]" if reqs.extras else ""
        args.append(f"{PROJECT_COPY}{extras}")
    for network in _networks(inputs):
        try:
            done, log, tags, tree = run_step(engine, target, image, inputs, pip=pip, args=args,
                                             labels=labels, network=network)
            break
        except DockerError as exc:
            if network == "bridge" and _no_bridge(str(exc)):
                continue
            raise
    if tree is None:
        raise DependencyUnavailable(explain_failure(
            log, target=target, tags=[t for t in tags.get("tags") or [] if isinstance(t, str)],
            source="index" if inputs.network else "wheelhouse", network=network))
    dest.mkdir(parents=True, exist_ok=True)
    written = [_write_into(dest, pip.name, pip.read_bytes())]
    with tree, tarfile.open(fileobj=tree, mode="r") as tar:
        for member in tar:
            name = member.name.rsplit("/", 1)[-1]
            if member.isreg() and _FILE_NAME.match(name):
                f = tar.extractfile(member)
                assert f is not None
                written.append(_write_into(dest, name, f.read()))
    return written


def _write_into(dest: Path, name: str, data: bytes) -> str:
    path = dest / name
    if path.is_symlink():
        path.unlink()  # the user's folder: never write through a link in it
    tmp = dest / f".{name}.part"
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return name
