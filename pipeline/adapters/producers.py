"""Producers as plugins: build an RVOS model's producer from a producer config, check configs
before a run, and tokenise expressions for it.

A producer config names a ``family`` (``sgmg``, ``referformer``, ``mutr``, ``soc``,
``uninext``, or ``import`` for existing predictions), a ``checkpoint`` (an official file, or a
project weights file from ``weights/``), a ``variant`` for official files (``vswint``,
``vswinb``, ``r50``, ``convnextl``, ``vith``), the ``tokenizer``, the device and precision, and
``options`` overriding the model's own inference protocol (``short_side``, ``max_size``,
``clip_length``). A project weights file that records the short side it was scored at
(``lsvos.inference``, written by ``lsvos train-rvos``) runs at that size unless ``options`` say
otherwise. The flow treats every family alike through
:class:`models.common.producer.Producer`.

This module only reads files and maps a :class:`ProducerConfig` onto :mod:`models.build`, where
every family's networks, loaders and protocols live.
"""

from __future__ import annotations

import json
import threading
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import models.build as library
from models.common.producer import Producer
from models.shared.checkpoint import CheckpointError, read_checkpoint
from pipeline.adapters.build_cache import BuildCache
from pipeline.adapters.weights import (
    checkpoint_problem,
    checkpoint_user_error,
    inference_short_side,
    is_project_weights,
    load_project_weights,
)
from pipeline.core.errors import UserError

if TYPE_CHECKING:  # the schema's types; adapters import nothing of the orchestration
    from pipeline.orchestration.config import ProducerConfig

MODEL_FAMILIES = library.PRODUCER_FAMILIES

_LOCK = threading.Lock()
_PRODUCERS: BuildCache[Producer] = BuildCache()
_TOKENIZERS: dict[str, Any] = {}


def producer_problems(where: str, settings: ProducerConfig) -> list[str]:
    """What would stop this producer from running (missing files, unknown family), as text."""
    family = str(settings.family)
    problems = []
    if settings.is_import:
        predictions = settings.predictions
        if not predictions or not Path(predictions).exists():
            problems.append(f"{where}.predictions: not found: {predictions}")
        scores = settings.scores
        if scores and not Path(scores).is_file():
            problems.append(f"{where}.scores: file not found: {scores}")
        return problems
    if family not in MODEL_FAMILIES:
        return [f"{where}.family: unknown family {family!r}; known: {[*MODEL_FAMILIES, 'import']}"]
    checkpoint = settings.checkpoint
    if not checkpoint or not Path(checkpoint).is_file():
        problems.append(f"{where}.checkpoint: file not found: {checkpoint}")
    else:
        problem = checkpoint_problem(f"{where}.checkpoint", checkpoint)
        if problem is not None:
            problems.append(problem)
        elif not is_project_weights(checkpoint):  # an official file: its variant names the net
            problem = library.variant_problem(family, str(settings.variant or ""))
            if problem is not None:
                problems.append(f"{where}.variant: {problem} (for {checkpoint})")
    tokenizer = settings.tokenizer
    if not tokenizer:
        problems.append(f"{where}.tokenizer: not set")
    elif str(tokenizer).endswith(".json") and not Path(tokenizer).is_file():
        problems.append(f"{where}.tokenizer: file not found: {tokenizer}")
    else:
        try:
            get_tokenizer(settings)
        except UserError as err:
            problems.append(f"{where}.tokenizer: {err}")
    return problems


def get_tokenizer(settings: ProducerConfig) -> Any:
    """The producer's tokenizer (loaded once per process)."""
    from pipeline.adapters.tokenize import load_tokenizer

    spec = str(settings.tokenizer)
    hf_name = library.tokenizer_name(str(settings.family))
    key = f"{spec}|{hf_name}"
    with _LOCK:
        if key not in _TOKENIZERS:
            _TOKENIZERS[key] = load_tokenizer(spec, hf_name=hf_name)
        return _TOKENIZERS[key]


def get_producer(settings: ProducerConfig, dataset_format: str) -> Producer:
    """The producer for ``settings`` on a dataset format (built once per process)."""
    key = json.dumps([asdict(settings), str(dataset_format)], sort_keys=True, default=str)
    return _PRODUCERS.get(
        key, settings.checkpoint, lambda: producer_from_config(settings, dataset_format)
    )


def producer_from_config(settings: ProducerConfig, dataset_format: str) -> Producer:
    """Read the checkpoint and build its producer with :func:`models.build.build_producer`.

    A project weights file must hold ``settings.family``'s weights; the short side it records
    (``lsvos.inference``) is the protocol's unless ``options`` set one. Library errors (unknown
    family, variant or options) become :class:`UserError`.
    """
    family = str(settings.family)
    if family not in MODEL_FAMILIES:
        raise UserError(f"unknown producer family {family!r}")
    path = Path(str(settings.checkpoint))
    options = dict(settings.options or {})
    weights: library.OfficialWeights | library.ProjectWeights
    if is_project_weights(path):
        project = load_project_weights(path)
        if project.family != family:
            raise UserError(f"{path} holds {project.family} weights, not {family}")
        weights = library.ProjectWeights(project.config, project.state, str(path))
        recorded = inference_short_side(project.metadata)
        if recorded is not None:  # the size the weights were scored at, unless overridden
            options.setdefault("short_side", recorded)
    else:
        try:
            state = read_checkpoint(path)
        except CheckpointError as err:
            raise checkpoint_user_error(path, err) from err
        weights = library.OfficialWeights(state, str(settings.variant or ""), str(path))
    try:
        return library.build_producer(
            family,
            weights,
            dataset=str(dataset_format),
            options=options,
            device=settings.device or "cpu",
            precision=str(settings.precision),
        )
    except library.BuildError as err:
        raise UserError(str(err)) from err
    except CheckpointError as err:  # keys that do not fit the network
        raise checkpoint_user_error(path, err) from err
