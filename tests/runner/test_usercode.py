"""The runner's side of the user's own code, with the host interpreter (no Docker): `lab check`
programs run as `python SCRIPT ARGS` with the hook, and scenario files through ctx."""

from __future__ import annotations

import json
import multiprocessing
import textwrap
from pathlib import Path

from lab.run.usercode import check_spec, load_scenario_file, stage_user_dir

from .conftest import run_plan

METHODS = [m for m in ("fork", "spawn", "forkserver")
           if m in multiprocessing.get_all_start_methods()]


def stage_check(tmp: Path, source: str, *, args: tuple[str, ...] = (),
                methods: tuple[str, ...] = ("default", *METHODS), timeout: float = 20,
                extra: dict[str, str] | None = None) -> tuple[Path, list[dict]]:
    home = tmp / "mine"
    home.mkdir()
    script = home / "prog.py"
    script.write_text(textwrap.dedent(source))
    files = []
    for name, text in (extra or {}).items():
        (home / name).write_text(text)
        files.append(home / name)
    spec = check_spec(script, args, files, methods, timeout)
    user = stage_user_dir(tmp / "user", [], spec)
    assert user is not None
    meta = spec.meta()
    cells = [{"scenario": spec.id, "start_method": m, "deadline_s": timeout,
              "script": meta["script"]} for m in methods]
    return user, cells


LAMBDA = """
    import multiprocessing, sys
    if __name__ == "__main__":
        print("method", multiprocessing.get_start_method(), "args", sys.argv[1:])
        p = multiprocessing.Process(target=lambda: print("child ran"))
        p.start()
        p.join()
        sys.exit(p.exitcode)
"""


def test_a_program_runs_as_main_per_start_method_and_a_lambda_fails_where_it_is_pickled(
        runner, tmp_path):
    user, cells = stage_check(tmp_path, LAMBDA, args=("a b", "--x"))
    recs = runner(cells, user_dir=user)
    default = multiprocessing.get_start_method()
    for method in ("default", *METHODS):
        rec = recs[("check:prog.py", method)]
        used = default if method == "default" else method
        assert f"method {used} args ['a b', '--x']" in rec["output"]
        assert rec["measurements"]["start_method_in_effect"] == used
        if used == "fork":
            assert rec["outcome"] == "ok", rec
            assert "child ran" in rec["output"]
        else:
            assert rec["outcome"] == "failed", rec
            assert rec["exit_code"] == 1
            assert "PicklingError" in rec["detail"] or "pickle" in rec["detail"], rec["detail"]


def test_an_unguarded_program_fails_under_spawn_but_not_fork(runner, tmp_path):
    user, cells = stage_check(tmp_path, """
        import multiprocessing
        def work():
            print("child ran", flush=True)
        p = multiprocessing.Process(target=work)
        p.start()
        p.join()
        raise SystemExit(p.exitcode)
    """, methods=("fork", "spawn"))
    recs = runner(cells, user_dir=user)
    assert recs[("check:prog.py", "fork")]["outcome"] == "ok"
    spawn = recs[("check:prog.py", "spawn")]
    assert spawn["outcome"] == "failed"
    assert "bootstrapping phase" in " ".join(spawn["output"].split())


def test_a_hung_program_shows_every_process_stack_with_its_own_function(runner, tmp_path):
    user, cells = stage_check(tmp_path, """
        import multiprocessing, threading, time
        LOCK = threading.Lock()
        def take_the_lock():
            with LOCK:
                pass
        def hold():
            with LOCK:
                time.sleep(600)
        if __name__ == "__main__":
            threading.Thread(target=hold, daemon=True).start()
            time.sleep(0.2)
            p = multiprocessing.Process(target=take_the_lock)
            p.start()
            p.join()
    """, methods=("fork",), timeout=4)
    rec = runner(cells, user_dir=user)[("check:prog.py", "fork")]
    assert rec["outcome"] == "hung"
    child = rec["stacks"].split("(child process)", 1)[1]
    assert "in take_the_lock" in child
    assert "prog.py" in rec["stacks"].split("(child process)", 1)[0]


