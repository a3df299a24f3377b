"""The end-of-run report: ``report.json`` and ``report.md`` (the per-node J&F table), the Prefect
table artifact, and ``report.html`` (:mod:`.page`).

``report.json`` keeps the graph order: ``nodes`` and ``scores`` list the nodes as the run
ordered them (inputs first), each node with its kind, stage, inputs and key-frame node.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pipeline.core.io import atomic_write_text

if TYPE_CHECKING:  # not at run time: `lsvos report` imports no Hydra
    from pipeline.orchestration.jobs import NodeJob, RunPlan


def summarise_scores(rows: Iterable[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per node: J, F and J&F as means over expressions (fractions in [0, 1])."""
    per_node: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for row in rows:
        per_node[row["node"]].append((row["J"], row["F"]))
    table = {}
    for node, values in per_node.items():
        j = float(np.mean([v[0] for v in values]))
        f = float(np.mean([v[1] for v in values]))
        table[node] = {"J": j, "F": f, "JF": (j + f) / 2, "expressions": len(values)}
    return table


def markdown_table(plan: RunPlan, table: dict[str, dict[str, float]]) -> str:
    """The printed per-node table, in graph order (README.md copies the demo's)."""
    lines = ["| node | stage | kind | J&F | J | F | expressions |", "|---|---|---|---|---|---|---|"]
    for job in plan.jobs:
        if job.name not in table:
            continue
        t = table[job.name]
        lines.append(
            f"| {job.name} | {job.stage} | {job.kind} | {100 * t['JF']:.1f} | {100 * t['J']:.1f} "
            f"| {100 * t['F']:.1f} | {t['expressions']} |"
        )
    return "\n".join(lines)


def node_entry(job: NodeJob) -> dict[str, Any]:
    """A node as ``report.json`` records it."""
    key_from = getattr(job.node, "key_frame_node", job.name)  # a propagation's key-frame node
    return {
        "kind": job.kind,
        "stage": job.stage,
        "inputs": list(job.inputs),
        "key_frames_from": key_from,
        "key": job.key,
        "dir": job.out_dir,
    }


def write_report(
    plan: RunPlan,
    records: list[dict[str, Any]],
    submission: dict[str, Any] | None,
    score_rows: list[dict[str, Any]],
) -> dict[str, Any]:
    """Write ``report.json``, ``report.md`` and ``report.html`` into the run folder; publish
    the table artifact."""
    from pipeline.orchestration.report.page import render_html_report

    run_dir = Path(plan.run_dir)
    scored = summarise_scores(score_rows)
    table = {j.name: scored[j.name] for j in plan.jobs if j.name in scored}
    computed = [r for r in records if r.get("status") == "computed"]
    per_node_counts: dict[str, int] = defaultdict(int)
    for r in computed:
        per_node_counts[r["node"]] += 1
    computed_counts = {
        j.name: per_node_counts[j.name] for j in plan.jobs if j.name in per_node_counts
    }
    md_table = markdown_table(plan, table) if table else "(no ground truth: nothing scored)"
    report = {
        "recipe": plan.recipe_name,
        "dataset": {
            "format": str(plan.dataset.format),
            "root": plan.dataset.root,
            "split": plan.dataset.split,
        },
        "videos": plan.videos,
        "nodes": {j.name: node_entry(j) for j in plan.jobs},
        "computed": computed_counts,
        "cached": {j.name: len(plan.videos) - per_node_counts.get(j.name, 0) for j in plan.jobs},
        "submission": submission,
        "scores": table,
        "per_expression": score_rows,
    }
    atomic_write_text(run_dir / "report.json", json.dumps(report, indent=1))
    lines = [
        f"# Run report: {plan.recipe_name}",
        "",
        f"Dataset `{plan.dataset.root}` split `{plan.dataset.split}`, "
        f"{len(plan.videos)} videos; {len(computed)} (node, video) outputs computed, "
        f"{len(plan.jobs) * len(plan.videos) - len(computed)} reused from the cache.",
        "",
    ]
    if submission:
        lines += [
            f"Submission: `{submission['zip']}` ({submission['format']}, "
            f"{'valid' if submission['valid'] else 'INVALID'}).",
            "",
        ]
    lines += ["## J&F per node", "", md_table, ""]
    atomic_write_text(run_dir / "report.md", "\n".join(lines))
    page = render_html_report(run_dir)
    _publish_table_artifact(plan, table)
    return {
        "run_dir": str(run_dir),
        "report_md": str(run_dir / "report.md"),
        "report_json": str(run_dir / "report.json"),
        "report_html": str(page),
        "submission": submission,
        "scores": table,
        "computed": computed_counts,
        "table": md_table,
    }


def _publish_table_artifact(plan: RunPlan, table: dict[str, dict[str, float]]) -> None:
    if not table:
        return
    from prefect.artifacts import create_table_artifact
    from prefect.context import FlowRunContext

    if FlowRunContext.get() is None:  # called outside a flow run: files only
        return
    rows = [
        {
            "node": j.name,
            "stage": j.stage,
            "J&F": round(100 * table[j.name]["JF"], 2),
            "J": round(100 * table[j.name]["J"], 2),
            "F": round(100 * table[j.name]["F"], 2),
        }
        for j in plan.jobs
        if j.name in table
    ]
    create_table_artifact(
        key=f"jf-{plan.recipe_name}".lower().replace("_", "-"),
        table=rows,
        description=f"J&F per node, {plan.dataset.split} split, {len(plan.videos)} videos",
    )
