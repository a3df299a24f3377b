"""Pixel voting across mask sets, the LSVOS 2023 winners' rule (lsvos2023.md, sections 3-5).

Each source casts one binary vote per pixel per expression (optionally weighted). With
``pairs`` the expressions of a video are taken in order and pooled two by two, ``(0, 1), (2,
3), ...``: the votes of every source on both expressions are summed, and the one fused mask is
written for both. A pixel is foreground when its votes reach ``min_votes`` (``>=``, so a tie at
half goes to foreground); without ``min_votes`` the threshold is half of the votes.

With ``pairs`` and an odd number of expressions, the last one is voted alone by ``odd_policy``:
``"first_source"`` (votes V1/V2: source 0's mask alone) or ``"own_threshold"`` (V3/V4: every
source votes on it alone, foreground with ``odd_min_votes`` votes, default a strict majority,
e.g. 3 of 4). ``sigmoid_twice`` reproduces V2's bug for ``first_source``: the challenge applied
``sigmoid(x) > 0.5`` to probabilities in float32, where ``sigmoid(x)`` rounds to exactly 0.5 for
tiny ``x``, so the last mask is source 0's probabilities ``>=`` :data:`SIGMOID_TWICE_THRESHOLD`
(the smallest float32 passing, about 8.94e-8; not ``> 0``). Key frames: ``argmax`` of the
named source's per-frame scores for each expression (the source's recorded key frame where it
has no scores).

``mode="soft"`` votes probabilities instead of masks: a pixel is foreground when the weighted
mean of its voters' foreground probabilities (over both expressions under ``pairs``) reaches
``prob_threshold`` (``>=``, default 0.5). A source's probability is its track's ``probs``; a
source that keeps only binary masks (an import of PNGs, a propagation, a hard vote) votes its
mask as 0 / 1, so a soft vote of binary sources at 0.5 is the hard vote at half of the votes.
The odd policy applies alike (``first_source``: source 0's probability alone); vote counts
(``min_votes``, ``odd_min_votes``) and ``sigmoid_twice`` belong to hard votes only. Key frames
follow ``key_frame_rule`` (:mod:`pipeline.core.keyframe_rules`): the key source's scores
(``"score"``, above), the fused probability (``"mean_probability"``) or the voters' agreement
(``"agreement"``).

:func:`vote_video` is the pure per-video function; :func:`vote_mask_sets` streams videos from
mask sources to a mask set, one group of expressions in memory at a time, in parallel processes.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from pipeline.core.errors import UserError
from pipeline.core.keyframe_rules import (
    KEY_FRAME_RULES,
    KeyFrameRule,
    PairwiseAgreement,
    mean_probability,
)
from pipeline.core.masks.maskset import MaskSet
from pipeline.core.masks.sources import MaskSource, describe_source, open_masks, source_location
from pipeline.core.masks.track import Track
from pipeline.core.parallel import process_imap

OddPolicy = Literal["first_source", "own_threshold"]
ODD_POLICIES: tuple[str, ...] = ("first_source", "own_threshold")
VoteMode = Literal["hard", "soft"]
VOTE_MODES: tuple[str, ...] = ("hard", "soft")
DEFAULT_PROB_THRESHOLD = 0.5
_EPS = 1e-6


def _float32_sigmoid_above_half(x: np.ndarray) -> np.ndarray:
    """Float32 ``1 / (1 + exp(-x)) > 0.5``, each step rounded to float32 as ``torch.sigmoid``
    does: ``exp`` is taken in float64 and rounded once (numpy's own float32 ``exp`` is off by
    one ulp near 0, which changes the answer there)."""
    e = np.exp(-np.asarray(x, np.float64)).astype(np.float32)
    one = np.float32(1)
    return one / (one + e) > np.float32(0.5)


def _sigmoid_twice_threshold() -> np.float32:
    """The smallest float32 ``x`` whose float32 ``sigmoid(x)`` exceeds 0.5 (it is monotone in
    ``x``), found by bisection over the bit patterns of ``[0, 1]``."""
    lo, hi = 0, int(np.array(1.0, np.float32).view(np.int32))  # sigmoid(lo) = 0.5, hi passes
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _float32_sigmoid_above_half(np.array(mid, np.int32).view(np.float32)):
            hi = mid
        else:
            lo = mid
    return np.array(hi, np.int32).view(np.float32)[()]


SIGMOID_TWICE_THRESHOLD: np.float32 = _sigmoid_twice_threshold()
"""Float32 ``sigmoid(p) > 0.5`` holds exactly for ``p >= SIGMOID_TWICE_THRESHOLD``, the float32
just above ``1.5 * 2**-24`` (about 8.94e-8): below it ``exp(-p)`` rounds to within one ulp of 1,
``1 + exp(-p)`` to 2 and the sigmoid to 0.5. Float16 probabilities are exact in float32, so the
same comparison holds for them (the smallest float16 passing is ``2**-23``; ``2**-24`` does not)."""


class VoteError(UserError):
    """Sources that cannot be voted together (missing item, other frames, other size)."""


@dataclass(frozen=True)
class VoteSpec:
    """How to vote. ``sources``: source names in order (source 0 is the odd-expression fallback
    of ``"first_source"``). ``weights``: one per source (default 1 each). ``min_votes``:
    foreground threshold in (weighted) votes, ``>=``; ``None`` = half of the votes. ``pairs``:
    pool expressions (2i, 2i+1). ``odd_policy`` / ``odd_min_votes``: the last expression of an
    odd count under ``pairs`` (``None`` = a strict majority of its votes). ``sigmoid_twice``:
    V2's compatibility switch. ``key_frame_source``: the source whose scores choose key
    frames by the ``"score"`` rule (``None``: no key frames by that rule). ``resize``: resize
    sources to source 0's size (nearest) instead of refusing different sizes. ``mode``:
    ``"hard"`` counts binary votes, ``"soft"`` thresholds the weighted mean probability at
    ``prob_threshold`` (in (0, 1]; soft votes only). ``key_frame_rule``: one of
    :data:`~pipeline.core.keyframe_rules.KEY_FRAME_RULES`; the rules other than ``"score"``
    take no ``key_frame_source`` and always choose key frames."""

    sources: tuple[str, ...]
    weights: tuple[float, ...] | None = None
    min_votes: float | None = None
    pairs: bool = False
    odd_policy: OddPolicy = "own_threshold"
    odd_min_votes: float | None = None
    sigmoid_twice: bool = False
    key_frame_source: str | None = None
    resize: bool = False
    mode: VoteMode = "hard"
    prob_threshold: float = DEFAULT_PROB_THRESHOLD
    key_frame_rule: KeyFrameRule = "score"

    def __post_init__(self) -> None:
        object.__setattr__(self, "sources", tuple(self.sources))
        if not self.sources:
            raise UserError("a vote needs at least one source")
        if self.weights is not None:
            weights = tuple(float(w) for w in self.weights)
            if len(weights) != len(self.sources):
                raise UserError(f"{len(weights)} weights for {len(self.sources)} sources")
            if any(not w > 0 or not math.isfinite(w) for w in weights):
                raise UserError(f"weights must be positive numbers, got {weights}")
            object.__setattr__(self, "weights", weights)
        for name in ("min_votes", "odd_min_votes"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise UserError(f"{name} must be positive, got {value}")
        if self.odd_policy not in ODD_POLICIES:
            raise UserError(f"odd_policy must be one of {ODD_POLICIES}, got {self.odd_policy!r}")
        self._check_mode()
        self._check_reachable()
        if self.sigmoid_twice and self.odd_policy != "first_source":
            raise UserError("sigmoid_twice applies to the 'first_source' odd policy only")
        if self.key_frame_source is not None:
            hits = self.sources.count(self.key_frame_source)
            if hits != 1:
                raise UserError(
                    f"key frame source {self.key_frame_source!r} "
                    f"{'is not among' if hits == 0 else 'is ambiguous in'} the sources "
                    f"{list(self.sources)}"
                )
        self._check_key_frame_rule()

    def _check_mode(self) -> None:
        """Refuse a bad mode or threshold, and settings the mode would silently ignore."""
        if self.mode not in VOTE_MODES:
            raise UserError(f"mode must be one of {VOTE_MODES}, got {self.mode!r}")
        threshold = self.prob_threshold
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
            raise UserError(f"prob_threshold must be a number in (0, 1], got {threshold!r}")
        if not 0 < threshold <= 1:  # also refuses NaN
            raise UserError(
                f"prob_threshold must be in (0, 1], got {threshold!r}"
                + (": every pixel would be foreground" if threshold == 0 else "")
            )
        object.__setattr__(self, "prob_threshold", float(threshold))
        if self.mode == "hard":
            if self.prob_threshold != DEFAULT_PROB_THRESHOLD:
                raise UserError(
                    f"prob_threshold {self.prob_threshold:g} applies to soft votes; this vote "
                    "is hard (set mode to 'soft', or min_votes for a hard threshold)"
                )
            return
        for name in ("min_votes", "odd_min_votes"):
            if getattr(self, name) is not None:
                raise UserError(
                    f"{name} counts hard votes; a soft vote thresholds the mean probability "
                    "(prob_threshold): leave it unset or set mode to 'hard'"
                )
        if self.sigmoid_twice:
            raise UserError("sigmoid_twice applies to hard votes only (mode 'hard')")

    def _check_key_frame_rule(self) -> None:
        rule = self.key_frame_rule
        if rule not in KEY_FRAME_RULES:
            raise UserError(f"key_frame_rule must be one of {KEY_FRAME_RULES}, got {rule!r}")
        if rule == "score":
            return
        if self.key_frame_source is not None:
            raise UserError(
                f"key frame source {self.key_frame_source!r} is for the 'score' key-frame "
                f"rule; the {rule!r} rule reads every voter: leave it unset"
            )
        if rule == "agreement" and len(self.sources) < 2:
            raise UserError("the 'agreement' key-frame rule needs at least two sources")

    def _check_reachable(self) -> None:
        """Refuse thresholds above the votes a group can cast: every pixel would be background.

        ``min_votes`` applies to full groups (two expressions under ``pairs``, so twice the
        summed weights); ``odd_min_votes`` to the lone last expression of ``own_threshold``
        under ``pairs`` (the summed weights once). Same tolerance as the comparison itself.
        """
        per_expression = sum(self.source_weights)
        group = 2 if self.pairs else 1
        what = f"{len(self.sources)} source(s)" + (
            "" if self.weights is None else f" weighing {per_expression:g}"
        )
        if self.min_votes is not None and self.min_votes > per_expression * group + _EPS:
            raise UserError(
                f"min_votes {self.min_votes:g} is more than the {per_expression * group:g} votes "
                f"available ({what}"
                + (" x 2 expressions per pair" if self.pairs else "")
                + "): every pixel would be background"
            )
        odd_used = self.pairs and self.odd_policy == "own_threshold"
        if (
            odd_used
            and self.odd_min_votes is not None
            and self.odd_min_votes > per_expression + _EPS
        ):
            raise UserError(
                f"odd_min_votes {self.odd_min_votes:g} is more than the {per_expression:g} votes "
                f"available on a lone last expression ({what}): every pixel would be background"
            )

    @property
    def source_weights(self) -> tuple[float, ...]:
        return self.weights if self.weights is not None else (1.0,) * len(self.sources)

    @property
    def integer_weights(self) -> bool:
        return all(float(w).is_integer() for w in self.source_weights)

    @property
    def reads_probabilities(self) -> bool:
        """Whether the vote reads its sources' probabilities (a soft vote, or the
        ``"mean_probability"`` key-frame rule)."""
        return self.mode == "soft" or self.key_frame_rule == "mean_probability"

    @property
    def chooses_key_frames(self) -> bool:
        return self.key_frame_source is not None or self.key_frame_rule != "score"

    def groups(self, expression_order: Sequence[str]) -> list[tuple[str, ...]]:
        """The expression groups voted together, in order."""
        exps = list(expression_order)
        if not self.pairs:
            return [(e,) for e in exps]
        groups = [(exps[i], exps[i + 1]) for i in range(0, len(exps) - 1, 2)]
        if len(exps) % 2:
            groups.append((exps[-1],))
        return groups

    def threshold(self, group_size: int, odd: bool) -> tuple[float, bool]:
        """``(threshold, strict)`` for a group: foreground = votes >= (or >, if strict) it."""
        total = sum(self.source_weights) * group_size
        if odd:
            if self.odd_min_votes is not None:
                return float(self.odd_min_votes), False
            return total / 2, True
        if self.min_votes is not None:
            return float(self.min_votes), False
        return total / 2, False


# --------------------------------------------------------------------------------------------
# the pure per-video vote


def _check_alike(track: Track, ref: Track, source: str, video: str, exp: str, spec: VoteSpec):
    if track.frame_ids != ref.frame_ids:
        diff = sorted(set(track.frame_ids) ^ set(ref.frame_ids))
        raise VoteError(
            f"video {video} expression {exp}: source {source!r} has frames that differ from "
            f"source {spec.sources[0]!r} ({len(track.frame_ids)} vs {len(ref.frame_ids)} frames;"
            f" first difference {diff[:1] or 'in order'})"
        )
    if track.size != ref.size:
        if not spec.resize:
            raise VoteError(
                f"video {video} expression {exp}: source {source!r} is "
                f"{track.size[0]}x{track.size[1]}, source {spec.sources[0]!r} is "
                f"{ref.size[0]}x{ref.size[1]} (ask for resizing to vote them anyway)"
            )
        return track.resized(ref.size)
    return track


def _get(tracks: Mapping[str, Track], source: str, video: str, exp: str) -> Track:
    try:
        return tracks[exp]
    except KeyError:
        raise VoteError(f"video {video}: source {source!r} has no expression {exp}") from None


def iter_vote_video(
    tracks_per_source: Sequence[Mapping[str, Track]],
    expression_order: Sequence[str],
    spec: VoteSpec,
    *,
    recorded_key_frames: Sequence[Mapping[str, int]] | None = None,
    video: str = "?",
    keep_probs: bool = False,
) -> Iterator[tuple[dict[str, Track], dict[str, int]]]:
    """Vote one video group by group, yielding ``(tracks, key frames)`` per group.

    ``tracks_per_source[i]`` maps expression ids to source ``i``'s tracks; each is read once
    (a lazy mapping keeps one group in memory). See :func:`vote_video`.
    """
    if len(tracks_per_source) != len(spec.sources):
        raise VoteError(f"{len(tracks_per_source)} sources given, spec names {len(spec.sources)}")
    for group in spec.groups(expression_order):
        yield _vote_group(
            tracks_per_source, group, spec, recorded_key_frames, video, keep_probs=keep_probs
        )


class _Ballot:
    """The votes cast on one group of expressions: vote counts (hard) and the weighted sum
    of the voters' probabilities (soft, or for the ``"mean_probability"`` key-frame rule).

    Memory: one ``T x H x W`` array per kind (uint8 counts for small integer weights, float32
    sums), whatever the number of voters."""

    def __init__(self, spec: VoteSpec, group_size: int, odd: bool, first_only: bool) -> None:
        self.spec = spec
        self.group_size = group_size
        self.odd = odd
        self.first_only = first_only
        self.counts: np.ndarray | None = None  # hard: summed (weighted) votes
        self.first_mask: np.ndarray | None = None  # hard, first_source: source 0's mask
        self.probability_sum: np.ndarray | None = None
        self.total_weight = 0.0  # summed weights of the votes cast

    def add(self, track: Track, weight: float, name: str, video: str, exp: str) -> None:
        spec = self.spec
        self.total_weight += weight
        if spec.mode == "hard":
            if self.first_only:
                self.first_mask = _first_source_mask(track, spec, name, video, exp)
            else:
                self.counts = _add_votes(self.counts, track.masks, weight, spec, self.group_size)
        if spec.reads_probabilities:
            self.probability_sum = _add_probabilities(
                self.probability_sum, _probabilities(track), weight
            )

    def fused(self) -> np.ndarray:
        """``T x H x W`` bool: the voted mask."""
        spec = self.spec
        if spec.mode == "soft":
            assert self.probability_sum is not None
            bound = (spec.prob_threshold - _EPS) * self.total_weight
            return _at_least(self.probability_sum, bound)
        if self.first_only:
            assert self.first_mask is not None
            return self.first_mask
        assert self.counts is not None
        threshold, strict = spec.threshold(self.group_size, self.odd)
        if self.counts.dtype.kind == "f":
            if strict:
                return self.counts > threshold + _EPS
            return self.counts >= threshold - _EPS
        if strict:
            return self.counts > threshold
        return self.counts >= math.ceil(threshold - _EPS)

    def mean_probabilities(self) -> np.ndarray:
        """``T x H x W`` float32: the weighted mean probability (computed in place: the last
        use of the sum)."""
        assert self.probability_sum is not None
        mean = np.divide(
            self.probability_sum, np.float32(self.total_weight), out=self.probability_sum
        )
        self.probability_sum = None
        return mean


def _vote_group(
    tracks_per_source: Sequence[Mapping[str, Track]],
    group: tuple[str, ...],
    spec: VoteSpec,
    recorded: Sequence[Mapping[str, int]] | None,
    video: str,
    *,
    keep_probs: bool,
) -> tuple[dict[str, Track], dict[str, int]]:
    """One group (an expression, or a pooled pair): its fused tracks and key frames."""
    odd = spec.pairs and len(group) == 1
    first_only = odd and spec.odd_policy == "first_source"
    voters = range(1) if first_only else range(len(spec.sources))
    agreement = PairwiseAgreement() if spec.key_frame_rule == "agreement" else None
    # the agreement rule reads every source, also where source 0 alone votes
    readers = range(len(spec.sources)) if agreement is not None else voters
    weights = spec.source_weights
    key_index = None if spec.key_frame_source is None else spec.sources.index(spec.key_frame_source)
    ballot = _Ballot(spec, len(group), odd, first_only)
    refs: dict[str, Track] = {}
    key_scores: dict[str, np.ndarray | None] = {}
    for exp in group:
        for s in readers:
            name = spec.sources[s]
            track = _get(tracks_per_source[s], name, video, exp)
            if s == 0:
                refs[exp] = track
            track = _check_alike(track, refs[exp], name, video, exp, spec)
            if s == key_index:
                key_scores[exp] = track.scores
            if agreement is not None:
                agreement.add(track.masks)
            if s in voters:
                ballot.add(track, weights[s], name, video, exp)
        if key_index is not None and exp not in key_scores:  # a source that does not vote here
            key_track = _get(tracks_per_source[key_index], spec.key_frame_source, video, exp)
            key_scores[exp] = _check_alike(
                key_track, refs[exp], spec.key_frame_source, video, exp, spec
            ).scores
    fused = ballot.fused()
    rule_values: np.ndarray | None = None  # per frame, for the rules other than "score"
    if spec.key_frame_rule == "mean_probability":
        assert ballot.probability_sum is not None
        rule_values = mean_probability(ballot.probability_sum, ballot.total_weight, fused)
    elif agreement is not None:
        rule_values = agreement.per_frame()
    probs = ballot.mean_probabilities() if keep_probs and spec.mode == "soft" else None
    out_tracks: dict[str, Track] = {}
    out_keys: dict[str, int] = {}
    for exp in group:
        scores = rule_values if rule_values is not None else key_scores.get(exp)
        out_tracks[exp] = Track(refs[exp].frame_ids, fused, scores, probs)
        if rule_values is not None:
            out_keys[exp] = int(np.argmax(rule_values))
        elif key_index is not None:
            out_keys[exp] = _key_frame(scores, recorded, key_index, spec, video, exp)
    return out_tracks, out_keys


def _probabilities(track: Track) -> np.ndarray:
    """A source's foreground probabilities: its ``probs``, else its binary mask as 0 / 1."""
    return track.probs if track.probs is not None else track.masks


