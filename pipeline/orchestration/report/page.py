"""``report.html``: one offline page (inline CSS, SVG and JPEG tiles) from a run's report.json.

Sections: the run (dataset, submission, cache use); the recipe graph coloured by J&F; the
per-node table in graph order (kind, stage, inputs, a J&F bar, J, F, counts, the distribution
over expressions); then per stage the expressions its output node helped and hurt most against
its baseline input, each as a grid of overlay tiles (the same frames for every node shown, the
key frame marked) under a legend.
"""

from __future__ import annotations

import html
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

from pipeline.core.io import atomic_write_text
from pipeline.orchestration.report.graph import ReportGraph
from pipeline.orchestration.report.picks import expression_jf
from pipeline.orchestration.report.stages import StageFigures
from pipeline.orchestration.report.svg import distribution_svg, graph_svg

BAR_PX = 120  # the J&F bar of a node at 100
STYLE = """
body{font:14px/1.35 system-ui,sans-serif;margin:16px 24px;color:#222}
h1{font-size:20px;margin:0 0 4px}h2{font-size:17px;margin:18px 0 6px}
section{border-top:1px solid #ddd;padding-top:4px}
.meta{color:#555;margin:2px 0}.bad{color:#b00;font-weight:bold}
table.nodes{border-collapse:collapse}
.nodes td,.nodes th{border-bottom:1px solid #e6e6e6;padding:2px 8px;text-align:right}
.nodes td.l,.nodes th.l{text-align:left}.nodes tr.submission td{font-weight:bold}
td.bar{width:170px;text-align:left;white-space:nowrap}
td.bar div{background:#9cc3e6;height:14px;display:inline-block;vertical-align:middle}
td.bar span{margin-left:6px}
svg text{font:12px system-ui,sans-serif;fill:#222}svg text.name{font-weight:bold}
svg text.sub{fill:#555;font-size:11px}
.legend{display:flex;gap:18px;align-items:center;color:#444;font-size:13px;margin:4px 0 8px}
.sw{display:inline-block;width:22px;height:14px;vertical-align:middle;margin-right:5px}
.sw.pred{background:rgba(255,0,0,.5)}.sw.gt{border:2px solid rgb(0,255,0)}
.sw.key{border:3px solid rgb(255,210,0)}
.grid{display:flex;flex-wrap:wrap;gap:10px;align-items:flex-start}
.pick{border:1px solid #ddd;border-radius:6px;padding:6px 8px;width:min-content;min-width:380px}
.pick h3{font-size:14px;margin:0}.pick .text{font-style:italic;margin:2px 0}
.pick.helped h3 .d{color:#17813a}.pick.hurt h3 .d{color:#b3261e}
table.tiles{border-collapse:collapse;margin-top:4px}
.tiles th{font-weight:normal;font-size:12px;text-align:right;padding:0 6px 0 0;white-space:nowrap}
.tiles thead th{text-align:center;padding:0 1px}.tiles th.key{font-weight:bold;color:#8a6d00}
.tiles td{padding:1px}.tiles img{height:40px;display:block;transition:transform .1s}
.tiles img:hover{transform:scale(3);position:relative;z-index:5;box-shadow:0 0 6px #000}
.tiles tr.output th,.tiles tr.baseline th{font-weight:bold}
.none{color:#777}
"""


def render_html_report(run_dir: str | Path) -> Path:
    """Write ``report.html`` in ``run_dir`` (from its report.json) and return its path."""
    run_dir = Path(run_dir)
    report = json.loads((run_dir / "report.json").read_text())
    graph = ReportGraph.from_report(report, run_dir)
    page = ReportPage(report, graph)
    out = run_dir / "report.html"
    atomic_write_text(out, page.render())
    return out


