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
"""

from __future__ import annotations

import importlib.util
import json
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from models.common.producer import Producer
from models.shared.checkpoint import read_checkpoint
from models.shared.typed import from_dict, replace_fields
from pipeline.errors import UserError
from pipeline.weights import inference_short_side, is_project_weights, load_project_weights

MODEL_FAMILIES = ("sgmg", "referformer", "mutr", "soc", "uninext")
HF_TOKENIZER = {"uninext": "bert-base-uncased"}  # the others use roberta-base
DATASET_NAMES = {"ytvos": "ref-youtube-vos", "davis": "ref-davis17", "mevis": "mevis"}
_SWIN_SIZES = {"vswint": "tiny", "vswins": "small", "vswinb": "base"}

_LOCK = threading.Lock()
_PRODUCERS: dict[str, Producer] = {}
_TOKENIZERS: dict[str, Any] = {}


def producer_problems(where: str, settings: Mapping[str, Any]) -> list[str]:
    """What would stop this producer from running (missing files, unknown family), as text."""
    family = settings.get("family")
    problems = []
    if family == "import":
        predictions = settings.get("predictions")
        if not predictions or not Path(predictions).exists():
            problems.append(f"{where}.predictions: not found: {predictions}")
        scores = settings.get("scores")
        if scores and not Path(scores).is_file():
            problems.append(f"{where}.scores: file not found: {scores}")
        return problems
    if family not in MODEL_FAMILIES:
        return [f"{where}.family: unknown family {family!r}; known: {[*MODEL_FAMILIES, 'import']}"]
    if importlib.util.find_spec(f"models.{family}") is None:
        problems.append(f"{where}: the {family} model is not part of this checkout")
    checkpoint = settings.get("checkpoint")
    if not checkpoint or not Path(checkpoint).is_file():
        problems.append(f"{where}.checkpoint: file not found: {checkpoint}")
    tokenizer = settings.get("tokenizer")
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


def get_tokenizer(settings: Mapping[str, Any]) -> Any:
    """The producer's tokenizer (loaded once per process)."""
    from pipeline.tokenize import load_tokenizer

    spec = str(settings["tokenizer"])
    hf_name = HF_TOKENIZER.get(settings["family"], "roberta-base")
    key = f"{spec}|{hf_name}"
    with _LOCK:
        if key not in _TOKENIZERS:
            _TOKENIZERS[key] = load_tokenizer(spec, hf_name=hf_name)
        return _TOKENIZERS[key]


def get_producer(settings: Mapping[str, Any], dataset_format: str) -> Producer:
    """The producer for ``settings`` on a dataset format (built once per process)."""
    key = json.dumps({**settings, "dataset": dataset_format}, sort_keys=True, default=str)
    with _LOCK:
        if key not in _PRODUCERS:
            _PRODUCERS[key] = build_producer(settings, dataset_format)
        return _PRODUCERS[key]


def build_producer(settings: Mapping[str, Any], dataset_format: str) -> Producer:
    """Read the checkpoint, build the network, load it strictly, wrap it with its protocol."""
    family = settings["family"]
    if family not in _BUILDERS:
        raise UserError(f"unknown producer family {family!r}")
    path = Path(settings["checkpoint"])
    options = dict(settings.get("options") or {})
    if is_project_weights(path):
        weights = load_project_weights(path)
        if weights.family != family:
            raise UserError(f"{path} holds {weights.family} weights, not {family}")
        network = _BUILDERS[family].from_project(weights.config, weights.state, str(path))
        recorded = inference_short_side(weights.metadata)
        if recorded is not None:  # the size the weights were scored at, unless overridden
            options.setdefault("short_side", recorded)
    else:
        network = _BUILDERS[family].from_official(
            read_checkpoint(path), str(settings.get("variant") or ""), str(path)
        )
    device = torch.device(settings.get("device") or "cpu")
    network = network.to(device).eval()
    dataset = DATASET_NAMES.get(dataset_format, dataset_format)
    producer = _BUILDERS[family].wrap(network, family, dataset, options)
    return _with_precision(producer, str(settings.get("precision") or "fp32"), device)


class _FamilyBuilder:
    """How to build one family's network and producer."""

    def __init__(
        self,
        from_official: Callable[[Mapping[str, object], str, str], torch.nn.Module],
        from_project: Callable[[Mapping[str, Any], Mapping[str, torch.Tensor], str], Any],
        wrap: Callable[[Any, str, str, Mapping[str, Any]], Producer],
    ) -> None:
        self.from_official = from_official
        self.from_project = from_project
        self.wrap = wrap


# ------------------------------------------------------------------------------------------
# SgMg


def _sgmg_official(checkpoint: Mapping[str, object], variant: str, where: str) -> Any:
    from models.sgmg.build import PRESETS, build_sgmg
    from models.sgmg.convert import load_official

    presets = {"vswint": "video_swin_t", "vswinb": "video_swin_b"}
    if variant not in presets:
        raise UserError(f"{where}: SgMg variant must be one of {sorted(presets)}, not {variant!r}")
    model = build_sgmg(PRESETS[presets[variant]])
    load_official(model, checkpoint)
    return model


