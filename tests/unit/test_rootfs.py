"""The first stage as a tar stream (merged /usr, first path wins, Debian's ownership) and the
second-stage script's order, from real .deb files made by the tests."""

from __future__ import annotations

import io
import tarfile
import threading

import pytest

from lab.errors import BuildFailed
from lab.images.debian import parse_index, select_packages
from lab.images.rootfs import (
    first_stage,
    merged_path,
    predep_rounds,
    second_stage_script,
    stage_two_archive,
    symlink_survives_merge,
)
from tests.debian_fixtures import Stanza, make_deb, packages_text


def test_top_level_folders_move_under_usr():
    assert merged_path("bin/sh") == "usr/bin/sh"
    assert merged_path("lib64/ld-linux-x86-64.so.2") == "usr/lib64/ld-linux-x86-64.so.2"
    assert merged_path("sbin") == "usr/sbin"
    assert merged_path("usr/bin/python3") == "usr/bin/python3"
    assert merged_path("etc/passwd") == "etc/passwd"
    assert merged_path("binary/x") == "binary/x"


@pytest.mark.parametrize(("path", "target", "ok"), [
    ("lib/x86_64-linux-gnu/libc.so", "libc.so.6", True),
    ("lib/x86_64-linux-gnu/libfoo.so", "../libbar.so", True),
    ("lib64/ld.so", "/lib/x86_64-linux-gnu/ld.so", True),
    ("bin/foo", "../usr/bin/foo", False),  # crosses / : would point at /usr/usr/bin/foo
    ("lib/a/b", "../../x", False),
    ("lib/a/b", "./c/../d", False),  # non-minimal
])
def test_relative_symlinks_must_not_climb_out_of_their_top_folder(path, target, ok):
    assert symlink_survives_merge(path, target) is ok


def _pkg(name, files, version="1"):
    deb = make_deb(name, version, files)
    return Stanza(name, version=version, priority="required", deb=deb)


def _stream(tmp_path, stanzas, stop=None):
    idx = parse_index(packages_text(stanzas).encode(), suite="t", arch="amd64")
    paths = []
    for s in stanzas:
        p = tmp_path / f"{s.name}.deb"
        p.write_bytes(s.deb)
        paths.append((idx.packages[s.name], p))
    data = b"".join(first_stage(paths, stop=stop))
    return tarfile.open(fileobj=io.BytesIO(data))


def test_first_stage_merges_usr_keeps_the_first_copy_and_debians_owners(tmp_path):
    dash = _pkg("dash", {
        "./bin/": ("dir", b"", 0o755, 0, 0),
        "./bin/dash": ("file", b"#!dash", 0o755, 0, 0),
        "./bin/sh": ("sym", "dash", 0o777, 0, 0),
        "./usr/": ("dir", b"", 0o755, 0, 0),
        "./usr/bin/": ("dir", b"", 0o755, 0, 0),
        "./usr/bin/chage": ("file", b"chage", 0o2755, 0, 42),  # root:shadow, setgid
        "./usr/bin/perl": ("file", b"perl", 0o755, 0, 0),
        "./usr/bin/perl5": ("hard", "./usr/bin/perl", 0o755, 0, 0),
        "./lib64/": ("dir", b"", 0o755, 0, 0),
        "./lib64/ld.so": ("sym", "/lib/x86_64-linux-gnu/ld.so", 0o777, 0, 0),
    })
    other = _pkg("other", {
        "./bin/": ("dir", b"", 0o755, 0, 0),
        "./bin/dash": ("file", b"second copy", 0o755, 0, 0),
        "./etc/": ("dir", b"", 0o755, 0, 0),
        "./etc/other.conf": ("file", b"x=1\n", 0o644, 0, 0),
    })
    tar = _stream(tmp_path, [dash, other])
    members = {m.name: m for m in tar.getmembers()}
    names = [m.name for m in tar.getmembers()]
    assert len(names) == len(set(names)), "every path once"
    assert "bin/dash" not in members and members["usr/bin/dash"].isfile()
    assert tar.extractfile("usr/bin/dash").read() == b"#!dash"  # first occurrence wins
    assert members["usr/bin/sh"].issym() and members["usr/bin/sh"].linkname == "dash"
    assert members["bin"].issym() and members["bin"].linkname == "usr/bin"
    assert members["lib64"].linkname == "usr/lib64"
    assert "lib" not in members  # only the folders packages used become links
    assert members["usr/lib64/ld.so"].linkname == "/lib/x86_64-linux-gnu/ld.so"
    assert members["usr/bin/perl5"].islnk() and members["usr/bin/perl5"].linkname == "usr/bin/perl"
    chage = members["usr/bin/chage"]
    assert (chage.uid, chage.gid, chage.mode) == (0, 42, 0o2755)
    assert members["etc/other.conf"].uid == 0
    assert tar.extractfile("var/lib/dpkg/status").read() == b""
    assert members["var/lib/dpkg/info"].isdir() and members["var/lib/dpkg/available"].isfile()
    assert "UNCONFIGURED FSTAB" in tar.extractfile("etc/fstab").read().decode()


