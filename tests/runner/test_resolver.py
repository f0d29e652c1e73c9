"""The package resolver runs in an interpreter of its own (python -m lab.images.debian), so a
long resolution never holds the run's GIL: a real subprocess, so it lives here, not in unit/."""

from __future__ import annotations

import pytest

from lab.errors import BuildFailed
from lab.images import debian as archive
from lab.images.debian import fetch_release, select_packages
from lab.images.download import DebCache
from tests.debian_fixtures import Stanza, generated_key, write_mirror


@pytest.fixture
def mirror(tmp_path):
    tsk, key = generated_key()
    universe = [Stanza("libc6", priority="required"),
                Stanza("python3.11", priority="optional", depends="libc6")]
    root = write_mirror(tmp_path / "mirror", "testing", universe, tsk)
    return f"file://{root}", key


def test_the_resolver_runs_in_its_own_interpreter_and_keeps_errors(mirror, tmp_path):
    url, key = mirror
    cache = DebCache(tmp_path / "cache")
    path = archive.fetch_index(fetch_release(url, "testing", keys=[key]), "amd64", cache)
    sel = archive.Resolver().resolve(path, suite="testing", arch="amd64", wanted=("python3.11",))
    assert sel == select_packages(archive.read_index(path, suite="testing", arch="amd64"),
                                  ["python3.11"])
    with pytest.raises(BuildFailed, match=r"'nope' does not exist in testing/main"):
        archive.Resolver().resolve(path, suite="testing", arch="amd64", wanted=("nope",))
