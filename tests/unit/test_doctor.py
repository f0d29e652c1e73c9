from __future__ import annotations

from lab.images import doctor


def test_platforms_say_native_or_what_to_install(monkeypatch):
    monkeypatch.setattr("lab.images.doctor.native_platforms", lambda: {"linux/amd64", "linux/386"})
    fix = "apt-get install qemu-user-static"
    monkeypatch.setattr("lab.images.doctor.emulation_problem",
                        lambda arch: None if arch == "arm64" else fix)
    checks = {c.name: c for c in doctor.check_platforms()}
    assert checks["platform linux/amd64"].detail == "runs natively"
    assert checks["platform linux/386"].level == "ok"
    assert checks["platform linux/arm64"].level == "ok"
    assert "emulated" in checks["platform linux/arm64"].detail
    assert checks["platform linux/riscv64"].level == "warn"
    assert "qemu-user-static" in checks["platform linux/riscv64"].detail


def test_unreachable_mirror_is_a_failure_that_names_the_setting(monkeypatch, tmp_path):
    monkeypatch.setenv("LAB_DEBIAN_MIRROR", f"file://{tmp_path}/no-mirror")
    check = doctor.check_mirror()
    assert check.level == "fail"
    assert f"{tmp_path}/no-mirror/dists/bookworm/InRelease" in check.detail
    assert "LAB_DEBIAN_MIRROR" in check.detail


def test_archives_say_what_is_here_and_what_cannot_be_downloaded(monkeypatch, tmp_path):
    import dataclasses
    import hashlib

    from lab.matrix import ArchiveSpec, load_matrix

    monkeypatch.setenv("LAB_CACHE_DIR", str(tmp_path / "cache"))
    name = "cpython-3.13.9+20261001-x86_64-unknown-linux-gnu-freethreaded-install_only.tar.gz"
    (tmp_path / name).write_bytes(b"x")
    (tmp_path / "SHA256SUMS").write_text(f"{hashlib.sha256(b'x').hexdigest()}  {name}\n")
    m = load_matrix()
    local = dataclasses.replace(m.get("cp313t"), archive=ArchiveSpec(local=(str(tmp_path),)))
    remote = dataclasses.replace(m.get("cp314t"), archive=ArchiveSpec(
        url="http://127.0.0.1:1/cpython-3.14.tar.gz", sha256="0" * 64))
    check = doctor.check_archives([local, remote, m.get("cp311")])
    assert check.level == "warn"
    assert check.detail.startswith("here: cp313t; cannot download cp314t (127.0.0.1:1: ")
    assert "LAB_PYTHON_ARCHIVES" in check.detail
    assert doctor.check_archives([local]).level == "ok"
