# IN-CONTAINER CODE: standard library only, Python 3.9+ and PyPy; never imports lab.*.
"""Command line of the in-container runner.

    python -m labrunner run --plan PLAN.json --out DIR   run a plan of cells
    python -m labrunner cell --scenario S [--start-method M] --result FILE [--params JSON]
    python -m labrunner catalog                          print the scenario catalog as JSON
"""

import argparse
import json
import sys


def main(argv=None):
    parser = argparse.ArgumentParser(prog="labrunner")
    sub = parser.add_subparsers(dest="command")
    run = sub.add_parser("run")
    run.add_argument("--plan", required=True)
    run.add_argument("--out", required=True)
    cell = sub.add_parser("cell")
    cell.add_argument("--scenario", required=True)
    cell.add_argument("--start-method", default=None)
    cell.add_argument("--result", required=True)
    cell.add_argument("--params", default="{}")
    sub.add_parser("catalog")
    args = parser.parse_args(argv)

    if args.command == "run":
        from .harness import run_plan

        with open(args.plan) as fh:
            plan = json.load(fh)
        return run_plan(plan, args.out)
    if args.command == "cell":
        from .cell import run_cell

        return run_cell(args.scenario, args.start_method, json.loads(args.params), args.result)
    if args.command == "catalog":
        from .scenarios import CATALOG

        json.dump(CATALOG, sys.stdout, indent=2, sort_keys=True)
        return 0
    parser.print_help()
    return 2


if __name__ == "__main__":
    sys.exit(main())
