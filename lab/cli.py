"""The command line: arguments in, exit code out. Fatal errors are caught only in ``main``.

Exit codes of ``lab run``: 0 every target ran and every cell has an observed outcome; 1 the run
was partial (a target unavailable or failed to build, or a cell ended in ``error``); 2 bad
input; 3 no Docker engine; 4 a Docker operation failed; 130 interrupted (what finished is kept).
``lab check``: 0 every run of the program ended ok; 1 any hung, crashed, failed or could not
run; 2, 3, 4 and 130 as above.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from lab import __version__
from lab.errors import ConfigError, EngineUnavailable, Interrupted, LabError
from lab.matrix import GROUPS, Matrix, Target, host_target, load_matrix, select_targets
from lab.usercode import CHECK_METHODS

if TYPE_CHECKING:
    from lab.results import RunResults
    from lab.runs import Run

EXIT_PARTIAL = 1


def _csv(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def _add_selection(p: argparse.ArgumentParser) -> None:
    p.add_argument("--targets", type=_csv, help="comma-separated target ids (see `lab list`)")
    p.add_argument("--platforms", type=_csv,
                   help=f"platforms (linux/arm64, ...) or groups ({', '.join(GROUPS)})")
    p.add_argument("--config", type=Path, help="extra matrix file (default: ./lab.toml if present)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lab", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"lab {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="build what is missing, run every scenario, write the report")
    _add_selection(run)
    run.add_argument("--scenarios", type=_csv, help="comma-separated scenario ids (default: all)")
    run.add_argument("--jobs", type=int, default=3, help="targets built/run at once (default 3)")
    run.add_argument("--out", type=Path, default=Path("reports"), help="runs folder (reports)")
    run.add_argument("--quick", action="store_true", help="fewer repeats, smaller sizes")
    run.add_argument("--host-python", action="append", default=[], metavar="PATH",
                     help="also run directly with this host interpreter (repeatable)")
    run.add_argument("--no-progress", action="store_true", help="no progress display")
    run.add_argument("--timeout", type=float, default=None, metavar="SECONDS",
                     help="run-level watchdog (default: computed from the plan)")
    run.add_argument("--scenario-file", action="append", default=[], type=Path, metavar="PATH",
                     help="also run this scenario file (repeatable; see README)")

    check = sub.add_parser(
        "check", help="run your program in every target, per start method",
        description="Run an ordinary Python program in every selected target, once per start "
                    "method and once with the interpreter's default, as `python SCRIPT ARGS` "
                    "from its own folder. Exit code 0: every run ended ok; 1: any hung, "
                    "crashed or failed; 2: bad input.")
    _add_selection(check)
    check.add_argument("--start-methods", type=_csv, default=list(CHECK_METHODS),
                       metavar="LIST", help="comma-separated, from "
                       f"{','.join(CHECK_METHODS)} (default: all)")
    check.add_argument("--timeout", type=float, default=60.0, metavar="SECONDS",
                       help="deadline of each run; a run still going is hung (default 60)")
    check.add_argument("--file", action="append", default=[], type=Path, metavar="PATH",
                       dest="files", help="a module, package or data file the program needs "
                       "beside it (repeatable)")
    check.add_argument("--jobs", type=int, default=3, help="targets built/run at once")
    check.add_argument("--out", type=Path, default=Path("reports"), help="runs folder")
    check.add_argument("--no-progress", action="store_true", help="no progress display")
    check.add_argument("script", type=Path, metavar="SCRIPT", help="the program to run")
    check.add_argument("args", nargs=argparse.REMAINDER, metavar="ARGS",
                       help="its arguments")

    build = sub.add_parser("build", help="build (or reuse) the target images only")
    _add_selection(build)
    build.add_argument("--jobs", type=int, default=3)

    lst = sub.add_parser("list", help="list targets and scenarios")
    _add_selection(lst)

    clean = sub.add_parser("clean", help="remove every container and image the lab made")
    clean.add_argument("--all", action="store_true", help="also the Debian base images")

    sub.add_parser("doctor", help="check the engine, Debian mirror, disk, registry, emulation")

    report = sub.add_parser("report", help="render a results.json (or run folder) to HTML")
    report.add_argument("results", type=Path)
    report.add_argument("-o", "--output", type=Path, help="HTML file (default: beside results)")
    report.add_argument("--compare", type=Path, metavar="OLD", help="an older results.json")
    return parser


def _matrix(args: argparse.Namespace) -> Matrix:
    return load_matrix(getattr(args, "config", None), search_dir=Path.cwd())


def _targets(args: argparse.Namespace, matrix: Matrix) -> list[Target]:
    chosen = select_targets(matrix, ids=args.targets, platforms=args.platforms)
    for path in getattr(args, "host_python", []) or []:
        chosen.append(host_target(path, {t.id for t in chosen}))
    if not chosen:
        raise ConfigError("no targets selected: check --targets/--platforms (see `lab list`).")
    return chosen


def cmd_run(args: argparse.Namespace) -> int:
    from lab.runs import Run, RunOptions

    if args.jobs < 1:
        raise ConfigError(f"--jobs must be at least 1, got {args.jobs}.")
    if not (args.targets or args.platforms) and args.host_python:
        targets: list[Target] = []
        for path in args.host_python:  # only host interpreters: no Docker needed
            targets.append(host_target(path, {t.id for t in targets}))
    else:
        targets = _targets(args, _matrix(args))
    from lab.scheduler import select_scenarios
    from lab.usercode import load_scenario_files

    scenarios = select_scenarios(args.scenarios) if args.scenarios else None
    scenario_files = load_scenario_files(args.scenario_file)
    if any(not t.host_python for t in targets):
        from lab.engine import Engine

        Engine.connect().close()  # no engine: one line, before any run folder exists
    options = RunOptions(targets=targets, out=args.out, jobs=args.jobs, scenarios=scenarios,
                         quick=args.quick, command=["lab", *sys.argv[1:]],
                         progress=not args.no_progress, timeout_s=args.timeout,
                         scenario_files=scenario_files)
    return _run_and_report(Run(options), args.out)


def _run_and_report(run: Run, out: Path) -> int:
    from lab.report import render_run
    from lab.runs import point_latest

    targets = run.options.targets
    print(f"run {run.run_id}: {len(targets)} target(s), {len(run.plan.jobs)} job(s) -> {run.dir}",
          file=sys.stderr)
    try:
        results = run.go()
    except LabError:
        _render_quietly(run.dir)
        point_latest(out, run.dir)
        raise
    html = render_run(run.dir)
    point_latest(out, run.dir)
    print(f"report: {html}")
    bad = [t for t in results.targets if t.status != "ok"]
    if not results.run.complete:
        print(f"  the run is partial: {'; '.join(results.run.notes)}", file=sys.stderr)
    errors = [c for c in results.results if c.outcome == "error"]
    for t in bad:
        print(f"  {t.id}: {t.status}: {(t.reason or '').splitlines()[0]}", file=sys.stderr)
    if errors:
        print(f"  {len(errors)} cell(s) ended in error (see the report)", file=sys.stderr)
    if run.options.check is not None:
        return _check_summary(results, run.options.check.id)
    return EXIT_PARTIAL if bad or errors or not results.run.complete else 0


def _check_summary(results: RunResults, scenario: str) -> int:
    """`lab check`: one line per target, each run's outcome; 1 unless every run ended ok."""
    methods = list(CHECK_METHODS)
    width = max([len(t.id) for t in results.targets] + [6])
    print(f"{'target':<{width}}  " + "  ".join(f"{m:<10}" for m in methods))
    clean = results.run.complete
    for t in results.targets:
        if t.status != "ok":
            print(f"{t.id:<{width}}  {t.status}")
            clean = False
            continue
        row = []
        for m in methods:
            c = results.cell(t.id, scenario, m)
            row.append(f"{c.outcome if c else '-':<10}")
            if c and c.outcome != "ok":
                clean = False
        print(f"{t.id:<{width}}  " + "  ".join(row))
    if not any(c.scenario == scenario for c in results.results):
        clean = False
    return 0 if clean else EXIT_PARTIAL


