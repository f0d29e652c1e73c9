# IN-CONTAINER CODE: standard library only, Python 3.9+ and PyPy; never imports lab.*.
"""Whether a cell's processes can still progress, read from the kernel's view of each thread.

A hung cell used to wait out its whole deadline even when every process in it had been stuck
since its first second. This module tells such a cell apart from one that is merely slow, with
what ``/proc`` says of every thread of every process in the cell's group:

* its state (``R`` running or waiting for a CPU, ``S`` asleep, ``D`` in I/O, ...);
* the system call it sleeps in, with its arguments (``/proc/PID/task/TID/syscall``), which say
  whether the wait has a timeout: ``futex`` with no timeout, ``wait4``, ``read`` of a pipe,
  ``poll`` with -1 can only end when something else acts; ``clock_nanosleep`` or a ``futex``
  with a timeout ends by itself;
* its CPU ticks and context switches, which move whenever it wakes, even for a moment.

**Stuck**: every thread of every process sleeps in a wait with no timeout, and two samples a
window apart are identical, CPU ticks and context switches included. Then nothing in the group
can wake anything else in it (a wake would have shown as a switch), no wait ends by itself, and
nothing outside can reach it: cells have no network, and the harness makes sure no process
outside the cells' groups shares the container. What could still wake such a group is guarded
against: a caught ``SIGALRM``, a POSIX timer, a ``timerfd`` or an ``inotify`` makes it "may
progress". Anything not understood (a system call not in the tables, an unreadable file, a
stopped or traced process, emulation) is "may progress" too: this errs towards the deadline.

**Working**: a thread waits for a CPU, or the group used CPU within the window. A cell that is
working at its deadline is starved, not hung, and the harness gives it more time, up to a limit.
"""

import os
import struct

WINDOW_S = 1.0  # the stuck state must hold this long, samples identical, before it counts
SAMPLE_S = 0.25

# Waits that cannot end by themselves, by ABI: syscall number -> (name, the argument that
# holds the timeout (None: the call has none), how to read it: "ptr" (NULL: none), "int"
# (negative: none)). Anything else is taken to be able to end by itself.
FUTEX_WAITS = {0, 6, 9, 11, 13}  # WAIT, LOCK_PI, WAIT_BITSET, WAIT_REQUEUE_PI, LOCK_PI2
UNTIMED_X86_64 = {
    0: ("read", None, None), 1: ("write", None, None), 17: ("pread", None, None),
    18: ("pwrite", None, None), 19: ("readv", None, None), 20: ("writev", None, None),
    7: ("poll", 2, "int"), 23: ("select", 4, "ptr"), 270: ("pselect6", 4, "ptr"),
    271: ("ppoll", 2, "ptr"), 232: ("epoll_wait", 3, "int"), 281: ("epoll_pwait", 3, "int"),
    441: ("epoll_pwait2", 3, "ptr"), 202: ("futex", 3, "ptr"), 449: ("futex_waitv", 3, "ptr"),
    61: ("wait4", None, None), 247: ("waitid", None, None), 34: ("pause", None, None),
    130: ("rt_sigsuspend", None, None), 128: ("rt_sigtimedwait", 2, "ptr"),
    42: ("connect", None, None), 43: ("accept", None, None), 288: ("accept4", None, None),
    44: ("sendto", None, None), 45: ("recvfrom", None, None), 46: ("sendmsg", None, None),
    47: ("recvmsg", None, None), 73: ("flock", None, None), 65: ("semop", None, None),
    69: ("msgsnd", None, None), 70: ("msgrcv", None, None),
}
UNTIMED_I386 = {
    3: ("read", None, None), 4: ("write", None, None), 180: ("pread", None, None),
    181: ("pwrite", None, None), 145: ("readv", None, None), 146: ("writev", None, None),
    168: ("poll", 2, "int"), 142: ("select", 4, "ptr"), 308: ("pselect6", 4, "ptr"),
    413: ("pselect6", 4, "ptr"), 309: ("ppoll", 2, "ptr"), 414: ("ppoll", 2, "ptr"),
    256: ("epoll_wait", 3, "int"), 319: ("epoll_pwait", 3, "int"),
    441: ("epoll_pwait2", 3, "ptr"), 240: ("futex", 3, "ptr"), 422: ("futex", 3, "ptr"),
    449: ("futex_waitv", 3, "ptr"), 114: ("wait4", None, None), 7: ("waitpid", None, None),
    284: ("waitid", None, None), 29: ("pause", None, None), 179: ("rt_sigsuspend", None, None),
    177: ("rt_sigtimedwait", 2, "ptr"), 421: ("rt_sigtimedwait", 2, "ptr"),
    102: ("socketcall", None, None), 362: ("connect", None, None),
    364: ("accept4", None, None), 369: ("sendto", None, None), 370: ("sendmsg", None, None),
    371: ("recvfrom", None, None), 372: ("recvmsg", None, None), 143: ("flock", None, None),
}
WAKERS = ("anon_inode:[timerfd]", "anon_inode:inotify", "anon_inode:[signalfd]")
SIGALRM_BIT = 1 << 13  # SigCgt: bit n-1 for signal n


def abi():
    """The system call table of this interpreter's processes, or None where it is not known
    (an emulated CPU reports the emulator's calls, not the program's)."""
    machine = os.uname().machine
    if machine not in ("x86_64", "amd64", "i386", "i686"):
        return None
    return UNTIMED_I386 if struct.calcsize("P") == 4 else UNTIMED_X86_64


