"""The Debian archive as the lab reads it: a signed Release, its Packages index, what a minimal
base needs, and a content-addressed cache of verified ``.deb`` files.

No Docker and no root here. Trust flows one way and fails closed: an ``InRelease`` whose
OpenPGP signature is not by a pinned Debian key (``PINNED_KEYS``, certificates in ``keys/``)
is rejected; the ``Packages`` index must match the Release's SHA256, and every ``.deb`` its
``Packages`` SHA256, before anything is used. Parsing is python-debian's (deb822); signatures
are pysequoia's (Sequoia-PGP), so no ``gpg`` binary is needed on any host.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import functools
import io
import lzma
import os
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import pysequoia
from debian import deb822, debian_support

from lab.errors import BuildFailed
from lab.images.download import DebCache, Stopped, fetch_bytes

# Primary fingerprints of the Debian archive keys the lab trusts. A signature counts only when
# it verifies against one of these; the certificate files in ``keys/`` carry the key material,
# and a file whose primary fingerprint is not listed here is ignored.
PINNED_KEYS = {
    "1F89983E0081FDE018F3CC9673A4F27B8DD47936": "Debian archive automatic key (11/bullseye)",
    "A4285295FC7B1A81600062A9605C66F00D6C9793": "Debian stable release key (11/bullseye)",
    "B8B80B5B623EAB6AD8775C45B7C5D7D6350947F8": "Debian archive automatic key (12/bookworm)",
    "4D64FEC119C2029067D6E791F8D2585B8783D481": "Debian stable release key (12/bookworm)",
    "04B54C3CDCA79751B16BC6B5225629DF75B188BD": "Debian archive automatic key (13/trixie)",
    "41587F7DB8C774BCCF131416762F67A0B2C39DE4": "Debian stable release key (13/trixie)",
}

# debootstrap excludes this dependency on every suite from bookworm on: the lab always builds a
# merged-/usr system, so the live-migration package (and its perl) is never wanted; the
# alternative next to it, usr-is-merged, is taken instead (debootstrap's work_out_debs).
EXCLUDED_DEPENDENCIES = frozenset({"usrmerge"})

MAX_INDEX_BYTES = 64 << 20  # Packages.xz is ~11 MB today; Release/InRelease ~0.2 MB
MAX_RELEASE_BYTES = 4 << 20


@dataclass(frozen=True, kw_only=True)
class Release:
    """A verified ``InRelease``: what it says and who signed it."""

    mirror: str
    suite: str
    codename: str
    date: str  # RFC 2822, as the archive writes it
    valid_until: str | None
    stale: bool  # Valid-Until has passed (a snapshot mirror); recorded, not fatal
    signed_by: str  # primary fingerprint of the pinned key whose signature verified
    signing_key: str  # the (sub)key that made that signature
    sha256: dict[str, tuple[str, int]]  # path under dists/<suite>/ -> (sha256, size)


@dataclass(frozen=True, kw_only=True)
class Package:
    name: str
    version: str
    architecture: str
    filename: str  # path under the mirror root (pool/...)
    sha256: str
    size: int
    priority: str = ""
    depends: str = ""
    pre_depends: str = ""
    provides: str = ""

    @property
    def deb_name(self) -> str:
        return f"{self.name}_{self.version.replace(':', '%3a')}_{self.architecture}.deb"


@dataclass(frozen=True, kw_only=True)
class Selection:
    """What a base installs, split the way debootstrap's second stage needs it."""

    required: tuple[Package, ...]  # Priority: required, closed over (Pre-)Depends
    extra: tuple[Package, ...]  # the base's packages and their closure, minus the above
    wanted: dict[str, Package] = field(default_factory=dict)  # the base's packages by name

    @property
    def all(self) -> tuple[Package, ...]:
        return self.required + self.extra


def mirror_url(configured: str) -> str:
    """The mirror to use: ``LAB_DEBIAN_MIRROR`` wins over the matrix's value."""
    return (os.environ.get("LAB_DEBIAN_MIRROR") or configured).rstrip("/")




