"""The command line's words: every command's options, help, examples and exit codes
(EXIT_CODES, shown at the end of its ``--help``), and ``parse``, which reads them."""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path
from typing import NoReturn

from lab import __version__
from lab.matrix import GROUPS
from lab.results import CHECK_METHODS

EXIT_PARTIAL = 1
EXIT_TERMINATED = 128 + signal.SIGTERM
DESCRIPTION = ("How does concurrency behave on Python X.Y, on platform P? The lab builds an image "
               "per interpreter, runs concurrency scenarios in each one under every start "
               "method, and writes one HTML report of what it observed.")
EXIT_CODES = {
    "run": [("0", "every target ran and every cell has an observed outcome (hung cells are "
             "findings, not failures)"),
            ("1", "the run is partial: a target unavailable or failed to build, or a cell "
             "ended in error"),
            ("2", "bad input"), ("3", "no Docker engine"), ("4", "a Docker operation failed"),
            ("130", "interrupted (what finished is kept and rendered)"),
            ("143", "terminated by SIGTERM, handled like Ctrl-C")],
    "check": [("0", "every run of the program ended ok"),
              ("1", "a run hung, crashed, failed or could not run"),
              ("2", "bad input"), ("3", "no Docker engine"), ("4", "a Docker operation failed"),
              ("130", "interrupted"), ("143", "terminated by SIGTERM, handled like Ctrl-C")],
    "test": [("0", "every test passed (or was skipped or xfail) in every run counted by "
              "--fail-on"),
             ("1", "a test failed, errored or hung, or a run could not run"),
             ("2", "bad input"), ("3", "no Docker engine"), ("4", "a Docker operation failed"),
             ("130", "interrupted"), ("143", "terminated by SIGTERM, handled like Ctrl-C")],
    "deps": [("0", "every target's packages were written"),
             ("1", "a target's could not be had (the line says which package and why)"),
             ("2", "bad input"), ("3", "no Docker engine"), ("130", "interrupted")],
    "build": [("0", "every image is there"), ("1", "an image could not be built"),
              ("2", "bad input"), ("3", "no Docker engine"), ("130", "interrupted"),
              ("143", "terminated by SIGTERM, handled like Ctrl-C")],
    "list": [("0", "always"), ("2", "bad input")],
    "clean": [("0", "done"), ("1", "an engine could not be reached; the others were cleaned"),
              ("3", "no Docker engine")],
    "doctor": [("0", "nothing failed"), ("1", "a check failed")],
    "report": [("0", "written"), ("2", "not a results file or run folder")],
}
EXAMPLES = {
    "run": ["lab run", "lab run --targets 3.11,3.14 --quick",
            "lab run --scenarios fork_held_lock,main_guard --scenario-file mine.py"],
    "check": ["lab check my_program.py --input data.csv",
              "lab check --targets cp311,cp314 --timeout 30 --file ../data.csv my_program.py",
              "lab check --requirements requirements.txt --env OMP_NUM_THREADS=1 app.py"],
    "test": ["lab test", "lab test tests/ -- -k pool -x",
             "lab test --requirements requirements.txt --targets cp313,cp314 .",
             "lab test --project . --fail-on default --test-timeout 30"],
    "deps": ["lab deps export wheels/ --requirements requirements.txt",
             "lab check --wheelhouse wheels/ --requirements requirements.txt app.py"],
    "build": ["lab build", "lab build --targets pypy3.11"],
    "list": ["lab list", "lab list --platforms emulated"],
    "clean": ["lab clean", "lab clean --all"],
    "doctor": ["lab doctor"],
    "report": ["lab report reports/latest", "lab report reports/latest --compare OLD.json"],
}
JOBS_HELP = ("targets whose images are built at once (default 3); the behaviour cells of up "
             "to 6 targets then run side by side")
QUICK_HELP = ("a first look: timing cells stop once their medians are known to 8 %% instead "
              "of 3 %%, and countdowns use half the work; hazard scenarios run fewer trials")


def _epilog(command: str) -> str:
    lines = ["examples:", *(f"  {e}" for e in EXAMPLES[command]), "", "exit codes:"]
    lines += [f"  {code:<4} {what}" for code, what in EXIT_CODES[command]]
    return "\n".join(lines)


