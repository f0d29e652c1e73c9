# IN-CONTAINER CODE: standard library only, Python 3.9+ and PyPy; never imports lab.*.
"""The dependencies step, in a container made from the target's own image: the target's
interpreter runs pip from its wheel (the images have no pip), so tags and markers are its own.

``python -m labrunner.deps STEP.json`` reads what to do, writes into the step's out folder
``tags.json`` (the interpreter's most specific wheel tags, as pip's vendored ``packaging``
computes them), ``pip.log`` and pip's installation report, then ``done.json`` with pip's exit
code, and lingers until the host, which polls for ``done.json``, has copied the installed tree
out and removes the container. Everything it writes is capped by the container's tmpfs and
file-size limits, and the host trusts none of it beyond its parsed, capped fields.
"""

import json
import os
import shutil
import subprocess
import sys
import time

MAX_TAGS = 5
# pip, run from its wheel. Before 3.10 pip reads install locations from distutils, which Debian
# ships apart (python3-distutils, not in the images): the switch pip offers distributors makes
# it use sysconfig there too, as it does from 3.10 on (pypa/pip#10647).
BOOT = ("import runpy, sys, sysconfig\n"
        "if sys.version_info < (3, 10):\n"
        "    sysconfig._PIP_USE_SYSCONFIG = True\n"
        "pip = sys.argv[1]\n"
        "sys.argv = [pip] + sys.argv[2:]\n"
        "runpy.run_path(pip, run_name='__main__')\n")


def interpreter_tags(pip_wheel):
    """The first wheel tags this interpreter accepts (its own, most specific first)."""
    sys.path.insert(0, pip_wheel)
    try:
        from pip._vendor.packaging import tags
    except ImportError as exc:
        return {"error": f"cannot read the wheel tags: {exc!r}"}
    finally:
        sys.path.remove(pip_wheel)
    found = []
    for tag in tags.sys_tags():
        found.append(str(tag))
        if len(found) >= MAX_TAGS:
            break
    return {"tags": found, "python": sys.version.split()[0],
            "implementation": sys.implementation.name}


def write_json(path, value):
    tmp = path + ".tmp"
    with open(tmp, "w") as fh:
        json.dump(value, fh)
    os.replace(tmp, path)


def main(argv):
    with open(argv[0]) as fh:
        step = json.load(fh)
    out = step["out"]
    write_json(os.path.join(out, "tags.json"), interpreter_tags(step["pip"]))
    env = dict(os.environ)
    env.update(step.get("env") or {})
    env["HOME"] = "/tmp"  # the image's user has no home; pip's cache lives on the tmpfs
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    env["PIP_NO_INPUT"] = "1"
    env.pop("PYTHONPATH", None)  # pip sees no runner code, and the target dir only as output
    for src, dest in step.get("copy") or []:
        # A project is built where pip can write (setuptools puts its egg-info and build/
        # beside the sources): a copy on the tmpfs, not the read-only inputs.
        shutil.copytree(src, dest)
    argv = [sys.executable, "-c", BOOT, os.path.join(step["pip"], "pip")] + list(step["args"])
    started = time.time()
    with open(os.path.join(out, "pip.log"), "wb") as log:
        try:
            code = subprocess.call(argv, stdout=log, stderr=subprocess.STDOUT, env=env,
                                   cwd=step.get("cwd") or "/tmp")
        except OSError as exc:
            log.write(f"cannot run pip: {exc!r}\n".encode())
            code = 127
    write_json(os.path.join(out, "done.json"),
               {"exit_code": code, "seconds": round(time.time() - started, 2)})
    deadline = time.time() + float(step.get("linger_s", 600))
    while time.time() < deadline:  # the host copies the tree, then removes the container
        time.sleep(1)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
