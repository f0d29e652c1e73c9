"""The commands: each takes its parsed arguments and returns its exit code. Fatal errors
are raised (LabError and its kinds) and caught only in ``lab.cli.main``."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from lab.cli.parser import EXIT_PARTIAL
from lab.errors import ConfigError, EngineUnavailable, LabError
from lab.matrix import Matrix, Selection, load_matrix, select, select_targets
from lab.results import Outcome, TargetStatus

if TYPE_CHECKING:
    from lab.images.requirements import Requirements
    from lab.results import RunResults
    from lab.run import Run


def _requirements(args: argparse.Namespace,
                  also: list[str] | tuple[str, ...] = ()) -> Requirements:
    from lab.images.requirements import read_requirements

    return read_requirements(getattr(args, "requirements", []),
                             specs=[*getattr(args, "with_", []), *also],
                             project=getattr(args, "project", None),
                             wheelhouse=getattr(args, "wheelhouse", None))


def _matrix(args: argparse.Namespace) -> Matrix:
    return load_matrix(getattr(args, "config", None), search_dir=Path.cwd())


def _selection(args: argparse.Namespace, matrix: Matrix | None = None) -> Selection:
    return select(matrix or _matrix(args), ids=args.targets, platforms=args.platforms,
                  host_pythons=getattr(args, "host_python", None) or (),
                  engines=getattr(args, "engines", None))


def cmd_run(args: argparse.Namespace) -> int:
    from lab.run import Run, RunOptions

    if args.jobs < 1:
        raise ConfigError(f"--jobs must be at least 1, got {args.jobs}.")
    chosen = _selection(args)
    from lab.run import load_scenario_files, select_scenarios
    from lab.run.scheduler import required_by

    scenarios = select_scenarios(args.scenarios) if args.scenarios else None
    scenario_files = load_scenario_files(args.scenario_file)
    own = _requirements(args, also=[r for sf in scenario_files for r in sf.requires])
    # A named built-in scenario's packages are optional: a target that cannot have one runs
    # without it (those scenarios skip, with the reason); the user's own are not.
    builtin = [r for r in required_by(scenarios or ()) if not own.names(r)]
    reqs = _requirements(args, also=[*builtin, *(r for sf in scenario_files for r in sf.requires)])
    reqs = dataclasses.replace(reqs, optional=tuple(builtin))
    # Run() reaches every engine before it makes the run folder: none is one line, exit 3.
    options = RunOptions(targets=list(chosen.targets), out=args.out, jobs=args.jobs,
                         scenarios=scenarios, quick=args.quick, command=["lab", *sys.argv[1:]],
                         progress=not args.no_progress, timeout_s=args.timeout,
                         scenario_files=scenario_files, engines=chosen.engines,
                         requirements=reqs)
    return _run_and_report(Run(options), args.out)


def _run_and_report(run: Run, out: Path, fail_on: list[str] | None = None) -> int:
    from lab.report import claim_lines, findings_text, render_run, version_changes
    from lab.run import point_latest

    print(run.plan_text(), flush=True)
    print(f"run {run.run_id} -> {run.dir}", file=sys.stderr, flush=True)
    try:
        results = run.go()
    except LabError:
        _render_quietly(run.dir)
        cells = run.dir / "cells.jsonl"
        if cells.is_file() and cells.stat().st_size:  # it observed something
            point_latest(out, run.dir)
        _index_quietly(out, run.dir)
        raise
    html = render_run(run.dir)
    if results.results:  # latest only ever points at a run that observed something
        point_latest(out, run.dir)
    _index_quietly(out, run.dir)
    print(findings_text(results, html, changes=version_changes(results),
                        claims=claim_lines(results) if run.options.check is None else []))
    bad = [t for t in results.targets if t.status != TargetStatus.OK and not t.left_out]
    if not results.run.complete:
        print(f"  the run is partial: {'; '.join(results.run.notes)}", file=sys.stderr)
    errors = [c for c in results.results if c.outcome == Outcome.ERROR]
    if errors:
        print(f"  {len(errors)} cell(s) ended in error (see the report)", file=sys.stderr)
    if run.options.check is not None and fail_on is not None:
        return _suite_summary(results, run.options.check.id, fail_on)
    if run.options.check is not None:
        return _check_summary(results, run.options.check.id)
    return EXIT_PARTIAL if bad or errors or not results.run.complete else 0


def _check_summary(results: RunResults, scenario: str) -> int:
    """`lab check`: its table and why runs failed; 1 unless every run ended ok."""
    from lab.report.summary import check_table

    text, clean = check_table(results, scenario)
    print(text)
    return 0 if clean else EXIT_PARTIAL


def _suite_summary(results: RunResults, scenario: str, fail_on: list[str]) -> int:
    """`lab test`: the differing tests, grouped; 1 if a test failed, errored or hung, or a
    run could not run, in the runs ``--fail-on`` counts."""
    from lab.report.suites import failing, suite_text, suite_view

    ok = [t for t in results.targets if t.status == TargetStatus.OK]
    view = suite_view(results, scenario, ok)
    print("\n".join(suite_text(view)))
    bad = [t for t in results.targets if t.status != TargetStatus.OK and not t.left_out]
    return EXIT_PARTIAL if (bad or not view.ran or not results.run.complete
                            or failing(view, fail_on)) else 0


def cmd_test(args: argparse.Namespace) -> int:
    from lab.run import Run, RunOptions, suite_spec

    if args.jobs < 1:
        raise ConfigError(f"--jobs must be at least 1, got {args.jobs}.")
    spec = suite_spec(args.path, args.pytest_args, args.start_methods, timeout_s=args.timeout,
                      test_timeout_s=args.test_timeout, env=args.env)
    bad = [m for m in args.fail_on if m not in spec.start_methods]
    if bad or not args.fail_on:
        raise ConfigError(f"--fail-on: {', '.join(bad) or 'empty'} is not a run of this "
                          f"suite; use a list drawn from {', '.join(spec.start_methods)}.")
    reqs = _requirements(args)
    if not reqs.names("pytest"):
        reqs = _requirements(args, also=["pytest"])
    chosen = _selection(args)
    options = RunOptions(targets=list(chosen.targets), out=args.out, jobs=args.jobs,
                         command=["lab", *sys.argv[1:]], progress=not args.no_progress,
                         check=spec, engines=chosen.engines, requirements=reqs)
    return _run_and_report(Run(options), args.out, fail_on=list(args.fail_on))


def cmd_check(args: argparse.Namespace) -> int:
    from lab.run import Run, RunOptions, check_spec

    if args.jobs < 1:
        raise ConfigError(f"--jobs must be at least 1, got {args.jobs}.")
    spec = check_spec(args.script, args.args, args.files, args.start_methods, args.timeout,
                      env=args.env)
    reqs = _requirements(args)
    chosen = _selection(args)
    options = RunOptions(targets=list(chosen.targets), out=args.out, jobs=args.jobs,
                         command=["lab", *sys.argv[1:]], progress=not args.no_progress,
                         check=spec, engines=chosen.engines, requirements=reqs)
    return _run_and_report(Run(options), args.out)


def _index_quietly(out: Path, run_dir: Path) -> None:
    """reports/index.html lists every run; the run before this one gains its "next" link."""
    from lab.report import render_index, render_run, runs_in

    try:
        entries = runs_in(out)  # read once for both pages
        names = [e.name for e in entries]
        if run_dir.name in names and names.index(run_dir.name) > 0:
            render_run(out / names[names.index(run_dir.name) - 1], entries=entries)
        render_index(out, entries=entries)
    except (LabError, OSError) as exc:
        print(f"lab: the runs index was not updated ({exc})", file=sys.stderr)


def _render_quietly(run_dir: Path) -> None:
    from lab.report import render_run

    try:
        render_run(run_dir)
    except LabError:
        pass


def _err(line: str) -> None:
    print(line, file=sys.stderr)


def cmd_build(args: argparse.Namespace) -> int:
    from lab.run.prebuild import build_images

    failed = build_images(_selection(args), jobs=args.jobs, say=print, say_err=_err)
    return EXIT_PARTIAL if failed else 0


def cmd_deps(args: argparse.Namespace) -> int:
    """`lab deps export DIR`: each target's wheels, downloaded by its own interpreter."""
    from lab.run.prebuild import export_wheels

    reqs = _requirements(args)
    if not reqs:
        raise ConfigError("lab deps export needs something to export: --requirements FILE, "
                          "--with SPEC or --project DIR.")
    failed = export_wheels(_selection(args), reqs, args.dest, say=print, say_err=_err)
    return EXIT_PARTIAL if failed else 0


