# IN-CONTAINER CODE: standard library only, Python 3.9+ and PyPy; never imports lab.*.
"""The `lab check` hook: Python's ``site`` imports this module at start-up in every process of a
checked program (the program, its spawn children, a forkserver), because the runner puts this
folder on PYTHONPATH. (``sitecustomize``, not ``usercustomize``: a virtual environment turns
the user site off. The interpreter's own ``sitecustomize``, which this one shadows - Debian
ships one - is run right after.) It does four things and changes nothing else:

- in the program's own process, writes ``started`` in the cell's folder first, so that the
  run's deadline counts from here, not from the interpreter's launch;

- registers a stack dump on SIGUSR1 (its own file per process, forked children included), so a
  hung run shows where every process was;
- in the program's own process only, makes the start method the run asks for the default
  (``LAB_START_METHOD``; unset for the ``default`` run) without choosing it, then removes the
  variable so children do not see it;
- notes each warning shown (the program's output is unchanged), each explicit choice of a start
  method the program makes (``set_start_method`` or ``get_context`` with a method named, and
  where), as it is made, and at exit the start method in effect: a suite that forces its own
  method is seen, even when it later hangs.
"""

import os

_CELL = os.environ.get("LAB_CHECK_DIR")


def _dump_stacks():
    folder = os.environ.get("LAB_STACKS_DIR")
    if not folder:
        return
    _allow_tracing()
    try:
        import faulthandler
        import signal

        fh = open(os.path.join(folder, f"{os.getpid()}.txt"), "w")
        faulthandler.register(signal.SIGUSR1, file=fh, all_threads=True, chain=False)
        globals()["_stack_file"] = fh  # kept open for the life of the process
    except (OSError, AttributeError, RuntimeError, ValueError, ImportError):
        pass


def _allow_tracing():
    """As labrunner.util.allow_tracing (the hook cannot import the runner): where Yama lets
    only an ancestor trace, let the harness's py-spy read this process when it hangs."""
    try:
        with open("/proc/sys/kernel/yama/ptrace_scope") as fh:
            if fh.read().strip() != "1":
                return
        import ctypes

        ctypes.CDLL(None).prctl(0x59616D61, ctypes.c_ulong(-1), 0, 0, 0)  # PR_SET_PTRACER, ANY
    except (OSError, AttributeError, ImportError, ValueError):
        pass


def _note_warnings():
    import json
    import warnings

    shown = warnings.showwarning
    path = os.path.join(_CELL, "warnings.jsonl")
    budget = [100]

    def showwarning(message, category, filename, lineno, file=None, line=None):
        if budget[0] > 0:
            budget[0] -= 1
            try:
                with open(path, "a") as out:
                    out.write(json.dumps({"category": category.__name__,
                                          "message": str(message)[:2000],
                                          "filename": str(filename), "lineno": lineno,
                                          "pid": os.getpid()}) + "\n")
            except OSError:
                pass
        return shown(message, category, filename, lineno, file, line)

    warnings.showwarning = showwarning


def _at_exit():
    import json
    import sys

    mp = sys.modules.get("multiprocessing")
    method = mp.get_start_method(allow_none=True) if mp is not None else None
    try:
        with open(os.path.join(_CELL, "hook.json"), "w") as out:
            json.dump({"start_method_in_effect": method, "start_method_asked": _ASKED[0]}, out)
    except OSError:
        pass


_ASKED = [None]
MAX_CHOICES = 20


def _note_choices(multiprocessing):
    """Wrap ``multiprocessing.set_start_method`` and ``get_context`` so that each call that
    names a method is noted in ``choices.jsonl``, with its caller's file and line, before it
    takes effect. Nothing else about the call changes."""
    import json
    import sys

    path = os.path.join(_CELL, "choices.jsonl")
    budget = [MAX_CHOICES]

    def note(call, method, force):
        if method is None or budget[0] <= 0:
            return
        budget[0] -= 1
        frame = sys._getframe(2)
        try:
            with open(path, "a") as out:
                where = f"{frame.f_code.co_filename[-200:]}:{frame.f_lineno}"
                out.write(json.dumps({"call": call, "method": str(method)[:40],
                                      "force": bool(force), "pid": os.getpid(),
                                      "where": where}) + "\n")
        except OSError:
            pass

    set_start_method = multiprocessing.set_start_method
    get_context = multiprocessing.get_context

    def set_start_method_noted(method, force=False):
        note("set_start_method", method, force)
        return set_start_method(method, force=force)

    def get_context_noted(method=None):
        note("get_context", method, False)
        return get_context(method)

    multiprocessing.set_start_method = set_start_method_noted
    multiprocessing.get_context = get_context_noted


def _make_default(method):
    """Make ``method`` the interpreter's default, as if this platform's default were it, without
    choosing it: the program may still call ``set_start_method()`` without ``force``, and
    ``get_start_method(allow_none=True)`` still says nothing was chosen. (The default context's
    private ``_default_context``, the same from 3.9 to 3.15 and on PyPy; elsewhere the method is
    set the public way.)"""
    import multiprocessing
    from multiprocessing import context

    default = getattr(context, "_default_context", None)
    concrete = getattr(context, "_concrete_contexts", {}).get(method)
    if (concrete is not None and hasattr(default, "_default_context")
            and getattr(default, "_actual_context", "unknown") is None):
        default._default_context = concrete
    else:
        multiprocessing.set_start_method(method)


def _note_start():
    """Tell the runner that the program's own code is about to run: its deadline starts now,
    not when its interpreter was launched (PyPy on a loaded machine takes seconds to start)."""
    try:
        open(os.path.join(_CELL, "started"), "x").close()
    except OSError:
        pass


def _main_process():
    method = os.environ.pop("LAB_START_METHOD", None)
    if method:
        _make_default(method)
    import multiprocessing
    from multiprocessing import context

    default = getattr(context, "_default_context", None)
    _ASKED[0] = getattr(getattr(default, "_default_context", None), "_name", None)
    _note_choices(multiprocessing)
    import atexit

    atexit.register(_at_exit)


def _chain():
    """Run the next ``sitecustomize`` on sys.path, the one Python would have imported."""
    import importlib.util
    import sys

    here = os.path.dirname(os.path.abspath(__file__))
    for entry in sys.path:
        folder = os.path.abspath(entry or os.curdir)
        candidate = os.path.join(folder, "sitecustomize.py")
        if folder == here or not os.path.isfile(candidate):
            continue
        spec = importlib.util.spec_from_file_location("_lab_next_sitecustomize", candidate)
        if spec is not None and spec.loader is not None:
            spec.loader.exec_module(importlib.util.module_from_spec(spec))
        return


if _CELL:
    _dump_stacks()
    if hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=_dump_stacks)
    _note_warnings()
    if os.environ.pop("LAB_CHECK_MAIN", None) == "1":
        _note_start()
        _main_process()

_chain()
