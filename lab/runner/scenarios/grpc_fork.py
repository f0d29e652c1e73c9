# IN-CONTAINER CODE: standard library only, Python 3.9+ and PyPy; never imports lab.*.
# (grpcio is the scenario's own requirement: installed for the target by the host, imported
# here only.)
"""grpc_fork - claim 6's second statement, through gRPC.

gRPC's core keeps threads and polling state per process. With an RPC made before ``fork()``,
a fork child's own RPC can wait forever unless gRPC's fork support
(``GRPC_ENABLE_FORK_SUPPORT``) resets that state in the child; its default has changed between
releases. ``spawn`` and ``forkserver`` children start gRPC afresh.

How: the parent serves an echo method on a loopback port (a generic handler: no generated code,
no network beyond ``127.0.0.1``) and calls it once; then a child started with the cell's start
method opens its own channel and calls it with no deadline, sending back the reply. The parent
joins it with no timeout, so a child stuck in its RPC shows as a hung cell. The cell records
grpcio's version and ``GRPC_ENABLE_FORK_SUPPORT`` as it saw it. ``grpc_fork_support_off`` and
``grpc_fork_support_on`` are the same scenario with the variable set to 0 and 1.
"""

import os
from concurrent import futures

from .. import measurements as M

METHOD = "/lab.Echo/Echo"


def _call(port, timeout=None):
    import grpc

    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        return channel.unary_unary(METHOD)(b"ping", timeout=timeout)


def child_call(conn, port):
    conn.send(_call(port))  # no deadline: an RPC that cannot complete hangs the child
    conn.close()


def run(ctx):
    try:
        import grpc
    except ImportError as exc:
        ctx.skip(f"grpcio is not installed here ({exc}); `lab run --scenarios grpc_fork` "
                 "installs it for each target")
        return
    ctx.record(M.LIBRARY, {"name": "grpcio", "version": grpc.__version__})
    ctx.record("grpc_enable_fork_support", os.environ.get("GRPC_ENABLE_FORK_SUPPORT"))
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
        "lab.Echo", {"Echo": grpc.unary_unary_rpc_method_handler(lambda req, _ctx: req)}),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        # the parent's own call before the fork: generous, as a loaded machine starts the
        # server's threads slowly; it is not what the cell observes
        ctx.record("parent_reply", _call(port, timeout=60).decode())
        r, w = ctx.mp.Pipe(duplex=False)
        proc = ctx.start_child(child_call, w, port)
        w.close()
        proc.join()  # no timeout on purpose: a child stuck in its RPC must show as hung
        ctx.record("child_exitcode", proc.exitcode)
        try:
            reply = r.recv() if r.poll(0) else None
        except EOFError:
            reply = None
        ctx.record(M.CHILD_COMPLETED_REGION, proc.exitcode == 0 and reply == b"ping")
    finally:
        server.stop(0)