def cmd_list(args: argparse.Namespace) -> int:
    from rich.console import Console

    from lab.engine import Engine
    from lab.images import availability, print_list
    from lab.runner.scenarios import CATALOG

    matrix = _matrix(args)
    selected = select_targets(matrix, ids=args.targets, platforms=args.platforms)
    default = {t.id for t in select_targets(matrix)}
    chosen = {t.id for t in selected} if (args.targets or args.platforms) else set(matrix.ids)
    engine: Engine | None = None
    problem = None
    try:
        engine = Engine.connect()
    except LabError as exc:
        problem = str(exc).split(" (")[0]
    try:
        avail = availability([t for t in matrix.targets if t.id in chosen], engine, problem)
    finally:
        if engine is not None:
            engine.close()
    # As wide as the table needs: a narrow terminal scrolls rather than truncating an id.
    console = Console(highlight=False, width=1000)
    with console.capture() as captured:
        print_list(console, list(matrix.targets), chosen, default, avail,
                   {k: dict(v) for k, v in CATALOG.items()})
    print("\n".join(line.rstrip() for line in captured.get().splitlines()))
    return 0


def cmd_clean(args: argparse.Namespace) -> int:
    from lab.engine import MANAGED, Engine
    from lab.run import remove_leftovers

    specs = _matrix(args).select_engines(args.engines)
    several = len(specs) > 1
    unreachable = 0
    for spec in specs:
        try:
            engine = Engine.connect(spec)
        except EngineUnavailable as exc:
            if not several:
                raise
            unreachable += 1
            print(f"{spec.name}: not cleaned: {exc}", file=sys.stderr)
            continue
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
        print(f"{spec.name + ': ' if several else ''}removed {len(gone)} container(s) and "
              f"{len(images)} image(s)" + ("" if args.all else " (bases kept; --all removes "
                                                               "them too)"))
    if unreachable == len(specs):
        raise EngineUnavailable("no engine could be reached; nothing was cleaned.")
    return EXIT_PARTIAL if unreachable else 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from lab.images import run_checks

    matrix = _matrix(args)
    engines = matrix.select_engines(args.engines)
    problems = 0
    for check in run_checks(engines, matrix.targets):
        mark = {"ok": "ok  ", "warn": "warn", "fail": "FAIL"}[check.level]
        print(f"[{mark}] {check.name}: {check.detail}")
        problems += check.level == "fail"
    return 1 if problems else 0


def cmd_report(args: argparse.Namespace) -> int:
    from lab.report import render_file

    out = render_file(args.results, output=args.output, compare=args.compare)
    print(f"report: {out}")
    return 0


COMMANDS = {"run": cmd_run, "check": cmd_check, "test": cmd_test, "build": cmd_build,
            "deps": cmd_deps,
            "list": cmd_list, "clean": cmd_clean, "doctor": cmd_doctor, "report": cmd_report}


