"""Inline SVG figures of the report (no scripts, fonts or network): the recipe graph with nodes
coloured by J&F, and the per-node distribution of J&F over expressions."""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from dataclasses import dataclass

from pipeline.orchestration.report.graph import ReportGraph

NODE_W, NODE_H = 136, 52
COL_W, ROW_H = 176, 64
PAD = 12
LANE_GAP = 7  # between the lanes of edges that skip columns
UNSCORED = "#e4e4e4"
DIST_W, DIST_H = 180, 22


def jf_colour(value: float, lo: float, hi: float) -> str:
    """Red (``lo``) through yellow to green (``hi``), light enough for dark text."""
    t = 0.5 if hi <= lo else min(1.0, max(0.0, (value - lo) / (hi - lo)))
    return f"hsl({round(120 * t)},65%,72%)"


def _text(x: float, y: float, text: str, cls: str = "") -> str:
    attr = f" class='{cls}'" if cls else ""
    return f"<text x='{x:.0f}' y='{y:.0f}'{attr}>{html.escape(text)}</text>"


@dataclass
class GraphLayout:
    """Where the graph's boxes go (top-left corners) and each edge's path, in a picture of
    ``width`` x ``height`` pixels."""

    at: dict[str, tuple[float, float]]
    edges: list[tuple[str, str, str]]  # (input, reader, SVG path)
    width: float
    height: float


def layout_graph(graph: ReportGraph) -> GraphLayout:
    """One column per topological depth, a column's nodes in graph order, centred. An edge to
    the next column is one curve; an edge skipping columns runs in a lane just above or below
    the boxes of the columns it skips (the side nearer its input), one lane per edge."""
    depths = graph.depths()
    columns: dict[int, list[str]] = {}
    for name in graph.names:
        columns.setdefault(depths[name], []).append(name)
    rows = max(len(c) for c in columns.values())
    at: dict[str, tuple[float, float]] = {}
    for depth, names in columns.items():
        top = (rows - len(names)) * ROW_H / 2
        for i, name in enumerate(names):
            at[name] = (PAD + depth * COL_W, top + i * ROW_H)
    edges: list[tuple[str, str, str]] = []
    lanes = {"above": 0, "below": 0}
    for node in graph.nodes:
        for source in node.inputs:
            (x1, y1), (x2, y2) = at[source], at[node.name]
            x1, y1, y2 = x1 + NODE_W, y1 + NODE_H / 2, y2 + NODE_H / 2
            skipped = [
                at[n][1] for n in graph.names if depths[source] < depths[n] < depths[node.name]
            ]
            if not skipped:
                edges.append((source, node.name, _curve(x1, y1, x2, y2, None)))
                continue
            top, bottom = min(skipped), max(skipped) + NODE_H
            side = "above" if y1 <= (top + bottom) / 2 else "below"
            lanes[side] += 1
            lane = (
                top - LANE_GAP * lanes[side] if side == "above" else bottom + LANE_GAP * lanes[side]
            )
            edges.append((source, node.name, _curve(x1, y1, x2, y2, lane)))
    # shift everything down so the highest lane clears the top edge
    shift = PAD + LANE_GAP * lanes["above"]
    at = {n: (x, y + shift) for n, (x, y) in at.items()}
    edges = [(a, b, _shifted(path, shift)) for a, b, path in edges]
    height = shift + (rows - 1) * ROW_H + NODE_H + LANE_GAP * lanes["below"] + PAD
    return GraphLayout(at, edges, 2 * PAD + (len(columns) - 1) * COL_W + NODE_W, height)


def _curve(x1: float, y1: float, x2: float, y2: float, lane: float | None) -> str:
    """From (x1, y1) to (x2, y2): one S curve, or via the horizontal line at ``lane``, turning
    in the gaps between columns."""
    if lane is None:
        mid = (x1 + x2) / 2
        return f"M{x1:.0f},{y1:.0f} C{mid:.0f},{y1:.0f} {mid:.0f},{y2:.0f} {x2:.0f},{y2:.0f}"
    gap = COL_W - NODE_W
    return (
        f"M{x1:.0f},{y1:.0f} C{x1 + gap / 2:.0f},{y1:.0f} {x1 + gap / 2:.0f},{lane:.0f} "
        f"{x1 + gap:.0f},{lane:.0f} L{x2 - gap:.0f},{lane:.0f} C{x2 - gap / 2:.0f},{lane:.0f} "
        f"{x2 - gap / 2:.0f},{y2:.0f} {x2:.0f},{y2:.0f}"
    )


def _shifted(path: str, dy: float) -> str:
    """``path`` (absolute M / C / L commands of x,y pairs) moved down by ``dy``."""

    def move(match: re.Match[str]) -> str:
        return f"{match.group(1)},{float(match.group(2)) + dy:.0f}"

    return re.sub(r"(-?\d+(?:\.\d+)?),(-?\d+(?:\.\d+)?)", move, path)