def test_a_link_that_cannot_survive_the_merge_fails_the_base(tmp_path):
    bad = _pkg("bad", {"./bin/": ("dir", b"", 0o755, 0, 0),
                       "./bin/x": ("sym", "../usr/bin/y", 0o777, 0, 0)})
    with pytest.raises(BuildFailed, match="bad: relative symlink /bin/x"):
        _stream(tmp_path, [bad])


def test_a_stop_ends_the_stream(tmp_path):
    stop = threading.Event()
    stop.set()
    with pytest.raises(BuildFailed, match="stopped"):
        _stream(tmp_path, [_pkg("a", {})], stop=stop)


UNIVERSE = [
    Stanza("base-files", priority="required"), Stanza("base-passwd", priority="required"),
    Stanza("dpkg", priority="required"), Stanza("libc6", priority="required"),
    Stanza("perl-base", priority="required"), Stanza("mawk", priority="required"),
    Stanza("bash", priority="required"),
    Stanza("python3.14", depends="libpython3.14-stdlib", pre_depends="libexpat1"),
    Stanza("libpython3.14-stdlib", depends="libffi8"), Stanza("libffi8"),
    Stanza("libexpat1", depends="libc6"),
]


def test_second_stage_follows_debootstraps_order():
    idx = parse_index(packages_text(UNIVERSE).encode(), suite="t", arch="amd64")
    sel = select_packages(idx, ["python3.14"])
    script = second_stage_script(sel, uid=10001)
    order = [script.index(f"install {n}'") if f"install {n}'" in script else
             script.index(f"core package {n}'") for n in
             ("base-passwd", "base-files", "dpkg", "libc6", "perl-base", "mawk")]
    assert order == sorted(order)
    assert script.index("unpacking 7 required") > order[-1]
    assert script.index("configuring required") < script.index("pre-dependencies libexpat1")
    assert script.index("pre-dependencies libexpat1") < script.index("unpacking 3 base")
    assert "--force-unsafe-io" in script and "dpkg --audit" in script
    assert "lab:x:10001:10001:" in script
    rounds, rest = predep_rounds(sel)
    assert rounds == [["libexpat1"]] and sorted(rest) == ["libffi8", "libpython3.14-stdlib",
                                                           "python3.14"]


def test_stage_two_archive_carries_the_script_and_every_deb(tmp_path):
    idx = parse_index(packages_text(UNIVERSE).encode(), suite="t", arch="amd64")
    sel = select_packages(idx, ["python3.14"])
    debs = {}
    for p in sel.all:
        debs[p.name] = tmp_path / f"{p.name}.deb"
        debs[p.name].write_bytes(make_deb(p.name, p.version, {}))
    data = b"".join(stage_two_archive(sel, debs, "#!/bin/sh\n"))
    names = tarfile.open(fileobj=io.BytesIO(data)).getnames()
    assert "lab-bootstrap/second-stage" in names
    assert {f"lab-bootstrap/debs/{p.name}.deb" for p in sel.all} <= set(names)


def test_package_names_are_checked_before_they_reach_a_shell():
    evil = [*UNIVERSE, Stanza("x;rm", priority="required")]
    idx = parse_index(packages_text(evil).encode(), suite="t", arch="amd64")
    with pytest.raises(BuildFailed, match="not a Debian package name"):
        second_stage_script(select_packages(idx, ["python3.14"]), uid=1)


def test_the_second_stage_runs_chrooted_on_the_volume_and_leaves_no_devices():
    from lab.images.rootfs import DEVICES, TARGET, enter_script

    script = enter_script()
    assert f'T={TARGET}' in script and 'chroot "$T" /bin/sh /lab-bootstrap/second-stage' in script
    assert "--exclude=./target" in script and "--one-file-system" in script
    for name, _, _ in DEVICES:
        assert f'mknod -m 666 "$T/dev/{name}"' in script
    assert script.index("chroot") < script.index('rm -f "$T/dev/null"')
    assert script.rstrip().endswith('rm -rf "$T/lab-bootstrap"')
