"""Per stage, the expressions its output node helped and hurt most against its baseline input
(:meth:`.graph.ReportGraph.comparison`), from the per-expression rows of ``report.json``."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pipeline.orchestration.report.graph import StageComparison

PICKS_PER_SIDE = 2


def expression_jf(rows: Iterable[dict[str, Any]]) -> dict[tuple[str, str, str], float]:
    """J&F (a fraction) of every scored (node, video, expression)."""
    return {(r["node"], r["video"], r["expression"]): (r["J"] + r["F"]) / 2 for r in rows}


@dataclass(frozen=True)
class Pick:
    """One (video, expression): the output's J&F and the baseline's (None without one)."""

    video: str
    expression: str
    output_jf: float
    baseline_jf: float | None

    @property
    def delta(self) -> float | None:
        return None if self.baseline_jf is None else self.output_jf - self.baseline_jf


@dataclass(frozen=True)
class StagePicks:
    """``helped`` / ``hurt``: the largest gains and losses (best / worst J&F of the output
    where the stage has no baseline); ``better`` / ``worse`` / ``same``: how many expressions
    the stage moved each way."""

    comparison: StageComparison
    helped: list[Pick]
    hurt: list[Pick]
    better: int
    worse: int
    same: int
    mean_delta: float | None


def stage_picks(
    comparison: StageComparison,
    jf: dict[tuple[str, str, str], float],
    per_side: int = PICKS_PER_SIDE,
) -> StagePicks:
    """The helped and hurt expressions of one stage (ties in (video, expression) order)."""
    out, base = comparison.output, comparison.baseline
    picks = [
        Pick(video, exp, value, None if base is None else jf.get((base, video, exp)))
        for (node, video, exp), value in jf.items()
        if node == out and (base is None or (base, video, exp) in jf)
    ]
    picks.sort(key=lambda p: (p.video, p.expression))
    if base is None:
        ranked = sorted(picks, key=lambda p: -p.output_jf)
        best = ranked[:per_side]
        worst = [p for p in reversed(ranked) if p not in best][:per_side]
        return StagePicks(comparison, best, worst, 0, 0, len(picks), None)
    deltas = [p.delta or 0.0 for p in picks]
    helped = sorted((p for p in picks if (p.delta or 0) > 0), key=lambda p: -(p.delta or 0))
    hurt = sorted((p for p in picks if (p.delta or 0) < 0), key=lambda p: p.delta or 0)
    return StagePicks(
        comparison,
        helped[:per_side],
        hurt[:per_side],
        better=sum(d > 0 for d in deltas),
        worse=sum(d < 0 for d in deltas),
        same=sum(d == 0 for d in deltas),
        mean_delta=sum(deltas) / len(deltas) if deltas else None,
    )
