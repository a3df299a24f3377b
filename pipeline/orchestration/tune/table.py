"""The printed search report: the top candidates with their fold scores, and the three numbers
(the search's cross-validated J&F, the best single producer's, the base recipe's submission)."""

from __future__ import annotations

from pipeline.orchestration.tune.evaluate import Evaluator, Score
from pipeline.orchestration.tune.search import TuneResult


def _pct(score: Score | None) -> str:
    return "-" if score is None else f"{100 * score.JF:.1f}"


def candidates_table(evaluator: Evaluator, result: TuneResult, top: int) -> str:
    """The ``top`` candidates of the final search: J&F on the split and on each fold, and in
    which folds' training choice (and the final one) each was chosen."""
    folds = [f.held_out for f in result.folds]
    head = "| # | candidate | split | " + " | ".join(f"fold {i + 1}" for i in range(len(folds)))
    lines = [head + " | chosen |", "|---" * (4 + len(folds)) + "|"]
    for rank, ranked in enumerate(result.final.ranked[:top], start=1):
        spec = ranked.candidate.spec
        per_fold = [_pct(evaluator.score(spec, fold)) for fold in folds]
        chosen = [str(i + 1) for i, f in enumerate(result.folds) if f.chosen.spec == spec]
        marks = (["final"] if rank == 1 else []) + ([f"folds {','.join(chosen)}"] if chosen else [])
        lines.append(
            f"| {rank} | {ranked.candidate.describe()} | {_pct(ranked.score)} | "
            + " | ".join(per_fold)
            + f" | {' '.join(marks)} |"
        )
    return "\n".join(lines)


def cross_validation_table(evaluator: Evaluator, result: TuneResult) -> str:
    """Held-out J&F per fold and pooled, for the search, the best single producer and each
    vote node of the base recipe."""
    folds = [f.held_out for f in result.folds]
    head = "| held-out J&F | " + " | ".join(f"fold {i + 1}" for i in range(len(folds)))
    lines = [head + " | pooled (CV) |", "|---" * (2 + len(folds)) + "|"]
    tuned = [_pct(f.held_out_score) for f in result.folds]
    lines.append(f"| tuned search | {' | '.join(tuned)} | {_pct(result.cv)} |")
    if result.best_producer_cv is not None:
        single = [f"{_pct(f.best_producer_score)} ({f.best_producer})" for f in result.folds]
        lines.append(
            f"| best single producer | {' | '.join(single)} | {_pct(result.best_producer_cv)} |"
        )
    for name, score in result.base_nodes.items():
        label = f"base {'submission' if name == result.base_submission else 'vote'} {name}"
        per_fold = [_pct(evaluator.node_score(name, fold)) for fold in folds]
        lines.append(f"| {label} | {' | '.join(per_fold)} | {_pct(score)} |")
    return "\n".join(lines)


def fold_choices(result: TuneResult) -> str:
    """Per fold: the held-out videos and the vote chosen without them."""
    return "\n".join(
        f"fold {i + 1} ({len(f.held_out)} videos): chose {f.chosen.describe()} "
        f"(training J&F {_pct(f.train)})"
        for i, f in enumerate(result.folds)
    )


def headline(result: TuneResult) -> str:
    """The three numbers on one line."""
    base = result.base_submission
    parts = [f"tuned (CV) {_pct(result.cv)}"]
    if result.best_producer_cv is not None:
        parts.append(f"best single producer (CV) {_pct(result.best_producer_cv)}")
    if base is not None:
        parts.append(f"base submission {base} {_pct(result.base_nodes[base])}")
    return "J&F: " + "  |  ".join(parts)
