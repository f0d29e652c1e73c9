# IN-CONTAINER CODE: standard library only, Python 3.9+ and PyPy; never imports lab.*.
"""inherited_state: a module global changed at run time reaches a ``fork`` child only.

Claim: a ``fork`` child is a copy of the parent, so it sees module state as the parent left it;
a ``spawn`` or ``forkserver`` child imports the module afresh and sees its import-time value.
Code that configures a module global (a setting, a cache, a connection) after import and
relies on workers seeing it breaks when the start method moves away from ``fork``.

How: ``SETTING`` is ``"import-time"`` at import; the cell sets it to ``"run-time"`` and starts a
child that sends back the value it sees.
"""

from .. import measurements as M

SETTING = "import-time"


def report_setting(conn):
    conn.send(SETTING)
    conn.close()


def run(ctx):
    global SETTING
    SETTING = "run-time"
    ctx.record("parent_sees", SETTING)
    recv, send = ctx.mp.Pipe(duplex=False)
    proc = ctx.start_child(report_setting, send)
    send.close()
    seen = recv.recv() if recv.poll(30) else None
    proc.join(30)
    ctx.record(M.CHILD_SEES, seen)
    ctx.record(M.CHILD_INHERITED_RUN_TIME_STATE, seen == "run-time")
    ctx.record("child_exitcode", proc.exitcode)
