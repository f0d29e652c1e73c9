"""Needs a package from requirements.txt, installed for each target by its own interpreter."""

import attrs


@attrs.define
class Point:
    x: int
    y: int


def test_attrs_from_the_requirements():
    assert Point(1, 2) == Point(1, 2)
