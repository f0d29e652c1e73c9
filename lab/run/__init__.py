"""Running cells on engines: what runs where and when (the scheduler, pure), how one
container is started, watched and removed (containers, over the record protocol), the
ledger that keeps every cell as it arrives, and the run that wires them."""

from lab.run.engines import Survey, remove_leftovers, survey_engines
from lab.run.runs import Run, RunOptions, point_latest
from lab.run.scheduler import Plan, plan_runs, select_scenarios
from lab.run.usercode import check_spec, load_scenario_files, suite_spec

__all__ = ["Plan", "Run", "RunOptions", "Survey", "check_spec", "load_scenario_files",
           "plan_runs", "point_latest", "remove_leftovers", "select_scenarios", "survey_engines",
           "suite_spec"]
