"""``lsvos parity CASE_DIR...``: check a port against a parity case's official outputs."""

from __future__ import annotations

import argparse

NAME = "parity"
HELP = "run a parity case through the project's port and compare with the official outputs"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("cases", nargs="+", metavar="CASE_DIR", help="parity case folder(s)")


def run(args: argparse.Namespace) -> int:
    from pipeline.adapters.parity import format_report, run_case_dir

    all_passed = True
    for case_dir in args.cases:
        report = run_case_dir(case_dir)
        print(format_report(report), flush=True)
        all_passed &= report.passed
    return 0 if all_passed else 1