def cmd_check(args: argparse.Namespace) -> int:
    from lab.runs import Run, RunOptions
    from lab.usercode import check_spec

    if args.jobs < 1:
        raise ConfigError(f"--jobs must be at least 1, got {args.jobs}.")
    spec = check_spec(args.script, args.args, args.files, args.start_methods, args.timeout)
    targets = _targets(args, _matrix(args))
    from lab.engine import Engine

    Engine.connect().close()
    options = RunOptions(targets=targets, out=args.out, jobs=args.jobs,
                         command=["lab", *sys.argv[1:]], progress=not args.no_progress,
                         check=spec)
    return _run_and_report(Run(options), args.out)


def _render_quietly(run_dir: Path) -> None:
    from lab.report import render_run

    try:
        render_run(run_dir)
    except LabError:
        pass


def cmd_build(args: argparse.Namespace) -> int:
    import concurrent.futures as cf
    import tempfile
    import threading

    from lab.engine import Engine
    from lab.images import ImageBuilder, plan_image

    targets = [t for t in _targets(args, _matrix(args)) if not t.host_python]
    Engine.connect().close()
    log_dir = Path(tempfile.mkdtemp(prefix="lab-build-"))
    stop = threading.Event()
    builder = ImageBuilder(log_dir=log_dir, stop=stop,
                           on_stage=lambda tid, st: print(f"{tid}: {st}", file=sys.stderr))
    failed = 0

    def one(target: Target) -> str:
        started = time.monotonic()
        engine = Engine.connect()
        try:
            image = builder.ensure(engine, plan_image(target))
            return (f"{target.id}: {image.tag} ({image.id[7:19]}) in "
                    f"{time.monotonic() - started:.1f}s")
        finally:
            engine.close()

    builder.prefetch_bases([plan_image(t) for t in targets], Engine.connect)
    pool = cf.ThreadPoolExecutor(max_workers=max(1, args.jobs))
    try:
        futures = {pool.submit(one, t): t for t in targets}
        for fut in cf.as_completed(futures):
            try:
                print(fut.result())
            except EngineUnavailable:
                raise
            except LabError as exc:
                failed += 1
                print(f"{futures[fut].id}: FAILED: {exc}", file=sys.stderr)
    except KeyboardInterrupt:
        # Every download and second stage notices within a fraction of a second, and each
        # worker removes its own container and half-made image before it returns.
        stop.set()
        pool.shutdown(wait=True, cancel_futures=True)
        raise Interrupted("interrupted; no partial image was kept") from None
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
        builder.close()
    print(f"build logs: {log_dir}", file=sys.stderr)
    return EXIT_PARTIAL if failed else 0


