"""The search space of a vote: sources, weights, threshold, pairs pooling, hard or soft.

For one subset of sources, :meth:`SearchSpace.candidates` lists every vote of the grid:

- weights: ``equal`` (1 each); ``score`` (proportional to each source's J&F on the videos the
  choice is made on, scaled to a mean of 1, 3 decimals); ``lead:<source>`` (that source 2, the
  others 1), for subsets of two sources or more;
- hard votes: ``min_votes`` = a fraction of the weight a group can cast (twice the summed
  weights under ``pairs``), and the lone last expression of an odd count under ``pairs`` voted
  by every source at the same fraction of its votes (``odd: own_threshold``); with integer
  weights the threshold is rounded up to a whole vote, so fractions that reach the same count
  give one candidate;
- soft votes (``mode: soft``, where enabled): the weighted mean probability against each
  ``prob_threshold``, for subsets whose every source may be voted soft (:attr:`soft_sources`)
  and one of which has probabilities (:attr:`probability_sources`: over masks alone a soft vote
  at ``p`` is a hard vote at that fraction of the votes, already in the grid);
- ``pairs`` off and on.

Candidates whose specs are equal are listed once (the first label kept).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from pipeline.core.errors import UserError
from pipeline.core.vote import VOTE_MODES, VoteSpec

WEIGHTINGS: tuple[str, ...] = ("equal", "score", "lead")
DEFAULT_FRACTIONS: tuple[float, ...] = (0.25, 1 / 3, 0.5, 2 / 3, 0.75, 1.0)
DEFAULT_PROB_THRESHOLDS: tuple[float, ...] = (0.3, 0.4, 0.5, 0.6, 0.7)
_EPS = 1e-6


@dataclass(frozen=True)
class Candidate:
    """A vote to try: its spec and how it was built (``weighting``: ``equal``, ``score``,
    ``lead:<source>`` or ``recipe`` for a node of the base recipe; ``threshold``: the
    fraction of the votes of a hard vote, the probability threshold of a soft one)."""

    spec: VoteSpec
    weighting: str
    threshold: float | None = None

    @property
    def sources(self) -> tuple[str, ...]:
        return self.spec.sources

    def describe(self) -> str:
        """One line: sources, weights, rule, pooling."""
        spec = self.spec
        weights = spec.source_weights
        if spec.weights is None:
            sources = "+".join(spec.sources)
        else:
            sources = "+".join(f"{s}*{w:g}" for s, w in zip(spec.sources, weights, strict=True))
        if spec.mode == "soft":
            rule = f"soft p>={spec.prob_threshold:g}"
        else:
            votes = sum(weights) * (2 if spec.pairs else 1)
            need = spec.min_votes if spec.min_votes is not None else votes / 2
            rule = f"hard >={need:g}/{votes:g}"
        return f"{sources} [{self.weighting}] {rule}{' pairs' if spec.pairs else ''}"


@dataclass(frozen=True)
class SearchSpace:
    """What the search may choose. ``sources``: the run nodes a vote may read (run order);
    ``soft_sources``: those a soft vote may read (see :mod:`.search`); ``probability_sources``:
    those with soft probabilities (a soft vote needs one); ``max_sources``: the
    largest subset; ``beam``: subsets kept per size by the beam search; ``exhaustive_up_to``:
    with this many sources or fewer, every subset is tried instead; ``top_sources``: when set,
    only the sources with the best J&F on the videos a choice is made on, this many, are voted
    (chosen again within each fold, so the cross-validation stays held out)."""

    sources: tuple[str, ...]
    weightings: tuple[str, ...] = WEIGHTINGS
    fractions: tuple[float, ...] = DEFAULT_FRACTIONS
    pairs: tuple[bool, ...] = (False, True)
    modes: tuple[str, ...] = ("hard",)
    prob_thresholds: tuple[float, ...] = DEFAULT_PROB_THRESHOLDS
    soft_sources: frozenset[str] = frozenset()
    probability_sources: frozenset[str] = frozenset()
    max_sources: int = 4
    beam: int = 4
    exhaustive_up_to: int = 6
    top_sources: int | None = None

    def __post_init__(self) -> None:
        if not self.sources:
            raise UserError("the search needs at least one source node")
        if len(set(self.sources)) != len(self.sources):
            raise UserError(f"a source is listed twice: {list(self.sources)}")
        unknown = sorted(set(self.weightings) - set(WEIGHTINGS))
        if unknown:
            raise UserError(f"unknown weightings {unknown}; known: {list(WEIGHTINGS)}")
        bad_modes = sorted(set(self.modes) - set(VOTE_MODES))
        if bad_modes or not self.modes:
            raise UserError(f"modes must be among {list(VOTE_MODES)}, got {list(self.modes)}")
        if not self.fractions or any(not 0 < f <= 1 for f in self.fractions):
            raise UserError(f"vote fractions must lie in (0, 1], got {list(self.fractions)}")
        if any(not 0 < t <= 1 for t in self.prob_thresholds):
            raise UserError(f"prob thresholds must lie in (0, 1], got {self.prob_thresholds}")
        if self.max_sources < 1 or self.beam < 1:
            raise UserError(
                f"max_sources and beam must be at least 1, got {self.max_sources}, {self.beam}"
            )
        if self.top_sources is not None and self.top_sources < 1:
            raise UserError(f"top_sources must be at least 1, got {self.top_sources}")
        if self.exhaustive_up_to < 0:
            raise UserError(f"exhaustive_up_to must be >= 0, got {self.exhaustive_up_to}")

    def soft_votable(self, subset: Sequence[str]) -> bool:
        """Whether a soft vote over ``subset`` is in the space."""
        return all(s in self.soft_sources for s in subset) and any(
            s in self.probability_sources for s in subset
        )

    @property
    def exhaustive(self) -> bool:
        """Whether every subset (up to :attr:`max_sources`) is tried."""
        return len(self.sources) <= self.exhaustive_up_to or (
            self.top_sources is not None and self.top_sources <= self.exhaustive_up_to
        )

    def pool(self, source_jf: Mapping[str, float]) -> tuple[str, ...]:
        """The sources voted on videos where each source scores ``source_jf``: all, or the
        :attr:`top_sources` best (ties: run order), in run order."""
        if self.top_sources is None or self.top_sources >= len(self.sources):
            return self.sources
        best = sorted(self.sources, key=lambda s: -source_jf[s])[: self.top_sources]
        return tuple(s for s in self.sources if s in best)

    def candidates(self, subset: Sequence[str], source_jf: Mapping[str, float]) -> list[Candidate]:
        """Every vote of the grid over ``subset`` (``source_jf``: each source's J&F on the
        videos the choice is made on, for the ``score`` weighting)."""
        subset = tuple(subset)
        out: dict[VoteSpec, Candidate] = {}
        for weighting, weights in self._weightings(subset, source_jf):
            for pairs in self.pairs:
                for candidate in self._rules(subset, weights, weighting, pairs):
                    out.setdefault(candidate.spec, candidate)
        return list(out.values())

    def _weightings(
        self, subset: tuple[str, ...], source_jf: Mapping[str, float]
    ) -> list[tuple[str, tuple[float, ...] | None]]:
        found: list[tuple[str, tuple[float, ...] | None]] = []
        if "equal" in self.weightings or len(subset) == 1:
            found.append(("equal", None))
        if len(subset) < 2:
            return found
        if "score" in self.weightings:
            found.append(("score", score_weights([source_jf[s] for s in subset])))
        if "lead" in self.weightings:
            for lead in subset:
                found.append((f"lead:{lead}", tuple(2.0 if s == lead else 1.0 for s in subset)))
        return [(label, _plain(w)) for label, w in found]

    def _rules(
        self,
        subset: tuple[str, ...],
        weights: tuple[float, ...] | None,
        weighting: str,
        pairs: bool,
    ) -> list[Candidate]:
        per_expression = sum(weights) if weights is not None else float(len(subset))
        integer = weights is None or all(float(w).is_integer() for w in weights)
        out: list[Candidate] = []
        if "hard" in self.modes:
            for fraction in self.fractions:
                group = per_expression * (2 if pairs else 1)
                spec = VoteSpec(
                    subset,
                    weights,
                    min_votes=_votes(fraction * group, integer),
                    pairs=pairs,
                    odd_policy="own_threshold",
                    odd_min_votes=_votes(fraction * per_expression, integer) if pairs else None,
                )
                out.append(Candidate(spec, weighting, fraction))
        if "soft" in self.modes and self.soft_votable(subset):
            for threshold in self.prob_thresholds:
                spec = VoteSpec(
                    subset,
                    weights,
                    pairs=pairs,
                    odd_policy="own_threshold",
                    mode="soft",
                    prob_threshold=threshold,
                )
                out.append(Candidate(spec, weighting, threshold))
        return out


def score_weights(jf: Sequence[float]) -> tuple[float, ...]:
    """Weights proportional to ``jf`` with a mean of 1, to 3 decimals, each at least 0.05."""
    mean = sum(jf) / len(jf)
    if mean <= 0:
        return (1.0,) * len(jf)
    return tuple(max(round(v / mean, 3), 0.05) for v in jf)


def _plain(weights: tuple[float, ...] | None) -> tuple[float, ...] | None:
    """``None`` for equal unit weights (the same vote, one spec)."""
    if weights is None or all(w == 1 for w in weights):
        return None
    return weights


def _votes(value: float, integer: bool) -> float:
    """A vote threshold: whole votes (rounded up) for integer weights, else 6 decimals."""
    if integer:
        return float(max(math.ceil(value - _EPS), 1))
    return round(value, 6)
