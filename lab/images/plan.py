"""The image plan: which image each target needs and what it is made from, as pure data.

Reads no engine. A tag carries a hash of its recipe (base suite and packages, mirror, the
runner's files), so an image is reused across runs and rebuilt only when its recipe changes;
a base's labels say how it was made (``BaseProvenance``). The builder (``builder.py``) makes
what the plan names.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lab.errors import BuildFailed, ImageUnavailable
from lab.images import tools
from lab.images.debian import mirror_url
from lab.images.layers import tar_of
from lab.images.pythons import ArchiveSource
from lab.matrix import DebianBase, Target

# 2: bases made by the lab's own bootstrap (signed archive, two stages), not debootstrap.
RECIPE_VERSION = 2  # bump to force every image to be rebuilt
LAB_UID = 10001
RUNNER_DIR = Path(__file__).resolve().parents[1] / "runner"
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


# The target image is its base plus one layer: the runner at /opt/lab/labrunner and this
# configuration, applied by a single commit. (A Dockerfile built by the classic builder made an
# intermediate container per instruction: 12-18 s a target on fuse-overlayfs; a commit takes
# about a second, needs no build context, and works the same on a remote engine.)
RUNNER_HOME = "/opt/lab"


def runner_changes(python: str) -> list[str]:
    return [
        f"ENV PYTHONPATH={RUNNER_HOME} PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 "
        f"LAB_PYTHON={python}",
        f"WORKDIR {RUNNER_HOME}",
        f"USER {LAB_UID}:{LAB_UID}",
    ]


@dataclass(frozen=True, kw_only=True)
class ImagePlan:
    """Where a target's image comes from; pure data, computed without Docker."""

    target: Target
    base_ref: str  # the FROM of the target image: a lab-base tag or a registry image
    base_key: str | None  # shared-base identity (None for registry images)
    tag: str
    # Archive targets: the archive, and the image of the Debian base plus its python/ tree
    # (the base_ref); or why no archive can be named (then ensure() says so).
    archive: ArchiveSource | None = None
    archive_problem: str | None = None


@dataclass(frozen=True, kw_only=True)
class BaseProvenance:
    """How a Debian base was made; stored in its image labels and in results.json."""

    suite: str
    codename: str = ""
    release_date: str = ""  # the signed Release's Date: the archive snapshot the base is of
    valid_until: str | None = None
    stale: bool = False  # Valid-Until had passed when it was built (a snapshot mirror)
    signed_by: str = ""  # primary fingerprint of the pinned key that verified the Release
    signing_key: str = ""
    mirror: str = ""
    packages: dict[str, str] = field(default_factory=dict)  # the base's packages -> version
    package_count: int = 0
    image_id: str = ""
    built: bool = False  # made by this run (False: an existing image was reused)
    seconds: float | None = None
    # Not bootstrapped on this engine but streamed (docker save | docker load) from the
    # engine named here, which had it: faster than a second bootstrap.
    streamed_from: str | None = None
    stream_seconds: float | None = None

    def labels(self) -> dict[str, str]:
        pkgs = ",".join(f"{n}={v}" for n, v in sorted(self.packages.items()))
        out = {"lab.suite": self.suite, "lab.codename": self.codename,
               "lab.release-date": self.release_date, "lab.valid-until": self.valid_until or "",
               "lab.release-stale": "true" if self.stale else "false",
               "lab.signed-by": self.signed_by, "lab.signing-key": self.signing_key,
               "lab.mirror": self.mirror, "lab.packages": pkgs,
               "lab.package-count": str(self.package_count),
               "lab.bootstrap-seconds": f"{self.seconds or 0:.0f}"}
        return {k: v.replace('"', "'").replace("\n", " ") for k, v in out.items()}

    @classmethod
    def from_labels(cls, labels: dict[str, str], *, image_id: str, built: bool
                    ) -> BaseProvenance:
        pkgs = dict(p.split("=", 1) for p in labels.get("lab.packages", "").split(",")
                    if "=" in p)
        seconds = labels.get("lab.bootstrap-seconds", "")
        return cls(suite=labels.get("lab.suite", ""), codename=labels.get("lab.codename", ""),
                   release_date=labels.get("lab.release-date", ""),
                   valid_until=labels.get("lab.valid-until") or None,
                   stale=labels.get("lab.release-stale") == "true",
                   signed_by=labels.get("lab.signed-by", ""),
                   signing_key=labels.get("lab.signing-key", ""),
                   mirror=labels.get("lab.mirror", ""), packages=pkgs,
                   package_count=int(labels.get("lab.package-count", "0") or 0),
                   image_id=image_id, built=built,
                   seconds=float(seconds) if seconds.replace(".", "").isdigit() else None)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True, kw_only=True)
class TargetImage:
    """A target's image, ready to run, and (for Debian targets) how its base was made."""

    tag: str
    id: str
    base: BaseProvenance | None = None
    archive: ArchiveSource | None = None  # archive targets: what their interpreter came from


def base_recipe(base: DebianBase, arch: str) -> dict[str, object]:
    return {
        "v": RECIPE_VERSION,
        "suite": base.suite,
        "packages": sorted(base.packages),
        "mirror": mirror_url(base.mirror),
        "variant": base.variant,
        "arch": arch,
        "uid": LAB_UID,
    }


def base_tag(base: DebianBase, arch: str) -> str:
    return f"lab-base:{base.name}-{arch}-{_digest(base_recipe(base, arch))}"


def plan_image(target: Target) -> ImagePlan:
    """Where ``target``'s image comes from. Reads no engine; an archive target's archive is
    named here (a lookup in pbs-installer's list or local folders, no download), so that its
    hash is part of the image's tag."""
    archive: ArchiveSource | None = None
    problem: str | None = None
    if target.archive is not None and target.base is not None:
        from lab.images.pythons import resolve

        key: str | None = base_tag(target.base, target.arch)
        try:
            archive = resolve(target)
            ref = f"lab-python:{target.id}-" + _digest(
                {"v": RECIPE_VERSION, "base": key, "sha256": archive.sha256})
        except ImageUnavailable as exc:
            problem, ref = str(exc), f"lab-python:{target.id}-unresolved"
    elif target.base is not None:
        ref = base_tag(target.base, target.arch)
        key = ref
    elif target.image is not None:
        ref, key = target.image, None
    else:
        raise BuildFailed(f"target {target.id} has neither a base nor an image")
    digest = _digest({
        "v": RECIPE_VERSION,
        "base": ref,
        "python": target.python,
        "layer": runner_changes(target.python),
        "runner": [(p, hashlib.sha256(c).hexdigest()) for p, c in runner_files()],
        # Whether the layer holds py-spy (cached by tools.prepare), and which.
        "py-spy": tools.binary_sha256(target.arch, cache_dir()),
    })
    return ImagePlan(target=target, base_ref=ref, base_key=key,
                     tag=f"lab-target:{target.id}-{digest}", archive=archive,
                     archive_problem=problem)


def runner_archive(arch: str) -> bytes:
    """The runner layer's files: ``opt/lab/labrunner/...``, owned by root, read-only to all,
    and py-spy at ``opt/lab/tools/py-spy`` (executable) where it is cached for ``arch``."""
    files = {f"{RUNNER_HOME.lstrip('/')}/labrunner/{rel}": content
             for rel, content in runner_files()}
    binary = tools.cached(arch, cache_dir())
    if binary is None:
        return tar_of(files)
    return tar_of(files, executable={tools.INNER_PATH: binary.read_bytes()})


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