def _add_probabilities(total: np.ndarray | None, probs: np.ndarray, weight: float) -> np.ndarray:
    """``total + weight * probs`` in float32, in place (``probs``: bool, float16 or float32)."""
    if total is None:
        total = np.zeros(probs.shape, np.float32)
    if weight == 1:
        np.add(total, probs, out=total, dtype=np.float32)
    else:
        np.add(total, np.multiply(probs, np.float32(weight), dtype=np.float32), out=total)
    return total


def _at_least(values: np.ndarray, bound: float) -> np.ndarray:
    """``values >= bound`` compared in float64 (``bound`` is not rounded to float32), frame by
    frame so that no float64 copy of the whole group is made."""
    out = np.empty(values.shape, bool)
    for t, frame in enumerate(values):
        np.greater_equal(frame.astype(np.float64), bound, out=out[t])
    return out


def _add_votes(
    counts: np.ndarray | None, masks: np.ndarray, weight: float, spec: VoteSpec, group: int
) -> np.ndarray:
    if counts is None:
        if spec.integer_weights:
            top = sum(spec.source_weights) * group
            dtype = np.uint8 if top <= 255 else (np.uint16 if top <= 65535 else np.uint32)
        else:
            dtype = np.float32
        counts = np.zeros(masks.shape, dtype)
    if weight == 1:
        np.add(counts, masks, out=counts, casting="unsafe")
    else:
        np.add(counts, masks.astype(counts.dtype) * counts.dtype.type(weight), out=counts)
    return counts


