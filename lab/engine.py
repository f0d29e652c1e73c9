"""The only module that imports ``docker``: a thin, typed wrapper over the SDK.

It converts the SDK's exceptions (and the raw ``requests`` ones it leaks) into the lab's own
errors at this boundary and hands plain values to the rest. Every call has a timeout. Do not
share one ``Engine`` across threads: make one per worker (``Engine.connect()`` is cheap).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from typing import IO, Any

import docker.errors
import docker.types
import requests.exceptions

import docker
from lab.errors import ConfigError, DockerError, EngineUnavailable, ImageUnavailable
from lab.matrix import EngineSpec

MANAGED = "lab.managed"
API_TIMEOUT_S = 60
# Pinned rather than "auto": auto-detection makes a request inside the SDK's constructor and
# leaks its socket when the engine is missing. 1.41 is Docker 20.10 (Debian 12's docker.io),
# and newer engines keep accepting it.
API_VERSION = "1.41"


# Engines behind these share this machine's folders; any other (tcp://, ssh://) may not.
LOCAL_SCHEMES = ("unix://", "npipe://")


def endpoint() -> str:
    return os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"


@dataclass(frozen=True, kw_only=True)
class ImageInfo:
    id: str
    tags: tuple[str, ...]
    labels: dict[str, str]
    size: int = 0


@dataclass(frozen=True, kw_only=True)
class ContainerInfo:
    id: str
    name: str
    labels: dict[str, str]
    status: str


@dataclass(frozen=True, kw_only=True)
class ContainerSpec:
    """Everything needed to start one lab container; hardened by default."""

    image: str
    command: list[str]
    name: str
    labels: dict[str, str]
    binds: dict[str, str] = field(default_factory=dict)  # host path -> container path (rw)
    ro_binds: dict[str, str] = field(default_factory=dict)  # host path -> container path (ro)
    # Container paths given a fresh anonymous volume, removed with the container: where files
    # copied in through the API (``Engine.start``'s ``files``) land on a read-only root.
    volumes: tuple[str, ...] = ()
    environment: dict[str, str] = field(default_factory=dict)
    working_dir: str = "/opt/lab"
    user: str = "10001:10001"
    cpuset_cpus: str | None = None
    nano_cpus: int | None = None  # docker run --cpus, in billionths of a CPU
    # A safety net, not part of any measurement: four cells share a behaviour container, and
    # PyPy 8's queue_growth producers peak near 300 MB each, so 1 GiB had the cgroup's OOM
    # killer take them mid-cell (seen with Debian sid's pypy3 8.0.1).
    mem_limit: str = "2g"
    pids_limit: int = 512
    tmpfs_size: str = "256m"
    platform: str | None = None
    # Off only for the bootstrap's second stage, which runs dpkg as root inside the container
    # (still no network): it writes the root filesystem and needs the default capabilities.
    read_only: bool = True
    drop_capabilities: bool = True
    # "none" for every cell. The dependencies step alone has a network ("bridge", else "host"
    # where the engine has no working bridge, or for an index on this machine's loopback).
    network: str = "none"
    # More tmpfs mounts (container path -> size), e.g. where pip installs: capped in memory,
    # never on the engine's disk. They vanish when the container stops.
    tmpfs: dict[str, str] = field(default_factory=dict)
    # RLIMIT_FSIZE of every process: no file it writes grows past this (the results channel
    # stays bounded on the host's disk); None: unlimited.
    max_file_bytes: int | None = None


# The labels that tie a container to the run that made it (see lab/run/engines.py's sweep).
RUN_LABELS = ("lab.run", "lab.host", "lab.pid")

# What a container may write to the engine's log of its stdout and stderr (json-file): the
# runner writes little there, and anything more is cut, not kept on the engine's disk.
LOG_CONFIG = {"type": "json-file", "config": {"max-size": "1m", "max-file": "1"}}


@dataclass(frozen=True, kw_only=True)
class EngineFacts:
    """An engine as ``docker version`` and ``docker info`` describe it."""

    id: str
    name: str  # the engine host's name
    version: str
    api_version: str
    os: str
    arch: str
    kernel: str
    cpus: int | None
    storage_driver: str
    cgroup_version: str


@dataclass(frozen=True, kw_only=True)
class ContainerState:
    """What the engine says of a container, as the lab uses it."""

    status: str  # created, running, exited, dead, ...
    exit_code: int | None  # once stopped
    oom_killed: bool = False
    error: str | None = None

    @property
    def stopped(self) -> bool:
        return self.status in ("exited", "dead")

    @classmethod
    def from_docker(cls, state: dict[str, Any]) -> ContainerState:
        status = str(state.get("Status", "?"))
        code = state.get("ExitCode")
        stopped = status in ("exited", "dead")
        return cls(status=status,
                   exit_code=int(code) if stopped and isinstance(code, int) else
                   (-1 if stopped else None),
                   oom_killed=bool(state.get("OOMKilled")), error=state.get("Error") or None)


def _short(exc: BaseException) -> str:
    text = getattr(exc, "explanation", None) or str(exc)
    return " ".join(str(text).split())[:400]


@contextmanager
def _converted(action: str, where: str | None = None,
               hint: str = "Start Docker, or set DOCKER_HOST.") -> Iterator[None]:
    """Turn SDK and requests exceptions into the lab's errors, naming the action."""
    try:
        yield
    except docker.errors.ImageNotFound as exc:
        raise ImageUnavailable(f"{action}: image not found ({_short(exc)})") from exc
    except (requests.exceptions.ConnectionError, ConnectionError) as exc:
        raise EngineUnavailable(
            f"Docker engine not reachable at {where or endpoint()} while trying to {action} "
            f"({_short(exc)}). {hint}"
        ) from exc
    except requests.exceptions.Timeout as exc:
        raise DockerError(f"{action}: the Docker engine did not answer in time") from exc
    except docker.errors.DockerException as exc:
        raise DockerError(f"{action}: {_short(exc)}") from exc


