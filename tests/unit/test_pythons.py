"""python-build-standalone archives: where one is found (its own url, local folders,
pbs-installer's list), that a hash vouches for it, and that only a plain python/ tree becomes
a layer. No network: pbs-installer's list is read, never downloaded from."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import tarfile
from pathlib import Path

import pytest

from lab.errors import BuildFailed, ConfigError, ImageUnavailable
from lab.images.download import DebCache
from lab.images.pythons import ArchiveSource, python_layer, resolve
from lab.matrix import ArchiveSpec, load_matrix, with_local_archives

NAME = "cpython-3.13.9+20261001-x86_64-unknown-linux-gnu-install_only_stripped.tar.gz"
FT_NAME = "cpython-3.13.9+20261001-x86_64-unknown-linux-gnu-freethreaded-install_only.tar.gz"


def target(tid: str = "cp313t", **changes):
    return dataclasses.replace(load_matrix().get(tid), **changes)


def tree(*members: tuple[str, str, bytes | str]) -> bytes:
    """A .tar.gz of (kind, name, content or link target) members."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for kind, name, content in members:
            info = tarfile.TarInfo(name)
            if kind == "dir":
                info.type, info.mode = tarfile.DIRTYPE, 0o775
                tar.addfile(info)
            elif kind == "file":
                data = content if isinstance(content, bytes) else content.encode()
                info.size, info.mode, info.uid, info.uname = len(data), 0o4777, 1000, "builder"
                tar.addfile(info, io.BytesIO(data))
            elif kind == "sym":
                info.type, info.linkname = tarfile.SYMTYPE, str(content)
                tar.addfile(info)
            elif kind == "hard":
                info.type, info.linkname = tarfile.LNKTYPE, str(content)
                tar.addfile(info)
            elif kind == "fifo":
                info.type = tarfile.FIFOTYPE
                tar.addfile(info)
    return buf.getvalue()


GOOD = [("dir", "python", ""), ("dir", "python/bin", ""),
        ("file", "python/bin/python3.13", b"\x7fELF"), ("sym", "python/bin/python3", "python3.13"),
        ("file", "python/lib/python3.13/os.py", "import abc\n"),
        ("sym", "python/lib/libpython.so", "../lib/python3.13/os.py"),
        ("hard", "python/bin/python3.13-again", "python/bin/python3.13")]


def folder_with(tmp_path: Path, name: str, data: bytes, *, sums: bool = True) -> Path:
    (tmp_path / name).write_bytes(data)
    if sums:
        (tmp_path / "SHA256SUMS").write_text(f"{hashlib.sha256(data).hexdigest()}  {name}\n")
    return tmp_path


# -- where an archive comes from -------------------------------------------------------------
def test_the_list_names_a_checksummed_install_only_archive_per_version_and_flavour():
    for tid, ft in (("cp310", False), ("cp312", False), ("cp313t", True), ("cp314t", True),
                    ("cp315t", True)):
        src = resolve(load_matrix().get(tid))
        assert src.url.startswith("https://") and len(src.sha256) == 64, src
        assert src.filename.endswith(".tar.gz") and "install_only" in src.filename
        assert ("-freethreaded-" in src.filename) == ft
        assert src.version and src.version.startswith(load_matrix().get(tid).version + ".")
        assert src.vouched_by.startswith("pbs-installer ")


def test_no_build_for_a_platform_or_version_is_unavailable_in_one_line():
    with pytest.raises(ImageUnavailable, match=r"no linux/386 build of CPython 3.13t"):
        resolve(target(platform="linux/386"))
    with pytest.raises(ImageUnavailable, match=r"no linux x86_64 build of CPython 3.99t.*"
                                               r"archive = \{ url, sha256 \}"):
        resolve(target(version="3.99"))


def test_a_local_folder_wins_and_its_sha256sums_vouch_for_the_newest_match(tmp_path):
    older = FT_NAME.replace("3.13.9+", "3.13.2+")
    folder_with(tmp_path, FT_NAME, b"new")
    (tmp_path / older).write_bytes(b"old")
    (tmp_path / NAME).write_bytes(b"not free-threaded")
    (tmp_path / "SHA256SUMS").write_text(
        f"{hashlib.sha256(b'new').hexdigest()} *{FT_NAME}\n"
        f"{hashlib.sha256(b'old').hexdigest()}  {older}\n")
    src = resolve(target(archive=ArchiveSpec(local=(str(tmp_path),))))
    assert src.filename == FT_NAME and src.version == "3.13.9"
    assert src.sha256 == hashlib.sha256(b"new").hexdigest()
    assert src.url == (tmp_path / FT_NAME).as_uri()
    assert src.vouched_by == str(tmp_path / "SHA256SUMS")


