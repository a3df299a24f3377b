"""The held-out proof: the tuned recipe, the best single producer and the base recipe, all three
run by ``lsvos run`` on another labelled split (``test`` of the synthetic benchmark).

Nothing on that split is chosen: the recipe was written from the tuning split, the best single
producer is the producer with the best J&F on the tuning split, and the base recipe is the
base. Two runs: the base recipe on the split (its submission and every producer, scored by the
flow), then the written recipe (its producers and engines have the base's settings, so their
cached masks are shared; its propagate and vote nodes are computed).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pipeline.core.errors import UserError
from pipeline.orchestration.config import CONFIG_DIR
from pipeline.orchestration.tune.augment import RunRecord, run_recipe


@dataclass(frozen=True)
class HeldOut:
    """The three J&F figures (fractions) on the held-out split, and the two runs behind them."""

    split: str
    tuned: float
    best_producer: str
    best_producer_jf: float
    base_submission: str
    base: float
    base_run: RunRecord
    tuned_run: RunRecord

    def table(self, tuned_node: str) -> str:
        """The three numbers as a markdown table, best first."""
        rows = sorted(
            [
                (self.tuned, f"tuned recipe (submission {tuned_node})"),
                (
                    self.best_producer_jf,
                    f"best single producer on the tuning split ({self.best_producer})",
                ),
                (self.base, f"base recipe (submission {self.base_submission})"),
            ],
            key=lambda r: -r[0],
        )
        lines = [f"| held-out split {self.split} | J&F |", "|---|---|"]
        lines += [f"| {label} | {100 * jf:.1f} |" for jf, label in rows]
        return "\n".join(lines)


def with_split(overrides: Sequence[str], split: str) -> list[str]:
    """``overrides`` with ``dataset.split`` set to ``split`` (replacing any given)."""
    return [o for o in overrides if not o.startswith("dataset.split=")] + [f"dataset.split={split}"]


def recipe_overrides(recipe_path: Path) -> list[str]:
    """The overrides that select the recipe file ``recipe_path``: ``recipe=<stem>``, and a
    Hydra search path when it lies outside ``configs/recipe`` (in a folder named ``recipe``)."""
    folder = recipe_path.resolve().parent
    out = [f"recipe={recipe_path.stem}"]
    if folder == (CONFIG_DIR / "recipe").resolve():
        return out
    if folder.name != "recipe":
        raise UserError(
            f"{recipe_path}: a recipe outside {CONFIG_DIR / 'recipe'} must lie in a folder "
            "named 'recipe' (it is found through hydra.searchpath)"
        )
    return [*out, f"hydra.searchpath=[file://{folder.parent}]"]


def score_held_out(
    base_overrides: Sequence[str],
    base_submission: str,
    recipe_path: Path,
    tuned_submission: str,
    split: str,
    best_producer: str,
    output_root: Path,
    run_prefix: str,
) -> HeldOut:
    """Run the base recipe and the written one on ``split``; the three numbers.

    ``base_overrides``: the base run's Hydra overrides (the tuning split's); the written
    recipe takes their ``dataset*`` and ``runtime*`` overrides (its producers and engines
    are written in full). Raises :class:`UserError` when a run fails or a figure is missing
    (a split without ground truth scores nothing).
    """
    base = run_recipe(with_split(base_overrides, split), f"{run_prefix}-base-{split}", output_root)
    kept = [o for o in base_overrides if o.startswith(("dataset", "runtime"))]
    tuned = run_recipe(
        [*recipe_overrides(recipe_path), *with_split(kept, split)],
        f"{run_prefix}-tuned-{split}",
        output_root,
    )
    wanted = ((base, base_submission), (base, best_producer), (tuned, tuned_submission))
    for record, node in wanted:
        if node not in record.scores:
            raise UserError(
                f"{record.run_dir}: node {node!r} was not scored (does split {split!r} have "
                "ground truth?)"
            )
    return HeldOut(
        split,
        tuned.scores[tuned_submission],
        best_producer,
        base.scores[best_producer],
        base_submission,
        base.scores[base_submission],
        base,
        tuned,
    )
