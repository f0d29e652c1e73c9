# IN-CONTAINER CODE: standard library only, Python 3.9+ and PyPy; never imports lab.*.
"""Runs a plan of cells, each in its own process group with a deadline, and frames the results.

Each cell is ``python -m <this package> cell ...`` started with ``start_new_session=True``.
On expiry the harness sends SIGUSR1 to the whole group (every process registered a faulthandler
dump), collects the per-process stack files, then SIGTERMs and SIGKILLs the group - the
pattern of CPython's libregrtest. Cells that wait side by side cost one deadline, not many.

Results go to ``results.jsonl`` in the output folder, one JSON record per line, flushed and
fsynced as each cell ends, never to stdout.
"""

import json
import linecache
import os
import re
import shutil
import signal
import subprocess
import sys
import time

from . import measurements as M
from . import native, scan, watch
from . import protocol as P
from .util import STACK_SIGNAL, STACKS_ENV, affinity

FRAME_LINE = re.compile(r'^(\s*)File "([^"]+)", line (\d+) in ')


def with_sources(text):
    """faulthandler's frames with their source lines beneath, as a traceback shows them, read
    from this container's own files (the host cannot know which version of a file ran)."""
    out = []
    for line in text.splitlines():
        out.append(line)
        m = FRAME_LINE.match(line)
        if m:
            source = linecache.getline(m.group(2), int(m.group(3))).strip()
            if source:
                out.append(m.group(1) + "    " + source[:160])
    return "\n".join(out)


OUTPUT_HEAD = 16 * 1024
OUTPUT_TAIL = 16 * 1024
STACK_LIMIT = 64 * 1024
DUMP_GRACE_S = 0.8
STARTUP_ALLOWANCE_S = 60.0  # how long a cell's interpreter may take to start, on top
TERM_GRACE_S = 0.5
POLL_S = 0.02


def package_root():
    """The folder to put on sys.path so that this package imports under its own name."""
    here = os.path.dirname(os.path.abspath(__file__))
    for _ in range(__package__.count(".") + 1):
        here = os.path.dirname(here)
    return here


def read_bounded(path, head=OUTPUT_HEAD, tail=OUTPUT_TAIL):
    """Read a text file, keeping its head and tail and marking what was cut."""
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as fh:
            if size <= head + tail:
                data = fh.read()
                return data.decode("utf-8", "replace")
            first = fh.read(head)
            fh.seek(size - tail)
            last = fh.read()
    except OSError:
        return ""
    cut = size - head - tail
    return (
        first.decode("utf-8", "replace")
        + f"\n[... lab: {cut} bytes truncated ...]\n"
        + last.decode("utf-8", "replace")
    )


def last_error(output):
    """The line of a program's output that names the exception it ended with, else its last
    line (3.13+ adds notes after the exception line, so the last line is not always it)."""
    lines = [x for x in output.splitlines() if x.strip()]
    for line in reversed(lines):
        name = line.split(":", 1)[0]
        if ":" in line and not line[0].isspace() and " " not in name and (
                name.endswith(("Error", "Exception", "Exit", "Interrupt"))):
            return line[:300]
    return lines[-1][:300] if lines else ""


def group_members(pgid):
    """Pids whose process group is ``pgid`` (Linux /proc; empty elsewhere), zombies left out."""
    return sorted(process_groups().get(pgid, []))


def process_groups():
    """{pgid: [pid, ...]} of every process /proc shows that is not a zombie."""
    groups = {}
    try:
        names = os.listdir("/proc")
    except OSError:
        return groups
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as fh:
                stat = fh.read()
            fields = stat[stat.rindex(")") + 2 :].split()
            if fields[0] != "Z":
                groups.setdefault(int(fields[2]), []).append(int(name))
        except (OSError, ValueError, IndexError):
            continue
    return groups


