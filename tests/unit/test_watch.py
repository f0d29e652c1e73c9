"""The runner's reading of a thread's wait (lab/runner/watch.py), on lines this machine's
kernel wrote in /proc/PID/task/TID/syscall for cp311's threads."""

from lab.runner import watch
from lab.runner.watch import UNTIMED_I386, UNTIMED_X86_64, blocked, summary, untimed_wait

X = UNTIMED_X86_64


def test_waits_with_no_timeout_are_named():
    # threading.Lock().acquire(): futex(FUTEX_WAIT_BITSET|PRIVATE|CLOCK_REALTIME, no timeout)
    assert untimed_wait("202 0x20a9d7c0 0x189 0x0 0x0 0x0 0xffffffff 0x7f1b 0x7f1b", X) == "futex"
    assert untimed_wait("0 0x3 0x7f1ba71a78c0 0x1 0x7f1b 0x0 0x0 0x7f1b 0x7f1b", X) == "read"
    assert untimed_wait("61 0x9 0x7ffd 0x0 0x0 0x0 0x0 0x7ffd 0x7f1b", X) == "wait4"
    # poll(fds, n, -1), the int register zero- or sign-extended
    assert untimed_wait("7 0x7f 0x1 0xffffffff 0x0 0x0 0x0 0x1 0x2", X) == "poll"
    assert untimed_wait("7 0x7f 0x1 0xffffffffffffffff 0x0 0x0 0x0 0x1 0x2", X) == "poll"
    assert untimed_wait("23 0x4 0x7ffd 0x0 0x0 0x0 0x0 0x1 0x2", X) == "select"


def test_waits_that_end_by_themselves_are_not():
    # Event.wait(50): the same futex with a timeout
    assert untimed_wait("202 0x7f1b98000ba0 0x89 0x0 0x7f1ba680d8e0 0x0 0xffffffff 0x1 0x2",
                        X) is None
    assert untimed_wait("230 0x0 0x0 0x7ffd9e9ee140 0x7ffd9e9ee180 0x0 0x0 0x1 0x2", X) is None
    assert untimed_wait("7 0x7f 0x1 0x1388 0x0 0x0 0x0 0x1 0x2", X) is None  # poll 5 s
    assert untimed_wait("202 0x7f 0x81 0x1 0x0 0x0 0x0 0x1 0x2", X) is None  # FUTEX_WAKE
    assert untimed_wait("running", X) is None
    assert untimed_wait("-1 0x7ffd 0x7f1b", X) is None  # not in a system call
    assert untimed_wait("999 0x0 0x0 0x0 0x0 0x0 0x0 0x1 0x2", X) is None  # not known
    assert untimed_wait("202 0x20a9d7c0 0x189 0x0 0x0", X) is None  # cut short
    assert untimed_wait("202 0x20a9d7c0 0x189 0x0 0x0 0x0 0x0 0x1 0x2", None) is None


def test_i386_has_its_own_numbers():
    assert untimed_wait("240 0x5 0x189 0x0 0x0 0x0 0x0 0x1 0x2", UNTIMED_I386) == "futex"
    assert untimed_wait("240 0x5 0x189 0x0 0x0 0x0 0x0 0x1 0x2", X) is None  # 240 on x86_64
    assert untimed_wait("3 0x5 0x1 0x1 0x0 0x0 0x0 0x1 0x2", UNTIMED_I386) == "read"


def test_a_group_is_blocked_only_if_every_thread_is():
    stuck = {(9, 9): ("S", "wait4", 30, 12), (10, 10): ("S", "futex", 2, 3),
             (10, 11): ("S", "futex", 0, 1)}
    assert blocked(stuck)
    assert summary(stuck) == "futex x2, wait4 x1 in 2 processes"
    assert not blocked({**stuck, (10, 12): ("S", None, 0, 1)})  # a timed wait
    assert not blocked({**stuck, (10, 12): ("R", None, 0, 1)})  # on a CPU or waiting for one
    assert not blocked({})


def test_the_stuck_state_must_hold_unchanged_for_the_window(monkeypatch):
    looks = iter([
        ({(9, 9): ("S", "wait4", 30, 12)}, None),
        ({(9, 9): ("S", "wait4", 30, 13)}, None),  # it woke and slept again: starts over
        ({(9, 9): ("S", "wait4", 30, 13)}, None),
        ({(9, 9): ("S", "wait4", 30, 13)}, None),
        ({(9, 9): ("S", "wait4", 30, 13)}, "a SIGALRM handler"),  # an alarm may wake it
    ])
    monkeypatch.setattr(watch, "sample", lambda pids, table: next(looks))
    w = watch.Watch()
    w.table = X
    w.observe(0.0, [9])
    w.observe(0.5, [9])
    assert not w.stuck(1.2)
    w.observe(1.0, [9])
    w.observe(1.6, [9])
    assert w.stuck(1.6) and "for 1.1 s (wait4 x1 in 1 process)" in w.describe(1.6)
    assert not w.working()
    w.observe(1.9, [9])
    assert not w.stuck(2.5)


def test_nothing_is_proved_stuck_beside_strangers_or_on_an_unknown_cpu(monkeypatch):
    monkeypatch.setattr(watch, "sample", lambda pids, table: (
        {(9, 9): ("S", "futex", 1, 1)}, None))
    w = watch.Watch()
    w.table = X
    for t in (0.0, 0.5, 1.0, 1.5):
        w.observe(t, [9], strays=True)
    assert not w.stuck(1.5)
    w = watch.Watch()
    w.table = None  # emulation: the kernel shows the emulator's calls
    for t in (0.0, 0.5, 1.0, 1.5):
        w.observe(t, [9])
    assert not w.stuck(1.5)


def test_working_means_cpu_used_or_a_thread_on_the_run_queue(monkeypatch):
    looks = iter([({(9, 9): ("S", None, 10, 1)}, None), ({(9, 9): ("S", None, 12, 2)}, None),
                  ({(9, 9): ("R", None, 12, 2)}, None)])
    monkeypatch.setattr(watch, "sample", lambda pids, table: next(looks))
    w = watch.Watch()
    w.observe(0.0, [9])
    assert w.working()  # one look proves nothing: it may be
    w.observe(0.5, [9])
    assert w.working()  # 2 ticks of CPU
    w2 = watch.Watch()
    monkeypatch.setattr(watch, "sample", lambda pids, table: ({(9, 9): ("S", None, 5, 1)},
                                                               None))
    w2.observe(0.0, [9])
    w2.observe(0.5, [9])
    assert not w2.working()  # asleep, no CPU: not starved