def test_a_sidecar_sha256_file_vouches_too(tmp_path):
    (tmp_path / NAME).write_bytes(b"x")
    (tmp_path / f"{NAME}.sha256").write_text(hashlib.sha256(b"x").hexdigest() + "\n")
    src = resolve(target("cp313", archive=ArchiveSpec(local=(str(tmp_path / NAME),)),
                         freethreaded=False))
    assert src.vouched_by.endswith(".sha256") and src.filename == NAME


def test_a_local_archive_without_any_checksum_is_refused(tmp_path):
    (tmp_path / FT_NAME).write_bytes(b"x")
    with pytest.raises(ImageUnavailable, match=r"has no checksum: put its SHA256 in .*"
                                               r"SHA256SUMS"):
        resolve(target(archive=ArchiveSpec(local=(str(tmp_path),))))


def test_a_folder_without_a_match_falls_back_to_the_list(tmp_path):
    folder_with(tmp_path, NAME, b"3.13 with the GIL")
    src = resolve(target(archive=ArchiveSpec(local=(str(tmp_path), "/nonexistent"))))
    assert src.url.startswith("https://") and "freethreaded" in src.filename
    # said if the download then fails: a mistyped LAB_PYTHON_ARCHIVES shows
    assert src.not_local == (f"none named cpython-3.13.*-x86_64-unknown-linux-gnu-freethreaded-"
                             f"install_only*.tar.gz in {tmp_path}; /nonexistent does not exist "
                             "(LAB_PYTHON_ARCHIVES or python_archives)")


def test_an_explicit_url_and_sha256_are_used_as_given():
    sha = "ab" * 32
    src = resolve(target(archive=ArchiveSpec(url="http://127.0.0.1:9/a%2Bb.tar.gz",
                                             sha256=sha)))
    assert (src.url, src.sha256, src.filename) == ("http://127.0.0.1:9/a%2Bb.tar.gz", sha,
                                                   "a+b.tar.gz")
    assert src.vouched_by == "target cp313t's archive.sha256"


def test_labels_carry_the_archive_into_the_image_and_back():
    src = ArchiveSource(url="file:///a.tar.gz", sha256="0" * 64, filename="a.tar.gz",
                        vouched_by="x", version="3.13.1")
    assert ArchiveSource.from_labels(src.labels()) == src
    assert ArchiveSource.from_labels({}) is None


# -- configuration ---------------------------------------------------------------------------
def test_python_archives_and_the_environment_reach_every_looked_up_archive_target(tmp_path):
    (tmp_path / "lab.toml").write_text('python_archives = ["pbs", "~/more"]\n')
    m = with_local_archives(load_matrix(search_dir=tmp_path), f"/a:{tmp_path}/b")
    local = m.get("cp314t").archive.local
    assert local == (str((tmp_path / "pbs").resolve()), str(Path.home() / "more"), "/a",
                     str(tmp_path / "b"))
    assert m.get("cp310").archive.local == local and m.get("cp311").archive is None


@pytest.mark.parametrize(("line", "says"), [
    ('archive = "pbs"', r'archive must be "python-build-standalone" .* or a table'),
    ('archive = { url = "ftp://x" , sha256 = "' + "0" * 64 + '" }',
     r"archive.url must be an http\(s\):// or file:// URL"),
    ('archive = { url = "https://x/a.tar.gz" }', r"archive needs `sha256`"),
    ('archive = { url = "https://x/a.tar.gz", sha256 = "0", md5 = "1" }',
     r"unknown key 'md5'"),
])
def test_a_bad_archive_key_is_one_line_naming_the_target(tmp_path, line, says):
    (tmp_path / "lab.toml").write_text(
        f'[[target]]\nid = "mine"\nimplementation = "cpython"\nversion = "3.13"\n'
        f'python = "/opt/python/bin/python3"\nbase = "pbs"\n{line}\n')
    with pytest.raises(ConfigError, match=says) as info:
        load_matrix(search_dir=tmp_path)
    assert "'mine'" in str(info.value) and "\n" not in str(info.value)


def test_an_archive_target_needs_a_base_and_its_python_under_opt_python(tmp_path):
    head = '[[target]]\nid = "mine"\nimplementation = "cpython"\nversion = "3.13"\n'
    (tmp_path / "lab.toml").write_text(head + 'python = "/usr/bin/python3"\nbase = "pbs"\n'
                                       'archive = "python-build-standalone"\n')
    with pytest.raises(ConfigError, match=r"python must be under /opt/python/"):
        load_matrix(search_dir=tmp_path)
    (tmp_path / "lab.toml").write_text(head + 'python = "/opt/python/bin/python3"\n'
                                       'image = "x"\narchive = "python-build-standalone"\n')
    with pytest.raises(ConfigError, match=r"unpacked on a Debian base: add `base`"):
        load_matrix(search_dir=tmp_path)


