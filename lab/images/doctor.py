"""``lab doctor``: what this machine can and cannot do for the lab, and what to do about it."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass

from lab.errors import LabError
from lab.images.plan import QEMU_BINFMT, cache_dir, emulation_problem
from lab.matrix import (
    DEBIAN_ARCH,
    DEFAULT_ENGINE,
    DEFAULT_MIRROR,
    EngineSpec,
    Target,
    native_platforms,
)

MIN_FREE_GB = 5.0


@dataclass(frozen=True, kw_only=True)
class Check:
    name: str
    level: str  # ok | warn | fail
    detail: str


def run_checks(engines: list[EngineSpec] | None = None,
               targets: Sequence[Target] = ()) -> list[Check]:
    """Every check; ``targets`` (the matrix's) says which archive targets to look up."""
    engines = engines or [DEFAULT_ENGINE]
    checks = [check_engine(e) for e in engines]
    checks.append(check_mirror())
    checks.append(check_disk())
    if checks[0].level == "ok":
        checks.append(check_registry(engines[0]))
    checks.append(check_archives(targets))
    checks.extend(check_platforms())
    return checks


def check_archives(matrix_targets: Sequence[Target]) -> Check:
    """The archive targets (3.10, 3.12, free-threaded): where each archive would come from,
    and whether the first one to download can be reached (one HEAD request, nothing read)."""
    import requests

    from lab.images.pythons import ARCHIVES_HINT, resolve

    targets = [t for t in matrix_targets if t.archive is not None and not t.emulated]
    if not targets:
        return Check(name="python archives", level="ok", detail="no archive targets")
    here: list[tuple[str, str]] = []
    remote: list[tuple[str, str]] = []
    missing: list[str] = []
    for t in targets:
        try:
            src = resolve(t)
        except LabError as exc:
            missing.append(f"{t.id} ({str(exc)[:80]})")
            continue
        cached = (cache_dir() / "archive" / "sha256" / src.sha256[:2] / src.sha256).is_file()
        (here if cached or src.url.startswith("file://") else remote).append((t.id, src.url))
    detail = []
    if here:
        detail.append(f"here: {', '.join(tid for tid, _ in here)}")
    if missing:
        detail.append(f"none: {'; '.join(missing)}")
    level = "ok" if not missing else "warn"
    if remote:
        url = remote[0][1]
        try:
            resp = requests.head(url, timeout=10, allow_redirects=True)
            ok, why = resp.status_code < 400, f"HTTP {resp.status_code}"
        except requests.RequestException as exc:
            from lab.images.download import _reach_error

            ok, why = False, _reach_error(exc)
        ids = ", ".join(tid for tid, _ in remote)
        if ok:
            detail.append(f"to download: {ids} (reachable)")
        else:
            level = "warn"
            detail.append(f"cannot download {ids} ({url.split('/')[2]}: {why}): they are "
                          f"listed as not available here. {ARCHIVES_HINT}")
    return Check(name="python archives", level=level, detail="; ".join(detail))


def check_engine(spec: EngineSpec = DEFAULT_ENGINE) -> Check:
    """Reachable, and what it is: version, CPUs, architecture, storage driver."""
    from lab.engine import Engine

    name = "docker engine" if spec is DEFAULT_ENGINE else f"engine {spec.name}"
    try:
        engine = Engine.connect(spec)
    except LabError as exc:
        return Check(name=name, level="fail", detail=str(exc))
    try:
        v = engine.facts()
    except LabError as exc:
        return Check(name=name, level="fail", detail=f"{engine.where}: {exc}")
    finally:
        engine.close()
    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(v.arch, v.arch)
    declared = ", ".join(spec.platforms)
    level = "ok"
    note = ""
    if spec.platforms and f"linux/{arch}" not in spec.platforms:
        level = "warn"
        note = (f"; lab.toml says it runs {declared} natively, but the engine is {arch}: fix "
                f"[engine.{spec.name}].platforms")
    timing = "" if spec.timing else ", no timing cells"
    return Check(name=name, level=level,
                 detail=f"{engine.where}: engine {v.version} (API {v.api_version}), {v.os}/"
                        f"{arch}, {v.cpus} CPUs, {v.storage_driver}, cgroup v{v.cgroup_version}, "
                        f"kernel {v.kernel}{timing}{note}")


def check_mirror(suite: str = "bookworm") -> Check:
    """Debian bases need the mirror's signed index: fetch one and verify it."""
    from lab.images.debian import PINNED_KEYS, fetch_release, mirror_url

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


def check_registry(spec: EngineSpec = DEFAULT_ENGINE) -> Check:
    from lab.engine import Engine

    engine = Engine.connect(spec)
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