def cmd_list(args: argparse.Namespace) -> int:
    from lab.runner.scenarios import CATALOG

    matrix = _matrix(args)
    chosen = {t.id for t in select_targets(matrix, ids=args.targets, platforms=args.platforms)}
    print("targets (* = in the default matrix):")
    for t in matrix.targets:
        if (args.targets or args.platforms) and t.id not in chosen:
            continue
        source = (f"debian {t.base.suite}: {', '.join(t.base.packages)}" if t.base
                  else f"registry {t.image}")
        mark = "*" if t.id in chosen and not (args.targets or args.platforms) else " "
        emu = " (emulated)" if t.emulated else ""
        print(f" {mark} {t.id:<12} {t.implementation} {t.version:<5} {t.platform}{emu:<11} "
              f"{t.python:<22} {source}")
    print("\nscenarios:")
    for name, meta in CATALOG.items():
        print(f"   {name:<24} {meta['kind']:<9} start methods: {meta['start_methods']:<9} "
              f"{meta['title']}")
    return 0


def cmd_clean(args: argparse.Namespace) -> int:
    from lab.engine import MANAGED, Engine
    from lab.runs import remove_leftovers

    engine = Engine.connect()
    try:
        gone = remove_leftovers(engine, everything=True)
        images = [i for i in engine.images({MANAGED: "true"})
                  if args.all or i.labels.get("lab.kind") != "base"]
        # Target images first: they are children of the bases.
        images.sort(key=lambda i: i.labels.get("lab.kind") == "base")
        for image in images:
            engine.remove_image(image.id)
    finally:
        engine.close()
    print(f"removed {len(gone)} container(s) and {len(images)} image(s)"
          + ("" if args.all else " (bases kept; --all removes them too)"))
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from lab.doctor import run_checks

    problems = 0
    for check in run_checks():
        mark = {"ok": "ok  ", "warn": "warn", "fail": "FAIL"}[check.level]
        print(f"[{mark}] {check.name}: {check.detail}")
        problems += check.level == "fail"
    return 1 if problems else 0


def cmd_report(args: argparse.Namespace) -> int:
    from lab.report import render_file

    out = render_file(args.results, output=args.output, compare=args.compare)
    print(f"report: {out}")
    return 0


COMMANDS = {"run": cmd_run, "check": cmd_check, "build": cmd_build, "list": cmd_list,
            "clean": cmd_clean, "doctor": cmd_doctor, "report": cmd_report}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except Interrupted as exc:
        print(f"lab: {exc}", file=sys.stderr)
        if exc.forced:  # pressed twice: do not wait for worker threads at exit
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(exc.exit_code)
        return exc.exit_code
    except LabError as exc:
        print(f"lab: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("lab: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    sys.exit(main())

