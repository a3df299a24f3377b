"""Run reports: the per-node J&F table (``report.json``, ``report.md``, a Prefect table
artifact) written at the end of every run, and ``report.html`` (:mod:`.page`), which
``lsvos report RUN_DIR`` rebuilds from a finished run."""

from pipeline.orchestration.report.page import render_html_report
from pipeline.orchestration.report.write import markdown_table, summarise_scores, write_report

__all__ = ["markdown_table", "render_html_report", "summarise_scores", "write_report"]
