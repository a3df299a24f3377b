"""The per-stage sections of report.html: the expressions a stage's output node helped and
hurt most against its baseline input, each as a card of overlay tiles (one row per node shown,
the same frames in every row, the key frame marked) under a legend."""

from __future__ import annotations

import html
from typing import Any

import numpy as np

from pipeline.core.data import RVOSDataset, open_dataset
from pipeline.core.errors import UserError
from pipeline.core.io import read_rgb
from pipeline.core.masks import MaskSet
from pipeline.orchestration.report.graph import ReportGraph
from pipeline.orchestration.report.picks import Pick, StagePicks, expression_jf, stage_picks
from pipeline.orchestration.report.tiles import frame_indices, jpeg_data_uri, overlay_tile

LEGEND = (
    "<div class='legend'><span><i class='sw pred'></i>prediction (red tint)</span>"
    "<span><i class='sw gt'></i>ground truth (green outline)</span>"
    "<span><i class='sw key'></i>key frame (yellow frame, ★): where propagation starts</span>"
    "<span>hover a tile to enlarge it</span></div>"
)


class StageFigures:
    """Stage sections of one run (``report``: its parsed report.json); reads the split's frames
    and ground truth and the nodes' mask sets, only for the expressions and frames shown."""

    def __init__(self, report: dict[str, Any], graph: ReportGraph) -> None:
        self.report = report
        self.graph = graph
        self.jf = {n: 100 * s["JF"] for n, s in (report.get("scores") or {}).items()}
        self.expression_jf = expression_jf(report.get("per_expression") or [])
        self._dataset: RVOSDataset | None = None
        self._frames: dict[tuple[str, int], np.ndarray] = {}

    def section(self, stage: str) -> str:
        """The section of ``stage``: its verdict, the legend and the cards of its picks."""
        picks = stage_picks(self.graph.comparison(stage, self.jf), self.expression_jf)
        cmp = picks.comparison
        out = self.graph.by_name[cmp.output]
        esc = html.escape
        attrs = (
            f"id='stage-{esc(stage)}' class='stage' data-stage='{esc(stage)}' "
            f"data-output='{esc(cmp.output)}' data-baseline='{esc(cmp.baseline or '')}'"
        )
        if cmp.baseline is None:
            heading = f"Stage {esc(stage)}: best and worst expressions of {esc(out.name)}"
            verdict = f"{esc(out.name)} ({out.kind}) reads no scored input to compare against."
            sides = (("best", picks.helped), ("worst", picks.hurt))
        else:
            base = self.graph.by_name[cmp.baseline]
            heading = (
                f"Stage {esc(stage)}: {esc(out.name)} ({out.kind}) against its input "
                f"{esc(base.name)} ({base.kind})"
            )
            verdict = (
                f"Mean change <b class='mean-delta'>{100 * (picks.mean_delta or 0):+.1f}</b> "
                f"J&amp;F over {picks.better + picks.worse + picks.same} expressions: "
                f"{picks.better} better, {picks.worse} worse, {picks.same} unchanged."
            )
            sides = (("helped", picks.helped), ("hurt", picks.hurt))
        lines = [f"<section {attrs}><h2>{heading}</h2><p class='meta'>{verdict}</p>", LEGEND]
        cards = [self.pick_card(stage, picks, side, p) for side, chosen in sides for p in chosen]
        if not cards:
            lines.append("<p class='none'>No expression changed.</p>")
        lines += ["<div class='grid'>", *cards, "</div></section>"]
        return "\n".join(lines)

    def pick_card(self, stage: str, picks: StagePicks, side: str, pick: Pick) -> str:
        """One picked expression: its change, text and key frame over a table of tiles, one
        row per node shown (output and baseline in bold), one column per frame shown."""
        esc = html.escape
        dataset = self.dataset()
        video, exp = pick.video, pick.expression
        try:
            text = dataset.expression(video, exp).text
        except (KeyError, UserError):
            text = ""
        output = self.graph.by_name[picks.comparison.output]
        key = self.key_frame(output.key_frames_from, video, exp)
        gt = dataset.ground_truth(video, exp)
        frame_ids = dataset.video(video).frame_ids
        idx = frame_indices(len(frame_ids), key)
        if pick.delta is None:
            change = f"J&amp;F {100 * pick.output_jf:.1f}"
        else:
            change = (
                f"<span class='d'>{100 * pick.delta:+.1f}</span> J&amp;F "
                f"({100 * (pick.baseline_jf or 0):.1f} → {100 * pick.output_jf:.1f})"
            )
        key_note = (
            f"key frame {key} (frame {esc(frame_ids[key])}, from {esc(output.key_frames_from)})"
            if key is not None and 0 <= key < len(frame_ids)
            else "no key frame"
        )
        head = "".join(
            f"<th class='key' data-frame='{t}'>★ {esc(frame_ids[t])}</th>"
            if t == key
            else f"<th data-frame='{t}'>{esc(frame_ids[t])}</th>"
            for t in idx
        )
        roles = {output.name: "output", picks.comparison.baseline: "baseline"}
        rows = []
        for name in self.graph.shown_nodes(stage):
            role = roles.get(name, "other")
            value = self.expression_jf.get((name, video, exp))
            label = f"{esc(name)} {100 * value:.1f}" if value is not None else esc(name)
            cells = self.tile_cells(name, video, exp, gt, idx, key, frame_ids)
            rows.append(
                f"<tr class='{role}' data-node='{esc(name)}' "
                f"data-jf='{'' if value is None else f'{100 * value:.1f}'}'>"
                f"<th>{label}</th>{cells}</tr>"
            )
        delta = "" if pick.delta is None else f"{100 * pick.delta:.1f}"
        return (
            f"<div class='pick {side}' data-side='{side}' data-video='{esc(video)}' "
            f"data-expression='{esc(exp)}' data-delta='{delta}' data-key-frame="
            f"'{'' if key is None else key}'>"
            f"<h3>{side}: {change} · {esc(video)} / expression {esc(exp)}</h3>"
            f"<p class='text'>“{esc(text)}”</p><p class='meta'>{key_note}</p>"
            f"<table class='tiles'><thead><tr><th>node J&amp;F</th>{head}</tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table></div>"
        )

    def tile_cells(
        self,
        node: str,
        video: str,
        exp: str,
        gt: np.ndarray | None,
        idx: list[int],
        key: int | None,
        frame_ids: tuple[str, ...],
    ) -> str:
        """The tiles of one node's row (a note spanning the row where its masks are gone)."""
        folder = self.graph.by_name[node].dir
        try:
            if not MaskSet.is_mask_set(folder):  # opening a missing one would create it
                raise UserError(f"no mask set at {folder} (the cache was cleared or moved)")
            masks = MaskSet(folder).read(video, exp).select(frame_ids, label=f"node {node}").masks
        except UserError as err:  # InputFileError included
            return f"<td class='none' colspan='{len(idx)}'>{html.escape(str(err))}</td>"
        cells = []
        for t in idx:
            frame = self.frame(video, t)
            tile = overlay_tile(frame, masks[t], None if gt is None else gt[t], key=t == key)
            cls = " class='key'" if t == key else ""
            cells.append(f"<td{cls}><img alt='{html.escape(node)} frame {t}' "
                         f"src='{jpeg_data_uri(tile)}'></td>")  # fmt: skip
        return "".join(cells)

    def dataset(self) -> RVOSDataset:
        if self._dataset is None:
            info = self.report["dataset"]
            self._dataset = open_dataset(info["format"], info["root"], info["split"])
        return self._dataset

    def frame(self, video: str, t: int) -> np.ndarray:
        """Frame ``t`` of ``video`` (only the frames shown are read)."""
        if (video, t) not in self._frames:
            path = self.dataset().video(video).frame_paths[t]
            self._frames[(video, t)] = read_rgb(path)
        return self._frames[(video, t)]

    def key_frame(self, node: str, video: str, exp: str) -> int | None:
        """The key frame ``node`` recorded for (video, exp), else the argmax of its scores."""
        if node not in self.graph.by_name or not MaskSet.is_mask_set(self.graph.by_name[node].dir):
            return None
        try:
            maskset = MaskSet(self.graph.by_name[node].dir)
            recorded = maskset.key_frames(video)
            if exp in recorded:
                return recorded[exp]
            return maskset.read(video, exp).key_frame()
        except UserError:
            return None
