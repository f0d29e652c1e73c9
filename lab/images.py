"""Images: how an interpreter gets into an image, with no registry needed.

Base resolution per target: present locally -> pulled (registry targets) -> bootstrapped from
Debian with debootstrap and imported (the offline path). Targets of one base share it. Every
image carries a content hash of its recipe in its tag and labels, so it is reused across runs
and rebuilt only when the recipe changes. The runner is baked into a last COPY-only layer:
editing a scenario never re-bootstraps, and the image id pins the exact runner a run used.
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from lab.engine import MANAGED, Engine
from lab.errors import BuildFailed, DockerError, ImageUnavailable
from lab.matrix import DebianBase, Target

RECIPE_VERSION = 1  # bump to force every image to be rebuilt
LAB_UID = 10001
REPO_ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = REPO_ROOT / "docker" / "Dockerfile"
RUNNER_DIR = Path(__file__).resolve().parent / "runner"
DEBOOTSTRAP_TIMEOUT_S = 1800

# binfmt_misc handler names of qemu-user-static, per Debian architecture.
QEMU_BINFMT = {
    "arm64": "qemu-aarch64",
    "armhf": "qemu-arm",
    "riscv64": "qemu-riscv64",
    "s390x": "qemu-s390x",
    "ppc64el": "qemu-ppc64le",
}


def cache_dir() -> Path:
    path = Path(os.environ.get("LAB_CACHE_DIR") or Path.home() / ".cache" / "lab")
    path.mkdir(parents=True, exist_ok=True)
    return path


def _digest(obj: object) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:12]


def runner_files() -> list[tuple[str, bytes]]:
    """(path inside the package, content) of every runner source file, sorted."""
    files = []
    for path in sorted(RUNNER_DIR.rglob("*.py")):
        files.append((path.relative_to(RUNNER_DIR).as_posix(), path.read_bytes()))
    return files


def dockerfile_text() -> bytes:
    try:
        return DOCKERFILE.read_bytes()
    except OSError as exc:
        raise BuildFailed(
            f"cannot read {DOCKERFILE} ({exc.strerror}): run the lab from a clone of the repo."
        ) from exc


@dataclass(frozen=True, kw_only=True)
class ImagePlan:
    """Where a target's image comes from; pure data, computed without Docker."""

    target: Target
    base_ref: str  # the FROM of the target image: a lab-base tag or a registry image
    base_key: str | None  # shared-base identity (None for registry images)
    tag: str


def base_recipe(base: DebianBase, arch: str) -> dict[str, object]:
    return {
        "v": RECIPE_VERSION,
        "suite": base.suite,
        "packages": sorted(base.packages),
        "mirror": base.mirror,
        "variant": base.variant,
        "arch": arch,
        "uid": LAB_UID,
    }


def base_tag(base: DebianBase, arch: str) -> str:
    return f"lab-base:{base.name}-{arch}-{_digest(base_recipe(base, arch))}"


def plan_image(target: Target) -> ImagePlan:
    if target.base is not None:
        ref = base_tag(target.base, target.arch)
        key: str | None = ref
    elif target.image is not None:
        ref, key = target.image, None
    else:
        raise BuildFailed(f"target {target.id} has neither a base nor an image")
    digest = _digest({
        "v": RECIPE_VERSION,
        "base": ref,
        "python": target.python,
        "dockerfile": hashlib.sha256(dockerfile_text()).hexdigest(),
        "runner": [(p, hashlib.sha256(c).hexdigest()) for p, c in runner_files()],
    })
    return ImagePlan(target=target, base_ref=ref, base_key=key,
                     tag=f"lab-target:{target.id}-{digest}")