# -- the layer -------------------------------------------------------------------------------
def layer_of(tmp_path: Path, *members, python: str = "/opt/python/bin/python3") -> tarfile.TarFile:
    path = tmp_path / "a.tar.gz"
    path.write_bytes(tree(*members))
    with python_layer(path, python=python, label="a.tar.gz") as fh:
        return tarfile.open(fileobj=io.BytesIO(fh.read()))


def test_the_tree_lands_at_opt_python_owned_by_root_without_set_id_bits(tmp_path):
    tar = layer_of(tmp_path, *GOOD)
    members = {m.name: m for m in tar.getmembers()}
    assert {"opt", "opt/python", "opt/python/bin/python3.13", "opt/python/bin/python3",
            "opt/python/lib/python3.13/os.py"} <= set(members)
    exe = members["opt/python/bin/python3.13"]
    assert (exe.uid, exe.gid, exe.uname, exe.mode) == (0, 0, "root", 0o755)
    assert tar.extractfile(exe).read() == b"\x7fELF"
    assert members["opt/python/bin/python3"].linkname == "python3.13"
    assert members["opt/python/bin/python3.13-again"].linkname == "opt/python/bin/python3.13"


@pytest.mark.parametrize(("bad", "says"), [
    (("file", "etc/passwd", "x"), r"'etc/passwd' is not under python/"),
    (("file", "python/../../etc/passwd", "x"), r"is not under python/"),
    (("file", "/python/bin/x", "x"), r"is not under python/"),
    (("sym", "python/lib/evil", "/etc/shadow"), r"links to the absolute path '/etc/shadow'"),
    (("sym", "python/bin/evil", "../../etc"), r"links outside python/"),
    (("hard", "python/bin/evil", "etc/passwd"), r"not under python/"),
    (("fifo", "python/bin/pipe", ""), r"is a device, fifo or other special file"),
])
def test_anything_but_a_plain_tree_inside_python_is_refused(tmp_path, bad, says):
    with pytest.raises(BuildFailed, match=says):
        layer_of(tmp_path, *GOOD, bad)


def test_an_archive_without_the_target_s_python_is_refused(tmp_path):
    with pytest.raises(BuildFailed, match=r"has no bin/python3.13t under python/"):
        layer_of(tmp_path, *GOOD, python="/opt/python/bin/python3.13t")


def test_a_file_that_is_not_a_gzip_tar_is_refused(tmp_path):
    (tmp_path / "a.tar.gz").write_bytes(b"<html>rate limited</html>")
    with pytest.raises(BuildFailed, match=r"a.tar.gz is not a readable .tar.gz"):
        python_layer(tmp_path / "a.tar.gz", python="/opt/python/bin/python3", label="a.tar.gz")


# -- the cache checks the hash before anything is unpacked -----------------------------------
def test_a_wrong_hash_names_both_and_who_vouched_and_keeps_nothing(tmp_path):
    (tmp_path / "a.tar.gz").write_bytes(b"tampered")
    cache = DebCache(tmp_path / "cache")
    try:
        wrong = hashlib.sha256(b"original").hexdigest()
        with pytest.raises(BuildFailed) as info:
            cache.get((tmp_path / "a.tar.gz").as_uri(), sha256=wrong, size=None,
                      label="a.tar.gz", vouched_by="pbs-installer 1's list")
        assert hashlib.sha256(b"tampered").hexdigest() in str(info.value)
        assert f"does not match pbs-installer 1's list's {wrong}" in str(info.value)
        assert not list((tmp_path / "cache").rglob("*.tar.gz")) and not any(
            (tmp_path / "cache" / "sha256").iterdir())
        # the right hash: cached by it, size unknown in advance
        good = hashlib.sha256(b"tampered").hexdigest()
        path = cache.get((tmp_path / "a.tar.gz").as_uri(), sha256=good, size=None,
                         label="a.tar.gz")
        assert path.read_bytes() == b"tampered" and path.name == good
        with pytest.raises(BuildFailed, match=r"larger than 4 bytes"):
            cache.get((tmp_path / "a.tar.gz").as_uri(), sha256="1" * 64, size=None,
                      label="a.tar.gz", limit=4)
    finally:
        cache.close()