def _sgmg_project(config: Mapping[str, Any], state: Mapping[str, torch.Tensor], where: str) -> Any:
    from models.sgmg.build import SgMgConfig, build_sgmg
    from models.shared.checkpoint import load_state_strict

    model = build_sgmg(from_dict(SgMgConfig, config, where=where))
    load_state_strict(model, state, what=where)
    return model


def _sgmg_wrap(model: Any, family: str, dataset: str, options: Mapping[str, Any]) -> Producer:

    from models.sgmg.producer import PROTOCOLS, SgMgProducer

    short = {"ref-youtube-vos": "ytvos", "ref-davis17": "davis", "mevis": "mevis"}[dataset]
    protocol = replace_fields(PROTOCOLS[short], options, where="SgMg protocol options")
    return SgMgProducer(model, protocol)


# ------------------------------------------------------------------------------------------
# ReferFormer, MUTR, SOC


def _family_official(family: str) -> Callable[[Mapping[str, object], str, str], Any]:
    def build(checkpoint: Mapping[str, object], variant: str, where: str) -> Any:
        from models.referformer.build import build_model, released_config

        if variant not in _SWIN_SIZES:
            raise UserError(
                f"{where}: {family} variant must be one of {sorted(_SWIN_SIZES)}, not {variant!r}"
            )
        model = build_model(released_config(family, _SWIN_SIZES[variant]))
        _load_family_official(family, model, checkpoint)
        return model

    return build


def _load_family_official(family: str, model: Any, checkpoint: Mapping[str, object]) -> None:
    module = importlib.import_module(f"models.{family}.convert")
    layout = getattr(module, f"{family.upper()}_LAYOUT")
    load = getattr(module, "load_official", None)
    if load is None:
        from models.referformer.convert import load_official as load
    load(model, checkpoint, layout)


def _family_project(config: Mapping[str, Any], state: Mapping[str, torch.Tensor], where: str):
    from models.referformer.build import FamilyConfig, build_model
    from models.shared.checkpoint import load_state_strict

    model = build_model(from_dict(FamilyConfig, config, where=where))
    load_state_strict(model, state, what=where)
    return model


def _family_wrap(model: Any, family: str, dataset: str, options: Mapping[str, Any]) -> Producer:
    from models.referformer.producer import FamilyProducer, protocol_for

    return FamilyProducer(model, protocol_for(family, dataset, **options))


# ------------------------------------------------------------------------------------------
# UNINEXT


def _uninext_official(checkpoint: Mapping[str, object], variant: str, where: str) -> Any:
    from models.shared.checkpoint import extract_state_dict
    from models.uninext.convert import load_official_weights
    from models.uninext.model import build_uninext
    from models.uninext.spec import variant_spec

    try:
        spec = variant_spec(variant)
    except ValueError as err:
        raise UserError(f"{where}: {err}") from err
    model = build_uninext(spec)
    load_official_weights(model, extract_state_dict(checkpoint, ("model",)), what=where)
    return model


def _uninext_project(config: Mapping[str, Any], state: Mapping[str, torch.Tensor], where: str):
    from models.uninext.convert import load_port_weights
    from models.uninext.model import build_uninext
    from models.uninext.spec import UninextSpec

    model = build_uninext(from_dict(UninextSpec, config, where=where))
    load_port_weights(model, state, what=where)
    return model


def _uninext_wrap(model: Any, family: str, dataset: str, options: Mapping[str, Any]) -> Producer:
    from models.uninext.producer import UninextProducer

    unknown = set(options) - {"short_side", "max_size"}
    if unknown:
        raise UserError(f"unknown UNINEXT producer options {sorted(unknown)}")
    if "short_side" in options:
        model.spec = _replace_spec(model.spec, min_size=int(options["short_side"]))
    if "max_size" in options:
        model.spec = _replace_spec(model.spec, max_size=int(options["max_size"]))
    return UninextProducer(model)


def _replace_spec(spec: Any, **changes: Any) -> Any:
    from dataclasses import replace

    return replace(spec, **changes)


_BUILDERS: dict[str, _FamilyBuilder] = {
    "sgmg": _FamilyBuilder(_sgmg_official, _sgmg_project, _sgmg_wrap),
    **{
        f: _FamilyBuilder(_family_official(f), _family_project, _family_wrap)
        for f in ("referformer", "mutr", "soc")
    },
    "uninext": _FamilyBuilder(_uninext_official, _uninext_project, _uninext_wrap),
}


# ------------------------------------------------------------------------------------------
# helpers


class _AutocastProducer:
    """Runs a producer's forward passes under CUDA autocast (fp16 / bf16)."""

    def __init__(self, inner: Producer, dtype: torch.dtype) -> None:
        self.inner = inner
        self.dtype = dtype

    def segment_video(self, frames: torch.Tensor, text: Any) -> Any:
        with torch.autocast("cuda", dtype=self.dtype):
            yield from self.inner.segment_video(frames, text)


def _with_precision(producer: Producer, precision: str, device: torch.device) -> Producer:
    dtypes = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}
    if precision not in dtypes:
        raise UserError(f"precision must be one of {sorted(dtypes)}, not {precision!r}")
    dtype = dtypes[precision]
    if dtype is None or device.type != "cuda":
        return producer
    return _AutocastProducer(producer, dtype)  # type: ignore[return-value]
