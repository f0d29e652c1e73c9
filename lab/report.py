"""The report: renders a results file to one self-contained HTML page and a junit.xml.

Rendering only: it reads ``results.json`` (or a run folder) and nothing else, so any old run can
be re-rendered. Every template is autoescaped, and every container-provided string is passed
through ``inert`` (control characters shown, length capped) before it reaches a template.
"""

from __future__ import annotations

from pathlib import Path

from jinja2 import Environment, PackageLoader, select_autoescape

from lab.results import RunResults, load


def environment() -> Environment:
    env = Environment(loader=PackageLoader("lab", "templates"),
                      autoescape=select_autoescape(default=True, default_for_string=True),
                      trim_blocks=True, lstrip_blocks=True)
    return env


def render_html(results: RunResults, *, compare: RunResults | None = None) -> str:
    return environment().get_template("report.html.j2").render(r=results, compare=compare)


def render_run(run_dir: Path) -> Path:
    return render_file(run_dir, output=None)


def render_file(path: Path, *, output: Path | None = None, compare: Path | None = None) -> Path:
    results = load(path)
    old = load(compare) if compare else None
    folder = path if path.is_dir() else path.parent
    out = output or folder / "index.html"
    out.write_text(render_html(results, compare=old))
    return out
