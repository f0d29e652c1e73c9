# IN-CONTAINER CODE: standard library only, Python 3.9+ and PyPy; never imports lab.*.
"""`lab test`'s pytest plugin, loaded with ``-p lab_pytest`` from the hook folder: one JSON line
per event to ``LAB_TEST_LOG``, written and flushed as it happens, so that what the suite did is
known up to the moment it was killed. (pytest's own JUnit file is written only when the session
ends, and a hung test means the session never ends.) It needs nothing from pytest but its hook
names, and changes nothing but the items of a run that goes on after a hang: those listed in
``LAB_TEST_SKIP`` (one node id a line: the tests already done and the one that hung) are
deselected, as ``--deselect`` would.

Events: ``start`` (a test began), ``test`` (its outcome: passed, failed, error, skipped, xfail
or xpass, with its first error line), ``collect_error``, ``collected`` and ``end`` (the exit
status). Only the pytest process writes them, never a child it forks.
"""

import json
import os

MAX_LINE = 300
_state = {"pid": None, "out": None, "tests": {}}


def _write(record):
    path = os.environ.get("LAB_TEST_LOG")
    if not path or os.getpid() != _state["pid"]:
        return
    try:
        if _state["out"] is None:
            _state["out"] = open(path, "a", encoding="utf-8")
        _state["out"].write(json.dumps(record) + "\n")
        _state["out"].flush()
    except (OSError, ValueError):
        pass


def _first_line(text):
    for line in str(text).splitlines():
        if line.strip():
            return line.strip()[:MAX_LINE]
    return ""


def first_error_line(report):
    """What failed, in one line: the exception pytest shows (``reprcrash``), else the last
    ``E`` line of the report, else its first line; a skip's reason."""
    longrepr = report.longrepr
    if longrepr is None:
        return ""
    if isinstance(longrepr, tuple) and len(longrepr) == 3:  # a skip: (path, line, reason)
        return _first_line(longrepr[2])
    crash = getattr(longrepr, "reprcrash", None)
    message = getattr(crash, "message", None)
    if message:
        return _first_line(message)
    text = str(longrepr)
    errors = [line[1:].strip() for line in text.splitlines() if line.startswith("E ")]
    return _first_line(errors[-1] if errors else text)


def outcome_of(report, previous):
    """One test's outcome from its phase reports, as pytest's summary counts it."""
    xfail = hasattr(report, "wasxfail")
    if report.when == "call":
        if report.passed:
            return "xpass" if xfail else "passed"
        if report.skipped:
            return "xfail" if xfail else "skipped"
        return "failed"
    if report.failed:  # setup or teardown
        return previous if previous == "failed" else "error"
    if report.skipped:
        return "xfail" if xfail else "skipped"
    return previous


def pytest_configure(config):
    _state["pid"] = os.getpid()


def pytest_collection_modifyitems(session, config, items):
    path = os.environ.get("LAB_TEST_SKIP")
    skip = set()
    if path and os.path.isfile(path):
        with open(path, encoding="utf-8", errors="replace") as fh:
            skip = {line.rstrip("\n") for line in fh if line.strip()}
    if skip:
        kept = [i for i in items if i.nodeid not in skip]
        gone = [i for i in items if i.nodeid in skip]
        if gone:
            config.hook.pytest_deselected(items=gone)
            items[:] = kept
    _write({"event": "collected", "n": len(items), "deselected": len(skip)})


def pytest_collectreport(report):
    if report.failed:
        _write({"event": "collect_error", "nodeid": report.nodeid,
                "line": first_error_line(report)})


def pytest_runtest_logstart(nodeid, location):
    _state["tests"][nodeid] = {"outcome": None, "line": "", "duration": 0.0}
    _write({"event": "start", "nodeid": nodeid})


def pytest_runtest_logreport(report):
    test = _state["tests"].setdefault(report.nodeid,
                                      {"outcome": None, "line": "", "duration": 0.0})
    outcome = outcome_of(report, test["outcome"])
    if outcome != test["outcome"] and outcome not in (None, "passed"):
        test["line"] = (_first_line(getattr(report, "wasxfail", "")) if outcome == "xfail"
                        else first_error_line(report))
    test["outcome"] = outcome
    test["duration"] += float(getattr(report, "duration", 0.0) or 0.0)


def pytest_runtest_logfinish(nodeid, location):
    test = _state["tests"].pop(nodeid, None) or {"outcome": None, "line": "", "duration": 0.0}
    _write({"event": "test", "nodeid": nodeid, "outcome": test["outcome"] or "error",
            "line": test["line"], "duration": round(test["duration"], 4)})


def pytest_sessionfinish(session, exitstatus):
    _write({"event": "end", "exitstatus": int(exitstatus)})
