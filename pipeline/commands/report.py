"""``lsvos report RUN_DIR``: rebuild a finished run's report.html from its report.json (the
recipe graph, per-node scores, what each stage helped and hurt), recomputing nothing."""

from __future__ import annotations

import argparse

NAME = "report"
HELP = (
    "render RUN_DIR/report.html: the recipe graph, per-node scores, and the expressions each "
    "stage helped and hurt most"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", help="a run folder (outputs/runs/<run>) holding report.json")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from pipeline.core.errors import UserError
    from pipeline.orchestration.report import render_html_report

    if not (Path(args.run_dir) / "report.json").is_file():
        raise UserError(f"{args.run_dir} has no report.json: not a run folder")
    print(render_html_report(args.run_dir))
    return 0
