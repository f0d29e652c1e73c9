"""Judging and reporting: verdicts and "what changes for your code" computed from a results
file, the page, its charts and stacks, the runs' history, and the terminal's findings. Reads
results files only (never the run or image packages), so any old run can be re-rendered."""

from lab.report.history import runs_in
from lab.report.page import render_file, render_index, render_run
from lab.report.summary import findings_text
from lab.report.view import claim_lines, version_changes

__all__ = ["claim_lines", "findings_text", "render_file", "render_index", "render_run",
           "runs_in", "version_changes"]