def _address(spec: EngineSpec | None) -> tuple[str, str | None, Any]:
    """(how errors name the engine, base URL or None for the environment's, TLS settings)."""
    if spec is None or (spec.host is None and spec.context is None):
        return endpoint(), None, False
    if spec.context is not None:
        from docker.context import ContextAPI
        from docker.utils.config import find_config_file

        if find_config_file() is None:  # the SDK would then look in ./contexts
            raise ConfigError(
                f"engine {spec.name!r}: no Docker config (config.json in $DOCKER_CONFIG or "
                f"~/.docker), so no context {spec.context!r}. Create the context with `docker "
                "context create`, or give the engine a `host` instead.")
        try:
            ctx = ContextAPI.get_context(spec.context)
        except docker.errors.DockerException as exc:
            raise ConfigError(f"engine {spec.name!r}: cannot read Docker context "
                              f"{spec.context!r} ({_short(exc)}).") from exc
        if ctx is None:
            raise ConfigError(
                f"engine {spec.name!r}: no Docker context named {spec.context!r} (in "
                f"{os.environ.get('DOCKER_CONFIG') or '~/.docker'}). Create it with `docker "
                "context create`, or give the engine a `host` instead.")
        host = str(ctx.Host)
        if host.startswith("http+unix://"):  # how the SDK spells a context's socket
            host = "unix://" + host[len("http+unix://"):]
        return f"{host} (context {spec.context})", host, ctx.TLSConfig or False
    assert spec.host is not None
    if spec.host.startswith("ssh://"):
        try:
            import paramiko  # noqa: F401  (the docker SDK's ssh transport)
        except ImportError as exc:
            raise ConfigError(f"engine {spec.name!r} is reached over ssh, which needs "
                              "paramiko: pip install 'docker[ssh]' in the lab's virtualenv "
                              "(`make` installs it).") from exc
    tls: Any = False
    if spec.cert_path is not None:
        from docker.tls import TLSConfig

        folder = os.path.expanduser(spec.cert_path)
        missing = [f for f in ("ca.pem", "cert.pem", "key.pem")
                   if not os.path.isfile(os.path.join(folder, f))]
        if missing:
            raise ConfigError(f"engine {spec.name!r}: {', '.join(missing)} missing in "
                              f"cert_path {folder}. Point cert_path at the engine's client "
                              "certificates.")
        tls = TLSConfig(client_cert=(os.path.join(folder, "cert.pem"),
                                     os.path.join(folder, "key.pem")),
                        ca_cert=os.path.join(folder, "ca.pem"), verify=True)
    return spec.host, spec.host, tls