class ReportPage:
    """The page of one run: ``report`` is its parsed report.json, ``graph`` its nodes."""

    def __init__(self, report: dict[str, Any], graph: ReportGraph) -> None:
        self.report = report
        self.graph = graph
        self.rows = report.get("per_expression") or []
        self.scores = report.get("scores") or {}
        self.jf = {n: 100 * s["JF"] for n, s in self.scores.items()}
        self.expression_jf = expression_jf(self.rows)
        self.submission = (report.get("submission") or {}).get("node")

    def render(self) -> str:
        """The whole page."""
        title = f"Run report: {self.report['recipe']}"
        parts = [
            "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
            f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>",
            self.summary_section(),
            "<section id='graph'><h2>Recipe graph</h2>",
            "<p class='meta'>Columns follow the graph's depth (inputs on the left); each node "
            "is coloured by its J&amp;F on this split.</p>",
            graph_svg(self.graph, self.jf, self.submission),
            "</section>",
            self.nodes_section(),
        ]
        if self.rows:
            stages = StageFigures(self.report, self.graph)
            parts += [stages.section(stage) for stage in self.graph.stages()]
        parts.append("</body></html>")
        return "\n".join(parts)

    # ------------------------------------------------------------------------ run and nodes

    def summary_section(self) -> str:
        """The run: dataset, counts, cache use, the submission and the best-scoring node."""
        report = self.report
        data = report["dataset"]
        computed = sum(report.get("computed", {}).values())
        cached = sum(report.get("cached", {}).values())
        lines = [
            f"<section id='summary'><h1>Run report: {html.escape(report['recipe'])}</h1>",
            f"<p class='meta'>{html.escape(data['format'])} split "
            f"<b>{html.escape(data['split'])}</b> at {html.escape(data['root'])}: "
            f"<span class='videos'>{len(report['videos'])}</span> videos, "
            f"{len(self.graph.nodes)} nodes; {computed} (node, video) outputs computed in this "
            f"run, {cached} reused from the cache.</p>",
        ]
        sub = report.get("submission")
        if sub:
            state = "valid" if sub["valid"] else "<span class='bad'>INVALID</span>"
            score = self.jf.get(sub["node"])
            jf = f", J&amp;F {score:.1f}" if score is not None else ""
            lines.append(
                f"<p class='meta submission'>Submission: node <b>{html.escape(sub['node'])}</b>"
                f"{jf}, {html.escape(sub['format'])} zip {html.escape(sub['zip'])}: {state}"
                + "".join(f"<br>{html.escape(str(p))}" for p in sub.get("problems") or [])
                + "</p>"
            )
        if self.jf:
            best = max(self.graph.names, key=lambda n: self.jf.get(n, -1.0))
            lines.append(
                f"<p class='meta best'>Best-scoring node: <b>{html.escape(best)}</b>, "
                f"J&amp;F {self.jf[best]:.1f}"
                + (" (the submission)." if best == self.submission else ".")
                + "</p>"
            )
        else:
            lines.append("<p class='meta'>No ground truth on this split: nothing scored.</p>")
        lines.append("</section>")
        return "\n".join(lines)

    def nodes_section(self) -> str:
        """The per-node table, in graph order, with the J&F bars and distributions."""
        per_node: dict[str, list[float]] = defaultdict(list)
        for (node, _video, _exp), value in self.expression_jf.items():
            per_node[node].append(100 * value)
        head = "".join(
            f"<th class='{c}'>{h}</th>"
            for h, c in (
                ("node", "l"), ("stage", "l"), ("kind", "l"), ("inputs", "l"),
                ("J&amp;F", "l"), ("J", ""), ("F", ""), ("expressions", ""),
                ("computed", ""), ("cached", ""), ("J&amp;F per expression (0-100)", "l"),
            )
        )  # fmt: skip
        lines = [
            "<section id='nodes'><h2>J&amp;F per node</h2>",
            "<p class='meta'>In graph order. Computed / cached: videos this run computed / "
            "found in the cache. Each tick is one expression; the dark bar is the mean.</p>",
            f"<table class='nodes'><thead><tr>{head}</tr></thead><tbody>",
        ]
        for node in self.graph.nodes:
            s = self.scores.get(node.name)
            sub = " class='submission'" if node.name == self.submission else ""
            cells = [
                f"<td class='l node'>{html.escape(node.name)}</td>",
                f"<td class='l stage'>{html.escape(node.stage)}</td>",
                f"<td class='l kind'>{html.escape(node.kind)}</td>",
                f"<td class='l inputs'>{html.escape(', '.join(node.inputs)) or '-'}</td>",
            ]
            if s:
                jf = 100 * s["JF"]
                cells += [
                    f"<td class='bar'><div style='width:{BAR_PX * jf / 100:.0f}px'></div>"
                    f"<span class='jf'>{jf:.1f}</span></td>",
                    f"<td class='j'>{100 * s['J']:.1f}</td><td class='f'>{100 * s['F']:.1f}</td>",
                    f"<td class='expressions'>{s['expressions']}</td>",
                ]
            else:
                cells.append("<td class='l none' colspan='4'>not scored</td>")
            cells += [
                f"<td class='computed'>{self.report.get('computed', {}).get(node.name, 0)}</td>",
                f"<td class='cached'>{self.report.get('cached', {}).get(node.name, 0)}</td>",
                f"<td class='l'>{distribution_svg(per_node.get(node.name, []))}</td>",
            ]
            lines.append(f"<tr data-node='{html.escape(node.name)}'{sub}>{''.join(cells)}</tr>")
        lines.append("</tbody></table></section>")
        return "\n".join(lines)
