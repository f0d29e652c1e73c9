# IN-CONTAINER CODE. Everything under lab/runner/ runs *inside* the target containers (and on a
# host interpreter with --host-python). It uses only the standard library, must run unchanged on
# CPython 3.9 to 3.15 and on PyPy, and never imports host code (lab.*): it is copied into the
# images as a top-level package named ``labrunner`` and only ever uses relative imports.
"""The lab's in-container runner: runs scenario cells, each in its own process group. The words
it shares with the host (record version, outcomes, start methods) are in ``protocol``."""
