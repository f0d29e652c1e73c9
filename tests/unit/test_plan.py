from __future__ import annotations

import io
import tarfile

import pytest

from lab.images import plan as images
from lab.images import tools
from lab.images.plan import base_tag, emulation_problem, plan_image, runner_archive, runner_changes
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


def test_the_runner_layer_holds_the_runner_as_labrunner_and_its_settings(tmp_path,
                                                                         monkeypatch):
    monkeypatch.setenv("LAB_CACHE_DIR", str(tmp_path))  # no py-spy cached
    with tarfile.open(fileobj=io.BytesIO(runner_archive("amd64"))) as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert "opt/lab/labrunner/__main__.py" in members
    assert "opt/lab/labrunner/scenarios/probe.py" in members
    assert members["opt/lab/labrunner"].isdir()
    assert not any("__pycache__" in n for n in members)
    assert all(m.uid == 0 and not m.mode & 0o022 for m in members.values())
    assert "opt/lab/tools/py-spy" not in members
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


def test_a_base_is_bootstrapped_once_for_all_its_targets_and_its_failure_is_shared(
        monkeypatch, tmp_path):
    from lab.errors import BuildFailed
    from lab.images.builder import ImageBuilder
    from lab.images.plan import BaseProvenance

    monkeypatch.setenv("LAB_CACHE_DIR", str(tmp_path / "cache"))
    calls: list[str] = []
    fail = {"sid": False}

    def fake_base(self, engine, base, arch, tag, target_id, donors=()):
        calls.append(target_id)
        if fail["sid"]:
            raise BuildFailed("second stage failed")
        return BaseProvenance(suite=base.suite, built=True)

    monkeypatch.setattr(ImageBuilder, "_ensure_base", fake_base)
    m = load_matrix()
    plans = [plan_image(m.get(t)) for t in ("cp314", "cp315", "pp311")]
    builder = ImageBuilder(log_dir=tmp_path)
    try:
        builder.prefetch_bases(plans, connect=lambda: FakeEngineForBases())
        bases = [builder._base_for(FakeEngineForBases(), p) for p in plans]
        assert len(calls) == 1 and all(b.built for b in bases)
        fail["sid"] = True
        builder2 = ImageBuilder(log_dir=tmp_path)
        calls.clear()
        for p in plans:
            try:
                builder2._base_for(FakeEngineForBases(), p)
            except BuildFailed as exc:
                assert "second stage failed" in str(exc)
            else:
                raise AssertionError("the failure was not shared")
        assert len(calls) == 1
        builder2.close()
    finally:
        builder.close()


class FakeEngineForBases:
    where = "unix:///fake.sock"

    def image(self, ref):
        return None  # no base yet: _ensure_base (faked) makes it

    def close(self) -> None:
        pass


class EngineWithImages:
    """The docker boundary for streaming: images by tag, save and load."""

    def __init__(self, name: str, images: dict[str, dict[str, str]]):
        self.where = f"unix:///{name}.sock"
        self.images = images
        self.loaded: list[bytes] = []

    def image(self, ref):
        from lab.engine import ImageInfo

        labels = self.images.get(ref)
        return None if labels is None else ImageInfo(id=f"sha256:{ref}", tags=(ref,),
                                                     labels=labels)

    def export_image(self, ref):
        yield b"tar of " + ref.encode()

    def load_image(self, chunks):
        data = b"".join(chunks)
        self.loaded.append(data)
        self.images[data[len(b"tar of "):].decode()] = {"lab.suite": "sid"}

    def close(self):
        pass


def test_a_base_another_engine_has_is_streamed_not_bootstrapped(tmp_path, monkeypatch):
    from lab.images.builder import ImageBuilder

    monkeypatch.setenv("LAB_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(ImageBuilder, "_bootstrap", lambda *a, **k: (_ for _ in ()).throw(
        AssertionError("bootstrapped although another engine had the base")))
    plan = plan_image(load_matrix().get("cp314"))
    first = EngineWithImages("first", {plan.base_ref: {"lab.suite": "sid"}})
    second = EngineWithImages("second", {})
    empty = EngineWithImages("empty", {})
    builder = ImageBuilder(log_dir=tmp_path)
    try:
        base = builder._base_for(second, plan, [("empty", lambda: empty),
                                                ("first", lambda: first)])
    finally:
        builder.close()
    assert second.loaded == [b"tar of " + plan.base_ref.encode()]
    assert base.streamed_from == "first" and base.built and base.suite == "sid"
    assert base.stream_seconds is not None