# -- signatures ------------------------------------------------------------------------------
@dataclass(frozen=True)
class TrustedKey:
    cert: Any  # pysequoia.Cert
    fingerprint: str  # primary, upper case
    ids: frozenset[str]  # the primary and every subkey fingerprint, upper case
    name: str

    @classmethod
    def of(cls, cert: Any, name: str) -> TrustedKey:
        fpr = cert.fingerprint.upper()
        pile = pysequoia.packet.PacketPile.from_bytes(bytes(cert))
        ids = frozenset(p.fingerprint.upper() for p in pile if p.fingerprint)
        return cls(cert=cert, fingerprint=fpr, ids=ids | {fpr}, name=name)


_keys_cache: list[TrustedKey] | None = None
_keys_lock = threading.Lock()


def pinned_keys() -> list[TrustedKey]:
    """The pinned certificates shipped in ``lab/keys``, loaded once."""
    global _keys_cache
    with _keys_lock:
        if _keys_cache is None:
            keys = []
            folder = resources.files("lab.images").joinpath("keys")
            for entry in sorted(folder.iterdir(), key=lambda e: e.name):
                if not entry.name.endswith(".asc"):
                    continue
                for cert in pysequoia.Cert.split_bytes(entry.read_bytes()):
                    name = PINNED_KEYS.get(cert.fingerprint.upper())
                    if name is not None:
                        keys.append(TrustedKey.of(cert, name))
            _keys_cache = keys
        return _keys_cache


def verify_inrelease(data: bytes, *, where: str,
                     keys: list[TrustedKey] | None = None) -> tuple[bytes, str, str]:
    """(signed text, primary fingerprint, signing key) of a clearsigned InRelease.

    Any good signature by a pinned key is enough (Debian signs with several). Raises
    BuildFailed naming the keys when none verifies.
    """
    keys = pinned_keys() if keys is None else keys
    asked: list[str] = []

    def store(ids: list[str]) -> list[Any]:
        asked.extend(i.upper() for i in ids)
        return [k.cert for k in keys]

    try:
        result = pysequoia.verify(bytes=data, store=store)
    except Exception as exc:  # pysequoia raises RuntimeError (and others) with a backtrace
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        ours = [k for k in keys if k.ids & set(asked)]
        if ours:
            names = ", ".join(f"{k.fingerprint} ({k.name})" for k in ours)
            raise BuildFailed(
                f"{where}: the signature by pinned key {names} does not verify ({first}): the "
                "file was changed after signing. Nothing was imported; check the mirror."
            ) from exc
        named = ", ".join(asked) or "no key at all"
        raise BuildFailed(
            f"{where}: signed by key {named}, which is not pinned (the lab trusts only "
            f"{', '.join(k.fingerprint for k in keys)}: Debian's archive keys in lab/images/keys). "
            "Nothing was imported; use a Debian mirror."
        ) from exc
    sig = result.valid_sigs[0]
    primary, signing = sig.certificate.upper(), sig.signing_key.upper()
    if primary not in {k.fingerprint for k in keys}:  # belt and braces
        raise BuildFailed(f"{where}: verified by {primary}, which is not pinned.")
    return bytes(result.bytes or b""), primary, signing


def _parse_date(text: str | None) -> dt.datetime | None:
    if not text:
        return None
    try:
        return email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None


def fetch_release(mirror: str, suite: str, *, stop: threading.Event | None = None,
                  keys: list[TrustedKey] | None = None,
                  now: dt.datetime | None = None) -> Release:
    url = f"{mirror}/dists/{suite}/InRelease"
    data = fetch_bytes(url, limit=MAX_RELEASE_BYTES, stop=stop)
    text, primary, signing = verify_inrelease(data, where=url, keys=keys)
    rel = deb822.Release(text)
    sha256: dict[str, tuple[str, int]] = {}
    for entry in rel.get("SHA256", []):
        sha256[entry["name"]] = (entry["sha256"].lower(), int(entry["size"]))
    if not sha256:
        raise BuildFailed(f"{url} lists no SHA256 sums: cannot check its indexes.")
    valid_until = rel.get("Valid-Until")
    until = _parse_date(valid_until)
    now = now or dt.datetime.now(dt.UTC)
    return Release(
        mirror=mirror, suite=suite, codename=str(rel.get("Codename", suite)),
        date=str(rel.get("Date", "")), valid_until=valid_until,
        stale=until is not None and until < now,
        signed_by=primary, signing_key=signing, sha256=sha256,
    )


