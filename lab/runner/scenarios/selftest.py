# IN-CONTAINER CODE: standard library only, Python 3.9+ and PyPy; never imports lab.*.
"""Harness self-tests: cells that misbehave on purpose, so tests can check how the harness and
the host contain each fault. Not in CATALOG: a run never plans them; tests name them as
``selftest.<name>``.
"""

import os
import signal
import sys
import time

from .. import measurements as M


def crash(ctx):
    os.kill(os.getpid(), signal.SIGSEGV)


def fail(ctx):
    raise RuntimeError("selftest: a scenario that raises")


def exit3(ctx):
    sys.exit(3)


def hang(ctx):
    time.sleep(3600)


def stuck(ctx):
    """A deadlock with no timeout anywhere: the main thread takes a lock it holds."""
    import threading

    lock = threading.Lock()
    lock.acquire()
    lock.acquire()


def spin(ctx):
    """Busy on a CPU for ``seconds`` (a cell that is slow, not stuck), then done."""
    end = time.monotonic() + float(ctx.params.get("seconds", 5))
    while time.monotonic() < end:
        pass
    ctx.record("spun", True)


def _produce_later(q, seconds):
    time.sleep(seconds)
    q.put("late")


def _consume(q):
    q.get()  # no timeout: waits on the queue's pipe until the producer puts


def wait_then_finish(ctx):
    """Children that sleep or wait on I/O for ``seconds`` and then finish, while the rest of
    the cell waits on them with no timeout: a consumer blocked on a queue, a producer asleep
    before it puts, ``sleep`` run as a program, a pipe that a thread writes late, read through
    ``select`` with no timeout, and the main thread joining each. Slow, never stuck."""
    import select
    import subprocess
    import threading

    seconds = float(ctx.params.get("seconds", 3))
    q = ctx.mp.Queue()
    consumer = ctx.start_child(_consume, q)
    producer = ctx.start_child(_produce_later, q, seconds)
    program = subprocess.Popen(["sleep", str(seconds)])
    r, w = os.pipe()
    threading.Thread(target=lambda: (time.sleep(seconds), os.write(w, b"x")),
                     daemon=True).start()
    select.select([r], [], [])  # no timeout
    program.wait()  # no timeout
    consumer.join()  # no timeout
    producer.join()
    ctx.record("finished", [consumer.exitcode, producer.exitcode, program.returncode])


def sleep(ctx):
    time.sleep(float(ctx.params.get("seconds", 5)))
    ctx.record("slept", True)


def direction(ctx):
    """Records ``directions`` {"x": sign}: ``params["signs"][start method]`` lists the sign of
    each attempt (the last repeats); attempts are counted in files under ``params["dir"]``."""
    signs = ctx.params["signs"][ctx.start_method or "none"]
    mark = os.path.join(ctx.params["dir"], ctx.start_method or "none")
    with open(mark, "a") as fh:
        fh.write(".")
    with open(mark) as fh:
        attempt = len(fh.read()) - 1
    ctx.record(M.DIRECTIONS, {"x": signs[min(attempt, len(signs) - 1)]})


def noisy(ctx):
    line = "z" * 1023 + "\n"
    for _ in range(int(ctx.params.get("kib", 10 * 1024))):
        sys.stdout.write(line)
    sys.stdout.flush()
    ctx.record("wrote_kib", int(ctx.params.get("kib", 10 * 1024)))


def flood(ctx):
    """Write output without end (as a runaway program would) until the disk says no."""
    line = b"y" * 1023 + b"\n"
    written = 0
    try:
        while written < int(ctx.params.get("mib", 1024)) * 1024:
            os.write(1, line)
            written += 1
    except OSError as exc:
        ctx.record("stopped_by", f"{type(exc).__name__}: {exc}")
    ctx.record("wrote_kib", written)


def badresult(ctx):
    with open(ctx.result_path, "w") as fh:
        fh.write("{this is not json")
    os._exit(0)


def oom(ctx):
    hoard = []
    for _ in range(int(ctx.params.get("mib", 4096))):
        hoard.append(bytearray(1024 * 1024))
    ctx.record("allocated_mib", len(hoard))


def forkbomb(ctx):
    """Fork until the pids limit says no, then reap everything: bounded by the container."""
    children = []
    error = None
    try:
        for _ in range(int(ctx.params.get("max", 100000))):
            pid = os.fork()
            if pid == 0:
                time.sleep(30)
                os._exit(0)
            children.append(pid)
    except OSError as exc:
        error = f"{type(exc).__name__}: {exc}"
    for pid in children:
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except OSError:
            pass
    ctx.record("forks_before_limit", len(children))
    ctx.record("fork_error", error)


def kill_runner(ctx):
    os.kill(int(os.environ["LAB_RUNNER_PID"]), signal.SIGKILL)
    time.sleep(5)


def symlink_results(ctx):
    """A hostile container: the results channel becomes a symlink to a host path (params
    "target"), then the runner dies, so the host finds only the link."""
    channel = os.path.join(os.environ["LAB_RUNNER_OUT"], "results.jsonl")
    os.symlink(ctx.params["target"], channel + ".link")
    os.replace(channel + ".link", channel)
    os.kill(int(os.environ["LAB_RUNNER_PID"]), signal.SIGKILL)
    time.sleep(5)


def flood_channel(ctx):
    """A hostile cell: makes another file beside the results channel, then writes without
    limit into the channel itself (params "mib"); records what it managed."""
    out = os.environ["LAB_RUNNER_OUT"]
    try:
        open(os.path.join(out, "other.jsonl"), "w").close()
        ctx.record("made_other_file", True)
    except OSError as exc:
        ctx.record("made_other_file", repr(exc))
    written, error, chunk = 0, None, b"x" * (1 << 20)
    try:
        with open(os.path.join(out, "results.jsonl"), "ab") as fh:
            for _ in range(int(ctx.params.get("mib", 256))):
                fh.write(chunk)
                fh.flush()
                written += len(chunk)
    except OSError as exc:
        error = repr(exc)
    ctx.record("written", written)
    ctx.record("error", error)


class Shim:
    def __init__(self, fn):
        self.run = fn