def _ssh_errors() -> tuple[type[Exception], ...]:
    """What the SDK's ssh transport raises on its own (a refused key, an unknown host key)."""
    try:
        from paramiko.ssh_exception import SSHException
    except ImportError:
        return ()
    return (SSHException,)


def file_mode(spec: EngineSpec | None, url: str) -> str:
    """How a job's files reach containers on the engine at ``url``: lab.toml's ``files``,
    else "bind" for a local socket and "copy" for anything else (ssh://, tcp://), whose
    engine may be on another machine."""
    if spec is not None and spec.files:
        return spec.files
    return "bind" if url.startswith(LOCAL_SCHEMES) else "copy"


def _unix_socket_problem(url: str, timeout: float) -> str | None:
    """Check a unix:// endpoint ourselves: the SDK leaks its socket when connect fails."""
    if not url.startswith("unix://"):
        return None
    path = url[len("unix://"):]
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(path)
    except OSError as exc:
        return exc.strerror or str(exc)
    finally:
        sock.close()
    return None


class Engine:
    """One connection to one Docker engine."""

    def __init__(self, client: Any, *, where: str | None = None,
                 hint: str = "Start Docker, or set DOCKER_HOST.", files: str = "bind") -> None:
        self._client = client
        self.where = where or endpoint()
        self.hint = hint
        # "bind": the engine sees this machine's folders (its socket is local), so a job's
        # folder is bind-mounted; "copy": files go in and results come out through the API.
        self.files = files

    def _converted(self, action: str) -> AbstractContextManager[None]:
        return _converted(action, self.where, self.hint)

    @classmethod
    def connect(cls, spec: EngineSpec | None = None, *, timeout: float = API_TIMEOUT_S,
                ping_timeout: float = 5.0) -> Engine:
        """Connect and ping; a missing engine fails within ``ping_timeout`` seconds.

        ``spec``: an engine from lab.toml (a host URL or a Docker CLI context); None, or a spec
        with neither, is the environment's engine (DOCKER_HOST, DOCKER_TLS_VERIFY,
        DOCKER_CERT_PATH, else the local socket)."""
        where, base_url, tls = _address(spec)
        if spec is None or base_url is None:
            hint = ("Start Docker (`lab doctor` says what it finds; docs/engines.md), or set "
                    "DOCKER_HOST.")
        else:
            hint = f"Start it, or fix [engine.{spec.name}] in lab.toml (`lab doctor` checks it)."
        problem = _unix_socket_problem(base_url or endpoint(), ping_timeout)
        if problem:
            raise EngineUnavailable(f"Docker engine not reachable at {where} ({problem}). {hint}")
        client = None
        try:
            if base_url is None:
                client = docker.from_env(  # type: ignore[attr-defined]
                    timeout=ping_timeout, version=API_VERSION)
            else:
                client = docker.DockerClient(  # type: ignore[attr-defined]
                    base_url=base_url, tls=tls, timeout=ping_timeout, version=API_VERSION)
            client.ping()
        except (docker.errors.DockerException, requests.exceptions.RequestException,
                OSError, *_ssh_errors()) as exc:
            if client is not None:
                client.close()
            raise EngineUnavailable(
                f"Docker engine not reachable at {where} ({_short(exc)}). {hint}") from exc
        client.api.timeout = timeout
        files = file_mode(spec, base_url or endpoint())
        if spec is not None and base_url is not None:
            return cls(client, where=where, files=files, hint=f"Is engine {spec.name} still "
                       f"up? Its [engine.{spec.name}] table in lab.toml says where it is.")
        return cls(client, where=where, files=files)

    def close(self) -> None:
        self._client.close()

    # -- facts -------------------------------------------------------------------------------
    def facts(self) -> EngineFacts:
        """Who this engine is: what a timing depends on, and what a report names."""
        with self._converted("read the engine version"):
            v = self._client.version()
        with self._converted("read the engine info"):
            i = self._client.info()
        cpus = i.get("NCPU")
        return EngineFacts(
            id=str(i.get("ID") or "?"), name=str(i.get("Name") or "?"),
            version=str(v.get("Version", "?")), api_version=str(v.get("ApiVersion", "?")),
            os=str(v.get("Os", "?")), arch=str(v.get("Arch", "?")),
            kernel=str(i.get("KernelVersion") or v.get("KernelVersion") or "?"),
            cpus=int(cpus) if isinstance(cpus, int) else None,
            storage_driver=str(i.get("Driver", "?")),
            cgroup_version=str(i.get("CgroupVersion", "?")))

    # -- images ------------------------------------------------------------------------------
    def image(self, ref: str) -> ImageInfo | None:
        try:
            with self._converted(f"inspect image {ref}"):
                data = self._client.api.inspect_image(ref)
        except ImageUnavailable:
            return None
        return ImageInfo(
            id=data["Id"],
            tags=tuple(data.get("RepoTags") or ()),
            labels=dict((data.get("Config") or {}).get("Labels") or {}),
            size=int(data.get("Size") or 0),
        )

    def images(self, labels: dict[str, str]) -> list[ImageInfo]:
        filters = {"label": [f"{k}={v}" for k, v in labels.items()]}
        with self._converted("list images"):
            found = self._client.api.images(filters=filters)
        return [
            ImageInfo(
                id=d["Id"],
                tags=tuple(d.get("RepoTags") or ()),
                labels=dict(d.get("Labels") or {}),
                size=int(d.get("Size") or 0),
            )
            for d in found
        ]

    def remove_image(self, ref: str) -> None:
        with self._converted(f"remove image {ref}"):
            self._client.api.remove_image(ref, force=True)

    def pull(self, ref: str) -> ImageInfo:
        """Pull a registry image; ImageUnavailable when no registry answers."""
        repo, _, tag = ref.rpartition(":") if ":" in ref.split("/")[-1] else (ref, "", "latest")
        try:
            self._client.api.pull(repo, tag=tag)
        except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
            raise ImageUnavailable(
                f"cannot pull {ref}: no registry answered ({_short(exc)}). Use a Debian-based "
                "target, or load the image with `docker load` first."
            ) from exc
        info = self.image(ref)
        if info is None:
            raise ImageUnavailable(f"pulled {ref} but the engine does not list it")
        return info

    def registry_problem(self, ref: str) -> str | None:
        """Why the registry for ``ref`` cannot be used (None: it answers). Pulls nothing."""
        try:
            self._client.api.inspect_distribution(ref)
        except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
            return _short(exc)
        return None

    def import_stream(self, chunks: Iterable[bytes], *, repository: str, tag: str,
                      labels: dict[str, str]) -> str:
        """Import a root filesystem from a tar stream (nothing touches the host's disk)."""
        changes = [f'LABEL {k}="{v}"' for k, v in labels.items()]
        with self._converted(f"import {repository}:{tag}"):
            self._client.api.import_image_from_data(
                iter(chunks), repository=repository, tag=tag, changes=changes)
        info = self.image(f"{repository}:{tag}")
        if info is None:
            raise DockerError(f"imported {repository}:{tag} but the engine does not list it")
        return info.id

    def export_image(self, ref: str) -> Iterator[bytes]:
        """``docker save`` of one image as a tar stream (to load into another engine)."""
        with self._converted(f"export {ref}"):
            stream = self._client.api.get_image(ref, chunk_size=1 << 20)
        with self._converted(f"export {ref}"):
            yield from stream

    def load_image(self, chunks: Iterable[bytes]) -> None:
        """``docker load`` from a tar stream; raises if the engine reports an error."""
        with self._converted("load an image"):
            for line in self._client.api.load_image(iter(chunks)):
                if isinstance(line, dict) and line.get("error"):
                    raise DockerError(f"load an image: {str(line['error'])[:300]}")

    def commit_layer(self, base: str, files: bytes | IO[bytes], *, repository: str, tag: str,
                     changes: list[str], labels: dict[str, str], command: list[str],
                     container_labels: dict[str, str]) -> str:
        """An image of ``base`` plus ``files`` (a tar, extracted at /) and ``changes``
        (Dockerfile instructions such as ENV or USER), made by one commit: no build context and
        no intermediate container per instruction. Returns the image id."""
        with self._converted(f"create a layer for {repository}:{tag}"):
            created = self._client.api.create_container(
                base, command=command, labels=container_labels, network_disabled=True,
                host_config=self._client.api.create_host_config(network_mode="none"))
        cid = created["Id"]
        try:
            with self._converted(f"copy files for {repository}:{tag}"):
                self._client.api.put_archive(cid, "/", files)
            # The image would keep the labels of the container it was committed from, the
            # building run's among them; a container later made from it would then look like
            # that (long dead) run's leftover to any run's sweep. Those are blanked.
            label_changes = [f'LABEL {k}=""' for k in RUN_LABELS if k not in labels]
            label_changes += [f'LABEL {k}="{v}"' for k, v in labels.items()]
            with self._converted(f"commit {repository}:{tag}"):
                self._client.api.commit(cid, repository=repository, tag=tag, pause=False,
                                        changes=[*changes, *label_changes])
        finally:
            self.remove_container(cid, quiet=True)
        info = self.image(f"{repository}:{tag}")
        if info is None:
            raise DockerError(f"committed {repository}:{tag} but the engine does not list it")
        return info.id

    def create_volume(self, *, labels: dict[str, str], tmpfs_size: str | None = None,
                      owner: str | None = None) -> str:
        """A new named volume; returns its name. On the engine's own disk, or with
        ``tmpfs_size`` in its memory, capped at that size (``owner`` "uid:gid" owns its root):
        unlike a container's tmpfs mount, the archive API reads it while the container runs."""
        opts = None
        if tmpfs_size is not None:
            uid, _, gid = (owner or "0:0").partition(":")
            opts = {"type": "tmpfs", "device": "tmpfs",
                    "o": f"size={tmpfs_size},uid={uid},gid={gid or uid},mode=0755"}
        with self._converted("create a volume"):
            return str(self._client.api.create_volume(driver="local", driver_opts=opts,
                                                      labels=labels)["Name"])

    def remove_volume(self, name: str) -> None:
        try:
            with self._converted(f"remove volume {name[:12]}"):
                self._client.api.remove_volume(name, force=True)
        except DockerError as exc:
            if "no such volume" not in str(exc).lower():
                raise

    def volumes(self, labels: dict[str, str]) -> list[tuple[str, dict[str, str]]]:
        """(name, labels) of the volumes carrying ``labels``."""
        filters = {"label": [f"{k}={v}" for k, v in labels.items()]}
        with self._converted("list volumes"):
            found = self._client.api.volumes(filters=filters).get("Volumes") or []
        return [(str(v["Name"]), dict(v.get("Labels") or {})) for v in found]

    def archive(self, cid: str, path: str) -> Iterator[bytes]:
        """A tar stream of ``path`` in a (possibly stopped) container, volumes included."""
        with self._converted(f"read {path} from {cid[:12]}"):
            stream, _ = self._client.api.get_archive(cid, path, chunk_size=1 << 20)
        with self._converted(f"read {path} from {cid[:12]}"):
            yield from stream

    def file_archive(self, cid: str, path: str) -> Iterator[bytes] | None:
        """The tar stream Docker gives for ``path`` in a (possibly stopped) container; None
        while there is no such file (or container). Never unpacked here: see ArchiveTail."""
        with self._converted(f"read {path} from {cid[:12]}"):
            try:
                stream, _ = self._client.api.get_archive(cid, path, chunk_size=1 << 16)
            except docker.errors.NotFound:
                return None
        return self._converting(stream, f"read {path} from {cid[:12]}")

    def _converting(self, stream: Iterator[bytes], action: str) -> Iterator[bytes]:
        with self._converted(action):
            yield from stream

    # -- containers --------------------------------------------------------------------------
    def start(self, spec: ContainerSpec, *, files: Iterable[bytes] | None = None,
              files_at: str = "/") -> str:
        """Create and start a hardened container; returns its id. Removes it if start fails.

        ``files``: a tar stream copied into the container at ``files_at`` before it starts
        (a path inside a volume lands in the volume)."""
        host_config = self._client.api.create_host_config(
            init=True,
            network_mode=spec.network,
            cap_drop=["ALL"] if spec.drop_capabilities else None,
            security_opt=["no-new-privileges"],
            read_only=spec.read_only,
            tmpfs={"/tmp": f"rw,nosuid,nodev,size={spec.tmpfs_size},mode=1777",
                   **{path: f"rw,nosuid,nodev,size={size},mode=1777"
                      for path, size in spec.tmpfs.items()}},
            ulimits=None if spec.max_file_bytes is None else [docker.types.Ulimit(
                name="fsize", soft=spec.max_file_bytes, hard=spec.max_file_bytes)],
            log_config=docker.types.LogConfig(**LOG_CONFIG),
            pids_limit=spec.pids_limit,
            mem_limit=spec.mem_limit,
            memswap_limit=spec.mem_limit,
            cpuset_cpus=spec.cpuset_cpus,
            nano_cpus=spec.nano_cpus,
            binds={**{host: {"bind": inner, "mode": "rw"} for host, inner in spec.binds.items()},
                   **{host: {"bind": inner, "mode": "ro"}
                      for host, inner in spec.ro_binds.items()}},
        )
        with self._converted(f"create container {spec.name}"):
            created = self._client.api.create_container(
                spec.image, command=spec.command, name=spec.name, labels=spec.labels,
                environment=spec.environment, working_dir=spec.working_dir, user=spec.user,
                volumes=list(spec.volumes) or None, host_config=host_config,
                network_disabled=spec.network == "none", platform=spec.platform,
            )
        cid = created["Id"]
        try:
            if files is not None:
                with self._converted(f"copy files into {spec.name}"):
                    self._client.api.put_archive(cid, files_at, iter(files))
            with self._converted(f"start container {spec.name}"):
                self._client.api.start(cid)
        except BaseException:
            self.remove_container(cid, quiet=True)
            raise
        return cid

    def exit_status(self, cid: str) -> int | None:
        """The exit code once the container has stopped, else None."""
        return self.state(cid).exit_code

    def state(self, cid: str) -> ContainerState:
        with self._converted(f"inspect container {cid[:12]}"):
            raw = self._client.api.inspect_container(cid).get("State") or {}
        return ContainerState.from_docker(dict(raw))

    def logs(self, cid: str, *, limit: int = 4 << 20) -> str:
        """The container's output, at most ``limit`` bytes from its end."""
        with self._converted(f"read logs of {cid[:12]}"):
            raw = bytes(self._client.api.logs(cid, stdout=True, stderr=True))
        return raw[-limit:].decode("utf-8", "replace")

    def logs_tail(self, cid: str, *, lines: int = 50) -> str:
        with self._converted(f"read logs of {cid[:12]}"):
            raw = self._client.api.logs(cid, stdout=True, stderr=True, tail=lines)
        return bytes(raw).decode("utf-8", "replace")

    def kill(self, cid: str) -> None:
        try:
            with self._converted(f"kill {cid[:12]}"):
                self._client.api.kill(cid)
        except DockerError:
            pass  # already stopped

    def remove_container(self, cid: str, *, quiet: bool = False) -> None:
        try:
            with self._converted(f"remove container {cid[:12]}"):
                self._client.api.remove_container(cid, force=True, v=True)
        except DockerError as exc:
            if "No such container" in str(exc) or "is already in progress" in str(exc):
                return
            if not quiet:
                raise

    def containers(self, labels: dict[str, str]) -> list[ContainerInfo]:
        filters = {"label": [f"{k}={v}" for k, v in labels.items()]}
        with self._converted("list containers"):
            found = self._client.api.containers(all=True, filters=filters)
        return [
            ContainerInfo(
                id=d["Id"],
                name=(d.get("Names") or ["?"])[0].lstrip("/"),
                labels=dict(d.get("Labels") or {}),
                status=str(d.get("Status", "")),
            )
            for d in found
        ]
