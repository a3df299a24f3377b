"""The project's own weights files: a ``.safetensors`` state dict (project key names) plus, in
the file's metadata, the model family and the typed config that rebuilds the network.

Metadata keys: ``lsvos.family`` (``sgmg``, ``referformer``, ``mutr``, ``soc``, ``uninext``,
``aot``, ``deaot``) and ``lsvos.config`` (the JSON of the family's config dataclass). Optional:
``lsvos.trained_with`` (the command), ``lsvos.score`` (what it reached), ``lsvos.inference``
(JSON test-time settings the weights were trained and scored with: a propagation engine's
``{"scales": [2.0]}``, an RVOS model's ``{"short_side": 160}``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from pipeline.core.errors import InputFileError
from pipeline.core.io import atomic_write_bytes

FAMILY_KEY = "lsvos.family"
CONFIG_KEY = "lsvos.config"
INFERENCE_KEY = "lsvos.inference"


@dataclass(frozen=True)
class ProjectWeights:
    """A project weights file's content."""

    family: str
    config: dict[str, Any]
    state: dict[str, torch.Tensor]
    metadata: dict[str, str]


def save_project_weights(
    path: str | Path,
    family: str,
    config: Mapping[str, Any],
    state: Mapping[str, torch.Tensor],
    extra: Mapping[str, str] | None = None,
) -> None:
    """Write ``state`` with its family and config (atomically; tied tensors stored once each)."""
    from safetensors.torch import save

    metadata = {FAMILY_KEY: family, CONFIG_KEY: json.dumps(dict(config), sort_keys=True)}
    metadata.update(extra or {})
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in state.items()}
    atomic_write_bytes(path, save(tensors, metadata=metadata))


def is_project_weights(path: str | Path) -> bool:
    """True for a ``.safetensors`` file carrying the project's metadata."""
    path = Path(path)
    if path.suffix != ".safetensors" or not path.is_file():
        return False
    return FAMILY_KEY in _metadata(path)


def load_project_weights(path: str | Path) -> ProjectWeights:
    """Read a project weights file; a missing or foreign file is an error naming it."""
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"weights file not found: {path}")
    metadata = _metadata(path)
    if FAMILY_KEY not in metadata or CONFIG_KEY not in metadata:
        raise InputFileError(
            f"{path} is not a project weights file (no {FAMILY_KEY!r} / {CONFIG_KEY!r} metadata)"
        )
    try:
        config = json.loads(metadata[CONFIG_KEY])
        state = dict(load_file(str(path)))
    except (json.JSONDecodeError, OSError, RuntimeError) as err:
        raise InputFileError(f"cannot read {path}: {err}") from err
    return ProjectWeights(metadata[FAMILY_KEY], config, state, metadata)


def inference_settings(metadata: Mapping[str, str]) -> dict[str, Any]:
    """The ``lsvos.inference`` JSON object of a weights file's metadata (``{}`` when absent)."""
    try:
        settings = json.loads(metadata.get(INFERENCE_KEY, "{}"))
    except json.JSONDecodeError as err:
        raise InputFileError(f"bad {INFERENCE_KEY!r} metadata: {err}") from err
    if not isinstance(settings, dict):
        raise InputFileError(f"bad {INFERENCE_KEY!r} metadata: not a JSON object: {settings!r}")
    return settings


def inference_scales(weights: ProjectWeights) -> tuple[float, ...]:
    """The test-time scales recorded in ``weights`` (``(1.0,)`` when none are)."""
    try:
        recorded = inference_settings(weights.metadata).get("scales")
        return tuple(float(s) for s in recorded) if recorded else (1.0,)
    except (TypeError, ValueError) as err:
        raise InputFileError(f"bad {INFERENCE_KEY!r} metadata: {err}") from err


def inference_short_side(metadata: Mapping[str, str]) -> int | None:
    """The test-time short side an RVOS model's weights were scored at (None: not recorded)."""
    recorded = inference_settings(metadata).get("short_side")
    if recorded is None:
        return None
    if not isinstance(recorded, int) or isinstance(recorded, bool) or recorded <= 0:
        raise InputFileError(f"bad {INFERENCE_KEY!r} metadata: short_side {recorded!r}")
    return recorded


def _metadata(path: Path) -> dict[str, str]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except (OSError, RuntimeError, ValueError) as err:
        raise InputFileError(f"cannot read {path}: {err}") from err


def checkpoint_problem(where: str, path: str | Path) -> str | None:
    """Why the checkpoint at ``path`` (config key ``where``) cannot be read safely, in one line
    naming both; None when it can. Cheap: a safetensors file's header, a pickle file mapped
    with ``weights_only=True`` (nothing is run, and no tensor is read)."""
    from models.shared.checkpoint import CheckpointError, read_checkpoint

    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="pt") as f:
                f.keys()
        except Exception as err:  # safetensors raises its own SafetensorError, OSError...
            return f"{where}: cannot read safetensors file {path}: {_one_line(err)}"
        return None
    try:
        read_checkpoint(path, mmap=True)
    except CheckpointError as err:
        return f"{where}: {_one_line(err)}"
    return None


def file_stamp(path: str | Path | None) -> tuple[int, int] | None:
    """``(mtime in ns, size)`` of a file, None when there is none: tells a replaced file."""
    try:
        info = Path(str(path)).stat()
    except (OSError, ValueError):
        return None
    return info.st_mtime_ns, info.st_size


def checkpoint_user_error(path: str | Path, err: BaseException) -> InputFileError:
    """A refused checkpoint, or one whose keys do not fit the network, as one line naming it."""
    text = _one_line(err)
    return InputFileError(text if str(path) in text else f"checkpoint {path}: {text}")


def _one_line(err: BaseException, limit: int = 400) -> str:
    """``err`` on one line: no terminal colours, torch's advice on unpickling cut to the global
    it refused, and at most ``limit`` characters."""
    text = " ".join(re.sub(r"\x1b\[[0-9;]*m", "", str(err)).split())
    refused = re.search(r"Unsupported global: GLOBAL (\S+)", text)
    if refused:
        head = text.split(" Weights only load failed")[0].rstrip(": ")
        text = f"{head}: it pickles {refused.group(1)}, which weights-only loading refuses"
    return text if len(text) <= limit else text[: limit - 3] + "..."
