# IN-CONTAINER CODE: standard library only, Python 3.9+ and PyPy; never imports lab.*.
"""`lab test`: a project's pytest suite as one cell, per start method.

pytest runs as ``python -m pytest -p lab_pytest ARGS`` from the project's read-only copy, with
the `lab check` hook (stack dumps in every process, the start method made the default, explicit
choices noted). The lab's plugin (hook/lab_pytest.py) writes a line as each test starts and
ends; the runner reads them as they come, so it knows which test is running and since when.

A test that runs past its own deadline is hung: every process in the cell's group is asked for
its stacks, the group is killed, and pytest starts again with the tests already done and the
hung one deselected, so one hung test never costs the others' results. The suite's deadline
(``--timeout``) is the backstop for all of it, collection included.
"""

import json
import os
import sys
import time

from . import protocol as P
from .harness import HOOK_DIR, RunningCell, last_error, read_bounded, script_command

MAX_LOG_BYTES = 8 * 1024 * 1024  # what the runner reads of the plugin's lines
MAX_TESTS = 5000  # tests recorded per cell; the rest are counted
MAX_NODEID = 300
MAX_HANGS = 10  # hung tests per cell before the suite is given up
OUTCOMES = ("passed", "failed", "error", "skipped", "xfail", "xpass")
# pytest's exit codes: 0 all passed, 1 some failed, 2 interrupted, 3 internal error,
# 4 usage error, 5 no tests collected
EXIT_WORDS = {2: "interrupted", 3: "internal error", 4: "usage error",
              5: "no tests collected"}


