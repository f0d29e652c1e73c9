"""Images: how an interpreter gets into an image, with no registry and no root on the host.

Base resolution per target: present locally -> pulled (registry targets) -> bootstrapped from
Debian's signed archive by the lab's own code (``archive`` + ``rootfs``: first stage as a tar
stream, second stage dpkg in a container) and saved as one layer. Targets of one base share it.
Every image carries a content hash of its recipe in its tag and labels, so it is reused across
runs and rebuilt only when the recipe changes; a base's labels also say how it was made
(suite, Release date, signing key, package versions). The runner is baked into a last
COPY-only layer: editing a scenario never re-bootstraps, and the image id pins the exact runner.
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import fcntl
import os
import socket
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

from lab.engine import MANAGED, ContainerSpec, Engine
from lab.errors import BuildFailed, DockerError, ImageUnavailable, LabError
from lab.images.debian import Resolver, fetch_debs, fetch_index, fetch_release, mirror_url
from lab.images.download import DebCache, Unreachable
from lab.images.plan import (
    LAB_UID,
    BaseProvenance,
    ImagePlan,
    TargetImage,
    cache_dir,
    emulation_problem,
    runner_archive,
    runner_changes,
)
from lab.images.pythons import ARCHIVES_HINT, MAX_ARCHIVE_BYTES, ArchiveSource, python_layer
from lab.images.rootfs import ENTER, TARGET, first_stage, second_stage_script, stage_two_archive
from lab.matrix import DEBIAN_ARCH, DebianBase, native_platforms

Donor = tuple[str, Callable[[], Engine]]  # another engine's name, and how to reach it

SECOND_STAGE_TIMEOUT_S = 900  # native; emulated second stages get four times as long


@contextmanager
def file_lock(name: str, stop: threading.Event | None = None) -> Iterator[None]:
    """A lock shared by every lab process on this machine (parallel runs and test workers).

    Polls rather than blocks, so that a stopped run (Ctrl-C) never leaves a worker thread
    waiting in flock for another process's build.
    """
    locks = cache_dir() / "locks"
    locks.mkdir(exist_ok=True)
    safe = name.replace("/", "_").replace(":", "_")
    with open(locks / f"{safe}.lock", "w") as fh:
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if stop is not None and stop.is_set():
                    raise BuildFailed(f"stopped while waiting for {name}") from None
                time.sleep(0.2)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "".join(path.read_text(errors="replace").splitlines(keepends=True)[-lines:])
    except OSError:
        return ""


class ImageBuilder:
    """Makes target images; safe to call from several threads (one Engine per thread)."""

    def __init__(self, *, log_dir: Path, on_stage: Callable[[str, str], None] | None = None,
                 stop: threading.Event | None = None, labels: dict[str, str] | None = None):
        self.log_dir = log_dir
        self.stop = stop
        self.on_stage = on_stage or (lambda target_id, stage: None)
        # Put on every container and temporary image the builder makes, so that a run's
        # cleanup (by its labels) also finds a bootstrap interrupted half-way.
        self.labels = {MANAGED: "true", "lab.host": socket.gethostname(),
                       "lab.pid": str(os.getpid()), **(labels or {})}
        self.cache = DebCache(cache_dir() / "archive")
        self.cache.sweep_partial()
        self.resolver = Resolver()
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        # A base that failed fails every target on it at once, with the same reason, instead of
        # each of them bootstrapping it again in turn.
        self._failed: dict[str, BuildFailed | ImageUnavailable] = {}
        self._made: dict[str, BaseProvenance] = {}  # bases this builder made (built=True)
        self._prefetch: list[cf.ThreadPoolExecutor] = []

    def close(self) -> None:
        for pool in self._prefetch:
            pool.shutdown(wait=False, cancel_futures=True)
        self.cache.close()

    def prefetch_bases(self, plans: list[ImagePlan], connect: Callable[[], Engine],
                       donors: Sequence[Donor] = ()) -> None:
        """Start making every missing base now, all at once, rather than when a target worker
        reaches it: the downloads are shared and the bases do not queue behind the workers.
        Targets then wait for their base; a failure is theirs to report (``ensure``). Called
        once per engine; a base another engine is making is streamed from it once made."""
        # An archive target's base is made only once its archive is here: where no archive
        # can be had (no internet), no base is bootstrapped for nothing.
        todo = [*{p.base_key: p for p in plans if p.base_key and p.target.base is not None
                  and p.target.archive is None}.values(),
                *(p for p in plans if p.target.archive is not None and p.archive is not None)]
        if not todo:
            return
        pool = cf.ThreadPoolExecutor(max_workers=len(todo), thread_name_prefix="lab-base")
        self._prefetch.append(pool)

        def one(plan: ImagePlan) -> None:
            try:
                engine = connect()
            except LabError:
                return  # the target's own ensure() reports it
            try:
                if plan.archive is not None and engine.image(plan.tag) is not None:
                    return
                if plan.archive is not None:
                    self.fetch_archive(plan)
                self._base_for(engine, plan, donors)
            except LabError:
                pass  # remembered in _failed, or reported again by ensure()
            finally:
                engine.close()

        for plan in todo:
            pool.submit(one, plan)

    def _base_for(self, engine: Engine, plan: ImagePlan,
                  donors: Sequence[Donor] = ()) -> BaseProvenance:
        # One lock per base across engines: a second engine waits for the first to finish
        # the base, then streams it from there instead of bootstrapping it again.
        assert plan.base_key is not None and plan.target.base is not None
        key = f"{engine.where} {plan.base_key}"
        if key not in self._made and (found := engine.image(plan.base_key)) is not None:
            # already here: no need to wait while another engine makes or streams it
            return BaseProvenance.from_labels(found.labels, image_id=found.id, built=False)
        with self._thread_lock(plan.base_key), file_lock(plan.base_key, self.stop):
            failed = self._failed.get(key)
            if failed is not None:
                raise failed
            if key in self._made:
                return self._made[key]
            try:
                base = self._ensure_base(engine, plan.target.base, plan.target.arch,
                                         plan.base_key, plan.target.id, donors)
                if base.built:
                    self._made[key] = base
                return base
            except (BuildFailed, ImageUnavailable) as exc:
                if not (self.stop is not None and self.stop.is_set()):
                    self._failed[key] = exc
                raise

    def _thread_lock(self, key: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(key, threading.Lock())

    def ensure(self, engine: Engine, plan: ImagePlan,
               donors: Sequence[Donor] = ()) -> TargetImage:
        """The target's image, made if missing. Raises per-target errors. ``donors``: other
        engines (name, connect) a missing base may be streamed from."""
        target = plan.target
        base: BaseProvenance | None = None
        if target.archive is not None:
            found = engine.image(plan.tag)
            if found is not None:  # no download, even where the archive is not cached
                return TargetImage(tag=plan.tag, id=found.id, base=self._base_of(engine, plan),
                                   archive=ArchiveSource.from_labels(found.labels))
            base = self._ensure_python(engine, plan, donors)
        elif plan.base_key is not None and target.base is not None:
            base = self._base_for(engine, plan, donors)
        else:
            self._ensure_registry(engine, plan.base_ref, target.id)
        with self._thread_lock(plan.tag), file_lock(plan.tag, self.stop):
            found = engine.image(plan.tag)
            if found is not None:
                return TargetImage(tag=plan.tag, id=found.id, base=base, archive=plan.archive)
            self.on_stage(target.id, "adding the runner layer")
            labels = {MANAGED: "true", "lab.kind": "target", "lab.target": target.id,
                      "lab.recipe": plan.tag.rsplit("-", 1)[-1], "lab.base-ref": plan.base_ref}
            repo, _, tagname = plan.tag.partition(":")
            try:
                image_id = engine.commit_layer(
                    plan.base_ref, runner_archive(target.arch), repository=repo, tag=tagname,
                    changes=runner_changes(target.python), labels=labels,
                    command=[target.python], container_labels={**self.labels,
                                                               "lab.kind": "layer"})
            except DockerError as exc:
                raise BuildFailed(str(exc), log_tail=exc.log_tail) from exc
            return TargetImage(tag=plan.tag, id=image_id, base=base, archive=plan.archive)

    def fetch_archive(self, plan: ImagePlan) -> Path:
        """The plan's archive, verified, in the cache (downloaded or copied if missing).
        Raises ImageUnavailable when it cannot be read, BuildFailed on a hash mismatch."""
        if plan.archive is None:
            raise ImageUnavailable(plan.archive_problem or f"{plan.target.id} has no archive")
        src = plan.archive
        if not self.cache.path_for(src.sha256).is_file():
            self.on_stage(plan.target.id, f"fetching {src.filename}")
        try:
            return self.cache.get(src.url, sha256=src.sha256, size=None, label=src.filename,
                                  stop=self.stop, limit=MAX_ARCHIVE_BYTES,
                                  vouched_by=src.vouched_by)
        except Unreachable as exc:  # the reason first: the URL is long
            where = urllib.parse.urlparse(src.url).netloc or "this machine"
            local = f" No local archive matched: {src.not_local}." if src.not_local else ""
            raise ImageUnavailable(f"cannot download the archive from {where}: {exc.why}."
                                   f"{local} Offline? {ARCHIVES_HINT} (It is {src.filename}.)"
                                   ) from exc

    def _ensure_python(self, engine: Engine, plan: ImagePlan,
                       donors: Sequence[Donor]) -> BaseProvenance:
        """An archive target's Debian base plus its python/ tree at /opt/python (the image
        ``plan.base_ref``), made if missing: the archive is fetched and verified first, and
        only then is the base made."""
        path = self.fetch_archive(plan)
        assert plan.archive is not None and plan.base_key is not None
        base = self._base_for(engine, plan, donors)
        with self._thread_lock(plan.base_ref), file_lock(plan.base_ref, self.stop):
            if engine.image(plan.base_ref) is not None:
                return base
            target, src = plan.target, plan.archive
            self.on_stage(target.id, f"unpacking {src.filename} at /opt/python")
            repo, _, tagname = plan.base_ref.partition(":")
            labels = {MANAGED: "true", "lab.kind": "python", "lab.target": target.id,
                      **{k: v.replace('"', "'").replace("\n", " ")
                         for k, v in src.labels().items()}}
            with python_layer(path, python=target.python, label=src.filename) as layer:
                try:
                    engine.commit_layer(plan.base_key, layer, repository=repo, tag=tagname,
                                        changes=[], labels=labels, command=[target.python],
                                        container_labels={**self.labels, "lab.kind": "layer"})
                except DockerError as exc:
                    raise BuildFailed(str(exc), log_tail=exc.log_tail) from exc
        return base

    def _base_of(self, engine: Engine, plan: ImagePlan) -> BaseProvenance | None:
        found = engine.image(plan.base_key) if plan.base_key else None
        return (BaseProvenance.from_labels(found.labels, image_id=found.id, built=False)
                if found is not None else None)

    def _ensure_registry(self, engine: Engine, ref: str, target_id: str) -> None:
        if engine.image(ref) is not None:
            return
        self.on_stage(target_id, f"pulling {ref}")
        engine.pull(ref)

    def _ensure_base(self, engine: Engine, base: DebianBase, arch: str, tag: str,
                     target_id: str, donors: Sequence[Donor] = ()) -> BaseProvenance:
        found = engine.image(tag)
        if found is not None:
            return BaseProvenance.from_labels(found.labels, image_id=found.id, built=False)
        streamed = self._stream_base(engine, tag, target_id, f"{base.suite}/{arch}", donors)
        if streamed is not None:
            return streamed
        problem = emulation_problem(arch)
        if problem:
            raise ImageUnavailable(f"cannot make a {arch} base: {problem}")
        log_path = self.log_dir / f"bootstrap-{base.name}-{arch}.log"
        with open(log_path, "w") as log:
            try:
                return self._bootstrap(engine, base, arch, tag, target_id, log)
            except (BuildFailed, ImageUnavailable) as exc:
                log.write(f"\nFAILED: {exc}\n")
                if isinstance(exc, BuildFailed) and not exc.log_tail:
                    exc.log_tail = _tail(log_path)
                raise

    def _stream_base(self, engine: Engine, tag: str, target_id: str, where: str,
                     donors: Sequence[Donor]) -> BaseProvenance | None:
        """The base from another engine that has it (docker save there, docker load here),
        or None: no donor has it, or streaming failed (then it is bootstrapped here)."""
        for name, connect in donors:
            self._check_stop("streaming a base")
            try:
                donor = connect()
            except LabError:
                continue
            try:
                if donor.image(tag) is None:
                    continue
                self.on_stage(target_id, f"streaming base {where} from engine {name}")
                started = time.monotonic()
                engine.load_image(donor.export_image(tag))
                found = engine.image(tag)
                if found is None:
                    continue
                made = BaseProvenance.from_labels(found.labels, image_id=found.id, built=True)
                return dataclasses.replace(made, streamed_from=name, stream_seconds=round(
                    time.monotonic() - started, 1))
            except LabError as exc:
                self.on_stage(target_id, f"streaming base {where} from {name} failed ({exc}); "
                              "bootstrapping it here")
            finally:
                donor.close()
        return None

    def _bootstrap(self, engine: Engine, base: DebianBase, arch: str, tag: str,
                   target_id: str, log: TextIO) -> BaseProvenance:
        """debootstrap's minbase with the lab's own code: verified archive, first stage as a
        tar stream, second stage (dpkg) in a container, the result squashed into one layer."""
        started = time.monotonic()
        mirror = mirror_url(base.mirror)
        where = f"{base.suite}/{arch}"

        def say(stage: str) -> None:
            log.write(f"[{time.monotonic() - started:6.1f}s] {stage}\n")
            log.flush()
            self.on_stage(target_id, stage)

        say(f"reading {base.suite} from {mirror}")
        release = fetch_release(mirror, base.suite, stop=self.stop)
        log.write(f"InRelease: {release.codename}, {release.date}, signed by "
                  f"{release.signed_by} (subkey {release.signing_key})\n")
        if release.stale:
            log.write(f"warning: Valid-Until {release.valid_until} has passed (a snapshot "
                      "mirror); going on\n")
        index = fetch_index(release, arch, self.cache, stop=self.stop)
        selection = self.resolver.resolve(index, suite=base.suite, arch=arch,
                                          wanted=tuple(base.packages), stop=self.stop)
        for p in selection.all:
            log.write(f"  {p.name} {p.version}\n")
        say(f"downloading {len(selection.all)} packages for {where}")
        debs = fetch_debs(self.cache, mirror, selection.all, stop=self.stop)
        repo, _, tagname = tag.partition(":")
        stage1 = f"lab-stage1:{tagname}-{os.getpid()}-{threading.get_ident() % 100000}"
        s1repo, _, s1tag = stage1.partition(":")
        cid: str | None = None
        volume: str | None = None
        try:
            say(f"first stage {where}: {len(selection.required)} required packages")
            engine.import_stream(
                first_stage([(p, debs[p.name]) for p in selection.required], stop=self.stop),
                repository=s1repo, tag=s1tag, labels={**self.labels, "lab.kind": "stage1"})
            self._check_stop(f"after the first stage of {where}")
            say(f"second stage {where}: dpkg in a container")
            script = second_stage_script(selection, uid=LAB_UID)
            volume = engine.create_volume(labels={**self.labels, "lab.kind": "bootstrap"})
            spec = ContainerSpec(
                image=stage1, command=["/bin/sh", ENTER],
                name=f"lab-bootstrap-{base.name}-{arch}-{os.getpid()}-"
                     f"{threading.get_ident() % 100000}",
                labels={**self.labels, "lab.kind": "bootstrap", "lab.base": base.name},
                user="0:0", read_only=False, drop_capabilities=False, pids_limit=4096,
                mem_limit="2g", environment={}, working_dir="/", binds={volume: TARGET})
            cid = engine.start(spec, files=stage_two_archive(selection, debs, script),
                               files_at=TARGET)
            code = self._wait_stage_two(engine, cid, emulated=arch not in _native_arches())
            log.write(engine.logs(cid))
            if code != 0:
                raise BuildFailed(
                    f"the second stage of {where} failed (dpkg exit {code}); see {log.name}")
            self._check_stop(f"after the second stage of {where}")
            say(f"saving base {where}")
            provenance = BaseProvenance(
                suite=base.suite, codename=release.codename, release_date=release.date,
                valid_until=release.valid_until, stale=release.stale,
                signed_by=release.signed_by, signing_key=release.signing_key, mirror=mirror,
                packages={n: p.version for n, p in selection.wanted.items()},
                package_count=len(selection.all), built=True,
                seconds=round(time.monotonic() - started, 1))
            image_id = engine.import_stream(
                engine.archive(cid, f"{TARGET}/."), repository=repo, tag=tagname,
                labels={MANAGED: "true", "lab.kind": "base", "lab.base": base.name,
                        "lab.arch": arch, "lab.recipe": tagname.rsplit("-", 1)[-1],
                        **provenance.labels()})
            if self.stop is not None and self.stop.is_set():
                engine.remove_image(image_id)
                raise BuildFailed(f"stopped while saving base {where}; removed it")
            say(f"base {where} ready")
            return dataclasses.replace(provenance, image_id=image_id)
        finally:
            # Each step on its own and retried briefly: on Ctrl-C the run's cleanup removes the
            # same container at the same time, and until that finishes the volume and the
            # first-stage image are still "in use".
            if cid is not None:
                engine.remove_container(cid, quiet=True)
            if volume is not None:
                _retry_removal(lambda: engine.remove_volume(volume))

            def remove_stage1() -> None:
                if engine.image(stage1) is not None:
                    engine.remove_image(stage1)

            _retry_removal(remove_stage1)

    def _check_stop(self, where: str) -> None:
        if self.stop is not None and self.stop.is_set():
            raise BuildFailed(f"stopped {where}")

    def _wait_stage_two(self, engine: Engine, cid: str, *, emulated: bool) -> int:
        """Poll the second stage; a stop or the deadline kills it. Returns its exit code."""
        deadline = time.monotonic() + SECOND_STAGE_TIMEOUT_S * (4 if emulated else 1)
        while True:
            status = engine.exit_status(cid)
            if status is not None:
                return status
            if self.stop is not None and self.stop.is_set():
                engine.kill(cid)
                raise BuildFailed("stopped during the second stage")
            if time.monotonic() > deadline:
                engine.kill(cid)
                raise BuildFailed("the second stage overran its deadline and was killed")
            time.sleep(0.25)


def _retry_removal(remove: Callable[[], object], *, seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            remove()
            return
        except DockerError:
            if time.monotonic() > deadline:
                return  # left for `lab clean`; never hides the build's own outcome
            time.sleep(0.25)


def _native_arches() -> set[str]:
    return {DEBIAN_ARCH[p] for p in native_platforms()}

