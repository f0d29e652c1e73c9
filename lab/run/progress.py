"""Progress: per target stage, cells done / total, hung so far, elapsed.

A live table on a terminal; plain lines (on stage changes and every ``PLAIN_EVERY_S``) when
output is not a terminal, so CI logs stay readable. Thread-safe: workers report, one thread
draws.
"""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass

from rich.console import Console
from rich.live import Live
from rich.table import Table

from lab.results import Outcome

PLAIN_EVERY_S = 15.0


@dataclass
class _Row:
    total: int
    stage: str = "queued"
    done: int = 0
    hung: int = 0
    problems: int = 0
    started: float | None = None


class Progress:
    def __init__(self, totals: dict[str, int], *, live: bool = True) -> None:
        self.rows = {tid: _Row(total=n) for tid, n in totals.items()}
        self.lock = threading.Lock()
        self.enabled = live
        self.tty = sys.stderr.isatty()
        # Plain lines in CI logs must not wrap at 80 columns.
        self.console = Console(stderr=True, soft_wrap=not self.tty)
        self.started = time.monotonic()
        self._live: Live | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if not self.enabled:
            return
        if self.tty:
            self._live = Live(self._table(), console=self.console, refresh_per_second=4,
                              transient=False)
            self._live.start()
        self._thread = threading.Thread(target=self._loop, name="lab-progress", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(0.5 if self.tty else PLAIN_EVERY_S):
            if self._live is not None:
                self._live.update(self._table())
            else:
                self._plain_summary()

    def stage(self, tid: str, stage: str) -> None:
        with self.lock:
            row = self.rows.get(tid)
            if row is None or row.stage == stage:
                return
            row.stage = stage
            if row.started is None:
                row.started = time.monotonic()
        if self.enabled and not self.tty:
            self._line(f"{tid}: {stage}")

    def cell(self, tid: str, outcome: str) -> None:
        with self.lock:
            row = self.rows.get(tid)
            if row is None:
                return
            row.done += 1
            if outcome == Outcome.HUNG:
                row.hung += 1
            elif outcome in (Outcome.CRASHED, Outcome.ERROR, Outcome.FAILED):
                row.problems += 1

    def note(self, message: str) -> None:
        if self.enabled:
            self._line(message)

    def finish(self) -> None:
        self._stop.set()
        if self._live is not None:
            self._live.update(self._table())
            self._live.stop()
            self._live = None
        elif self.enabled:
            self._plain_summary()

    def _elapsed(self) -> str:
        return f"{time.monotonic() - self.started:6.1f}s"

    def _line(self, text: str) -> None:
        self.console.print(f"[{self._elapsed()}] {text}", highlight=False, markup=False)

    def _plain_summary(self) -> None:
        with self.lock:
            parts = [f"{tid} {r.stage} {r.done}/{r.total}" + (f" hung={r.hung}" if r.hung else "")
                     for tid, r in self.rows.items()]
        self._line("progress: " + "; ".join(parts))

    def _table(self) -> Table:
        table = Table(title=f"lab run - {self._elapsed()}", expand=False)
        for col in ("target", "stage", "cells", "hung", "problems", "elapsed"):
            table.add_column(col)
        now = time.monotonic()
        with self.lock:
            for tid, r in self.rows.items():
                elapsed = f"{now - r.started:.0f}s" if r.started else "-"
                table.add_row(tid, r.stage, f"{r.done}/{r.total}", str(r.hung),
                              str(r.problems), elapsed)
        return table