class SuiteCell(RunningCell):
    def __init__(self, *args, **kwargs):
        self.tests = {}  # node id -> [outcome, first error line, seconds], in the order run
        self.collect_errors = []
        self.hangs = []  # {"nodeid", "after_s", "stacks"} per hung test
        self.attempts = 0
        self.exit_codes = []
        self.collected = None
        self.current = None  # (node id, when the runner saw it start)
        self.read_bytes = 0
        self.log_offset = 0
        self.given_up = None
        self.hung_after = None
        super().__init__(*args, **kwargs)
        suite = self.cell["script"].get("suite") or {}
        self.test_deadline_s = float(suite.get("test_timeout_s") or self.deadline_s)
        self.suite_started = time.monotonic()

    # -- paths of this cell's files
    def path(self, name):
        return os.path.join(self.dir, name)

    def command(self, env):
        script_command(self.cell, self.user_dir or "", self.dir, env)  # the hook's settings
        cwd = os.path.join(self.user_dir or "", self.cell["script"]["path"])
        env["LAB_TEST_LOG"] = self.path("tests.jsonl")
        env["LAB_TEST_SKIP"] = self.path("skip.txt")
        env["PYTHONDONTWRITEBYTECODE"] = "1"  # the project's copy is read-only
        user = [str(a) for a in self.cell["script"].get("args") or []]
        # From the project's copy, as the user runs pytest; no cache, since it is read-only.
        return [sys.executable, "-m", "pytest", "-p", "lab_pytest", "-p", "no:cacheprovider",
                *user], cwd

    def launch(self):
        self.attempts += 1
        self.stacks_dir = os.path.join(self.dir, f"stacks-{self.attempts}")
        os.makedirs(self.stacks_dir, exist_ok=True)
        self.current = None
        super().launch()
        self.ran_from = time.monotonic()

    def read_log(self, now):
        """The plugin's new lines, as far as they are whole; malformed ones are skipped."""
        budget = MAX_LOG_BYTES - self.read_bytes
        if budget <= 0:
            return
        try:
            with open(self.path("tests.jsonl"), "rb") as fh:
                fh.seek(self.log_offset)
                data = fh.read(min(budget, 1024 * 1024))
        except OSError:
            return
        end = data.rfind(b"\n") + 1
        self.log_offset += end
        self.read_bytes += end
        for line in data[:end].splitlines():
            try:
                event = json.loads(line.decode("utf-8", "replace"))
            except ValueError:
                continue
            if isinstance(event, dict):
                self.take(event, now)

    def take(self, event, now):
        kind = event.get("event")
        nodeid = str(event.get("nodeid") or "")[:MAX_NODEID]
        if kind == "start":
            self.current = (nodeid, now)
        elif kind == "test":
            self.current = None
            outcome = event.get("outcome")
            if len(self.tests) < MAX_TESTS or nodeid in self.tests:
                self.tests[nodeid] = [outcome if outcome in OUTCOMES else "error",
                                      str(event.get("line") or "")[:300],
                                      event.get("duration")
                                      if isinstance(event.get("duration"), (int, float))
                                      else None]
        elif kind == "collect_error" and len(self.collect_errors) < 50:
            self.collect_errors.append([nodeid, str(event.get("line") or "")[:300]])
        elif (kind == "collected" and isinstance(event.get("n"), int)
              and self.collected is None):
            self.collected = event["n"]

    def step(self, now):
        if self.phase != "run":
            if not super().step(now):
                return False
            return self.after_attempt(now)
        self.read_log(now)
        if self.reap():
            self.read_log(now)
            self.exit_codes.append(self.proc.returncode)
            self.finished = now
            self.killpg(9)  # leftovers such as a forkserver
            return True
        if now - self.suite_started >= self.deadline_s:
            self.given_up = f"the suite's deadline of {self.deadline_s:.0f} s passed"
            self.hang(now)
        elif self.current is not None and now - self.current[1] >= self.test_deadline_s:
            self.hang(now)
        elif self.current is not None and self.watch.stuck(now):
            self.why_hung = self.watch.describe(now)  # found stuck before its deadline
            self.hang(now)
        if self.phase != "run" and self.current is not None:
            self.hung_after = round(now - self.current[1], 2)
        return False

    def after_attempt(self, now):
        """A hung attempt is over: keep its stacks, then go on without the hung test."""
        self.read_log(now)
        nodeid = self.current[0] if self.current else None
        self.hangs.append({"nodeid": nodeid,
                           "after_s": self.hung_after if self.current else None,
                           "why": self.why_hung, "stacks": self.collect_stacks()})
        if nodeid is None:
            self.given_up = self.given_up or "pytest hung outside any test (collecting?)"
        elif len(self.hangs) >= MAX_HANGS:
            self.given_up = f"{len(self.hangs)} tests hung"
        if self.given_up:
            return True
        with open(self.path("skip.txt"), "w", encoding="utf-8") as out:
            for done in list(self.tests) + [h["nodeid"] for h in self.hangs]:
                out.write(done + "\n")
        self.launch()
        return False

    def record(self):
        self.output.close()
        hung = [h for h in self.hangs if h["nodeid"]]
        tests = [[n, *v] for n, v in self.tests.items()]
        tests += [[h["nodeid"], "hung", "killed after {} s ({}); the suite went on without "
                   "it".format(h["after_s"], h["why"] or "the test's deadline"), h["after_s"]]
                  for h in hung]
        result = self.script_result()
        m = result["measurements"]
        m.update({"tests": tests, "collect_errors": self.collect_errors,
                  "collected": self.collected, "attempts": self.attempts,
                  "pytest_exit": self.exit_codes[-1] if self.exit_codes else None,
                  "test_deadline_s": self.test_deadline_s, "given_up": self.given_up})
        counts = {}
        for t in tests:
            counts[t[1]] = counts.get(t[1], 0) + 1
        m["counts"] = counts
        rec = self.record_from(result, None)
        rec["output"] = read_bounded(self.output_path)
        rec["stacks"] = "\n\n".join(
            "### {} hung{}\n{}".format(h["nodeid"] or "pytest",
                                       " after {} s".format(h["after_s"]) if h["after_s"] else "",
                                       h["stacks"] or "(no stacks)")
            for h in self.hangs) or None
        rec["outcome"], rec["detail"] = self.verdict(counts, hung)
        return rec

    def verdict(self, counts, hung):
        bad = [(n, v) for n, v in self.tests.items() if v[0] in ("failed", "error")]
        code = self.exit_codes[-1] if self.exit_codes else None
        if hung or self.given_up:
            names = ", ".join(h["nodeid"] for h in hung[:3]) or "pytest"
            why = "; given up: " + self.given_up if self.given_up else "; the rest ran"
            return P.HUNG, f"hung: {names}{why}"
        if code is not None and code < 0:
            return P.CRASHED, f"pytest killed by signal {-code}"
        if self.collect_errors:
            n, line = self.collect_errors[0]
            return P.FAILED, "collection error in {}: {}".format(n or "the suite", line)
        if bad:
            n, v = bad[0]
            return P.FAILED, f"{len(bad)} of {len(self.tests)} failed or errored: {n}: {v[1]}"
        if code == 5 and self.attempts == 1:
            return P.FAILED, "pytest collected no tests"
        if code not in (0, 5, None):
            return P.FAILED, "pytest exited {} ({}): {}".format(
                code, EXIT_WORDS.get(code, "error"), last_error(read_bounded(self.output_path)))
        return P.OK, "{} tests: {}".format(
            len(self.tests), ", ".join(f"{v} {k}" for k, v in sorted(counts.items())))


def is_suite(cell):
    return bool((cell.get("script") or {}).get("suite"))


__all__ = ["HOOK_DIR", "SuiteCell", "is_suite"]
