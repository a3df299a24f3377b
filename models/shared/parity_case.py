"""The in-memory form of a parity case, handed by :mod:`pipeline.adapters.parity` to a model family.

A family's parity module (``vos.parity``, ``models.<family>.parity``) exposes two functions:

``run_parity(case: ParityCase) -> dict[str, numpy.ndarray]``
    Convert ``case.state`` through the family's own converter, build the model the case's
    ``config`` (``variant_id``, hyper-parameters) describes, run the case's protocol on
    ``case.inputs`` and return the arrays named in ``config['checks']`` (debugging taps too,
    where cheap), shaped like ``expected.npz``.

``convert_parity(case: ParityCase) -> KeyReport``
    Build the model and convert every key of ``case.state`` strictly; used for ``manifest_only``
    cases (no inputs) and raises :class:`models.shared.checkpoint.KeyMismatchError` on any
    missing or unexpected key.

Hidden cases of other variants of the same families may exist: build from the config, not from
the folder name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch


@dataclass(frozen=True)
class ParityCase:
    """One parity case: its config, the official-layout state dict and its inputs."""

    name: str
    config: dict[str, Any]
    state: dict[str, torch.Tensor]
    inputs: dict[str, np.ndarray] = field(default_factory=dict)
    # The case folder, for index lists a case hands over in expected.npz (e.g. UNINEXT's
    # topk_query_indices: slot numbers to report, not values to compare). None when built in memory.
    directory: Path | None = None

    @property
    def family(self) -> str:
        return str(self.config["family"])

    @property
    def variant_id(self) -> str:
        return str(self.config["variant_id"])

    @property
    def is_full(self) -> bool:
        return self.config.get("kind", "full") == "full" and not self.config.get("manifest_only")
