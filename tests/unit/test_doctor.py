from __future__ import annotations

from lab import doctor


def test_platforms_say_native_or_what_to_install(monkeypatch):
    monkeypatch.setattr("lab.doctor.native_platforms", lambda: {"linux/amd64", "linux/386"})
    fix = "apt-get install qemu-user-static"
    monkeypatch.setattr("lab.doctor.emulation_problem",
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
