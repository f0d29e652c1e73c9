"""The command line: arguments in, exit code out. Fatal errors are caught only in ``main``.

``parser`` holds every command's options, help, examples and exit codes (EXIT_CODES, shown at
the end of its ``--help``); ``commands`` does what each one asks.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterator

from lab.cli.commands import COMMANDS
from lab.cli.parser import (
    DESCRIPTION,
    EXAMPLES,
    EXIT_CODES,
    EXIT_PARTIAL,
    EXIT_TERMINATED,
    LabParser,
    build_parser,
    parse,
    suggest,
)
from lab.errors import Interrupted, LabError

__all__ = ["COMMANDS", "DESCRIPTION", "EXAMPLES", "EXIT_CODES", "EXIT_PARTIAL",
           "EXIT_TERMINATED", "LabParser", "build_parser", "main", "parse", "suggest"]

_terminated = threading.Event()


def _on_sigterm(signum: int, frame: object) -> None:
    _terminated.set()
    raise KeyboardInterrupt  # from here on exactly what Ctrl-C does


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM (``timeout``, a cancelled CI job, systemd) stops a command like Ctrl-C:
    containers removed, what finished written and rendered; ``main`` then exits 143. A second
    SIGTERM forces, like a second Ctrl-C. Python's default would end the process at once and
    leave its containers running."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread
        return
    _terminated.clear()
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    with sigterm_as_interrupt():
        try:
            return COMMANDS[args.command](args)
        except Interrupted as exc:
            code = EXIT_TERMINATED if _terminated.is_set() else exc.exit_code
            print(f"lab: {exc}" + (" (SIGTERM)" if _terminated.is_set() else ""),
                  file=sys.stderr)
            if exc.forced:  # pressed twice: do not wait for worker threads at exit
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
            return code
        except LabError as exc:
            print(f"lab: error: {exc}", file=sys.stderr)
            return exc.exit_code
        except KeyboardInterrupt:
            print("lab: terminated" if _terminated.is_set() else "lab: interrupted",
                  file=sys.stderr)
            return EXIT_TERMINATED if _terminated.is_set() else 130
        except BrokenPipeError:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 1


