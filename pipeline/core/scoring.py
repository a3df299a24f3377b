"""Local scoring: J, F and J&F exactly as the DAVIS 2017 toolkit computes them (metrics.md).

Per frame (``davis2017/metrics.py``): J = |P ∩ G| / |P ∪ G|, 1 when both are empty. F: each
mask's boundary map (a pixel differs from its east, south or south-east neighbour, with the
toolkit's last-row / last-column rules and no thinning), dilated by the exact disk of radius
``ceil(0.008 * sqrt(H² + W²))``; precision and recall count boundary pixels within the other's
dilated boundary; both boundaries empty gives 1, one of them empty gives 0.

The implementation is exact, and fast because everything happens inside the bounding box of
the two masks: outside it both masks are empty, so no boundary pixel, intersection or union
lies there (the box keeps one empty row and column around the masks where the image allows,
which gives the same boundary map as the full frame).

Protocols, per expression. A missing prediction scores J = F = 0 and is listed by name
(:attr:`ScoreTable.missing_pairs`, ``missing`` in the JSON, the summary line). Here it always
counts, as 0:

* ``ytvos`` and ``mevis``: the mean over every listed frame; J, F = means over expressions;
  J&F = (J + F) / 2. (MeViS ground truth is the union of the expression's objects.)
* ``davis``: the DAVIS semi-supervised toolkit's: the first and last frame are dropped, the
  mean over the others; each expression (one object) weighs the same.

``mevis`` against MeViS's own scorer (``tools/eval_mevis.py``, henghuiding/MeViS@7c0620b; its
``tools/metrics.py`` is byte-identical to ``davis2017/metrics.py`` of davis2017-evaluation@ac7c43f,
git blob 2bb2724): equal to the last bit per expression for every prediction that script can
score (tests/pipeline/test_mevis_scoring.py re-derives its loop). Case by case:

* a missing *video* folder: ``[0, 0]`` for each of its expressions in both;
* a missing *expression* folder of a predicted video: there ``cv2.imread`` of its
  ``00000.png`` returns None and the worker process dies on ``pred_0.shape``, so the
  expression never enters the output and drops out of the means (above what a 0 gives); each
  such death takes one of the script's 64 workers, and from 64 missing expressions on no
  worker is left and every expression still queued drops out too, the script still printing
  a number. Here it counts 0 and is named;
* a missing frame PNG or a PNG of another size than the ground truth: there the worker dies
  the same way (the expression drops out); here it is an error naming the expression;
* PNG values: the script reads ``IMREAD_GRAYSCALE`` (luminance) and takes non-zero as
  foreground; here an 'L' PNG's non-zero value, a palette PNG's non-zero index and a colour
  PNG's non-zero channel are foreground. The same for the 8-bit 'L' PNGs a valid submission
  holds (:func:`pipeline.core.submission.validate`); a palette entry or colour whose
  luminance rounds to 0 is foreground here and background there.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from pipeline.core.data.datasets import RVOSDataset
from pipeline.core.errors import UserError
from pipeline.core.io import atomic_write_json, atomic_write_text
from pipeline.core.masks.sources import MaskSource
from pipeline.core.masks.track import Track
from pipeline.core.parallel import process_imap

PROTOCOLS: tuple[str, ...] = ("ytvos", "mevis", "davis")
BOUND_TH = 0.008
MISSING_SHOWN = 20  # names the summary lists before counting the rest


def boundary_radius(height: int, width: int, bound_th: float = BOUND_TH) -> int:
    """The toolkit's tolerance: ``ceil(bound_th * ||(H, W)||)`` pixels (``bound_th`` < 1)."""
    if bound_th >= 1:
        return int(bound_th)
    return int(np.ceil(bound_th * np.linalg.norm((height, width))))


def disk(radius: int) -> np.ndarray:
    """The structuring element {(x, y): x² + y² <= r²} (skimage.morphology.disk), uint8."""
    offsets = np.arange(-radius, radius + 1)
    return (offsets[:, None] ** 2 + offsets[None, :] ** 2 <= radius**2).astype(np.uint8)


def boundary_map(masks: np.ndarray) -> np.ndarray:
    """The toolkit's ``_seg2bmap`` of ``... x H x W bool`` masks (any leading dimensions)."""
    m = masks.astype(bool, copy=False)
    b = np.zeros_like(m)
    inner = m[..., :-1, :-1]
    b[..., :-1, :-1] = (
        (inner ^ m[..., :-1, 1:]) | (inner ^ m[..., 1:, :-1]) | (inner ^ m[..., 1:, 1:])
    )
    b[..., -1, :-1] = m[..., -1, :-1] ^ m[..., -1, 1:]  # last row: east neighbour only
    b[..., :-1, -1] = m[..., :-1, -1] ^ m[..., 1:, -1]  # last column: south neighbour only
    return b  # the bottom-right pixel stays 0