def build_context() -> bytes:
    """The in-memory tar build context: the Dockerfile and the runner as ``labrunner/``."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        entries = [("Dockerfile", dockerfile_text())]
        entries += [(f"labrunner/{p}", c) for p, c in runner_files()]
        for name, content in entries:
            info = tarfile.TarInfo(name)
            info.size = len(content)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(content))
    return buf.getvalue()


def stage_runner(dest: Path) -> Path:
    """Copy the runner to ``dest/labrunner`` (as in the images); returns ``dest``."""
    pkg = dest / "labrunner"
    for rel, content in runner_files():
        path = pkg / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    return dest


def emulation_problem(arch: str) -> str | None:
    """Why ``arch`` cannot run here, or None when it can (natively or via binfmt)."""
    handler = QEMU_BINFMT.get(arch)
    if handler is None:
        return None
    root = Path("/proc/sys/fs/binfmt_misc")
    entry = root / handler
    if not (root / "status").exists():
        return (f"binfmt_misc is not mounted, so {arch} binaries cannot run: "
                "mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc")
    if not entry.exists():
        return (f"no qemu-user handler for {arch} ({handler}) is registered: "
                "apt-get install qemu-user-static binfmt-support")
    text = entry.read_text()
    if not text.startswith("enabled"):
        return f"the {handler} binfmt handler is disabled: echo 1 > {entry}"
    flags = next((ln.split(":", 1)[1].strip() for ln in text.splitlines()
                  if ln.startswith("flags:")), "")
    if "F" not in flags:
        return (f"the {handler} binfmt handler lacks the F flag, so it cannot work inside "
                "containers: reinstall Debian's qemu-user-static")
    return None


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
                 stop: threading.Event | None = None):
        self.log_dir = log_dir
        self.stop = stop
        self.on_stage = on_stage or (lambda target_id, stage: None)
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def _thread_lock(self, key: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(key, threading.Lock())

    def ensure(self, engine: Engine, plan: ImagePlan) -> tuple[str, str]:
        """(tag, image id) of the target's image, made if missing. Raises per-target errors."""
        target = plan.target
        if plan.base_key is not None and target.base is not None:
            with self._thread_lock(plan.base_key), file_lock(plan.base_key, self.stop):
                self._ensure_base(engine, target.base, target.arch, plan.base_key, target.id)
        else:
            self._ensure_registry(engine, plan.base_ref, target.id)
        with self._thread_lock(plan.tag), file_lock(plan.tag, self.stop):
            found = engine.image(plan.tag)
            if found is not None:
                return plan.tag, found.id
            self.on_stage(target.id, "building runner layer")
            labels = {MANAGED: "true", "lab.kind": "target", "lab.target": target.id,
                      "lab.recipe": plan.tag.rsplit("-", 1)[-1], "lab.base-ref": plan.base_ref}
            log_path = self.log_dir / f"build-{target.id}.log"
            with open(log_path, "w") as log:
                try:
                    image_id = engine.build(
                        build_context(), tag=plan.tag,
                        buildargs={"BASE": plan.base_ref, "PYTHON": target.python},
                        labels=labels, log=lambda text: None if log.write(text) else None,
                    )
                except DockerError as exc:
                    raise BuildFailed(str(exc), log_tail=exc.log_tail) from exc
            return plan.tag, image_id

    def _ensure_registry(self, engine: Engine, ref: str, target_id: str) -> None:
        if engine.image(ref) is not None:
            return
        self.on_stage(target_id, f"pulling {ref}")
        engine.pull(ref)

    def _ensure_base(self, engine: Engine, base: DebianBase, arch: str, tag: str,
                     target_id: str) -> None:
        if engine.image(tag) is not None:
            return
        problem = emulation_problem(arch)
        if problem:
            raise ImageUnavailable(f"cannot make a {arch} base: {problem}")
        if shutil.which("debootstrap") is None:
            raise ImageUnavailable(
                f"base {tag} is not present and debootstrap is missing: "
                "apt-get install debootstrap (or run `lab doctor`)"
            )
        if os.geteuid() != 0:
            raise ImageUnavailable(
                f"base {tag} is not present and debootstrap needs root: run `sudo lab build` "
                "once, then runs reuse it"
            )
        self.on_stage(target_id, f"debootstrap {base.suite}/{arch}")
        debs = cache_dir() / "debs" / f"{base.suite}-{arch}"
        debs.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"debootstrap-{base.name}-{arch}.log"
        work = Path(tempfile.mkdtemp(prefix=f"lab-rootfs-{base.name}-", dir=cache_dir()))
        try:
            rootfs = work / "rootfs"
            cmd = [
                "debootstrap", f"--variant={base.variant}", f"--arch={arch}",
                f"--include={','.join(base.packages)}", f"--cache-dir={debs}",
                base.suite, str(rootfs), base.mirror,
            ]
            started = time.monotonic()
            # One debootstrap per suite and architecture at a time: they share a .deb cache.
            with open(log_path, "w") as log, file_lock(f"debs-{base.suite}-{arch}", self.stop):
                if self.stop is not None and self.stop.is_set():
                    raise BuildFailed(f"stopped before debootstrap {base.suite}/{arch}")
                try:
                    proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT,
                                          stdin=subprocess.DEVNULL,
                                          timeout=DEBOOTSTRAP_TIMEOUT_S)
                except subprocess.TimeoutExpired as exc:
                    raise BuildFailed(
                        f"debootstrap {base.suite}/{arch} took over {DEBOOTSTRAP_TIMEOUT_S} s; "
                        f"see {log_path}", log_tail=_tail(log_path)) from exc
            if proc.returncode != 0:
                raise BuildFailed(
                    f"debootstrap {base.suite}/{arch} with {', '.join(base.packages)} failed "
                    f"(exit {proc.returncode}); see {log_path}", log_tail=_tail(log_path))
            self._prepare_rootfs(rootfs)
            self.on_stage(target_id, f"importing {base.name}/{arch}")
            tar_path = work / "rootfs.tar"
            subprocess.run(["tar", "-C", str(rootfs), "--numeric-owner", "-cf", str(tar_path),
                            "."], check=True, stdin=subprocess.DEVNULL, timeout=600)
            repo, _, tagname = tag.partition(":")
            engine.import_rootfs(
                str(tar_path), repository=repo, tag=tagname,
                labels={MANAGED: "true", "lab.kind": "base", "lab.base": base.name,
                        "lab.arch": arch, "lab.recipe": tagname.rsplit("-", 1)[-1],
                        "lab.bootstrap-seconds": f"{time.monotonic() - started:.0f}"},
            )
        finally:
            shutil.rmtree(work, ignore_errors=True)

    @staticmethod
    def _prepare_rootfs(rootfs: Path) -> None:
        """Add the unprivileged ``lab`` user and drop what an image does not need."""
        with open(rootfs / "etc" / "passwd", "a") as fh:
            fh.write(f"lab:x:{LAB_UID}:{LAB_UID}:lab:/tmp:/usr/sbin/nologin\n")
        with open(rootfs / "etc" / "group", "a") as fh:
            fh.write(f"lab:x:{LAB_UID}:\n")
        for sub in ("var/cache/apt/archives", "var/lib/apt/lists"):
            folder = rootfs / sub
            for item in folder.glob("*"):
                if item.is_file() and item.name != "lock":
                    item.unlink()
