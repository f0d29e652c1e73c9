"""``lab doctor``: what this machine can and cannot do for the lab, and what to do about it."""

from __future__ import annotations

import shutil
from dataclasses import dataclass

from lab.errors import LabError
from lab.images import QEMU_BINFMT, cache_dir, emulation_problem
from lab.matrix import DEBIAN_ARCH, DEFAULT_MIRROR, native_platforms

MIN_FREE_GB = 5.0


@dataclass(frozen=True, kw_only=True)
class Check:
    name: str
    level: str  # ok | warn | fail
    detail: str


def run_checks() -> list[Check]:
    checks = [check_engine()]
    checks.append(check_mirror())
    checks.append(check_disk())
    if checks[0].level == "ok":
        checks.append(check_registry())
    checks.extend(check_platforms())
    return checks


def check_engine() -> Check:
    from lab.engine import Engine, endpoint

    try:
        engine = Engine.connect()
    except LabError as exc:
        return Check(name="docker engine", level="fail", detail=str(exc))
    try:
        v = engine.version()
    finally:
        engine.close()
    return Check(name="docker engine", level="ok",
                 detail=f"{endpoint()}: engine {v['version']} (API {v['api_version']}), "
                        f"{v['storage_driver']}, cgroup v{v['cgroup_version']}, {v['cpus']} CPUs")


def check_mirror(suite: str = "bookworm") -> Check:
    """Debian bases need the mirror's signed index: fetch one and verify it."""
    from lab.archive import PINNED_KEYS, fetch_release, mirror_url

    mirror = mirror_url(DEFAULT_MIRROR)
    try:
        release = fetch_release(mirror, suite)
    except LabError as exc:
        return Check(name="debian mirror", level="fail",
                     detail=f"{exc} Debian targets will be `unavailable`; set "
                            "LAB_DEBIAN_MIRROR to a mirror you can reach.")
    return Check(name="debian mirror", level="ok",
                 detail=f"{mirror}: {suite} Release of {release.date} verified, signed by "
                        f"{PINNED_KEYS[release.signed_by]}")


def check_disk() -> Check:
    free = shutil.disk_usage(cache_dir()).free / 1e9
    level = "ok" if free >= MIN_FREE_GB else "warn"
    return Check(name="disk", level=level,
                 detail=f"{free:.1f} GB free at {cache_dir()} (bases need ~0.5 GB each)")


def check_registry() -> Check:
    from lab.engine import Engine

    engine = Engine.connect()
    try:
        problem = engine.registry_problem("python:3.12-slim")
        if problem:
            return Check(name="registry", level="warn",
                         detail=f"not reachable: registry targets (python:3.X-slim) will be "
                                f"`unavailable`; Debian targets work. ({problem[:160]})")
        return Check(name="registry", level="ok", detail="reachable: registry targets can run")
    finally:
        engine.close()


def check_platforms() -> list[Check]:
    native = native_platforms()
    out = []
    for plat, arch in DEBIAN_ARCH.items():
        if plat in native:
            out.append(Check(name=f"platform {plat}", level="ok", detail="runs natively"))
        elif arch in QEMU_BINFMT:
            problem = emulation_problem(arch)
            out.append(Check(name=f"platform {plat}", level="warn" if problem else "ok",
                             detail=problem or f"emulated ({QEMU_BINFMT[arch]} via binfmt_misc); "
                                               "timings not comparable with native"))
    return out
