"""Comparing two runs: outcomes, interpreter facts and timing figures, where a timing counts
as changed only beyond run-to-run noise (``RUN_TO_RUN``, measured by ``make bench --noise``)."""

from __future__ import annotations

from dataclasses import dataclass

from lab.report.charts import engine_label, engine_of, interval_of, nested, sample_interval
from lab.report.margins import CONTENDED, contention
from lab.report.view import show
from lab.results import (
    Cell,
    Outcome,
    RunResults,
)
from lab.runner import measurements as M


@dataclass(frozen=True, kw_only=True)
class Change:
    what: str
    old: str
    new: str


RUN_TO_RUN = 0.10  # two warm runs on one machine differ by up to this much (make bench --noise)


def compare_runs(new: RunResults, old: RunResults) -> list[Change]:
    """Cells whose outcome changed, probe values that changed, and timing figures, normalized
    by the work done (time per iteration, speedup, throughput, ns per call), that moved beyond
    both runs' intervals and by more than RUN_TO_RUN, saying when either run was contended."""
    changes = []
    for c in new.results:
        o = old.cell(*c.key)
        if o is None:
            continue
        label = f"{c.target} · {c.scenario} · {c.start_method or '—'}" + (
            f" · {c.container}" if c.container else "")
        if o.outcome != c.outcome:
            changes.append(Change(what=label, old=o.outcome, new=c.outcome))
            continue
        before, after = figures(o), figures(c)
        if before and after and engine_of(new, c) != engine_of(old, o):
            changes.append(Change(what=f"{label} · timings", old=engine_label(old, o),
                                  new=f"{engine_label(new, c)}: another engine, not compared"))
            continue
        busy = [f"{run} run: others used {x:.2f} CPU" for run, cell in (("old", o), ("new", c))
                if (x := contention(cell)) is not None and x > CONTENDED]
        for name, (med, lo, hi, unit) in after.items():
            if name not in before:
                continue
            omed, olo, ohi, _ = before[name]
            # Beyond both runs' intervals, and more than two warm runs of one machine differ.
            if (lo > ohi or hi < olo) and abs(med - omed) > RUN_TO_RUN * abs(omed):
                note = f" (contended: {'; '.join(busy)})" if busy else ""
                changes.append(Change(what=f"{label} · {name}",
                                      old=f"{omed:.4g} {unit} [{olo:.4g}–{ohi:.4g}]",
                                      new=f"{med:.4g} {unit} [{lo:.4g}–{hi:.4g}]{note}"))
    for t in new.targets:
        ot = old.target(t.id)
        if not ot:
            continue
        for key in ("version", "default_start_method", "start_methods", "gil_enabled",
                    "pickle_default_protocol"):
            if show(t.probe.get(key)) != show(ot.probe.get(key)) and t.probe and ot.probe:
                changes.append(Change(what=f"{t.id} · {key}", old=show(ot.probe.get(key)),
                                      new=show(t.probe.get(key))))
    return changes


def figures(c: Cell) -> dict[str, tuple[float, float, float, str]]:
    """A timing cell's figures normalized by the work it did, so runs whose calibration chose
    other work sizes compare: name -> (median, low, high, unit)."""
    out: dict[str, tuple[float, float, float, str]] = {}
    if c.outcome != Outcome.OK:
        return out
    m = c.measurements
    if c.scenario == "countdown":
        n, serial = m.get(M.WORK_N), interval_of(m.get(M.SERIAL))
        if isinstance(n, int) and n > 0 and serial:
            med, lo, hi = (x / n * 1e9 for x in serial)
            out["serial time per iteration"] = (med, lo, hi, "ns")
        if speed := sample_interval(m.get(M.SPEEDUP_SAMPLES)):
            out["speedup"] = (*speed, "x")
    elif c.scenario == "process_startup":
        for key, name in ((M.STARTUP, "start + join"),
                          (M.STARTUP_MODULE, "start + join, target in a module")):
            if got := interval_of(m.get(key)):
                out[name] = (got[0] * 1000, got[1] * 1000, got[2] * 1000, "ms")
    elif c.scenario == "queue_transfer":
        for size in M.SIZES:
            for channel in M.CHANNELS:
                metric, unit = ((M.ITEMS_PER_S, "items/s") if size == "small"
                                else (M.MB_PER_S, "MB/s"))
                if got := interval_of(nested(m, M.transfer(channel, size), metric)):
                    out[f"{channel} {size} throughput"] = (*got, unit)
    elif c.scenario == "queue_iftry":
        for q in M.QUEUE_TYPES:
            for state in M.QUEUE_STATES:
                for variant in (M.IF_EMPTY, M.TRY_EXCEPT):
                    if got := interval_of(nested(m, q, M.iftry_ns(state, variant))):
                        out[f"{q} {state} {variant}"] = (*got, "ns/call")
    elif c.scenario == "threading_gil" and (
            got := sample_interval(nested(m, M.IO, M.SPEEDUP_SAMPLES))):
        out["threads on blocking I/O, speedup"] = (*got, "x")
    return out