def _first_source_mask(track: Track, spec: VoteSpec, name: str, video: str, exp: str):
    if not spec.sigmoid_twice:
        return track.masks
    if track.probs is None:
        raise VoteError(
            f"video {video} expression {exp}: sigmoid_twice needs source {name!r}'s soft "
            "probabilities, and it has none"
        )
    # float32 sigmoid(p) > 0.5  <=>  p >= SIGMOID_TWICE_THRESHOLD (not p > 0: see its note)
    return np.asarray(track.probs, np.float32) >= SIGMOID_TWICE_THRESHOLD


def _key_frame(scores, recorded, key_index, spec, video, exp) -> int:
    if scores is not None:
        return int(np.argmax(scores))
    if recorded is not None and exp in recorded[key_index]:
        return int(recorded[key_index][exp])
    raise VoteError(
        f"video {video} expression {exp}: key frame source {spec.key_frame_source!r} has no "
        "per-frame scores and no recorded key frame"
    )


def vote_video(
    tracks_per_source: Sequence[Mapping[str, Track]],
    expression_order: Sequence[str],
    spec: VoteSpec,
    *,
    recorded_key_frames: Sequence[Mapping[str, int]] | None = None,
    video: str = "?",
    keep_probs: bool = False,
) -> tuple[dict[str, Track], dict[str, int]]:
    """Vote one video: ``(fused track per expression, key frame per expression)``.

    ``tracks_per_source[i]``: expression id -> :class:`Track` of source ``i`` (the order of
    ``spec.sources``); every source must hold every expression of ``expression_order`` with
    the same frames (and size, unless ``spec.resize``). ``recorded_key_frames[i]``: source
    ``i``'s stored key frames, used when the key-frame source has no scores. Key frames are
    empty when ``spec.chooses_key_frames`` is false. ``video`` names the video in errors.

    Fused tracks: ``masks`` ``T x H x W`` bool (one array shared by a pooled pair); ``scores``
    ``(T,)``: the key source's scores under the ``"score"`` rule (``None`` without one), else
    the rule's per-frame values (their argmax is the key frame); ``probs`` ``T x H x W``
    float32, the weighted mean probability, only for a soft vote with ``keep_probs``.
    """
    tracks: dict[str, Track] = {}
    keys: dict[str, int] = {}
    for group_tracks, group_keys in iter_vote_video(
        tracks_per_source,
        expression_order,
        spec,
        recorded_key_frames=recorded_key_frames,
        video=video,
        keep_probs=keep_probs,
    ):
        tracks.update(group_tracks)
        keys.update(group_keys)
    return {e: tracks[e] for e in expression_order}, keys