class EngineThatCommits(EngineWithImages):
    """Images by tag, and commit_layer that keeps the layer's tar as the new image."""

    def __init__(self, images):
        super().__init__("one", images)
        self.layers: dict[str, bytes] = {}

    def commit_layer(self, base, files, *, repository, tag, labels, **_):
        assert base in self.images, f"committed on a missing {base}"
        ref = f"{repository}:{tag}"
        self.layers[ref] = files if isinstance(files, bytes) else files.read()
        self.images[ref] = {**self.images[base], **labels}
        return f"sha256:{ref}"


def test_an_archive_target_is_fetched_and_verified_before_its_base_is_made(
        tmp_path, monkeypatch):
    import dataclasses
    import hashlib
    import io
    import tarfile

    from lab.errors import BuildFailed, ImageUnavailable
    from lab.images.builder import ImageBuilder
    from lab.images.plan import BaseProvenance
    from lab.matrix import ArchiveSpec
    from tests.unit.test_pythons import GOOD, tree

    monkeypatch.setenv("LAB_CACHE_DIR", str(tmp_path / "cache"))
    data = tree(*GOOD)
    (tmp_path / "a.tar.gz").write_bytes(data)
    made: list[str] = []

    def fake_base(self, engine, base, arch, tag, target_id, donors=()):
        made.append(tag)
        engine.images[tag] = {"lab.suite": base.suite}
        return BaseProvenance(suite=base.suite, built=True)

    monkeypatch.setattr(ImageBuilder, "_ensure_base", fake_base)
    t = load_matrix().get("cp313t")
    good = dataclasses.replace(t, archive=ArchiveSpec(
        url=(tmp_path / "a.tar.gz").as_uri(), sha256=hashlib.sha256(data).hexdigest()))
    wrong = dataclasses.replace(t, archive=ArchiveSpec(
        url=(tmp_path / "a.tar.gz").as_uri(), sha256="0" * 64))
    offline = dataclasses.replace(t, archive=ArchiveSpec(
        url="http://127.0.0.1:1/a.tar.gz", sha256="1" * 64))
    # looked up, but no local folder has it and the download cannot start: both are said
    listed = dataclasses.replace(t, archive=ArchiveSpec(local=(str(tmp_path / "nope"),)))
    plan = plan_image(listed)
    plan = dataclasses.replace(plan, archive=dataclasses.replace(
        plan.archive, url="http://127.0.0.1:1/" + plan.archive.filename))
    engine = EngineThatCommits({})
    builder = ImageBuilder(log_dir=tmp_path)
    try:
        for bad, error in ((wrong, BuildFailed), (offline, ImageUnavailable)):
            builder.prefetch_bases([plan_image(bad)], connect=lambda: engine)
            with pytest.raises(error):
                builder.ensure(engine, plan_image(bad))
        with pytest.raises(ImageUnavailable, match=r"cannot download the archive from "
                           r"127.0.0.1:1: .* No local archive matched: .*nope does not exist"):
            builder.ensure(engine, plan)
        for pool in builder._prefetch:
            pool.shutdown(wait=True)
        assert made == [] and engine.layers == {}  # no base for an archive not here
        plan = plan_image(good)
        image = builder.ensure(engine, plan)
    finally:
        builder.close()
    assert made == [plan.base_key] and image.tag == plan.tag
    assert image.archive == plan.archive and image.base.suite == "trixie"
    python = tarfile.open(fileobj=io.BytesIO(engine.layers[plan.base_ref]))
    assert "opt/python/bin/python3" in python.getnames()
    assert engine.images[plan.tag]["lab.archive-sha256"] == plan.archive.sha256
    # Built: the next ensure reads what it came from off the image, fetching nothing.
    (tmp_path / "a.tar.gz").unlink()
    again = ImageBuilder(log_dir=tmp_path)
    try:
        assert again.ensure(engine, plan).archive == plan.archive
    finally:
        again.close()


def test_the_runner_layer_holds_py_spy_where_it_is_cached_and_its_tag_says_so(tmp_path,
                                                                             monkeypatch):
    monkeypatch.setenv("LAB_CACHE_DIR", str(tmp_path))
    target = load_matrix().get("cp311")
    without = plan_image(target).tag
    binary = tmp_path / "tools" / f"py-spy-{tools.PY_SPY_VERSION}-amd64"
    binary.parent.mkdir()
    binary.write_bytes(b"\x7fELF a binary")
    assert plan_image(target).tag != without  # an image never claims a tool it lacks
    with tarfile.open(fileobj=io.BytesIO(runner_archive("amd64"))) as tar:
        member = tar.getmember("opt/lab/tools/py-spy")
        assert member.mode == 0o755 and member.uid == 0
        assert tar.extractfile(member).read() == b"\x7fELF a binary"
    with tarfile.open(fileobj=io.BytesIO(runner_archive("arm64"))) as tar:
        assert "opt/lab/tools/py-spy" not in tar.getnames()  # emulated: no ptrace