def test_a_programs_deadline_counts_from_its_own_code_not_its_interpreters_start_up(tmp_path):
    """An interpreter slow to start (PyPy on a loaded machine: seconds) does not eat into the
    program's deadline. Start-up is made slow for real: a ``.pth`` file in the user site, which
    ``site`` runs before ``sitecustomize``, sleeps 4 s; the program then needs 1 s of its 3 s."""
    import sys
    import sysconfig

    base = getattr(sys, "_base_executable", sys.executable)  # a venv turns the user site off
    userbase = tmp_path / "userbase"
    purelib = sysconfig.get_path("purelib", "posix_user", {"userbase": str(userbase)})
    Path(purelib).mkdir(parents=True)
    (Path(purelib) / "slow.pth").write_text("import time; time.sleep(4)\n")
    user, cells = stage_check(tmp_path, """
        import time
        time.sleep(1)
        print("program ran", flush=True)
    """, methods=("default",), timeout=3)
    cells[0]["env"] = {"PYTHONUSERBASE": str(userbase)}
    rec = run_plan(tmp_path, cells, python=base, user_dir=user)[("check:prog.py", "default")]
    assert rec["outcome"] == "ok", rec
    assert "program ran" in rec["output"]
    assert rec["duration_s"] >= 4.5, rec["duration_s"]  # the slow start-up happened


def test_warnings_are_noted_and_output_is_unchanged_and_files_sit_beside_the_program(
        runner, tmp_path):
    user, cells = stage_check(tmp_path, """
        import os, warnings, helper
        warnings.warn("careful", UserWarning)
        print("cwd", os.path.basename(os.getcwd()), helper.VALUE, open("data.txt").read())
    """, methods=("default",), extra={"helper.py": "VALUE = 42\n", "data.txt": "hello"})
    rec = runner(cells, user_dir=user)[("check:prog.py", "default")]
    assert rec["outcome"] == "ok", rec
    assert "cwd script 42 hello" in rec["output"]
    assert "UserWarning: careful" in rec["output"]  # still shown as Python shows it
    assert [(w["category"], w["message"]) for w in rec["warnings"]] == [("UserWarning",
                                                                        "careful")]


def test_a_scenario_file_runs_through_ctx_under_every_start_method(runner, tmp_path):
    path = tmp_path / "env_reaches_child.py"
    path.write_text(textwrap.dedent('''
        """The child sees the environment as it was at start()."""
        import os
        KIND = "behaviour"
        START_METHODS = "each"
        DEADLINE_S = 20

        def report(conn):
            conn.send(os.environ.get("LAB_EXAMPLE"))

        def run(ctx):
            os.environ["LAB_EXAMPLE"] = "set"
            recv, send = ctx.mp.Pipe(duplex=False)
            child = ctx.start_child(report, send)
            ctx.record("child_sees", recv.recv())
            child.join()
            ctx.record("timing", ctx.summarize([1.0, 2.0, 3.0]))
    '''))
    sf = load_scenario_file(path)
    user = stage_user_dir(tmp_path / "user", [sf], None)
    cells = [{"scenario": sf.id, "start_method": m, "deadline_s": sf.deadline_s}
             for m in sf.start_methods]
    recs = runner(cells, user_dir=user)
    for m in METHODS:
        rec = recs[("env_reaches_child", m)]
        assert rec["outcome"] == "ok", rec
        assert rec["measurements"]["child_sees"] == "set"
        assert rec["measurements"]["timing"]["median"] == 2.0


def test_the_hook_changes_nothing_without_the_lab(tmp_path):
    """Imported by a process the lab did not start, the hook does nothing at all."""
    import subprocess
    import sys

    from lab.images.plan import stage_runner

    stage = stage_runner(tmp_path / "stage")
    out = subprocess.run([sys.executable, "-c", "import multiprocessing, json, sitecustomize; "
                          "print(json.dumps(multiprocessing.get_start_method(allow_none=True)))"],
                         env={"PYTHONPATH": str(stage / "labrunner" / "hook"),
                              "PATH": "/usr/bin:/bin"},
                         capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) is None


def test_the_method_is_a_default_not_a_choice_so_the_program_may_still_choose(runner,
                                                                              tmp_path):
    user, cells = stage_check(tmp_path, """
        import multiprocessing
        if __name__ == "__main__":
            print("unset", multiprocessing.get_start_method(allow_none=True))
            print("listed first", multiprocessing.get_all_start_methods()[0])
            multiprocessing.set_start_method("spawn")  # no force: must not raise
            p = multiprocessing.Process(target=print, args=("child ran",))
            p.start()
            p.join()
    """, methods=tuple(METHODS))
    recs = runner(cells, user_dir=user)
    for method in METHODS:
        rec = recs[("check:prog.py", method)]
        assert rec["outcome"] == "ok", rec
        assert "unset None" in rec["output"] and "child ran" in rec["output"]
        assert rec["measurements"]["start_method_in_effect"] == "spawn"