# --------------------------------------------------------------------------------------------
# streaming over mask sets


class _LazyTracks(Mapping[str, Track]):
    """A source's tracks of one video, read from disk when asked for (never cached)."""

    def __init__(self, source: MaskSource, video: str) -> None:
        self.source = source
        self.video = video
        self._exps = source.expressions(video)

    def __getitem__(self, exp: str) -> Track:
        if exp not in self._exps:
            raise KeyError(exp)
        return self.source.read(self.video, exp)

    def __iter__(self) -> Iterator[str]:
        return iter(self._exps)

    def __len__(self) -> int:
        return len(self._exps)


@dataclass(frozen=True)
class VoteReport:
    videos: int
    expressions: int
    skipped: int  # already complete in the output
    seconds: float


def _vote_one(
    sources: Sequence[MaskSource],
    out: MaskSet,
    spec: VoteSpec,
    keep_probs: bool,
    video: str,
    order: Sequence[str],
) -> int:
    tracks = [_LazyTracks(s, video) for s in sources]
    recorded = [s.key_frames(video) for s in sources] if spec.key_frame_source else None
    keys: dict[str, int] = {}
    with out.writing(video):
        for group_tracks, group_keys in iter_vote_video(
            tracks, order, spec, recorded_key_frames=recorded, video=video, keep_probs=keep_probs
        ):
            out.write_group(video, group_tracks)
            keys.update(group_keys)
        if keys:
            out.write_key_frames(video, keys)
        out.mark_complete(video, list(order))
    return len(order)


