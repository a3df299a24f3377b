"""Score one node's masks on one video against the split's ground truth, cached per (node, video).

A node's scores on a video are stored beside its masks, at ``<node dir>/scores/<video>.json``
(written atomically), and reused by later runs while everything they were computed from is
unchanged. The file records what the rows depend on, and a run trusts it only when all of it
matches:

- the node's cache key (the folder already names it; recorded again for a copied file);
- the masks: a SHA-256 over the video's completion marker and track files (and PNGs for
  ``png`` storage), so a video recomputed under the same key (``--refresh``) is scored again;
- the ground truth: each annotation file's name, size and mtime (Ref-YouTube-VOS / DAVIS
  ``Annotations/<video>/``, MeViS ``mask_dict.json``) and the expressions' object ids;
- the protocol and the scorer's code version (:mod:`pipeline.core.scoring` and this module).

A file that is missing, torn, of another format, for other inputs, or whose rows are not one
well-formed (expression, J, F) per expression of the video is recomputed and rewritten, never
trusted. Cached rows are the JSON round trip of the fresh floats, which is exact.
"""

from __future__ import annotations

import hashlib
import math
import threading
from functools import cache
from pathlib import Path
from typing import Any

from pipeline.core.data import RVOSDataset
from pipeline.core.io import atomic_write_json, read_json
from pipeline.core.masks import MaskSet
from pipeline.core.scoring import score_video
from pipeline.orchestration.code_version import files_version, import_closure
from pipeline.orchestration.jobs import NodeJob, RunPlan
from pipeline.orchestration.splits import expression_ids, open_split

_PROTOCOL = {"ytvos": "ytvos", "mevis": "mevis", "davis": "ytvos"}
SCORE_FORMAT = "lsvos-scores"
SCORE_VERSION = 1
ScoreRow = dict[str, Any]
_VERSION_LOCK = threading.Lock()


def score_node_video(plan: RunPlan, job: NodeJob, video: str) -> list[ScoreRow]:
    """Per-expression J and F of ``job``'s masks on ``video`` (the dataset's protocol): the
    cached rows when they are valid for the current masks and ground truth, else fresh ones
    (then cached). Rows: ``{"node", "video", "expression", "J", "F"}`` in meta order."""
    cached = cached_scores(plan, job, video)
    if cached is not None:
        return cached
    identity = _identity(plan, job, video)  # of the masks about to be read
    rows = fresh_scores(plan, job, video)
    if rows:
        record = {"format": SCORE_FORMAT, **identity, "rows": [_stored(r) for r in rows]}
        atomic_write_json(score_path(job, video), record)
    return rows


def cached_scores(plan: RunPlan, job: NodeJob, video: str) -> list[ScoreRow] | None:
    """The stored rows of (``job``, ``video``) when the file is intact and was computed from
    the current masks, ground truth and scorer; ``None`` otherwise (nothing is raised)."""
    path = score_path(job, video)
    if not path.is_file() or not job.is_complete(video):
        return None
    try:
        record = read_json(path)
        expected = _identity(plan, job, video)
    except Exception:  # torn or foreign file, or masks being rewritten: score afresh
        return None
    if not isinstance(record, dict) or record.get("format") != SCORE_FORMAT:
        return None
    if any(record.get(name) != value for name, value in expected.items()):
        return None
    return _valid_rows(record.get("rows"), job.name, video, expression_ids(plan.dataset, video))


def fresh_scores(plan: RunPlan, job: NodeJob, video: str) -> list[ScoreRow]:
    """Score ``job``'s masks on ``video`` now (no cache); ``[]`` where the split lacks ground
    truth for one of the video's expressions."""
    dataset = open_split(plan.dataset)
    maskset = MaskSet(job.out_dir)
    expressions = expression_ids(plan.dataset, video)
    gt = {exp: dataset.ground_truth(video, exp) for exp in expressions}
    if any(g is None for g in gt.values()):
        return []
    preds = {exp: maskset.read(video, exp) for exp in expressions}
    rows = score_video(
        preds,
        gt,  # type: ignore[arg-type]
        dataset.video(video).frame_ids,
        protocol=_protocol(plan),  # type: ignore[arg-type]
        video=video,
    )
    return [
        {"node": job.name, "video": r.video, "expression": r.expression, "J": r.J, "F": r.F}
        for r in rows
    ]