def graph_svg(graph: ReportGraph, jf: dict[str, float], submission: str | None) -> str:
    """The recipe graph (:func:`layout_graph`), each node filled by its J&F (``jf``: percent
    per node) and the submission node outlined bold; a colour scale under it."""
    plan = layout_graph(graph)
    at, width, graph_h = plan.at, round(plan.width), round(plan.height)
    scored = [jf[n] for n in graph.names if n in jf]
    lo, hi = (min(scored), max(scored)) if scored else (0.0, 0.0)
    parts = [
        f"<svg xmlns='http://www.w3.org/2000/svg' class='graph' width='{width}' "
        f"height='{graph_h + 34}' viewBox='0 0 {width} {graph_h + 34}' role='img' "
        "aria-label='recipe graph'>",
        "<defs><marker id='arrow' viewBox='0 0 8 8' refX='8' refY='4' markerWidth='7' "
        "markerHeight='7' orient='auto'><path d='M0,0L8,4L0,8z' fill='#777'/></marker>"
        "<linearGradient id='jfscale'>"
        + "".join(
            f"<stop offset='{k / 4:.2f}' stop-color='{jf_colour(k, 0, 4)}'/>" for k in range(5)
        )
        + "</linearGradient></defs>",
    ]
    for source, reader, path in plan.edges:
        parts.append(
            f"<path class='edge' data-from='{html.escape(source)}' "
            f"data-to='{html.escape(reader)}' d='{path}' fill='none' stroke='#999' "
            "stroke-width='1.4' marker-end='url(#arrow)'/>"
        )
    for node in graph.nodes:
        x, y = at[node.name]
        value = jf.get(node.name)
        fill = UNSCORED if value is None else jf_colour(value, lo, hi)
        label = "not scored" if value is None else f"J&F {value:.1f}"
        bold = node.name == submission
        stroke = "stroke='#111' stroke-width='3'" if bold else "stroke='#666' stroke-width='1'"
        note = " (submission)" if bold else ""
        parts += [
            f"<g class='node' data-node='{html.escape(node.name)}' data-kind='{node.kind}' "
            f"data-jf='{'' if value is None else f'{value:.1f}'}'>",
            f"<title>{html.escape(node.name)}{note}: {node.kind}, {html.escape(node.stage)}, "
            f"{label}</title>",
            f"<rect x='{x:.0f}' y='{y:.0f}' width='{NODE_W}' height='{NODE_H}' rx='7' "
            f"fill='{fill}' {stroke}/>",
            _text(x + 8, y + 16, node.name + ("  ★" if bold else ""), "name"),
            _text(x + 8, y + 31, f"{node.stage} · {node.kind}", "sub"),
            _text(x + 8, y + 45, label, "score"),
            "</g>",
        ]
    if scored:
        y = graph_h + 8
        parts += [
            _text(PAD, y + 12, "J&F", "sub"),
            f"<rect x='{PAD + 30}' y='{y}' width='160' height='14' fill='url(#jfscale)' "
            "stroke='#999'/>",
            _text(PAD + 196, y + 12, f"{lo:.1f} (lowest) to {hi:.1f} (highest);  ★ submission",
                  "sub"),
        ]  # fmt: skip
    parts.append("</svg>")
    return "".join(parts)


def distribution_svg(values: Sequence[float]) -> str:
    """J&F of each expression (percent) as a tick on a 0-100 axis, the mean as a dark bar."""
    if not values:
        return ""
    ordered = sorted(values)
    mean = sum(ordered) / len(ordered)
    median = ordered[len(ordered) // 2]
    if len(ordered) % 2 == 0:
        median = (ordered[len(ordered) // 2 - 1] + median) / 2

    def x(v: float) -> float:
        return 2 + (DIST_W - 4) * min(100.0, max(0.0, v)) / 100

    ticks = "".join(
        f"<line class='tick' x1='{x(v):.1f}' x2='{x(v):.1f}' y1='5' y2='17'/>" for v in ordered
    )
    return (
        f"<svg xmlns='http://www.w3.org/2000/svg' class='dist' width='{DIST_W}' "
        f"height='{DIST_H}' data-count='{len(ordered)}'>"
        f"<title>{len(ordered)} expressions: min {ordered[0]:.1f}, median {median:.1f}, "
        f"max {ordered[-1]:.1f}</title>"
        f"<line x1='2' x2='{DIST_W - 2}' y1='11' y2='11' stroke='#ccc'/>"
        f"<g stroke='#3a6ea5' stroke-opacity='0.55' stroke-width='2'>{ticks}</g>"
        f"<rect class='mean' x='{x(mean) - 1.5:.1f}' y='2' width='3' height='18' fill='#111'/>"
        "</svg>"
    )