def look(running, now):
    """Each running cell's watch takes its sample (every watch.SAMPLE_S). A process outside
    every cell's group and the runner's own (a daemon a cell started in a session of its own)
    might wake any of them, so then none is proved stuck; nor on a host, which others share."""
    due = [rc for rc in running if rc.phase == "run" and rc.watch.due(now)]
    if not due:
        return
    groups = process_groups()
    known = {os.getpgrp()} | {rc.proc.pid for rc in running}
    strays = os.environ.get("LAB_IN_CONTAINER") != "1" or any(
        pgid not in known and pids != [1] for pgid, pids in groups.items())
    for rc in due:
        rc.watch.observe(now, sorted(groups.get(rc.proc.pid, [])), strays)


def describe_process(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            cmd = fh.read().replace(b"\0", b" ").decode("utf-8", "replace").strip()
    except OSError:
        cmd = "?"
    return cmd[:300]


def host_cpu_jiffies():
    """(busy, steal) jiffies summed over every CPU, from /proc/stat (host-wide: /proc/stat is
    not namespaced, so a container sees what every process on the machine used)."""
    try:
        with open("/proc/stat") as fh:
            fields = [int(x) for x in fh.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    # user nice system idle iowait irq softirq steal ...
    busy = fields[0] + fields[1] + fields[2] + sum(fields[5:7])
    steal = fields[7] if len(fields) > 7 else 0
    return busy, steal


def cgroup_cpu_seconds():
    """CPU seconds used by this container's cgroup (v2 cpu.stat, else v1 cpuacct.usage).

    Only meaningful inside a container (LAB_IN_CONTAINER): on a host it is the whole machine's.
    """
    try:
        with open("/sys/fs/cgroup/cpu.stat") as fh:
            for line in fh:
                if line.startswith("usage_usec "):
                    return int(line.split()[1]) / 1e6
    except (OSError, ValueError):
        pass
    for path in ("/sys/fs/cgroup/cpuacct/cpuacct.usage",
                 "/sys/fs/cgroup/cpu,cpuacct/cpuacct.usage"):
        try:
            with open(path) as fh:
                return int(fh.read().strip()) / 1e9
        except (OSError, ValueError):
            continue
    return None


def own_cpu_seconds():
    if os.environ.get("LAB_IN_CONTAINER") == "1":
        return cgroup_cpu_seconds()
    return None


def signal_name(num):
    try:
        return signal.Signals(num).name
    except ValueError:
        return f"signal {num}"


def make_dirs(path):
    """``os.makedirs``, and in a container every folder the runner makes is writable by all.

    The runner's uid (10001) is not the host user's, and deleting a file takes write access to
    its folder: without this, a non-root user could not delete their own run folders. The host
    keeps the run's ``work`` folder 0700, so no other host user can reach these."""
    os.makedirs(path, exist_ok=True)
    if os.environ.get("LAB_IN_CONTAINER"):
        while True:
            try:
                os.chmod(path, 0o777)
            except OSError:
                return
            parent = os.path.dirname(path)
            if os.path.basename(path) == "cells" or parent == path:
                return
            path = parent


HOOK_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "hook")
USER_SCENARIOS_ENV = "LAB_USER_DIR"


def script_command(cell, user_dir, cell_dir, env):
    """`lab check`: the user's program as the cell, ``python SCRIPT ARGS`` from its own folder,
    so ``__main__``, pickling and re-import behave as for the user. Its start method is set by
    the hook (hook/sitecustomize.py), not by changing the program."""
    script = cell["script"]
    path = os.path.join(user_dir, script["path"])
    env.pop(USER_SCENARIOS_ENV, None)
    # The hook only (the program does not see the runner), then the run's dependencies.
    env["PYTHONPATH"] = HOOK_DIR + (os.pathsep + env["LAB_DEPS"] if env.get("LAB_DEPS") else "")
    env["LAB_CHECK_DIR"] = cell_dir
    env["LAB_CHECK_MAIN"] = "1"
    method = cell.get("start_method")
    if method and method != "default":
        env["LAB_START_METHOD"] = method
    env.pop("PYTHONNOUSERSITE", None)
    return [sys.executable, path] + [str(a) for a in script.get("args") or []], \
        os.path.dirname(path)


class RunningCell:
    def __init__(self, index, cell, out_dir, deadline_scale, user_dir=None, scratch=None,
                 attempt=0, overrun=1.0):
        self.index = index
        self.cell = cell
        self.out_dir = out_dir
        self.user_dir = user_dir
        name = f"{index:03d}" + (f"-{attempt}" if attempt else "")
        self.dir = os.path.join(scratch or out_dir, "cells", name)
        self.stacks_dir = os.path.join(self.dir, "stacks")
        make_dirs(self.stacks_dir)
        self.hangs_seen = 0
        self.result_path = os.path.join(self.dir, "result.json")
        self.is_script = bool(cell.get("script"))
        # The file whose appearance says the cell's own code runs: a scenario writes its result
        # file first thing, a program's hook (hook/sitecustomize.py) writes ``started``.
        self.started_path = (os.path.join(self.dir, "started") if self.is_script
                             else self.result_path)
        self.output_path = os.path.join(self.dir, "output.txt")
        self.deadline_s = float(cell.get("deadline_s", 30)) * deadline_scale
        # A scenario's deadline is the lab's guess; past it, a cell still working gets more
        # time, up to ``overrun`` deadlines (the plan's). A user's --timeout is theirs: it holds.
        self.limit_s = self.deadline_s * (1.0 if self.is_script else max(1.0, overrun))
        self.quiet = None  # what the wait for a quiet machine found before this attempt
        self.output = open(self.output_path, "wb")
        self.rusage = None
        self.cpu_start = host_cpu_jiffies()
        self.own_start = own_cpu_seconds()
        self.started = time.monotonic()
        self.launch()

    def environment(self):
        env = dict(os.environ)
        env.update(self.cell.get("env") or {})  # --env, a scenario file's ENV (host-checked)
        env[STACKS_ENV] = self.stacks_dir
        env["LAB_RUNNER_PID"] = str(os.getpid())
        env["LAB_RUNNER_OUT"] = self.out_dir
        env["PYTHONPATH"] = package_root() + (
            os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else ""
        )
        if self.user_dir:  # scenario files, importable as lab_scenarios.<id> in every child
            env[USER_SCENARIOS_ENV] = self.user_dir
            env["PYTHONPATH"] = self.user_dir + os.pathsep + env["PYTHONPATH"]
        return env

    def command(self, env):
        """The cell's command line and its folder (None: the runner's)."""
        if self.is_script:
            return script_command(self.cell, self.user_dir or "", self.dir, env)
        args = [sys.executable, "-m", __package__, "cell", "--scenario", self.cell["scenario"],
                "--result", self.result_path, "--params",
                json.dumps(self.cell.get("params") or {})]
        if self.cell.get("start_method"):
            args += ["--start-method", self.cell["start_method"]]
        return args, None

    def launch(self):
        """Start the cell's process (again, for a suite that goes on after a hang)."""
        self.phase = "run"
        self.phase_started = None
        self.hung = False
        self.processes = {}
        self.native_dir = self.native_why = self.native = self.scans = None
        self.watch = watch.Watch()
        self.why_hung = None  # the evidence, when it is not a plain deadline
        self.overran_s = None
        env = self.environment()
        args, cwd = self.command(env)
        # A cell's deadline runs from when its code starts (``started_path`` appears), not from
        # when its interpreter was launched: PyPy beside three other cells on a loaded machine
        # once took 6 s just to start, and a deadline that short called it hung. (A program
        # whose hook never says so gets the start-up allowance, as a scenario does.)
        self.ran_from = None
        self.proc = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=self.output,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=cwd,
            start_new_session=True,
        )

    def killpg(self, sig):
        try:
            os.killpg(self.proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def step(self, now):
        """Advance this cell; return True once it is over and reaped."""
        if self.phase == "run":
            if self.reap():
                self.finished = now
                self.killpg(signal.SIGKILL)  # leftovers such as a forkserver
                return True
            if self.ran_from is None and os.path.lexists(self.started_path):
                self.ran_from = now  # the cell's code runs: its deadline starts
            if self.ran_from is not None and self.watch.stuck(now):
                ran = now - self.ran_from
                when = (f"before its {self.deadline_s:.1f} s deadline" if ran < self.deadline_s
                        else f"past its {self.deadline_s:.1f} s deadline, which it had run on "
                             "past while it used CPU")
                self.why_hung = (f"found hung after {ran:.1f} s, {when}: "
                                 + self.watch.describe(now))
                self.hang(now)
                return False
            ran = now - self.ran_from if self.ran_from is not None else None
            late = (ran >= self.deadline_s if ran is not None
                    else now - self.started >= self.deadline_s + STARTUP_ALLOWANCE_S)
            if late and ran is not None and ran < self.limit_s and self.watch.working():
                self.overran_s = round(ran - self.deadline_s, 2)  # starved, not stuck
            elif late:
                if ran is not None and ran >= self.limit_s > self.deadline_s:
                    self.why_hung = (f"still using CPU at {ran:.1f} s, "
                                     f"{self.limit_s / self.deadline_s:g} times its "
                                     f"{self.deadline_s:.1f} s deadline: a busy loop, or a "
                                     "machine too loaded to finish it")
                self.hang(now)
            return False
        if self.phase == "native":
            if self.native.done() or now - self.phase_started >= native.GRACE_S:
                self.native.stop()
                self.killpg(STACK_SIGNAL)
                self.phase, self.phase_started = "dump", now
            return False
        if self.phase == "dump":
            if now - self.phase_started >= DUMP_GRACE_S:
                self.killpg(signal.SIGTERM)
                self.phase, self.phase_started = "term", now
            return False
        if self.phase == "term":
            if now - self.phase_started >= TERM_GRACE_S:
                self.killpg(signal.SIGKILL)
                self.phase = "reap"
            return False
        if self.reap():
            self.killpg(signal.SIGKILL)
            return True
        return False

    def hang(self, now):
        """Past its deadline: note its processes, ask each for its stacks, then end it."""
        self.hung = True
        self.finished = now
        for pid in group_members(self.proc.pid):
            self.processes[pid] = describe_process(pid)
        self.native_why = native.unreadable()
        # Each stack scanned while it is as it hung: what py-spy cannot read, or what it shows
        # only as addresses (a stripped library's frames).
        self.scans = {pid: scan.Snapshot(pid) for pid in self.processes}
        if self.native_why is None:  # py-spy first, while every process is as it hung
            self.hangs_seen += 1
            self.native_dir = os.path.join(self.dir, f"native-{self.hangs_seen}")
            make_dirs(self.native_dir)
            self.native = native.Dump(sorted(self.processes), self.native_dir)
            self.phase, self.phase_started = "native", now
            return
        self.killpg(STACK_SIGNAL)
        self.phase, self.phase_started = "dump", now

    def reap(self):
        """Reap the cell process with wait4, keeping its rusage (which includes the children
        it joined). True once it has exited."""
        if self.proc.returncode is not None:
            return True
        try:
            pid, status, rusage = os.wait4(self.proc.pid, os.WNOHANG)
        except ChildProcessError:
            return self.proc.poll() is not None
        if pid == 0:
            return False
        self.proc.returncode = os.waitstatus_to_exitcode(status)
        self.rusage = rusage
        return True

    def cpu_record(self):
        """CPU seconds the cell used, and what every other process on the machine used (and
        the hypervisor stole) meanwhile: a timing taken while others ran is noise."""
        end = host_cpu_jiffies()
        if self.cpu_start is None or end is None:
            return None
        hz = float(os.sysconf("SC_CLK_TCK"))
        busy = (end[0] - self.cpu_start[0]) / hz
        steal = (end[1] - self.cpu_start[1]) / hz
        # In a container: the container's cgroup, which counts processes the cell never reaps
        # (a forkserver and the workers it forks). Timing containers run one cell at a time,
        # so that is this cell's. Elsewhere: the cell's rusage, with the children it joined.
        own, scope = None, None
        own_end = own_cpu_seconds()
        if self.own_start is not None and own_end is not None:
            own, scope = own_end - self.own_start, "container"
        elif self.rusage is not None:
            own, scope = self.rusage.ru_utime + self.rusage.ru_stime, "process"
        wall = self.finished - self.started
        others = max(0.0, busy - own) if own is not None else None
        return {"wall_s": round(wall, 4), "own_s": own, "own_scope": scope,
                "host_busy_s": round(busy, 3),
                "others_s": None if others is None else round(others, 3),
                "steal_s": round(steal, 3),
                "others_cpus": None if others is None or wall <= 0 else round(others / wall, 3)}

    def collect_stacks(self):
        parts = []
        try:
            names = sorted(os.listdir(self.stacks_dir))
        except OSError:
            names = []
        for name in names:
            path = os.path.join(self.stacks_dir, name)
            text = read_bounded(path, STACK_LIMIT // 2, STACK_LIMIT // 2).strip()
            if not text:
                continue
            pid = int(name.split(".")[0]) if name.split(".")[0].isdigit() else -1
            role = "cell main process" if pid == self.proc.pid else "child process"
            cmd = self.processes.get(pid, "")
            parts.append(f"=== pid {pid} ({role}) {cmd}\n{with_sources(text)}"
                         + self.native_part(pid))
        if self.hung:
            dumped = set(int(n.split(".")[0]) for n in names if n.split(".")[0].isdigit())
            for pid, cmd in sorted(self.processes.items()):
                if pid not in dumped or not os.path.getsize(
                    os.path.join(self.stacks_dir, f"{pid}.txt")
                ):
                    parts.append(f"=== pid {pid} {cmd}\n(no stack: the process had no dump "
                                 "handler)" + self.native_part(pid))
            if self.native_why:
                parts.insert(0, f"(native stacks not read: {self.native_why}; "
                             "faulthandler's stacks follow)")
        return "\n\n".join(parts) or None

    def native_part(self, pid):
        """py-spy's view of ``pid`` under its heading, where it read one, with what a scan of
        its stacks adds where py-spy shows a stripped library's frames as addresses; else what
        the scan found."""
        text = native.read(self.native_dir, pid, STACK_LIMIT // 4) if self.native_dir else None
        snapshot = (self.scans or {}).get(pid)
        if snapshot is None:
            return f"\n{native.HEADING}\n{text}" if text else ""
        if native.has_stacks(text):
            beside = scan.beside_py_spy(snapshot, native.stripped(text))
            return f"\n{native.HEADING}\n{text}" + (
                f"\n{scan.BESIDE_HEADING}\n{beside}" if beside else "")
        said = f"\n{native.HEADING}\n{text}" if text else ""  # why py-spy read no stacks
        found_text = scan.render(snapshot.threads)
        return said + (f"\n{scan.HEADING}\n{found_text}" if found_text else "")


    def script_result(self):
        """What the hook noted about a `lab check` program (it writes no result file)."""
        result = {"measurements": {}, "warnings": []}
        text = read_bounded(os.path.join(self.dir, "hook.json"), 4096, 0)
        try:
            noted = json.loads(text) if text else {}
        except ValueError:
            noted = {}
        if isinstance(noted, dict):
            result["measurements"].update(noted)
        result["measurements"]["argv"] = [self.cell["script"]["path"]] + list(
            self.cell["script"].get("args") or [])
        choices = []
        for line in read_bounded(os.path.join(self.dir, "choices.jsonl"),
                                 16 * 1024, 0).splitlines()[:20]:
            try:
                choice = json.loads(line)
            except ValueError:
                continue
            if isinstance(choice, dict):
                choices.append(choice)
        result["measurements"]["start_method_choices"] = choices
        for line in read_bounded(os.path.join(self.dir, "warnings.jsonl"),
                                 64 * 1024, 0).splitlines()[:100]:
            try:
                w = json.loads(line)
            except ValueError:
                continue
            if isinstance(w, dict):
                result["warnings"].append(w)
        code = self.proc.returncode
        result["status"] = P.OK if code == 0 else P.FAILED
        if code:
            result["detail"] = "exited with code {}{}".format(
                code, ": " + last_error(read_bounded(self.output_path)))
        return result

    def record(self):
        self.output.close()
        if self.is_script:
            return self.record_from(self.script_result(), None)
        result, problem = None, None
        try:
            with open(self.result_path) as fh:
                result = json.load(fh)
            if not isinstance(result, dict):
                result, problem = None, "result file is not a JSON object"
        except (OSError, ValueError) as exc:
            problem = f"result file missing or malformed: {exc}"
        return self.record_from(result or {}, problem)

    def record_from(self, result, problem):
        code = self.proc.returncode
        rec = {
            "kind": "cell",
            "record_version": P.RECORD_VERSION,
            "index": self.index,
            "scenario": self.cell["scenario"],
            "start_method": self.cell.get("start_method"),
            "duration_s": round(self.finished - self.started, 4),
            "deadline_s": self.deadline_s,
            "measurements": result.get("measurements") or {},
            "warnings": result.get("warnings") or [],
            "stacks": None,
            "detail": result.get("detail"),
            "exit_code": code,
            "signal": None,
            "output": read_bounded(self.output_path),
            "cpus": affinity(),
            "cpu": self.cpu_record(),
            "gil_enabled": result.get("gil_enabled"),
        }
        if self.overran_s is not None and not self.hung:
            rec["overran_s"] = self.overran_s
        if self.hung:
            rec["outcome"] = P.HUNG
            rec["detail"] = (self.why_hung or f"no result within the {self.deadline_s:.1f} s "
                             "deadline") + "; stacks dumped, group killed"
            rec["stacks"] = self.collect_stacks()
        elif code is not None and code < 0:
            rec["outcome"] = P.CRASHED
            rec["signal"] = signal_name(-code)
            rec["detail"] = "cell process killed by {}".format(rec["signal"])
            rec["stacks"] = self.collect_stacks()
        elif code != 0:
            rec["outcome"] = P.FAILED
            rec["detail"] = result.get("detail") or f"cell process exited with code {code}"
            if self.is_script:
                rec["measurements"]["exit_code"] = code
        elif problem:
            rec["outcome"] = P.ERROR
            rec["detail"] = problem
        else:
            status = result.get("status")
            rec["outcome"] = status if status in P.CELL_STATUSES else P.ERROR
            if status not in P.CELL_STATUSES:
                rec["detail"] = f"result file has an unknown status {status!r}"
        return rec


QUIET_WINDOW_S = 0.5
WAIT_NOTE_S = 2.0


def others_now(window=QUIET_WINDOW_S):
    """CPUs that processes outside this runner's cells used over ``window`` seconds (host-wide
    /proc/stat minus this container's own use); None where it cannot be read."""
    a, own_a = host_cpu_jiffies(), own_cpu_seconds()
    time.sleep(window)
    b, own_b = host_cpu_jiffies(), own_cpu_seconds()
    if a is None or b is None:
        return None
    busy = (b[0] - a[0]) / float(os.sysconf("SC_CLK_TCK"))
    own = (own_b - own_a) if own_a is not None and own_b is not None else 0.0
    return max(0.0, busy - own) / window


BUSY_WAIT_S = 2.0  # once a wait gave up: the machine stays busy, waiting long again won't help


def wait_for_quiet(quiet, index, emit, stopping, busy=False):
    """Before a timing cell: wait, up to ``max_wait_s`` (BUSY_WAIT_S once a wait of this job
    gave up), until other processes use at most ``threshold`` CPUs. Says why it waits
    (``wait`` records, which the host shows)."""
    threshold = float(quiet.get("threshold", 0.15))
    max_wait = BUSY_WAIT_S if busy else float(quiet.get("max_wait_s", 30))
    started = time.monotonic()
    noted = started - WAIT_NOTE_S  # the first contended sample is said at once
    others = None
    while not stopping:
        others = others_now()
        waited = time.monotonic() - started
        if others is None or others <= threshold:
            return {"waited_s": round(waited, 2), "others_cpus": others, "quiet": True}
        if waited >= max_wait:
            return {"waited_s": round(waited, 2), "others_cpus": round(others, 3),
                    "quiet": False}
        if time.monotonic() - noted >= WAIT_NOTE_S:
            noted = time.monotonic()
            emit({"kind": "wait", "record_version": P.RECORD_VERSION, "index": index,
                  "others_cpus": round(others, 2), "waited_s": round(waited, 1)})
    return {"waited_s": round(time.monotonic() - started, 2), "others_cpus": others,
            "quiet": None}


def _others(record):
    value = (record.get("cpu") or {}).get("others_cpus")
    return value if isinstance(value, (int, float)) else None


def settle(tries, since=0):
    """The record to keep of a cell measured several times: the cleanest attempt that ended
    ok (least CPU used by others) from attempt ``since`` on (a re-measure after the cells of a
    scenario disagreed replaces what came before), carrying every attempt so none is lost."""
    ok = [i for i, r in enumerate(tries) if i >= since and r.get("outcome") == P.OK
          and _others(r) is not None]
    chosen = min(ok, key=lambda i: _others(tries[i])) if ok else len(tries) - 1
    best = dict(tries[chosen])
    if len(tries) > 1:
        best["attempts"] = [
            {"attempt": i, "kept": i == chosen, "outcome": r.get("outcome"),
             "why": r.get("why", "first"),
             "others_cpus": _others(r), "wall_s": (r.get("cpu") or {}).get("wall_s"),
             "quiet": r.get("quiet"), "measurements": r.get("measurements")}
            for i, r in enumerate(tries)]
    return best


def directions(record):
    """A cell's ``directions`` measurement: comparison name -> -1, 0 (undecided) or +1."""
    got = (record.get("measurements") or {}).get(M.DIRECTIONS)
    if record.get("outcome") != P.OK or not isinstance(got, dict):
        return {}
    return {k: v for k, v in got.items() if v in (-1, 1)}


def disagreeing(records):
    """Indexes of the cells to measure again because cells of one scenario point in opposite
    directions on a comparison: those on the minority side (both sides on a tie)."""
    again = set()
    names = {name for _, rec in records for name in directions(rec)}
    for name in sorted(names):
        sides = {}
        for index, rec in records:
            sign = directions(rec).get(name)
            if sign is not None:
                sides.setdefault(sign, []).append(index)
        if len(sides) == 2:
            up, down = sides[1], sides[-1]
            again.update(up if len(up) < len(down) else down if len(down) < len(up)
                         else up + down)
    return sorted(again)


def run_plan(plan, out_dir):
    """Run every cell of ``plan``; append one record per cell to out_dir/results.jsonl.

    Each cell's own files (its output, stacks, result) go to ``plan["scratch"]`` when given:
    in a container, a size-capped tmpfs, so a program that prints without end fills that, not
    the host's disk. Only ``results.jsonl``, with capped fields, goes to ``out_dir``."""
    from .suite import SuiteCell, is_suite  # it builds on RunningCell

    cells = plan["cells"]
    parallel = max(1, int(plan.get("parallel", 1)))
    scale = float(plan.get("deadline_scale", 1.0))
    overrun = float(plan.get("overrun_limit", 1.0))
    user_dir = plan.get("user_dir")
    scratch = plan.get("scratch")
    quiet = plan.get("quiet")  # timing jobs: wait for a quiet machine, re-measure the disturbed
    retries = int((quiet or {}).get("retries", 0))
    threshold = float((quiet or {}).get("threshold", 0.15))
    retry_above = float((quiet or {}).get("retry_above", threshold))
    tries = {}  # index -> every attempt's record so far
    since = {}  # index -> first attempt of the re-measure after a disagreement
    why = {}  # index -> why its next attempt runs
    held = {}  # timing jobs: index -> (cell, settled record) until its scenario is complete
    remeasured = set()  # scenarios re-measured once already
    busy = False
    last_others = None  # what other processes used during the cell before
    make_dirs(os.path.join(scratch or out_dir, "cells"))
    results_path = os.path.join(out_dir, "results.jsonl")
    pending = list(enumerate(cells))
    running = []
    stopping = []

    def on_term(signum, frame):
        # Cells run in sessions of their own, so killing the runner alone would orphan them
        # (a host interpreter has no container to take them all down): kill their groups.
        stopping.append(signum)

    signal.signal(signal.SIGTERM, on_term)
    with open(results_path, "a") as sink:
        full = []

        def emit(record):
            # The channel stops at the container's file-size limit (RLIMIT_FSIZE; Python
            # ignores SIGXFSZ, so a write past it fails with EFBIG): then nothing more can be
            # reported, and the host turns the cells left into errors that say so.
            if full:
                return
            try:
                sink.write(json.dumps(record, default=repr) + "\n")
                sink.flush()
                os.fsync(sink.fileno())
            except OSError as exc:
                full.append(exc)
                sys.stderr.write(f"labrunner: the results channel is full ({exc}); no more "
                                 "records\n")

        emit({"kind": "start", "record_version": P.RECORD_VERSION, "cells": len(cells),
              "pid": os.getpid(), "cpus": affinity()})
        def release_held():
            for i in sorted(held):
                emit(held.pop(i)[1])

        while pending or running:
            if stopping:
                for rc in running:
                    rc.killpg(signal.SIGKILL)
                    rc.proc.wait()
                release_held()  # what finished is kept
                return 128 + stopping[0]
            while pending and len(running) < parallel:
                index, cell = pending.pop(0)
                if quiet and last_others is not None and last_others <= retry_above:
                    # The cell just before was not disturbed (it would have been measured
                    # again otherwise): the machine is quiet, no need to sample again.
                    before = {"waited_s": 0.0, "others_cpus": last_others, "quiet": True}
                else:
                    before = (wait_for_quiet(quiet, index, emit, stopping, busy) if quiet
                              else None)
                if before and before["quiet"] is False:
                    busy = True  # persistently busy: shorter waits, one re-measure at most
                if stopping:
                    break
                try:
                    kind = SuiteCell if is_suite(cell) else RunningCell
                    rc = kind(index, cell, out_dir, scale, user_dir, scratch,
                              attempt=len(tries.get(index, [])), overrun=overrun)
                    rc.quiet = before
                    running.append(rc)
                except Exception as exc:  # harness fault: this cell only
                    emit({"kind": "cell", "record_version": P.RECORD_VERSION, "index": index,
                          "scenario": cell.get("scenario"),
                          "start_method": cell.get("start_method"),
                          "outcome": P.ERROR, "detail": f"could not start cell: {exc!r}"})
            now = time.monotonic()
            look(running, now)
            for rc in list(running):
                if rc.step(now):
                    running.remove(rc)
                    rec = rc.record()
                    if rc.quiet is not None:
                        rec["quiet"] = rc.quiet
                    if scratch:  # its files are in the record; free the tmpfs for the next
                        shutil.rmtree(rc.dir, ignore_errors=True)
                    done = tries.setdefault(rc.index, [])
                    rec["why"] = why.pop(rc.index, "first" if len(done) == 0 else "contended")
                    done.append(rec)
                    others = last_others = _others(rec)
                    if (quiet and rec.get("outcome") == P.OK and others is not None
                            and others > retry_above
                            and len(done) - since.get(rc.index, 0)
                            <= (min(retries, 1) if busy else retries)):
                        pending.insert(0, (rc.index, rc.cell))  # disturbed: measure again
                        continue
                    settled = settle(tries[rc.index], since.get(rc.index, 0))
                    if not quiet or M.DIRECTIONS not in (settled.get("measurements") or {}):
                        tries.pop(rc.index)
                        held.pop(rc.index, None)
                        emit(settled)
                    else:
                        # Timing cells that say which way a comparison went are held until
                        # every cell of their scenario is in; those that disagree with the
                        # others are measured once more.
                        held[rc.index] = (rc.cell, settled)
                    scenario = rc.cell.get("scenario")
                    group = sorted(i for i, (c, _) in held.items()
                                   if c.get("scenario") == scenario)
                    if not group or (
                            any(c.get("scenario") == scenario for _, c in pending)
                            or any(r.cell.get("scenario") == scenario for r in running)):
                        continue
                    again = [] if scenario in remeasured else disagreeing(
                        [(i, held[i][1]) for i in group])
                    if again:
                        remeasured.add(scenario)
                        for i in reversed(again):
                            since[i] = len(tries[i])
                            why[i] = "disagreed"
                            pending.insert(0, (i, held[i][0]))  # held until replaced
                        continue
                    for i in group:
                        tries.pop(i, None)
                        emit(held.pop(i)[1])
            time.sleep(POLL_S)
        release_held()
        emit({"kind": "done", "record_version": P.RECORD_VERSION})
    return 0