def _f_from_counts(n_fg: int, n_gt: int, fg_match: int, gt_match: int) -> float:
    if n_fg == 0 and n_gt > 0:
        precision, recall = 1.0, 0.0
    elif n_fg > 0 and n_gt == 0:
        precision, recall = 0.0, 1.0
    elif n_fg == 0 and n_gt == 0:
        precision, recall = 1.0, 1.0
    else:
        precision, recall = fg_match / float(n_fg), gt_match / float(n_gt)
    if precision + recall == 0:
        return 0.0
    return 2 * precision * recall / (precision + recall)


class _Disk:
    """The disk of radius ``r`` as rows: offset ``dy`` spans ``|dx| <= isqrt(r² - dy²)``."""

    def __init__(self, radius: int) -> None:
        self.radius = radius
        self.kernel = disk(radius)
        self.dy = np.arange(-radius, radius + 1, dtype=np.int64)
        self.half_width = np.array([math.isqrt(radius**2 - d * d) for d in self.dy], np.int64)


def _count_near(
    points: np.ndarray, targets: np.ndarray, width: int, height: int, shape: _Disk
) -> int:
    """How many ``points`` have a ``targets`` pixel within the disk (both: sorted flat indices
    into a ``height x width`` crop). Exact: one range query per point and disk row."""
    ys, xs = np.divmod(points, width)
    rows = ys[:, None] + shape.dy[None, :]
    lo = rows * width + np.maximum(xs[:, None] - shape.half_width, 0)
    hi = rows * width + np.minimum(xs[:, None] + shape.half_width, width - 1)
    # the first target at or after lo must not lie beyond hi (lo and hi are in one row)
    first = np.searchsorted(targets, lo)
    padded = np.append(targets, np.iinfo(np.int64).max)
    hit = padded[first] <= hi
    hit &= (rows >= 0) & (rows < height)
    return int(np.count_nonzero(hit.any(axis=1)))


def _boundary_matches(pb: np.ndarray, gb: np.ndarray, shape: _Disk) -> tuple[int, int, int, int]:
    """``(n_fg, n_gt, fg_match, gt_match)`` of two boundary maps, as the toolkit counts them:
    fg_match = |pb ∧ dilate(gb, disk)|, gt_match = |gb ∧ dilate(pb, disk)|."""
    p_idx, g_idx = np.flatnonzero(pb), np.flatnonzero(gb)
    n_fg, n_gt = p_idx.size, g_idx.size
    if n_fg == 0 or n_gt == 0:
        return n_fg, n_gt, 0, 0
    H, W = pb.shape
    if (n_fg + n_gt) * shape.dy.size < pb.size // 2:  # sparse boundaries: range queries
        fg_match = _count_near(p_idx, g_idx, W, H, shape)
        gt_match = _count_near(g_idx, p_idx, W, H, shape)
    else:  # dense boundaries: the toolkit's own dilation
        pb8, gb8 = pb.view(np.uint8), gb.view(np.uint8)
        fg_match = np.count_nonzero(pb8 & cv2.dilate(gb8, shape.kernel))
        gt_match = np.count_nonzero(gb8 & cv2.dilate(pb8, shape.kernel))
    return n_fg, n_gt, fg_match, gt_match


