"""The image phase, as every command runs it: each (target, engine) a command needs, made on
that engine by one ``ImageBuilder``, missing bases started at once, the rest ``jobs`` at a
time; a base another reachable engine has is streamed from it. ``lab run`` (per target, as its
workers reach it), ``lab build`` (all of them) and ``make bench`` (cold bases) share it.

A failure is the result of its (target, engine), never an exception that stops the others.
"""

from __future__ import annotations

import concurrent.futures as cf
import functools
import threading
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from lab.engine import Engine
from lab.errors import LabError
from lab.images.builder import Donor, ImageBuilder
from lab.images.deps import DepsImage, Inputs, ensure_deps, export
from lab.images.plan import TargetImage, plan_image
from lab.images.requirements import Requirements
from lab.matrix import Target


@dataclass(frozen=True, kw_only=True)
class Built:
    """What became of one (target, engine): its image, or the error that stopped it."""

    target: str
    engine: str
    seconds: float
    image: TargetImage | None = None
    error: LabError | None = None


class ImagePhase:
    """Makes target images on a set of engines (``connect(name)`` gives a fresh Engine each
    time: one per thread). ``lost()`` names the engines no longer to be used as donors."""

    def __init__(self, *, connect: Callable[[str], Engine], engines: Iterable[str],
                 log_dir: Path, on_stage: Callable[[str, str], None] | None = None,
                 stop: threading.Event | None = None, labels: dict[str, str] | None = None,
                 lost: Callable[[], Collection[str]] = frozenset) -> None:
        self.connect = connect
        self.engines = list(engines)
        self.lost = lost
        self.stop = stop or threading.Event()
        self.builder = ImageBuilder(log_dir=log_dir, on_stage=on_stage, stop=self.stop,
                                    labels=labels)

    def close(self) -> None:
        self.builder.close()

    def donors(self, engine: str) -> list[Donor]:
        """The other engines still reachable, which a missing base may be streamed from."""
        gone = self.lost()
        return [(name, functools.partial(self.connect, name)) for name in self.engines
                if name != engine and name not in gone]

    def prefetch(self, targets: Mapping[str, Iterable[Target]]) -> None:
        """Start every missing base of each engine's targets now, all at once."""
        for name, mine in targets.items():
            plans = [plan_image(t) for t in mine]
            if plans:
                self.builder.prefetch_bases(plans, functools.partial(self.connect, name),
                                            self.donors(name))

    def ensure(self, target: Target, engine: str) -> TargetImage:
        """The target's image on ``engine``, made if missing; raises its LabError."""
        connected = self.connect(engine)
        try:
            return self.builder.ensure(connected, plan_image(target), self.donors(engine))
        finally:
            connected.close()

    def ensure_deps(self, target: Target, engine: str, image: TargetImage, reqs: Requirements,
                    inputs: Inputs) -> DepsImage:
        """``image`` with the run's requirements installed by the target's own interpreter,
        made if missing; raises DependencyUnavailable (this target cannot have them)."""
        connected = self.connect(engine)
        try:
            return ensure_deps(connected, target, image, reqs, inputs, labels=self.builder.labels,
                               stop=self.stop.is_set,
                               on_stage=lambda stage: self.builder.on_stage(target.id, stage))
        finally:
            connected.close()

    def export_deps(self, target: Target, engine: str, image: TargetImage, reqs: Requirements,
                    inputs: Inputs, dest: Path) -> list[str]:
        """What ``target`` needs downloaded into ``dest`` (``lab deps export``)."""
        connected = self.connect(engine)
        try:
            return export(connected, target, image, reqs, inputs, dest,
                          labels=self.builder.labels)
        finally:
            connected.close()

    def build(self, wanted: Iterable[tuple[Target, str]], *, jobs: int) -> Iterator[Built]:
        """Each (target, engine) made, ``jobs`` at a time, as they finish. Ctrl-C stops every
        download and second stage (each removes what it half made) before it propagates."""

        def one(target: Target, engine: str) -> Built:
            started = time.monotonic()
            try:
                image = self.ensure(target, engine)
            except LabError as exc:
                return Built(target=target.id, engine=engine, error=exc,
                             seconds=time.monotonic() - started)
            return Built(target=target.id, engine=engine, image=image,
                         seconds=time.monotonic() - started)

        pool = cf.ThreadPoolExecutor(max_workers=max(1, jobs), thread_name_prefix="lab-build")
        try:
            futures = [pool.submit(one, t, e) for t, e in wanted]
            for done in cf.as_completed(futures):
                yield done.result()
        except KeyboardInterrupt:
            self.stop.set()
            pool.shutdown(wait=True, cancel_futures=True)
            raise
        finally:
            pool.shutdown(wait=False, cancel_futures=True)
