"""Typed configuration: the Hydra schema, composition, and plain-data views for tasks.

The YAML in ``configs/`` is validated against these dataclasses (registered in Hydra's
ConfigStore as ``lsvos_schema``): a misspelt key or a value of the wrong type fails at
composition with Hydra's message naming it. Tasks never see a ``DictConfig``: the flow composes
once and hands them plain dicts (:func:`to_plain`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from hydra.core.config_store import ConfigStore
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import HydraException
from omegaconf import MISSING, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from pipeline.errors import UserError

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"
WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "weights"


@dataclass
class SynthConfig:
    """The built-in synthetic benchmark, generated on first use when ``generate`` is set."""

    generate: bool = True
    seed: int = 0
    videos: int = 6


@dataclass
class DatasetConfig:
    """Which split of which dataset to run on."""

    format: str = "ytvos"  # ytvos | mevis | davis
    root: str = MISSING
    split: str = "valid"
    synthetic: SynthConfig | None = None
    videos: list[str] | None = None  # restrict to these video ids (sorted order is kept)


@dataclass
class ProducerConfig:
    """An RVOS model, or an import of existing predictions (``family: import``)."""

    family: str = MISSING  # sgmg | referformer | mutr | soc | uninext | import
    variant: str = ""
    checkpoint: str | None = MISSING  # required: a path, or null for an import
    tokenizer: str | None = None
    device: str = "cpu"
    precision: str = "fp32"  # fp32 | fp16 | bf16
    predictions: str | None = None  # import: folder or zip in the submission layout
    scores: str | None = None  # import: optional per-frame scores file
    options: dict[str, Any] = field(default_factory=dict)  # family-specific protocol settings


@dataclass
class EngineConfig:
    """A propagation engine (AOT or DeAOT) and the protocol it runs."""

    family: str = MISSING  # aot | deaot
    variant: str = MISSING
    checkpoint: str = MISSING
    device: str = "cpu"
    precision: str = "fp32"
    # null: the scales a project weights file records (lsvos train-vos --scale), else [1.0]
    scales: list[float] | None = field(default_factory=lambda: [1.0])
    flip: bool = False
    long_term_gap: int = 5
    max_long_term: int | None = None
    reset_between_passes: bool = False
    max_long_edge: int | None = 1040
    ensemble_memory_update: bool = True
    mask_unused_ids: bool = True  # False: all identities stay live (the challenge's AOT copy)
    pack_expressions: bool = True


@dataclass
class NodeConfig:
    """One node of a recipe graph: a mask set made by a producer, a vote or a propagation."""

    kind: str = MISSING  # produce | vote | propagate
    stage: str = ""  # free label used to run stages selectively ("stage1", "stage2", ...)
    # produce
    producer: str | None = None
    # vote
    sources: list[str] = field(default_factory=list)
    weights: list[float] | None = None
    min_votes: float | None = None
    pairs: bool = False
    odd: str = "first_source"  # first_source | own_threshold
    odd_min_votes: float | None = None
    sigmoid_twice_compat: bool = False
    resize: bool = False
    # vote and propagate: whose per-frame scores give the key frame
    keyframe_from: str | None = None
    # propagate
    source: str | None = None
    engine: str | None = None


@dataclass
class RecipeConfig:
    """A graph of mask sets and the node packaged as the submission."""

    name: str = MISSING
    description: str = ""
    nodes: dict[str, NodeConfig] = field(default_factory=dict)
    submission: str = MISSING
    package_format: str = "ytvos"  # ytvos | mevis


@dataclass
class RuntimeConfig:
    """Where outputs go and how work is spread."""

    output_root: str = "outputs"
    run_name: str | None = None
    workers: int = 2
    task_runner: str = "thread"  # thread | dask | ray
    dask_address: str | None = None  # an existing Dask scheduler (or Ray cluster); None: local
    progress: bool = True
    score: bool = True


@dataclass
class LsvosConfig:
    """The whole configuration of one run."""

    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    recipe: RecipeConfig = field(default_factory=RecipeConfig)
    producers: dict[str, ProducerConfig] = field(default_factory=dict)
    engines: dict[str, EngineConfig] = field(default_factory=dict)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)


def register_schema() -> None:
    """Register the schema and the ``${weights:NAME}`` resolver (a file of ``weights/``)."""
    ConfigStore.instance().store(name="lsvos_schema", node=LsvosConfig)
    OmegaConf.register_new_resolver("weights", lambda name: str(WEIGHTS_DIR / name), replace=True)


def compose_config(
    overrides: Sequence[str] = (), config_name: str = "config", config_dir: Path | None = None
) -> dict[str, Any]:
    """Compose ``configs/<config_name>.yaml`` with Hydra overrides into a validated plain dict.

    Raises :class:`UserError` with Hydra's message (which names the offending key or value).
    """
    register_schema()
    if GlobalHydra.instance().is_initialized():
        GlobalHydra.instance().clear()
    config_dir = (config_dir or CONFIG_DIR).resolve()
    try:
        with initialize_config_dir(
            config_dir=str(config_dir), version_base="1.3", job_name="lsvos"
        ):
            cfg = compose(config_name=config_name, overrides=list(overrides))
        plain = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    except (HydraException, OmegaConfBaseException, ValueError) as err:
        raise UserError(f"invalid configuration: {err}") from err
    finally:
        GlobalHydra.instance().clear()
    assert isinstance(plain, dict)
    return plain  # type: ignore[return-value]


def to_plain(cfg: Any) -> Any:
    """A JSON-able copy of an OmegaConf node or dataclass (tasks take plain data)."""
    if OmegaConf.is_config(cfg):
        return OmegaConf.to_container(cfg, resolve=True)
    return cfg