def score_path(job: NodeJob, video: str) -> Path:
    """Where (``job``, ``video``)'s scores are cached: beside the node's masks."""
    return Path(job.out_dir) / "scores" / f"{video}.json"


def _protocol(plan: RunPlan) -> str:
    return _PROTOCOL[str(plan.dataset.format)]


def _stored(row: ScoreRow) -> dict[str, Any]:
    return {"expression": row["expression"], "J": row["J"], "F": row["F"]}


def _identity(plan: RunPlan, job: NodeJob, video: str) -> dict[str, Any]:
    """Everything the rows of (``job``, ``video``) depend on, as JSON-able values."""
    return {
        "version": SCORE_VERSION,
        "node": job.name,
        "key": job.key,
        "video": video,
        "protocol": _protocol(plan),
        "scorer": scorer_version(),
        "masks": masks_fingerprint(job.out_dir, video),
        "ground_truth": ground_truth_stamp(open_split(plan.dataset), video),
    }


def scorer_version() -> str:
    """16 hex digits over the scoring code (:mod:`pipeline.core.scoring`'s import closure and
    this module), computed once per process."""
    with _VERSION_LOCK:  # ast.parse is not thread-safe in CPython 3.11; score tasks are threads
        return _scorer_version()


@cache
def _scorer_version() -> str:
    files = sorted({*import_closure("pipeline.core.scoring"), Path(__file__).resolve()})
    return files_version("score", files)


def masks_fingerprint(mask_set_dir: str | Path, video: str) -> str:
    """SHA-256 (32 hex digits) over what a score of ``video`` reads from a mask set: the
    completion marker and every file under ``tracks/<video>`` and ``Annotations/<video>``
    (names and bytes; soft probabilities are not scored and not read)."""
    root = Path(mask_set_dir)
    files = [root / "videos" / f"{video}.json"]
    for sub in ("tracks", "Annotations"):
        folder = root / sub / video
        if folder.is_dir():
            files += sorted(p for p in folder.rglob("*") if p.is_file())
    digest = hashlib.sha256()
    for path in files:
        digest.update(str(path.relative_to(root)).encode() + b"\0")
        digest.update(path.read_bytes())
        digest.update(b"\0")
    return digest.hexdigest()[:32]


def ground_truth_stamp(dataset: RVOSDataset, video: str) -> list[Any]:
    """The ground truth of ``video`` as stat stamps: ``[name, size, mtime_ns]`` per annotation
    file, then each expression's object or annotation ids (a replaced or edited file, or a
    changed meta, gives another stamp)."""
    files: list[Path] = []
    annotation_root = getattr(dataset, "annotation_root", None)
    if isinstance(annotation_root, Path) and (annotation_root / video).is_dir():
        files = sorted((annotation_root / video).iterdir())
    mask_dict = getattr(dataset, "mask_dict_path", None)
    if isinstance(mask_dict, Path) and mask_dict.is_file():
        files.append(mask_dict)
    stamps: list[Any] = []
    for path in files:
        stat = path.stat()
        stamps.append([path.name, stat.st_size, stat.st_mtime_ns])
    objects = [
        [e.id, list(e.obj_ids or ()), list(e.anno_ids or ())] for e in dataset.expressions(video)
    ]
    return [stamps, objects]


def _valid_rows(rows: Any, node: str, video: str, expressions: list[str]) -> list[ScoreRow] | None:
    """``rows`` as score rows when they are one ``{expression, J, F}`` per expression, in
    order, with J and F numbers in [0, 1] (or NaN, an empty frame range); else ``None``."""
    if not isinstance(rows, list) or len(rows) != len(expressions):
        return None
    out = []
    for row, exp in zip(rows, expressions, strict=True):
        if not isinstance(row, dict) or row.get("expression") != exp:
            return None
        j, f = row.get("J"), row.get("F")
        if not (_is_score(j) and _is_score(f)):
            return None
        out.append({"node": node, "video": video, "expression": exp, "J": float(j), "F": float(f)})
    return out


def _is_score(value: Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return math.isnan(value) or 0.0 <= value <= 1.0
