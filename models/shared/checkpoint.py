"""Checkpoints: safe reading of files and strict state-dict key accounting for every converter.

Official RVOS and VOS repositories load their checkpoints with ``strict=False`` (or drop unknown
keys), so a wrong prefix silently leaves layers at random init. Here every converter ends in
:func:`load_state_strict`, which fails listing each missing, unexpected and mis-shaped key.
Files are read by :func:`read_checkpoint`, which never unpickles an arbitrary object (the one
function here that touches a file: builders take paths, converters take state dicts).
"""

from __future__ import annotations

import argparse
import re
import zipfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn


class CheckpointError(RuntimeError):
    """A checkpoint file cannot be read safely, or its keys do not fit the model."""


def extract_state_dict(
    checkpoint: Mapping[str, object], candidates: Iterable[str] = ("model", "state_dict")
) -> dict[str, torch.Tensor]:
    """The state dict inside a checkpoint: under the first of ``candidates`` present, else itself.

    Non-tensor entries of a raw state dict (e.g. a stored ``args``) are an error: a converter
    must not guess.
    """
    for key in candidates:
        inner = checkpoint.get(key)
        if isinstance(inner, Mapping):
            checkpoint = inner
            break
    bad = [k for k, v in checkpoint.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(
            f"state dict has non-tensor entries {bad[:8]}; expected one of the keys "
            f"{list(candidates)} holding the weights"
        )
    return dict(checkpoint)  # type: ignore[arg-type]


@dataclass(frozen=True)
class RenameRule:
    """Replace the regular expression ``pattern`` by ``replacement`` (``re.sub`` syntax)."""

    pattern: str
    replacement: str

    def apply(self, key: str) -> str:
        return re.sub(self.pattern, self.replacement, key)


@dataclass(frozen=True)
class SkipRule:
    """Official keys matching ``pattern`` that the port drops on purpose, with the reason."""

    pattern: str
    reason: str

    def matches(self, key: str) -> bool:
        return re.fullmatch(self.pattern, key) is not None


@dataclass
class KeyReport:
    """What a conversion did with every official key."""

    loaded: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # official key -> reason

    def summary(self) -> str:
        return f"{len(self.loaded)} keys loaded, {len(self.skipped)} skipped on purpose"


def convert_state_dict(
    official: Mapping[str, torch.Tensor],
    *,
    rename: Iterable[RenameRule] | Callable[[str], str] = (),
    skip: Iterable[SkipRule] = (),
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Map official key names to the port's names.

    Returns ``(state, skipped)`` where ``skipped`` maps each deliberately dropped official key
    to its reason. Two official keys renamed to one port key is an error unless they hold the
    same tensor (tied weights, e.g. shared class heads).
    """
    skip = list(skip)
    if callable(rename):
        rename_fn = rename
    else:
        rules = list(rename)

        def rename_fn(key: str) -> str:
            for rule in rules:
                key = rule.apply(key)
            return key

    state: dict[str, torch.Tensor] = {}
    origin: dict[str, str] = {}
    skipped: dict[str, str] = {}
    for key, tensor in official.items():
        reason = next((r.reason for r in skip if r.matches(key)), None)
        if reason is not None:
            skipped[key] = reason
            continue
        new = rename_fn(key)
        if new in state:
            same = state[new] is tensor or (
                state[new].shape == tensor.shape and torch.equal(state[new], tensor)
            )
            if not same:
                raise CheckpointError(
                    f"official keys {origin[new]!r} and {key!r} both map to {new!r} "
                    "with different values"
                )
            continue
        state[new] = tensor
        origin[new] = key
    return state, skipped


def load_state_strict(
    module: nn.Module,
    state: Mapping[str, torch.Tensor],
    *,
    what: str = "checkpoint",
    allow_missing: Iterable[str] = (),
) -> None:
    """Copy ``state`` into ``module``; any missing, unexpected or mis-shaped key is an error.

    ``allow_missing`` holds regular expressions (full match) of module keys that are legitimately
    absent from the checkpoint (e.g. buffers the port derives itself). The error message lists
    every offending key, so a wrong prefix shows at once.
    """
    allowed = [re.compile(p) for p in allow_missing]
    own = module.state_dict()
    missing = [k for k in own if k not in state and not any(p.fullmatch(k) for p in allowed)]
    unexpected = [k for k in state if k not in own]
    mismatched = [
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in state
        if k in own and tuple(state[k].shape) != tuple(own[k].shape)
    ]
    if missing or unexpected or mismatched:
        raise KeyMismatchError(what, missing, unexpected, mismatched)
    module.load_state_dict(dict(state), strict=False)


class KeyMismatchError(CheckpointError):
    """The converted state dict does not fit the model; lists every offending key."""

    def __init__(
        self, what: str, missing: list[str], unexpected: list[str], mismatched: list[str]
    ) -> None:
        self.missing = missing
        self.unexpected = unexpected
        self.mismatched = mismatched
        parts = [f"{what} does not fit the model:"]
        for title, keys in (
            ("missing", missing),
            ("unexpected", unexpected),
            ("shape mismatch", mismatched),
        ):
            if keys:
                shown = "\n    ".join(keys[:50])
                more = f"\n    ... and {len(keys) - 50} more" if len(keys) > 50 else ""
                parts.append(f"  {len(keys)} {title}:\n    {shown}{more}")
        super().__init__("\n".join(parts))


# --------------------------------------------------------------------------------------------
# reading files

# Globals an official checkpoint may legitimately carry besides tensors: ReferFormer, MUTR and
# SgMg pickle their argparse namespace under 'args'.
SAFE_CHECKPOINT_GLOBALS: tuple[object, ...] = (argparse.Namespace,)


def read_checkpoint(
    path: str | Path, *, extra_safe_globals: Iterable[object] = (), mmap: bool = False
) -> dict[str, object]:
    """Read a ``.pth``/``.pt``/``.tar`` (``weights_only=True``) or ``.safetensors`` file.

    ``mmap``: map a pickle file's tensors instead of reading them (a cheap check that the file
    loads; files in torch's legacy format, which cannot be mapped, are read whole).

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
            mappable = mmap and zipfile.is_zipfile(path)  # legacy files cannot be mapped
            obj = torch.load(path, map_location="cpu", weights_only=True, mmap=mappable)
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
