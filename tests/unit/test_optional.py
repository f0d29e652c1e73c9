"""Optional requirements (a named built-in scenario's packages): a target that cannot have one
runs without it; the user's own requirements stay all-or-nothing."""

from __future__ import annotations

import pytest

from lab.images.deps import DependencyUnavailable
from lab.images.optional import blamed, ensure_optional
from lab.images.requirements import Requirements

PP311_NUMPY = ("pp311: numpy has no wheel for pp311-pypy311_pp80-manylinux_2_43_x86_64: the "
               "index offers only its sdist for these tags, and building it failed in the "
               "target's image (no compiler or build tools there); pin a version with a wheel "
               "for this target")


def reqs(*lines: str, optional: tuple[str, ...] = ()) -> Requirements:
    return Requirements(lines=lines, sources=tuple(f"--with {ln}" for ln in lines),
                        optional=optional)


class Index:
    """pip in a target's container, as far as these tests need: it fails on the first line it
    has no wheel for, naming it as explain_failure does."""

    def __init__(self, cannot: set[str]) -> None:
        self.cannot = cannot
        self.asked: list[tuple[str, ...]] = []

    def ensure(self, r: Requirements, inputs: object) -> str:
        self.asked.append(r.lines)
        for line in r.lines:
            if line in self.cannot:
                raise DependencyUnavailable(PP311_NUMPY.replace("numpy", line))
        return "image:" + ",".join(r.lines)


def test_a_missing_optional_package_is_dropped_with_its_reason_and_the_rest_installed():
    index = Index({"numpy"})
    got, used, missing = ensure_optional(index.ensure, reqs("numpy", "grpcio", optional=(
        "numpy", "grpcio")), object(), lambda r: object())
    assert got == "image:grpcio" and used.lines == ("grpcio",)
    assert used.sources == ("--with grpcio",)
    assert missing == {"numpy": PP311_NUMPY}
    assert index.asked == [("numpy", "grpcio"), ("grpcio",)]


def test_when_no_optional_package_can_be_had_nothing_is_installed_and_each_says_why():
    index = Index({"numpy", "grpcio"})
    got, used, missing = ensure_optional(index.ensure, reqs("numpy", "grpcio", optional=(
        "numpy", "grpcio")), object(), lambda r: object())
    assert got is None and not used
    assert set(missing) == {"numpy", "grpcio"} and "grpcio has no wheel" in missing["grpcio"]


def test_the_users_own_requirements_stay_all_or_nothing():
    index = Index({"attrs"})
    with pytest.raises(DependencyUnavailable, match="attrs has no wheel"):
        ensure_optional(index.ensure, reqs("attrs", "numpy", optional=("numpy",)), object(),
                        lambda r: object())
    assert index.asked == [("attrs", "numpy")]  # no second try: dropping numpy cannot help


def test_a_failure_that_names_no_line_drops_every_optional_one():
    assert blamed("cp39: the index could not be reached", ("numpy", "grpcio")) == [
        "numpy", "grpcio"]
    assert blamed(PP311_NUMPY, ("numpy>=2", "grpcio")) == ["numpy>=2"]
    assert blamed("no grpc-io for cp39", ("grpc_io",)) == ["grpc_io"]  # PEP 503 names