def suggest(word: str, choices: list[str] | set[str] | tuple[str, ...]) -> str:
    """' (did you mean X?)' for a close match, else ''."""
    import difflib

    close = difflib.get_close_matches(word, sorted(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else ""


class _Formatter(argparse.HelpFormatter):
    """Wrap prose; keep the line breaks of a text that has them (examples, exit codes)."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if "\n" in text:
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)


class LabParser(argparse.ArgumentParser):
    """No abbreviated options (``--target`` is not ``--targets``), help that keeps its
    line breaks, and errors that suggest what was probably meant."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        kwargs.setdefault("allow_abbrev", False)
        kwargs.setdefault("formatter_class", _Formatter)
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]

    def options(self) -> list[str]:
        return [o for o in self._option_string_actions if o.startswith("--")]

    def error(self, message: str) -> NoReturn:
        hint = ""
        if message.startswith("unrecognized arguments: "):
            first = message.split(": ", 1)[1].split()[0]
            hint = suggest(first.split("=")[0], self.options())
        elif "invalid choice: " in message:
            bad = message.split("invalid choice: ", 1)[1].split("'")[1]
            choices = next((list(a.choices) for a in self._actions
                            if isinstance(a, argparse._SubParsersAction)), [])
            hint = suggest(bad, choices)
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {message}{hint}\n")


def _add_requirements(p: argparse.ArgumentParser, *, full: bool = True) -> None:
    """What a run installs for each target, by the target's own interpreter."""
    if full:
        p.add_argument("--requirements", "-r", action="append", default=[], type=Path,
                       metavar="FILE", help="install these for every target: a requirements "
                       "file or a pylock.toml (repeatable)")
        p.add_argument("--with", action="append", default=[], dest="with_", metavar="SPEC",
                       help="install this requirement too, such as 'numpy>=2' (repeatable)")
        p.add_argument("--project", metavar="DIR",
                       help="install this project as `pip install DIR` would; DIR[extra,...] "
                       "for its extras")
    p.add_argument("--wheelhouse", type=Path, metavar="DIR",
                   help="install from this folder only, with no network (`lab deps export` "
                   "writes one)")


def _csv(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def _add_selection(p: argparse.ArgumentParser) -> None:
    p.add_argument("--targets", type=_csv, metavar="IDS",
                   help="comma-separated target ids or versions: cp311, 3.14, pypy3.11 "
                        "(default: the default matrix; see `lab list`)")
    p.add_argument("--platforms", type=_csv, metavar="LIST",
                   help=f"platforms (linux/arm64, ...) or groups ({', '.join(GROUPS)})")
    p.add_argument("--config", type=Path, metavar="PATH",
                   help="extra matrix file (default: ./lab.toml if present)")


def _add_engines(p: argparse.ArgumentParser, what: str = "to spread the targets over") -> None:
    p.add_argument("--engines", type=_csv, metavar="NAMES",
                   help=f"Docker engines of lab.toml's [engine.NAME] tables {what} (default: "
                        "every one configured, else the environment's)")


def _add_user_code_head(p: argparse.ArgumentParser) -> None:
    """`lab check` and `lab test`: which targets and which runs."""
    _add_selection(p)
    _add_engines(p)
    p.add_argument("--start-methods", type=_csv, default=list(CHECK_METHODS),
                   metavar="LIST", help="comma-separated, from "
                   f"{','.join(CHECK_METHODS)} (default: all four)")


def _add_user_code_tail(p: argparse.ArgumentParser, env_help: str) -> None:
    """`lab check` and `lab test`: how the run goes, what it installs, what it sets."""
    p.add_argument("--jobs", type=int, default=3, metavar="N", help=JOBS_HELP)
    p.add_argument("--out", type=Path, default=Path("reports"), metavar="DIR",
                   help="folder for run folders (default reports)")
    p.add_argument("--no-progress", action="store_true",
                   help="no live progress display (plain lines)")
    _add_requirements(p)
    p.add_argument("--env", action="append", default=[], metavar="NAME=VALUE", help=env_help)


def _command(sub: argparse._SubParsersAction[LabParser], name: str, summary: str,
             description: str = "") -> LabParser:
    return sub.add_parser(name, help=summary, description=description or summary,
                          epilog=_epilog(name))


def build_parser() -> LabParser:
    parser = LabParser(prog="lab", description=DESCRIPTION,
                       epilog="`lab COMMAND --help` shows a command's options, examples and "
                              "exit codes. README.md and docs/ have the rest.")
    parser.add_argument("--version", action="version", version=f"lab {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                parser_class=LabParser)

    run = _command(sub, "run", "build what is missing, run every scenario, write the report",
                   "Build the images that are missing, run every scenario in every target "
                   "(behaviour cells side by side, timing cells one container at a time), and "
                   "write reports/<run id>/ with index.html and results.json. The default "
                   "matrix takes about 2-3 minutes on 2 cores with images built; the plan printed "
                   "first estimates it from your last run.")
    _add_selection(run)
    _add_engines(run)
    run.add_argument("--scenarios", type=_csv, metavar="IDS",
                     help="comma-separated scenario ids (default: all; see `lab list`)")
    run.add_argument("--scenario-file", action="append", default=[], type=Path, metavar="PATH",
                     help="also run this scenario file (repeatable; docs/your-code.md)")
    run.add_argument("--quick", action="store_true", help=QUICK_HELP)
    run.add_argument("--jobs", type=int, default=3, metavar="N",
                     help=JOBS_HELP)
    run.add_argument("--out", type=Path, default=Path("reports"), metavar="DIR",
                     help="folder for run folders (default reports)")
    run.add_argument("--host-python", action="append", default=[], metavar="PATH",
                     help="also run directly with this host interpreter (repeatable)")
    run.add_argument("--timeout", type=float, default=None, metavar="SECONDS",
                     help="stop the whole run after this long (default: from the plan)")
    run.add_argument("--no-progress", action="store_true",
                     help="no live progress display (plain lines)")
    _add_requirements(run, full=False)

    check = _command(
        sub, "check", "run your program in every target, per start method",
        "Run an ordinary Python program in every selected target, once per start method and "
        "once with the interpreter's default, as `python SCRIPT ARGS` from its own folder "
        "(copied read-only into the container). Options go before SCRIPT; what follows it is "
        "the program's own arguments.")
    _add_user_code_head(check)
    check.add_argument("--timeout", type=float, default=60.0, metavar="SECONDS",
                       help="deadline of each run, from when the program starts (its "
                       "interpreter's start-up is not counted); a run still going is hung "
                       "(default 60)")
    check.add_argument("--file", action="append", default=[], type=Path, metavar="PATH",
                       dest="files", help="a module, package or data file from elsewhere "
                       "that the program needs beside it (repeatable)")
    _add_user_code_tail(check, "set this in every run of the program (repeatable), such as "
                        "OMP_NUM_THREADS=1")
    check.add_argument("script", type=Path, metavar="SCRIPT", help="the program to run")
    check.add_argument("args", nargs=argparse.REMAINDER, metavar="ARGS",
                       help="its arguments")

    test = _command(
        sub, "test", "run your pytest suite in every target, per start method",
        "Run a project's pytest suite in every selected target, once per start method and "
        "once with the interpreter's default, each run as its own cell (isolated, with a "
        "deadline and the stacks of every process). PATH is the project's folder (default: "
        "here), copied read-only; pytest's own arguments go after `--`. Each test's outcome "
        "is recorded per run; a test past --test-timeout is hung, named with its stacks, and "
        "the rest of the suite runs without it. pytest is installed for every target unless "
        "the requirements name it.")
    _add_user_code_head(test)
    test.add_argument("--timeout", type=float, default=900.0, metavar="SECONDS",
                      help="deadline of each run of the whole suite (default 900)")
    test.add_argument("--test-timeout", type=float, default=60.0, metavar="SECONDS",
                      help="deadline of one test: past it, the test is hung, its stacks are "
                      "kept and the suite goes on without it (default 60)")
    test.add_argument("--fail-on", type=_csv, default=list(CHECK_METHODS), metavar="LIST",
                      help="which runs' failures set the exit code, from "
                      f"{','.join(CHECK_METHODS)} (default: all; 'default' alone asks only "
                      "what each interpreter does by default)")
    _add_user_code_tail(test, "set this in every run of the suite (repeatable)")
    test.add_argument("path", type=Path, nargs="?", default=Path("."), metavar="PATH",
                      help="the project's folder, or a test file or folder in it (default .)")

    build = _command(sub, "build", "build (or reuse) the target images only",
                     "Build the images of the selected targets that are missing; reuse the "
                     "others. A cold base takes about 20-60 s; a target layer about 1 s. With "
                     "several engines, each target's image is made on the engines a run would "
                     "use for it, a base another engine has being streamed from it.")
    _add_selection(build)
    _add_engines(build, "to build on, each target where a run would place it")
    build.add_argument("--jobs", type=int, default=3, metavar="N",
                       help="targets built at once (default 3)")

    deps = _command(sub, "deps", "export the packages a set of targets needs, for offline use",
                    "export DIR: download (install nothing) what the requirements need for "
                    "each selected target, by that target's own interpreter, with a pip wheel it "
                    "can run, into one folder: carry it to a machine without a network and "
                    "give it to --wheelhouse there.")
    deps.add_argument("action", choices=["export"], metavar="ACTION", help="export")
    deps.add_argument("dest", type=Path, metavar="DIR", help="the folder to write the wheels to")
    _add_selection(deps)
    _add_engines(deps, "to export on, each target where a run would place it")
    _add_requirements(deps)

    lst = _command(sub, "list", "list targets (what each needs, whether it runs here) and "
                   "scenarios")
    _add_selection(lst)

    clean = _command(sub, "clean", "remove the lab's containers and target images",
                     "Remove every container the lab made and its target images on every "
                     "engine (lab.toml's, or the environment's); Debian bases are kept unless "
                     "--all.")
    clean.add_argument("--all", action="store_true", help="also remove the Debian base images")
    _add_engines(clean, "to clean")
    clean.add_argument("--config", type=Path, metavar="PATH",
                       help="extra matrix file (default: ./lab.toml if present)")

    doctor = _command(sub, "doctor", "check the engines, Debian mirror, disk, registry, archives "
                      "and emulation",
                      "Check every Docker engine (those of lab.toml's [engine.NAME] tables, or "
                      "the environment's: DOCKER_HOST, else the local socket) - reachable, "
                      "version, CPUs, architecture, storage driver - then the Debian mirror, "
                      "the disk, the registry, python-build-standalone archives and emulation.")
    doctor.add_argument("--engines", type=_csv, metavar="NAMES",
                        help="only these engines of lab.toml (default: every one configured)")
    doctor.add_argument("--config", type=Path, metavar="PATH",
                        help="extra matrix file (default: ./lab.toml if present)")

    report = _command(sub, "report", "render a run's results.json to HTML again",
                      "Render index.html and junit.xml from a results.json (or a run folder, "
                      "even one whose run was killed: what finished is rendered).")
    report.add_argument("results", type=Path, metavar="RESULTS",
                        help="a results.json or a run folder (reports/<run id>)")
    report.add_argument("-o", "--output", type=Path, metavar="HTML",
                        help="the HTML file to write (default: index.html beside the results)")
    report.add_argument("--compare", type=Path, metavar="OLD",
                        help="an older results.json: adds a section of what changed")
    return parser


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse like ``parse_args``, but an unknown option is reported by the command it was
    given to, which knows its options and can suggest the one that was meant."""
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    pytest_args: list[str] = []
    if command == "test" and "--" in argv:  # lab test [PATH] -- PYTEST-ARGS
        cut = argv.index("--")
        argv, pytest_args = argv[:cut], argv[cut + 1:]
    args, extras = parser.parse_known_args(argv)
    if extras:
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        hint = (" (pytest's own options go after `--`: lab test PATH -- -k NAME)"
                if args.command == "test" else "")
        sub.choices[args.command].error(f"unrecognized arguments: {' '.join(extras)}{hint}")
    if args.command == "test":
        args.pytest_args = pytest_args
    return args


