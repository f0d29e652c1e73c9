# IN-CONTAINER CODE: standard library only, Python 3.9+ and PyPy; never imports lab.*.
"""pickle_target: a lambda, a closure and a nested function work as ``Process`` targets under
``fork`` only.

Claim: ``fork`` copies the parent, so any callable can be a target; ``spawn`` and
``forkserver`` must pickle the target to send it to a fresh interpreter, and pickle stores a
function by its importable name, which a lambda, a closure or a nested function lacks.

How: for each kind, ``ctx.mp.Process(target=...)`` is started and joined. Recorded per kind:
whether ``start()`` raised (type and message), the child's exit code, and whether the child ran
(it sends a token back through a pipe). A module-level function is the control.
"""

from ..util import describe_error


def child_ran(conn):
    conn.send("ran")
    conn.close()


def _kinds(ctx):
    factor = 2

    def nested(conn):
        conn.send("ran")
        conn.close()

    def closure(conn):
        conn.send("ran" if factor == 2 else "?")
        conn.close()

    return (("module_function", child_ran), ("lambda", lambda conn: child_ran(conn)),
            ("closure", closure), ("nested_function", nested))


def attempt(ctx, target):
    recv, send = ctx.mp.Pipe(duplex=False)
    proc = ctx.mp.Process(target=target, args=(send,))
    out = {"started": False, "error": None, "exitcode": None, "child_ran": False}
    try:
        proc.start()
        out["started"] = True
    except Exception as exc:  # the observation: what a user's start() raises
        out["error"] = describe_error(exc)
    send.close()
    if out["started"]:
        out["child_ran"] = recv.poll(20) and recv.recv() == "ran"
        proc.join(20)
        out["exitcode"] = proc.exitcode
    recv.close()
    return out


def run(ctx):
    for kind, target in _kinds(ctx):
        ctx.record(kind, attempt(ctx, target))