def j_and_f(
    pred: np.ndarray, gt: np.ndarray, bound_th: float = BOUND_TH
) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame J and F of ``T x H x W`` masks (``pred`` vs ``gt``): two ``T float64`` arrays."""
    pred = np.asarray(pred).astype(bool, copy=False)
    gt = np.asarray(gt).astype(bool, copy=False)
    if pred.shape != gt.shape or pred.ndim != 3:
        raise ValueError(f"prediction {pred.shape} and ground truth {gt.shape} must be T x H x W")
    T, H, W = gt.shape
    shape = _Disk(boundary_radius(H, W, bound_th))
    j = np.ones(T, np.float64)
    f = np.ones(T, np.float64)
    for k in range(T):
        rows = np.flatnonzero(pred[k].any(axis=1) | gt[k].any(axis=1))
        if rows.size == 0:
            continue  # both empty: J = F = 1
        y0, y1 = max(rows[0] - 1, 0), min(rows[-1] + 2, H)
        cols = np.flatnonzero(pred[k, y0:y1].any(axis=0) | gt[k, y0:y1].any(axis=0))
        x0, x1 = max(cols[0] - 1, 0), min(cols[-1] + 2, W)
        p = pred[k, y0:y1, x0:x1]
        g = gt[k, y0:y1, x0:x1]
        j[k] = np.count_nonzero(p & g) / np.count_nonzero(p | g)
        f[k] = _f_from_counts(*_boundary_matches(boundary_map(p), boundary_map(g), shape))
    return j, f


# --------------------------------------------------------------------------------------------
# protocols and tables


@dataclass(frozen=True)
class ExpressionScore:
    """One row of a score table: J and F of one expression (fractions in [0, 1])."""

    video: str
    expression: str
    J: float
    F: float
    frames: int  # frames the means run over
    missing: bool = False  # no prediction: scored 0

    @property
    def JF(self) -> float:  # noqa: N802 - the metric's name
        return (self.J + self.F) / 2


def _protocol_frames(protocol: str, T: int) -> slice:
    if protocol == "davis":
        return slice(1, T - 1)  # the semi-supervised toolkit drops the first and last frames
    return slice(0, T)


def _mean(values: np.ndarray) -> float:
    return float(np.mean(values)) if values.size else math.nan


def score_video(
    pred_tracks: Mapping[str, Track | None],
    gt: Mapping[str, np.ndarray],
    frame_ids: Sequence[str],
    *,
    protocol: str = "ytvos",
    video: str = "?",
) -> list[ExpressionScore]:
    """Score one video: a row per expression of ``gt`` (its order).

    ``gt[exp]``: ``T x H x W bool`` over ``frame_ids``. ``pred_tracks[exp]``: a track holding
    at least those frames (extra frames are ignored), or ``None`` / absent = missing (J = F =
    0). A prediction of another size, or lacking a listed frame, is an error naming it.
    """
    if protocol not in PROTOCOLS:
        raise UserError(f"unknown protocol {protocol!r}; known: {', '.join(PROTOCOLS)}")
    rows = []
    frame_ids = tuple(frame_ids)
    for exp, truth in gt.items():
        chosen = _protocol_frames(protocol, len(frame_ids))
        n_frames = len(range(*chosen.indices(len(frame_ids))))
        track = pred_tracks.get(exp)
        if track is None:
            rows.append(ExpressionScore(video, exp, 0.0, 0.0, n_frames, missing=True))
            continue
        masks = _aligned(track, frame_ids, truth.shape[1:], video, exp)
        j, f = j_and_f(masks[chosen], truth[chosen])
        rows.append(ExpressionScore(video, exp, _mean(j), _mean(f), n_frames))
    return rows


def _aligned(
    track: Track, frame_ids: tuple[str, ...], size: tuple[int, ...], video: str, exp: str
) -> np.ndarray:
    if track.size != tuple(size):
        raise UserError(
            f"video {video} expression {exp}: prediction is {track.size[0]}x{track.size[1]}, "
            f"ground truth is {size[0]}x{size[1]}"
        )
    return track.select(frame_ids, label=f"video {video} expression {exp}: prediction").masks


@dataclass
class ScoreTable:
    """Scores per expression (rows), with per-video and global means."""

    rows: list[ExpressionScore]
    protocol: str
    extra: dict = field(default_factory=dict)

    def _values(self, key: str) -> np.ndarray:
        return np.array([getattr(r, key) for r in self.rows], np.float64)

    @property
    def J(self) -> float:  # noqa: N802 - the metric's name
        return float(np.nanmean(self._values("J"))) if self.rows else math.nan

    @property
    def F(self) -> float:  # noqa: N802 - the metric's name
        return float(np.nanmean(self._values("F"))) if self.rows else math.nan

    @property
    def JF(self) -> float:  # noqa: N802 - the metric's name
        return (self.J + self.F) / 2

    @property
    def missing_pairs(self) -> list[tuple[str, str]]:
        """The ``(video, expression)`` pairs without prediction (scored 0), in row order."""
        return [(r.video, r.expression) for r in self.rows if r.missing]

    @property
    def missing(self) -> list[str]:
        """:attr:`missing_pairs` as ``"<video>/<expression>"`` names."""
        return [f"{video}/{exp}" for video, exp in self.missing_pairs]

    def missing_report(self, limit: int = MISSING_SHOWN) -> str:
        """``"missing: 2 expressions (vid/0, vid/3)"`` (the first ``limit`` names, then a count
        of the rest), or ``""`` when every expression has a prediction."""
        names = self.missing
        if not names:
            return ""
        noun = "expression" if len(names) == 1 else "expressions"
        shown = ", ".join(names[:limit])
        if len(names) > limit:
            shown += f", ... {len(names) - limit} more"
        return f"missing: {len(names)} {noun} ({shown}), scored 0"

    def per_video(self) -> dict[str, dict[str, float]]:
        groups: dict[str, list[ExpressionScore]] = {}
        for r in self.rows:
            groups.setdefault(r.video, []).append(r)
        out = {}
        for video, rows in groups.items():
            J = float(np.nanmean([r.J for r in rows]))
            F = float(np.nanmean([r.F for r in rows]))
            out[video] = {"J": J, "F": F, "JF": (J + F) / 2, "expressions": len(rows)}
        return out

    def per_expression(self) -> dict[str, dict[str, float]]:
        return {f"{r.video}/{r.expression}": {"J": r.J, "F": r.F} for r in self.rows}

    def to_dict(self) -> dict:
        return {
            "J": self.J,
            "F": self.F,
            "JF": self.JF,
            "protocol": self.protocol,
            "videos": len({r.video for r in self.rows}),
            "expressions": len(self.rows),
            "missing": self.missing,
            "per_video": self.per_video(),
            "per_expression": self.per_expression(),
            **self.extra,
        }

    def to_json(self, path: str | Path) -> None:
        atomic_write_json(path, self.to_dict(), indent=1)

    def to_csv(self, path: str | Path, level: str = "expression") -> None:
        """Rows per ``"expression"`` (video, expression, J, F, JF, frames, missing) or per
        ``"video"`` (video, J, F, JF, expressions)."""
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        if level == "expression":
            writer.writerow(["video", "expression", "J", "F", "JF", "frames", "missing"])
            for r in self.rows:
                writer.writerow([r.video, r.expression, r.J, r.F, r.JF, r.frames, int(r.missing)])
        elif level == "video":
            writer.writerow(["video", "J", "F", "JF", "expressions"])
            for video, s in self.per_video().items():
                writer.writerow([video, s["J"], s["F"], s["JF"], s["expressions"]])
        else:
            raise ValueError(f"level must be 'expression' or 'video', got {level!r}")
        atomic_write_text(path, buf.getvalue())

    def summary(self) -> str:
        """The global scores on one line; a second line names the expressions without prediction
        (:meth:`missing_report`) where there are any."""
        n_videos = len({r.video for r in self.rows})
        text = (
            f"J&F {100 * self.JF:.2f}  J {100 * self.J:.2f}  F {100 * self.F:.2f}  "
            f"({len(self.rows)} expressions, {n_videos} videos, {self.protocol} protocol)"
        )
        report = self.missing_report()
        if report:
            text += f"\n{report}"
        return text


# --------------------------------------------------------------------------------------------
# a mask set against a dataset split


def _score_one(pred: MaskSource, dataset: RVOSDataset, protocol: str, video: str, have: bool):
    """One video's rows, one expression in memory at a time: its ground truth and prediction
    are read, scored and dropped before the next is read, so the peak is one expression's pair
    of ``T x H x W`` masks above the reader's own state (the video's annotations), whatever
    the number of expressions of the video or of videos."""
    frame_ids = dataset.video(video).frame_ids
    pred_exps = set(pred.expressions(video)) if have else set()
    rows: list[ExpressionScore] = []
    for exp in dataset.expressions(video):
        truth = dataset.ground_truth(video, exp.id)
        if truth is None:
            raise UserError(f"video {video} expression {exp.id} has no ground truth")
        track = pred.read(video, exp.id) if exp.id in pred_exps else None
        rows += score_video(
            {exp.id: track}, {exp.id: truth}, frame_ids, protocol=protocol, video=video
        )
        del truth, track  # before the next expression's pair is read
    return rows


def _score_job(shared: tuple, job: tuple[str, bool]) -> list[ExpressionScore]:
    pred, dataset, protocol = shared
    return _score_one(pred, dataset, protocol, *job)


def score_mask_set(
    pred: MaskSource,
    dataset: RVOSDataset,
    protocol: str | None = None,
    *,
    workers: int = 1,
    videos: Sequence[str] | None = None,
) -> ScoreTable:
    """Score predictions against a split with ground truth: every expression of every video
    (``videos`` to restrict). ``protocol`` defaults to the dataset's format."""
    protocol = protocol or dataset.format
    if protocol not in PROTOCOLS:
        raise UserError(f"unknown protocol {protocol!r}; known: {', '.join(PROTOCOLS)}")
    if not dataset.has_ground_truth:
        raise UserError(f"the {dataset.format} split {dataset.split!r} has no ground truth")
    chosen = list(videos) if videos is not None else dataset.video_ids()
    available = set(pred.videos())
    jobs = [(v, v in available) for v in chosen]
    results = process_imap(_score_job, jobs, (pred, dataset, protocol), workers=workers)
    return ScoreTable([row for rows in results for row in rows], protocol)
