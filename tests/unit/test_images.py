from __future__ import annotations

import io
import tarfile

from lab import images
from lab.images import base_tag, emulation_problem, plan_image, runner_archive, runner_changes
from lab.matrix import load_matrix


def test_tags_are_stable_and_bases_shared():
    m = load_matrix()
    a, b = plan_image(m.get("cp314")), plan_image(m.get("cp315"))
    assert a.base_ref == b.base_ref and a.base_ref.startswith("lab-base:sid-amd64-")
    assert a.tag != b.tag and a.tag.startswith("lab-target:cp314-")
    assert plan_image(m.get("cp314")) == a


def test_editing_a_scenario_changes_the_target_image_but_never_the_base(monkeypatch):
    m = load_matrix()
    before = plan_image(m.get("cp39"))
    files = images.runner_files()
    edited = [(p, c + b"\n# edited\n" if p == "scenarios/countdown.py" else c)
              for p, c in files]
    monkeypatch.setattr(images, "runner_files", lambda: edited)
    after = plan_image(m.get("cp39"))
    assert after.base_ref == before.base_ref
    assert after.tag != before.tag


def test_base_recipe_change_changes_the_base_tag():
    m = load_matrix()
    base = m.get("cp311").base
    assert base is not None
    other = base.__class__(name=base.name, suite=base.suite, packages=(*base.packages, "gdb"))
    assert base_tag(base, "amd64") != base_tag(other, "amd64")
    assert base_tag(base, "amd64") != base_tag(base, "i386")


def test_registry_target_builds_from_the_registry_image():
    p = plan_image(load_matrix().get("cp312-slim"))
    assert p.base_ref == "python:3.12-slim" and p.base_key is None


def test_the_runner_layer_holds_the_runner_as_labrunner_and_its_settings():
    with tarfile.open(fileobj=io.BytesIO(runner_archive())) as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert "opt/lab/labrunner/__main__.py" in members
    assert "opt/lab/labrunner/scenarios/probe.py" in members
    assert members["opt/lab/labrunner"].isdir()
    assert not any("__pycache__" in n for n in members)
    assert all(m.uid == 0 and not m.mode & 0o022 for m in members.values())
    changes = runner_changes("/usr/bin/python3.14")
    assert "USER 10001:10001" in changes and "WORKDIR /opt/lab" in changes
    assert any("PYTHONPATH=/opt/lab" in c and "LAB_PYTHON=/usr/bin/python3.14" in c
               for c in changes)


def test_the_runner_settings_are_part_of_the_recipe(monkeypatch):
    m = load_matrix()
    before = plan_image(m.get("cp39"))
    monkeypatch.setattr(images, "runner_changes", lambda python: ["USER 0:0"])
    assert plan_image(m.get("cp39")).tag != before.tag


def test_emulation_problem_explains_what_to_do(tmp_path, monkeypatch):
    root = tmp_path / "binfmt_misc"
    real_path = images.Path

    def fake_path(p, *rest):
        if p == "/proc/sys/fs/binfmt_misc":
            return root
        return real_path(p, *rest)

    monkeypatch.setattr(images, "Path", fake_path)
    assert emulation_problem("amd64") is None
    assert "not mounted" in emulation_problem("arm64")
    root.mkdir()
    (root / "status").write_text("enabled")
    assert "qemu-user-static" in emulation_problem("arm64")
    (root / "qemu-aarch64").write_text("enabled\ninterpreter /q\nflags: OC\n")
    assert "F flag" in emulation_problem("arm64")
    (root / "qemu-aarch64").write_text("enabled\ninterpreter x\nflags: OCF\n")
    assert emulation_problem("arm64") is None