def _vote_job(shared: tuple, job: tuple[str, list[str]]) -> int:
    sources, out, spec, keep_probs = shared
    return _vote_one(sources, out, spec, keep_probs, *job)


def _check_distinct(sources: Sequence[MaskSource], spec: VoteSpec) -> None:
    """Refuse a source given twice (the same object or the same masks on disk): it would
    silently cast two votes."""
    seen: dict[object, int] = {}
    for i, source in enumerate(sources):
        location = source_location(source)
        keys = [("id", id(source))] + ([] if location is None else [("path", location)])
        for key in keys:
            if key in seen:
                first = seen[key]
                raise VoteError(
                    f"source {spec.sources[i]!r} ({describe_source(source)}) is given twice, as "
                    f"source {first} and source {i}: each source votes once (use weights to "
                    "count one more)"
                )
        for key in keys:
            seen[key] = i


def vote_mask_sets(
    sources: Sequence[MaskSource | str | Path],
    out: MaskSet | str | Path,
    spec: VoteSpec | None = None,
    *,
    videos: Sequence[str] | None = None,
    expression_order: Mapping[str, Sequence[str]] | None = None,
    workers: int = 1,
    storage: str = "png",
    resume: bool = True,
    keep_probs: bool = False,
) -> VoteReport:
    """Vote every video of the sources into the mask set ``out``, streaming.

    ``spec``: default = equal weights, half of the votes, no pairs, no key frames, source names
    from the sources. ``videos``: default = source 0's videos (each other source must have
    them). ``expression_order``: per video (e.g. from the split's meta); default = source 0's
    order. ``workers`` > 1 votes videos in parallel processes. Videos already complete in
    ``out`` are skipped when ``resume``. ``keep_probs``: a soft vote stores its weighted mean
    probabilities too (for a downstream soft vote). A failing video is removed from ``out`` and
    the error (naming the video, expression, source or file) is raised. Memory: one group of
    expressions of one video at a time per worker, whatever the number of videos. PNG sources
    (submission folders, zips, ``"png"`` mask sets) have each track's frames decoded, and a
    ``"png"`` output's frames encoded, on :func:`~pipeline.core.masks.codec.codec_threads`
    threads (one per core in a plain process, one in each of ``workers`` processes).
    """
    start = time.perf_counter()
    opened = [s if isinstance(s, MaskSource) else open_masks(s) for s in sources]
    if spec is None:
        spec = VoteSpec(tuple(s.name for s in opened))
    if len(spec.sources) != len(opened):
        raise VoteError(f"{len(opened)} sources given, the spec names {len(spec.sources)}")
    _check_distinct(opened, spec)
    chosen = list(videos) if videos is not None else opened[0].videos()
    if not chosen:
        raise VoteError(
            f"source {spec.sources[0]!r} ({describe_source(opened[0])}) holds no videos: "
            "nothing to vote"
            if videos is None
            else "no videos were asked for: nothing to vote"
        )
    target = out if isinstance(out, MaskSet) else MaskSet(out, storage)
    for name, source in zip(spec.sources, opened, strict=True):
        missing = sorted(set(chosen) - set(source.videos()))
        if missing:
            raise VoteError(
                f"source {name!r} lacks {len(missing)} video(s) to vote: {missing[:5]}"
                + (" ..." if len(missing) > 5 else "")
            )
    jobs = []
    skipped = 0
    for video in chosen:
        if resume and target.is_complete(video):
            skipped += 1
            continue
        order = (
            list(expression_order[video])
            if expression_order is not None
            else opened[0].expressions(video)
        )
        jobs.append((video, order))
    n_exp = sum(process_imap(_vote_job, jobs, (opened, target, spec, keep_probs), workers=workers))
    return VoteReport(len(jobs), n_exp, skipped, time.perf_counter() - start)
