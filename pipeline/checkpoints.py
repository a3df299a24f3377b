"""Reading checkpoint files safely: tensors and allow-listed globals only."""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from pathlib import Path

import torch

from models.common.checkpoint import CheckpointError

# Globals an official checkpoint may legitimately carry besides tensors: ReferFormer, MUTR and
# SgMg pickle their argparse namespace under 'args'.
SAFE_CHECKPOINT_GLOBALS: tuple[object, ...] = (argparse.Namespace,)


def read_checkpoint(
    path: str | Path, *, extra_safe_globals: Iterable[object] = ()
) -> dict[str, object]:
    """Read a ``.pth``/``.pt``/``.tar`` (``weights_only=True``) or ``.safetensors`` file.

    Only tensors, plain containers and the allow-listed globals (:data:`SAFE_CHECKPOINT_GLOBALS`
    plus ``extra_safe_globals``) can be unpickled: a file carrying any other object is refused with
    a :class:`CheckpointError` naming the file and the offending global.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return dict(load_file(str(path)))
        except Exception as err:
            raise CheckpointError(f"cannot read safetensors file {path}: {err}") from err
    allowed = [*SAFE_CHECKPOINT_GLOBALS, *extra_safe_globals]
    try:
        with torch.serialization.safe_globals(allowed):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # pickle.UnpicklingError, RuntimeError, zip errors...
        raise CheckpointError(
            f"refusing to load {path}: it is not a plain weights file "
            f"(weights_only=True with allow-list {[_global_name(g) for g in allowed]}): {err}"
        ) from err
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path} holds a {type(obj).__name__}, not a dict of tensors")
    return obj


def _global_name(obj: object) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', obj)}"
