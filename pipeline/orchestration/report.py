"""Run reports: the per-node J&F table (JSON, Markdown, a Prefect table artifact) and an HTML page
with overlay strips of the best and worst expressions of each stage, side by side across nodes.
"""

from __future__ import annotations

import base64
import html
import json
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from pipeline.core.io import atomic_write_text
from pipeline.orchestration.jobs import RunPlan

STRIP_FRAMES = 6
STRIP_HEIGHT = 96


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


def write_report(
    plan: RunPlan,
    records: list[dict[str, Any]],
    submission: dict[str, Any] | None,
    score_rows: list[dict[str, Any]],
) -> dict[str, Any]:
    """Write ``report.json`` and ``report.md`` into the run folder; publish the table artifact."""
    run_dir = Path(plan.run_dir)
    table = summarise_scores(score_rows)
    computed = [r for r in records if r.get("status") == "computed"]
    per_node_counts: dict[str, int] = defaultdict(int)
    for r in computed:
        per_node_counts[r["node"]] += 1
    md_table = markdown_table(plan, table) if table else "(no ground truth: nothing scored)"
    report = {
        "recipe": plan.recipe_name,
        "dataset": {
            "format": str(plan.dataset.format),
            "root": plan.dataset.root,
            "split": plan.dataset.split,
        },
        "videos": plan.videos,
        "nodes": {
            j.name: {"kind": j.kind, "stage": j.stage, "key": j.key, "dir": j.out_dir}
            for j in plan.jobs
        },
        "computed": dict(per_node_counts),
        "cached": {j.name: len(plan.videos) - per_node_counts.get(j.name, 0) for j in plan.jobs},
        "submission": submission,
        "scores": table,
        "per_expression": score_rows,
    }
    atomic_write_text(run_dir / "report.json", json.dumps(report, indent=1, sort_keys=True))
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
    _publish_table_artifact(plan, table)
    return {
        "run_dir": str(run_dir),
        "report_md": str(run_dir / "report.md"),
        "report_json": str(run_dir / "report.json"),
        "submission": submission,
        "scores": table,
        "computed": dict(per_node_counts),
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


# ------------------------------------------------------------------------------------------
# HTML report


def render_html_report(run_dir: str | Path) -> Path:
    """Write ``report.html`` in ``run_dir`` (from its report.json) and return its path."""
    from pipeline.core.masks import MaskSet
    from pipeline.orchestration.config import DatasetConfig
    from pipeline.orchestration.splits import open_split

    run_dir = Path(run_dir)
    report = json.loads((run_dir / "report.json").read_text())
    rows = report["per_expression"]
    nodes = report["nodes"]
    split_info = report["dataset"]
    dataset = open_split(
        DatasetConfig(
            format=split_info["format"], root=split_info["root"], split=split_info["split"]
        )
    )
    parts = [
        "<!doctype html><meta charset=utf-8><title>lsvos report</title>",
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}"
        "img{display:block;margin:2px 0}.lbl{font-size:12px;color:#444}</style>",
        f"<h1>Run report: {html.escape(report['recipe'])}</h1>",
        f"<p>{html.escape(report['dataset']['root'])} split "
        f"{html.escape(report['dataset']['split'])}, {len(report['videos'])} videos</p>",
        "<h2>J&amp;F per node</h2><table><tr><th>node</th><th>stage</th><th>J&amp;F</th>"
        "<th>J</th><th>F</th></tr>",
    ]
    for name, info in nodes.items():
        s = report["scores"].get(name)
        if s:
            parts.append(
                f"<tr><td>{html.escape(name)}</td><td>{html.escape(info['stage'])}</td>"
                f"<td>{100 * s['JF']:.1f}</td><td>{100 * s['J']:.1f}</td>"
                f"<td>{100 * s['F']:.1f}</td></tr>"
            )
    parts.append("</table>")
    by_stage: dict[str, list[str]] = defaultdict(list)
    for name, info in nodes.items():
        by_stage[info["stage"]].append(name)
    mask_sets = {name: MaskSet(info["dir"]) for name, info in nodes.items()}
    for stage, stage_nodes in by_stage.items():
        last = stage_nodes[-1]
        stage_rows = sorted(
            (r for r in rows if r["node"] == last), key=lambda r: (r["J"] + r["F"]) / 2
        )
        if not stage_rows:
            continue
        picks = [("worst", stage_rows[0]), ("best", stage_rows[-1])]
        parts.append(
            f"<h2>Stage {html.escape(stage or '-')}: best and worst of {html.escape(last)}</h2>"
        )
        for label, row in picks:
            video, exp = row["video"], row["expression"]
            parts.append(
                f"<h3>{label}: {html.escape(video)}/{html.escape(exp)} "
                f"(J&amp;F {50 * (row['J'] + row['F']):.1f})</h3>"
            )
            frames = dataset.read_frames(video)
            gt = dataset.ground_truth(video, exp)
            for name in nodes:
                track = mask_sets[name].read(video, exp)
                node_row = next(
                    (r for r in rows if r["node"] == name and r["video"] == video
                     and r["expression"] == exp), None,
                )  # fmt: skip
                score = f" J&amp;F {50 * (node_row['J'] + node_row['F']):.1f}" if node_row else ""
                strip = overlay_strip(frames, track.masks, gt)
                parts.append(
                    f"<div class=lbl>{html.escape(name)}{score}</div>"
                    f"<img src='data:image/jpeg;base64,{_jpeg_base64(strip)}'>"
                )
    out = run_dir / "report.html"
    atomic_write_text(out, "\n".join(parts))
    return out


def overlay_strip(
    frames: np.ndarray, masks: np.ndarray, gt: np.ndarray | None, n: int = STRIP_FRAMES
) -> np.ndarray:
    """A row of ``n`` evenly spaced frames: prediction in red, ground-truth outline in green.

    Args:
        frames: T x H x W x 3 uint8 RGB. masks: T x H x W bool. gt: T x H x W bool or None.

    Returns:
        STRIP_HEIGHT x (n * w) x 3 uint8 RGB.
    """
    idx = np.unique(np.linspace(0, len(frames) - 1, min(n, len(frames))).round().astype(int))
    tiles = []
    for t in idx:
        img = frames[t].astype(np.float32)
        red = np.zeros_like(img)
        red[..., 0] = 255
        m = masks[t][..., None]
        img = np.where(m, 0.5 * img + 0.5 * red, img).astype(np.uint8)
        if gt is not None:
            contours, _ = cv2.findContours(
                gt[t].astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE
            )
            img = np.ascontiguousarray(img)
            cv2.drawContours(img, contours, -1, (0, 255, 0), 2)
        h, w = img.shape[:2]
        tiles.append(cv2.resize(img, (max(1, round(w * STRIP_HEIGHT / h)), STRIP_HEIGHT)))
    return np.concatenate(tiles, axis=1)


def _jpeg_base64(rgb: np.ndarray) -> str:
    ok, buf = cv2.imencode(
        ".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 85]
    )
    assert ok
    return base64.b64encode(buf.tobytes()).decode("ascii")
