# IN-CONTAINER CODE: standard library only, Python 3.9+ and PyPy; never imports lab.*.
# (numpy is the scenario's own requirement: installed for the target by the host, imported
# here only.)
"""blas_fork - claim 6's second statement, through numpy's BLAS.

numpy's wheels bundle OpenBLAS, which runs a matrix product on a pool of pthreads. A fork
child has only the thread that forked; OpenBLAS registers ``pthread_atfork`` handlers so that
the child starts its own pool, where GNU OpenMP (``openmp_fork``) does not.

How: the parent multiplies two 256x256 matrices (enough for OpenBLAS to use its threads) and
counts its own threads; a child started with the cell's start method multiplies them again and
sends back whether its product equals the parent's. The parent joins it with no timeout, so a
child stuck in BLAS would show as a hung cell. The cell records numpy's version and the BLAS
numpy was built with (``numpy.show_config``), and the threads the parent had after its product.
"""

import os

from .. import measurements as M

SIZE = 256


def _product():
    import numpy

    a = numpy.arange(SIZE * SIZE, dtype=numpy.float64).reshape(SIZE, SIZE) / (SIZE * SIZE)
    return float((a @ a.T).sum())


def child_product(conn, expected):
    conn.send(_product() == expected)
    conn.close()


def blas_of(numpy):
    """numpy's BLAS as its build configuration names it ({} where it does not say)."""
    try:
        config = numpy.show_config(mode="dicts")
        blas = config["Build Dependencies"]["blas"]
        return {"name": blas.get("name"), "version": blas.get("version")}
    except Exception:  # older numpy: no mode="dicts"
        return {}


def run(ctx):
    try:
        import numpy
    except ImportError as exc:
        ctx.skip(f"numpy is not installed here ({exc}); `lab run --scenarios blas_fork` "
                 "installs it for each target")
        return
    blas = blas_of(numpy)
    ctx.record(M.LIBRARY, {"name": "numpy", "version": numpy.__version__,
                           "blas": blas.get("name"), "blas_version": blas.get("version")})
    expected = _product()
    ctx.record("parent_threads", len(os.listdir("/proc/self/task")))
    r, w = ctx.mp.Pipe(duplex=False)
    proc = ctx.start_child(child_product, w, expected)
    w.close()
    proc.join()  # no timeout on purpose: a child stuck in BLAS must show as a hung cell
    ctx.record("child_exitcode", proc.exitcode)
    try:
        same = r.recv() if r.poll(0) else None
    except EOFError:
        same = None
    ctx.record(M.CHILD_COMPLETED_REGION, proc.exitcode == 0 and same is not None)
    ctx.record("child_product_equal", same)