def untimed_wait(syscall_line, table):
    """The name of the wait with no timeout that ``/proc/.../syscall`` shows, else None (not in
    a system call, a call with a timeout, or one this table does not know)."""
    fields = syscall_line.split()
    if not fields or not fields[0].lstrip("-").isdigit() or table is None:
        return None
    entry = table.get(int(fields[0]))
    if entry is None:
        return None
    name, arg, how = entry
    try:
        args = [int(x, 16) for x in fields[1:7]]
    except ValueError:
        return None
    if len(args) < 6:
        return None
    if name == "futex" and args[1] & 0x7F not in FUTEX_WAITS:
        return None
    if arg is None:
        return name
    value = args[arg]
    if how == "ptr":
        return name if value == 0 else None
    value &= 0xFFFFFFFF  # an int: the register may hold it zero- or sign-extended
    return name if value >= 0x80000000 else None


def _read(path, limit=4096):
    try:
        with open(path, "rb") as fh:
            return fh.read(limit).decode("ascii", "replace")
    except OSError:
        return None


def _thread(pid, tid, table):
    """(state, wait or None, ticks, switches) of one thread; None if it is gone."""
    base = f"/proc/{pid}/task/{tid}/"
    stat = _read(base + "stat")
    if not stat or ")" not in stat:
        return None
    fields = stat[stat.rindex(")") + 2:].split()
    try:
        state, ticks = fields[0], int(fields[11]) + int(fields[12])
    except (IndexError, ValueError):
        return None
    switches = 0
    for line in (_read(base + "status") or "").splitlines():
        if "ctxt_switches:" in line:
            try:
                switches += int(line.split(":", 1)[1])
            except ValueError:
                pass
    wait = untimed_wait(_read(base + "syscall") or "", table) if state == "S" else None
    return state, wait, ticks, switches


def _may_be_woken(pid):
    """What outside the group's own threads could wake ``pid``: an alarm, a timer, a timerfd,
    an inotify. None if nothing."""
    status = _read(f"/proc/{pid}/status") or ""
    for line in status.splitlines():
        if line.startswith("SigCgt:"):
            try:
                if int(line.split()[1], 16) & SIGALRM_BIT:
                    return "a SIGALRM handler"
            except (IndexError, ValueError):
                return "an unreadable signal mask"
    if (_read(f"/proc/{pid}/timers") or "").strip():
        return "a POSIX timer"
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return "file descriptors that cannot be read"
    for fd in fds:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith(WAKERS):
            return target
    return None


def sample(pids, table):
    """One look at every thread of ``pids``: {(pid, tid): (state, wait, ticks, switches)},
    and the reason the group may be woken from outside (None if none)."""
    threads, woken = {}, None
    for pid in pids:
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tids:
            got = _thread(pid, tid, table)
            if got is not None and got[0] != "Z":
                threads[(pid, int(tid))] = got
        if woken is None:
            woken = _may_be_woken(pid)
    return threads, woken


def blocked(threads):
    """True if every thread sleeps in a wait with no timeout."""
    return bool(threads) and all(t[0] == "S" and t[1] for t in threads.values())


def summary(threads):
    """The waits of a stuck group, in words: 'futex x3, wait4 x1 in 2 processes'."""
    counts = {}
    for t in threads.values():
        counts[t[1]] = counts.get(t[1], 0) + 1
    waits = ", ".join(f"{name} x{n}" for name, n in sorted(counts.items()))
    procs = len({pid for pid, _ in threads})
    return f"{waits} in {procs} process{'es' if procs != 1 else ''}"


class Watch:
    """Samples one cell's group every SAMPLE_S and says whether it is stuck or working."""

    def __init__(self):
        self.table = abi()
        self.last_at = None
        self.stuck_from = None  # (time, sample) of the first of a run of identical stuck looks
        self.history = []  # (time, total ticks, any thread runnable) over the last window
        self.evidence = None

    def due(self, now):
        return self.last_at is None or now - self.last_at >= SAMPLE_S

    def observe(self, now, pids, strays=False):
        """Take a sample. ``strays``: processes outside any cell share the container, so
        nothing can be proved stuck."""
        self.last_at = now
        threads, woken = sample(pids, self.table)
        ticks = sum(t[2] for t in threads.values())
        runnable = any(t[0] in ("R", "D") for t in threads.values())
        self.history = [h for h in self.history if now - h[0] <= WINDOW_S] + [
            (now, ticks, runnable)]
        if self.table is None or strays or woken or not blocked(threads):
            self.stuck_from = None
            return
        if self.stuck_from is None or self.stuck_from[1] != threads:
            self.stuck_from = (now, threads)

    def stuck_for(self, now):
        """Seconds the group has been seen stuck with nothing changing (0 if it is not)."""
        return now - self.stuck_from[0] if self.stuck_from else 0.0

    def stuck(self, now):
        """True once the group has been stuck, unchanged, for WINDOW_S."""
        return self.stuck_for(now) >= WINDOW_S

    def describe(self, now):
        if not self.stuck_from:
            return ""
        return (f"every thread waited with no timeout and used no CPU for "
                f"{self.stuck_for(now):.1f} s ({summary(self.stuck_from[1])})")

    def working(self):
        """True if within the last window a thread waited for a CPU or the group used CPU."""
        if len(self.history) < 2:
            return True  # not looked at yet: assume it may be
        return (any(h[2] for h in self.history)
                or self.history[-1][1] > self.history[0][1])