# -- the Packages index ----------------------------------------------------------------------
@functools.lru_cache(maxsize=65536)
def relations(text: str) -> tuple[tuple[dict[str, Any], ...], ...]:
    """python-debian's parse of a relation field, memoized (the same strings recur across
    thousands of packages). Empty text is no relation: python-debian would return one
    alternative named ``''``, which every package would then appear to provide."""
    if not text.strip():
        return ()
    return tuple(tuple(dict(a) for a in alts)
                 for alts in deb822.PkgRelation.parse_relations(text))


# Lower is preferred when several packages provide a virtual name (apt prefers the more
# important one, so debconf-2.0 is debconf, never cdebconf).
_PRIORITY_RANK = {"required": 0, "important": 1, "standard": 2, "optional": 3, "extra": 4}

@dataclass(frozen=True, kw_only=True)
class Index:
    suite: str
    arch: str
    packages: dict[str, Package]
    providers: dict[str, tuple[Package, ...]]  # virtual name -> packages that provide it

    def providing(self, name: str) -> tuple[Package, ...]:
        return self.providers.get(name, ())


def parse_index(raw: bytes, *, suite: str, arch: str) -> Index:
    """Packages of ``arch`` and ``all`` from an uncompressed Packages file."""
    packages: dict[str, Package] = {}
    fields = ["Package", "Version", "Architecture", "Filename", "SHA256", "Size", "Priority",
              "Depends", "Pre-Depends", "Provides"]
    for para in deb822.Packages.iter_paragraphs(io.BytesIO(raw), use_apt_pkg=False,
                                                fields=fields):
        a = para.get("Architecture", "")
        if a not in (arch, "all") or "Package" not in para:
            continue
        pkg = Package(
            name=para["Package"], version=para.get("Version", ""), architecture=a,
            filename=para.get("Filename", ""), sha256=para.get("SHA256", "").lower(),
            size=int(para.get("Size", "0") or 0), priority=para.get("Priority", ""),
            depends=para.get("Depends", ""), pre_depends=para.get("Pre-Depends", ""),
            provides=para.get("Provides", ""),
        )
        old = packages.get(pkg.name)
        if old is None or debian_support.version_compare(pkg.version, old.version) > 0:
            packages[pkg.name] = pkg
    providers: dict[str, list[Package]] = {}
    for pkg in packages.values():
        for alts in relations(pkg.provides):
            for alt in alts:
                providers.setdefault(alt["name"], []).append(pkg)
    return Index(suite=suite, arch=arch, packages=packages,
                 providers={k: tuple(sorted(v, key=_preference)) for k, v in providers.items()})


def _preference(pkg: Package) -> tuple[int, str]:
    return (_PRIORITY_RANK.get(pkg.priority, 5), pkg.name)


def fetch_index(release: Release, arch: str, cache: DebCache, *,
                stop: threading.Event | None = None) -> Path:
    """``main/binary-ARCH/Packages.xz`` in the cache, fetched if missing, checked against the
    Release's SHA256."""
    rel_path = f"main/binary-{arch}/Packages.xz"
    if rel_path not in release.sha256:
        raise BuildFailed(
            f"{release.mirror}/dists/{release.suite}/Release has no {rel_path}: {release.suite} "
            f"is not published for {arch} there. Pick another suite or architecture.")
    sha, size = release.sha256[rel_path]
    url = f"{release.mirror}/dists/{release.suite}/{rel_path}"
    return cache.get(url, sha256=sha, size=size, label=f"{release.suite} {rel_path}",
                     stop=stop, limit=MAX_INDEX_BYTES)


