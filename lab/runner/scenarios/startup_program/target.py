# IN-CONTAINER CODE: standard library only, Python 3.9+ and PyPy; never imports lab.*.
"""The child's target, in a module of its own (what a program that keeps its workers in a
module pays); see program.py."""


def noop():
    pass
