"""`lab list`: the targets as a table (what each needs, whether it can run here now) and the
scenarios. Availability is read from the engine and this machine, never assumed."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from rich.console import Console
from rich.table import Table

from lab.errors import LabError
from lab.images.plan import ImagePlan, emulation_problem, plan_image
from lab.matrix import Target


@dataclass(frozen=True, kw_only=True)
class Availability:
    needs: str
    here: str
    ok: bool


def needs(t: Target) -> str:
    if t.image:
        what = f"registry ({t.image})"
    elif t.archive is not None and t.base is not None:
        what = f"python-build-standalone on Debian {t.base.suite}"
    elif t.base is not None:
        what = f"Debian {t.base.suite}"
    else:
        what = "host interpreter"
    return what + (", emulation (qemu-user)" if t.emulated else "")


def availability(targets: Iterable[Target], engine: object | None,
                 engine_problem: str | None = None) -> dict[str, Availability]:
    """Per target: can it run here now, and if not, why (first reason only)."""
    from lab.engine import Engine

    out: dict[str, Availability] = {}
    registry: str | None | bool = False  # not asked yet
    for t in targets:
        need = needs(t)
        if engine is None or not isinstance(engine, Engine):
            out[t.id] = Availability(needs=need, ok=False,
                                     here=f"no: no Docker engine ({engine_problem or '?'})")
            continue
        if t.emulated and (problem := emulation_problem(t.arch)):
            out[t.id] = Availability(needs=need, ok=False, here=f"no: {problem.split(':')[0]}")
            continue
        plan = plan_image(t)
        try:
            if engine.image(plan.tag) is not None:
                out[t.id] = Availability(needs=need, ok=True, here="yes: image built")
            elif t.image:
                if engine.image(t.image) is not None:
                    out[t.id] = Availability(needs=need, ok=True, here="yes: image pulled")
                    continue
                if registry is False:
                    registry = engine.registry_problem(t.image)
                out[t.id] = Availability(
                    needs=need, ok=registry is None,
                    here="yes: pulled on first run" if registry is None else
                    "no: no registry answers (" + ("optional: listed as not available here"
                                                   if t.optional else "reported unavailable")
                    + ")")
            elif t.archive is not None:
                out[t.id] = _archive_availability(t, plan, need)
            elif engine.image(plan.base_ref) is not None:
                out[t.id] = Availability(needs=need, ok=True, here="yes: base built; 1 s layer")
            else:
                out[t.id] = Availability(needs=need, ok=True,
                                         here="yes: base builds on first run (20-60 s)")
        except LabError as exc:
            out[t.id] = Availability(needs=need, ok=False, here=f"no: {exc}"[:80])
    return out


def _archive_availability(t: Target, plan: ImagePlan, need: str) -> Availability:
    """An archive target's: cached, local, or to be downloaded (not tried here)."""
    from lab.images.plan import cache_dir

    src = plan.archive
    if src is None:
        why = (plan.archive_problem or "no archive").split(" (")[0]
        return Availability(needs=need, ok=False,
                            here=f"no: {why}" + (" (optional)" if t.optional else ""))
    cached = cache_dir() / "archive" / "sha256" / src.sha256[:2] / src.sha256
    if cached.is_file():
        return Availability(needs=need, ok=True, here=f"yes: {src.version or ''} archive cached")
    if src.url.startswith("file://"):
        return Availability(needs=need, ok=True, here=f"yes: {src.version or ''} local archive")
    return Availability(needs=need, ok=True,
                        here=f"if downloadable: {src.version or ''} from {src.url.split('/')[2]}"
                        + (" (optional)" if t.optional else ""))


def targets_table(targets: list[Target], chosen: set[str], default: set[str],
                  avail: dict[str, Availability]) -> Table:
    table = Table(title="targets (* = in the default matrix)", title_justify="left",
                  show_edge=False, pad_edge=False, box=None, header_style="bold")
    for name in ("", "id", "python", "platform", "needs", "runs here now", "interpreter"):
        table.add_column(name, no_wrap=True)
    for t in targets:
        if t.id not in chosen:
            continue
        a = avail[t.id]
        table.add_row("*" if t.id in default else "", t.id,
                      f"{t.implementation} {t.flavour_version}",
                      t.platform + (" (emulated)" if t.emulated else ""), a.needs,
                      a.here if a.ok else f"[red]{a.here}[/red]", t.python)
    return table


def scenarios_table(catalog: dict[str, dict[str, object]]) -> Table:
    table = Table(title="scenarios", title_justify="left", show_edge=False, pad_edge=False,
                  box=None, header_style="bold")
    for name in ("id", "kind", "start methods", "what it observes"):
        table.add_column(name, no_wrap=name != "what it observes")
    for sid, meta in catalog.items():
        methods = str(meta["start_methods"])
        if meta.get("containers"):
            methods += " x " + ", ".join(str(c) for c in meta["containers"])  # type: ignore
        title = str(meta["title"])
        requires = meta.get("requires")
        if isinstance(requires, list | tuple) and requires:  # not in the default run
            title += (f" (needs {', '.join(str(r) for r in requires)}: runs when named, "
                      f"`lab run --scenarios {sid}`)")
        table.add_row(sid, str(meta["kind"]), methods, title)
    return table


def print_list(console: Console, targets: list[Target], chosen: set[str], default: set[str],
               avail: dict[str, Availability], catalog: dict[str, dict[str, object]]) -> None:
    console.print(targets_table(targets, chosen, default, avail))
    console.print()
    console.print(scenarios_table(catalog))