def read_index(path: Path, *, suite: str, arch: str) -> Index:
    with lzma.open(path) as fh:
        raw = fh.read()
    return parse_index(raw, suite=suite, arch=arch)


def resolve(path: Path, *, suite: str, arch: str, wanted: tuple[str, ...]) -> Selection:
    """Parse a verified index and select a base's packages: the CPU-heavy part (~4 s of
    python-debian parsing for a suite), made to run in a worker process (``Resolver``)."""
    return select_packages(read_index(path, suite=suite, arch=arch), wanted)


class Resolver:
    """Resolves a base in a separate interpreter (``python -m lab.images.debian resolve``), so that
    several suites parse at once instead of taking turns on one interpreter lock. A plain
    subprocess rather than multiprocessing: no fork of this multi-threaded process, and no
    re-import of whatever script imported the lab (spawn would run an unguarded one again)."""

    def resolve(self, path: Path, *, suite: str, arch: str, wanted: tuple[str, ...],
                stop: threading.Event | None = None) -> Selection:
        import json
        import subprocess
        import sys

        proc = subprocess.Popen(
            [sys.executable, "-m", "lab.images.debian", "resolve", str(path), suite, arch, *wanted],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
        try:
            while True:
                try:
                    out, err = proc.communicate(timeout=0.2)
                    break
                except subprocess.TimeoutExpired:
                    if stop is not None and stop.is_set():
                        raise Stopped("stopped while resolving packages") from None
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        if proc.returncode == 3:
            raise BuildFailed(err.decode(errors="replace").strip())
        if proc.returncode != 0:
            tail = err.decode(errors="replace").strip().splitlines()[-5:]
            raise BuildFailed(f"resolving {suite}/{arch} failed (exit {proc.returncode}): "
                              + " / ".join(tail))
        return selection_from_json(json.loads(out))


def selection_to_json(sel: Selection) -> dict[str, Any]:
    import dataclasses

    return {"required": [dataclasses.asdict(p) for p in sel.required],
            "extra": [dataclasses.asdict(p) for p in sel.extra], "wanted": list(sel.wanted)}


def selection_from_json(data: dict[str, Any]) -> Selection:
    required = tuple(Package(**p) for p in data["required"])
    extra = tuple(Package(**p) for p in data["extra"])
    by_name = {p.name: p for p in required + extra}
    return Selection(required=required, extra=extra,
                     wanted={n: by_name[n] for n in data["wanted"]})


def _main(argv: list[str]) -> int:
    """``python -m lab.images.debian resolve PACKAGES.xz SUITE ARCH PKG...``: the selection as JSON
    on stdout; a BuildFailed's message on stderr with exit code 3."""
    import json
    import sys

    if len(argv) < 4 or argv[0] != "resolve":
        print("usage: python -m lab.images.debian resolve PACKAGES.xz SUITE ARCH PKG...",
              file=sys.stderr)
        return 2
    _, path, suite, arch, *wanted = argv
    try:
        sel = resolve(Path(path), suite=suite, arch=arch, wanted=tuple(wanted))
    except BuildFailed as exc:
        print(str(exc), file=sys.stderr)
        return 3
    json.dump(selection_to_json(sel), sys.stdout)
    return 0


# -- resolution ------------------------------------------------------------------------------
_OPS: dict[str, Callable[[int], bool]] = {
    "<<": lambda c: c < 0, "<=": lambda c: c <= 0, "=": lambda c: c == 0,
    ">=": lambda c: c >= 0, ">>": lambda c: c > 0,
}


def _version_ok(have: str | None, constraint: tuple[str, str] | None) -> bool:
    if constraint is None:
        return True
    if have is None:
        return False
    op, want = constraint
    return _OPS[op](debian_support.version_compare(have, want))


def _satisfier(index: Index, alt: dict[str, Any], chosen: dict[str, Package]) -> Package | None:
    name, constraint = alt["name"], alt.get("version")
    if name in EXCLUDED_DEPENDENCIES:
        return None
    real = index.packages.get(name)
    if real is not None and _version_ok(real.version, constraint):
        return real
    candidates = []
    for pkg in index.providing(name):
        for palts in relations(pkg.provides):
            for p in palts:
                if p["name"] != name:
                    continue
                pv = p.get("version")
                if constraint is None or (pv is not None and pv[0] == "="
                                          and _version_ok(pv[1], constraint)):
                    candidates.append(pkg)
    if not candidates:
        return None
    # A provider already selected wins, so one virtual never brings two implementations.
    return next((c for c in candidates if c.name in chosen), candidates[0])


def close_over(index: Index, roots: Iterable[Package],
               chosen: dict[str, Package] | None = None) -> dict[str, Package]:
    """``roots`` plus everything they Depend or Pre-Depend on, transitively: the first
    satisfiable alternative of each relation, virtual names through Provides."""
    chosen = dict(chosen or {})
    added: dict[str, Package] = {}
    queue: list[tuple[Package, tuple[str, ...]]] = [(p, (p.name,)) for p in roots]
    while queue:
        pkg, chain = queue.pop(0)
        if pkg.name in chosen:
            continue
        chosen[pkg.name] = added[pkg.name] = pkg
        for text in (pkg.pre_depends, pkg.depends):
            for alts in relations(text):
                if any(a["name"] in chosen and _version_ok(chosen[a["name"]].version,
                                                           a.get("version"))
                       for a in alts):
                    continue
                dep = next((s for a in alts if (s := _satisfier(index, a, chosen))), None)
                if dep is None:
                    wanted = " | ".join(_relation_text(a) for a in alts)
                    raise BuildFailed(
                        f"{index.suite}/{index.arch}: nothing satisfies {wanted!r}, needed by "
                        f"{' -> '.join(chain)}. The suite's index is inconsistent or the "
                        "package is not built for this architecture.")
                if dep.name not in chosen:
                    queue.append((dep, (*chain, dep.name)))
    return added


def _relation_text(alt: dict[str, Any]) -> str:
    v = alt.get("version")
    return f"{alt['name']} ({v[0]} {v[1]})" if v else str(alt["name"])


def select_packages(index: Index, wanted: Iterable[str]) -> Selection:
    """debootstrap's minbase, done with python-debian: every ``Priority: required`` package
    plus ``wanted``, closed over Depends and Pre-Depends."""
    names = list(dict.fromkeys(wanted))
    missing = [n for n in names if n not in index.packages]
    if missing:
        raise BuildFailed(
            f"package {', '.join(repr(m) for m in missing)} does not exist in "
            f"{index.suite}/main for {index.arch}. Fix the base's `packages` "
            f"(`apt-cache policy NAME` on a {index.suite} machine tells what is there).")
    required_roots = sorted((p for p in index.packages.values() if p.priority == "required"),
                            key=lambda p: p.name)
    required = close_over(index, required_roots)
    extra = close_over(index, [index.packages[n] for n in names], chosen=required)
    return Selection(required=tuple(sorted(required.values(), key=lambda p: p.name)),
                     extra=tuple(sorted(extra.values(), key=lambda p: p.name)),
                     wanted={n: index.packages[n] for n in names})


def fetch_debs(cache: DebCache, mirror: str, packages: Iterable[Package], *,
               stop: threading.Event | None = None) -> dict[str, Path]:
    """Package name -> verified .deb in the cache, downloading what is missing in parallel."""
    pkgs = list(packages)
    items = [(f"{mirror}/{p.filename}", p.sha256, p.size, f"{p.filename}") for p in pkgs]
    paths = cache.get_many(items, stop=stop)
    return {p.name: path for p, path in zip(pkgs, paths, strict=True)}


if __name__ == "__main__":
    import sys

    raise SystemExit(_main(sys.argv[1:]))
