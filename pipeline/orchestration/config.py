"""The typed configuration: the Hydra schema, composition, and the typed objects a run carries.

The YAML in ``configs/`` is validated against these dataclasses (registered in Hydra's
ConfigStore as ``lsvos_schema``): a misspelt key or a value of the wrong type fails at
composition with Hydra's message naming it. :func:`compose_config` returns an
:class:`LsvosConfig` built by ``OmegaConf.to_object``, whose recipe nodes are typed per kind
(:class:`ProduceNode`, :class:`VoteNode`, :class:`PropagateNode`); the plan, the flow and its
tasks use these objects, and every default lives here once.

Field metadata ``{"key": False}`` marks a field that cannot change a node's output (the device,
a stage label): the cache leaves it out of the node's key (:mod:`pipeline.orchestration.cache`).
"""

from __future__ import annotations

import enum
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from hydra.core.config_store import ConfigStore
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import HydraException
from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException, ValidationError

from pipeline.core.errors import UserError

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"
WEIGHTS_DIR = Path(__file__).resolve().parents[2] / "weights"
NOT_IN_KEY = {"key": False}


def _choices(name: str, values: Sequence[str]) -> type[enum.StrEnum]:
    """A string enum whose member names are the values (OmegaConf matches YAML by name)."""
    return enum.StrEnum(name, {v: v for v in values}, module=__name__)  # type: ignore[return-value]


DatasetFormat = _choices("DatasetFormat", ("ytvos", "mevis", "davis"))
PackageFormat = _choices("PackageFormat", ("ytvos", "mevis"))
# Test: tests/pipeline/test_config_schema.py checks these against models.build and vos.build.
ProducerFamily = _choices(
    "ProducerFamily", ("sgmg", "referformer", "mutr", "soc", "uninext", "import")
)
EngineFamily = _choices("EngineFamily", ("aot", "deaot", "cutie", "sam2"))
Precision = _choices("Precision", ("fp32", "fp16", "bf16"))
NodeKind = _choices("NodeKind", ("produce", "vote", "propagate"))
# what a re-added key frame records as its last long-term write (vos.build.BACKWARD_MEMORIES)
BackwardMemory = _choices("BackwardMemory", ("key_frame_step", "running_step"))
OddPolicy = _choices("OddPolicy", ("first_source", "own_threshold"))
# Test: tests/pipeline/test_soft_vote.py checks these against pipeline.core.vote.
VoteMode = _choices("VoteMode", ("hard", "soft"))
KeyFrameRule = _choices("KeyFrameRule", ("score", "mean_probability", "agreement"))
TaskRunnerKind = _choices("TaskRunnerKind", ("thread", "dask", "ray"))


@dataclass
class SynthConfig:
    """The built-in synthetic benchmark, generated on first use when ``generate`` is set."""

    generate: bool = True
    seed: int = 0
    videos: int = 6


@dataclass
class DatasetConfig:
    """Which split of which dataset to run on (``videos``: only these ids, split order kept)."""

    format: DatasetFormat = DatasetFormat.ytvos  # type: ignore[attr-defined]
    root: str = MISSING
    split: str = "valid"
    synthetic: SynthConfig | None = None
    videos: list[str] | None = None


@dataclass
class ProducerConfig:
    """An RVOS model, or an import of existing predictions (``family: import``).

    ``checkpoint``: an official file (with its ``variant``) or a project weights file from
    ``weights/``; null for an import. ``options`` override the model's inference protocol
    (``short_side``, ``max_size``, ``clip_length``, ...).
    """

    family: ProducerFamily = MISSING
    variant: str = ""
    checkpoint: str | None = MISSING
    tokenizer: str | None = None
    device: str = field(default="cpu", metadata=NOT_IN_KEY)
    precision: Precision = Precision.fp32  # type: ignore[attr-defined]
    predictions: str | None = None  # import: folder or zip in the submission layout
    scores: str | None = None  # import: optional per-frame scores file
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def is_import(self) -> bool:
        return self.family == "import"


@dataclass
class EngineConfig:
    """A propagation engine and the protocol it runs.

    ``scales: null`` takes the test-time scales a project weights file records (``lsvos
    train-vos --scale``), else 1.0. ``mask_unused_ids: false`` keeps every identity live (the
    challenge's AOT copy). ``backward_memory``: when the backward pass's first frame joins
    long-term memory - ``key_frame_step`` (the winners' AOT copy: at once, the re-added key frame
    restarts the gap at 0) or ``running_step`` (aot-benchmark 75e46fe: ``long_term_gap`` steps
    later; needs ``mask_unused_ids: true``); third_party/aot.md, "The backward pass".
    ``reset_between_passes``: the backward pass starts from a fresh memory instead of the
    challenge's carried one.
    """

    family: EngineFamily = MISSING
    variant: str = MISSING
    checkpoint: str = MISSING
    device: str = field(default="cpu", metadata=NOT_IN_KEY)
    precision: Precision = Precision.fp32  # type: ignore[attr-defined]
    scales: list[float] | None = field(default_factory=lambda: [1.0])
    flip: bool = False
    long_term_gap: int | None = 5  # null: the engine's own (SAM 2 has none)
    max_long_term: int | None = None
    reset_between_passes: bool = False
    max_long_edge: int | None = 1040
    ensemble_memory_update: bool = True
    mask_unused_ids: bool = True
    backward_memory: BackwardMemory = BackwardMemory.key_frame_step  # type: ignore[attr-defined]
    pack_expressions: bool = True


@dataclass
class ProduceNode:
    """A mask set made by a producer (``producers.<producer>``)."""

    kind: NodeKind = NodeKind.produce  # type: ignore[attr-defined]
    stage: str = field(default="", metadata=NOT_IN_KEY)  # a label to run stages selectively
    producer: str = MISSING

    @property
    def inputs(self) -> tuple[str, ...]:
        return ()


@dataclass
class VoteNode:
    """A pixel vote over ``sources`` (models.md / recipe2023.md: thresholds, pairs, odd rule).

    ``mode``: ``hard`` counts binary votes (the winners' rule): ``min_votes`` null is half of
    the votes, ``odd_min_votes`` null a strict majority. ``soft``: a pixel is foreground when
    the weighted mean of the sources' foreground probabilities reaches ``prob_threshold`` (in
    (0, 1], ``>=``; soft votes only, and they take no vote counts); a source that keeps only
    binary masks (imported PNGs, a propagation, a hard vote) votes its mask as 0 / 1.
    ``key_frame_rule``: how each expression's key frame is chosen, the first maximum over
    frames of: ``score`` the per-frame scores of the source ``keyframe_from`` (no key frames
    without it); ``mean_probability`` the fused probability averaged over the fused mask;
    ``agreement`` the mean pairwise IoU of the sources' masks (two or more sources). The last
    two take no ``keyframe_from``. ``sigmoid_twice_compat``: source 0's soft probabilities
    pass through a second sigmoid, as the challenge's script did (hard votes).
    """

    kind: NodeKind = NodeKind.vote  # type: ignore[attr-defined]
    stage: str = field(default="", metadata=NOT_IN_KEY)
    sources: list[str] = MISSING
    weights: list[float] | None = None
    min_votes: float | None = None
    pairs: bool = False
    odd: OddPolicy = OddPolicy.first_source  # type: ignore[attr-defined]
    odd_min_votes: float | None = None
    sigmoid_twice_compat: bool = False
    resize: bool = False
    keyframe_from: str | None = None
    mode: VoteMode = VoteMode.hard  # type: ignore[attr-defined]
    prob_threshold: float = 0.5
    key_frame_rule: KeyFrameRule = KeyFrameRule.score  # type: ignore[attr-defined]

    @property
    def inputs(self) -> tuple[str, ...]:
        return tuple(self.sources)

    @property
    def probability_sources(self) -> tuple[str, ...]:
        """The sources whose soft probabilities this vote reads: every source of a soft vote
        or of the ``mean_probability`` rule, else source 0 under ``sigmoid_twice_compat``."""
        if self.mode == "soft" or self.key_frame_rule == "mean_probability":
            return tuple(self.sources)
        return tuple(self.sources[:1]) if self.sigmoid_twice_compat else ()


@dataclass
class PropagateNode:
    """Propagation of ``source``'s key-frame masks by ``engines.<engine>``, forward and back.

    ``keyframe_from``: the node whose key frames (or per-frame scores) choose the key frame;
    default ``source``.
    """

    kind: NodeKind = NodeKind.propagate  # type: ignore[attr-defined]
    stage: str = field(default="", metadata=NOT_IN_KEY)
    source: str = MISSING
    engine: str = MISSING
    keyframe_from: str | None = None

    @property
    def inputs(self) -> tuple[str, ...]:
        extra = self.keyframe_from
        return (self.source,) if extra in (None, self.source) else (self.source, extra)

    @property
    def key_frame_node(self) -> str:
        return self.keyframe_from or self.source


NodeConfig = ProduceNode | VoteNode | PropagateNode
NODE_TYPES: dict[str, type[ProduceNode] | type[VoteNode] | type[PropagateNode]] = {
    "produce": ProduceNode,
    "vote": VoteNode,
    "propagate": PropagateNode,
}


@dataclass
class RecipeConfig:
    """A graph of mask sets and the node packaged as the submission.

    In the schema ``nodes`` holds plain mappings; :func:`compose_config` types each by its
    ``kind``. ``package_format``: the submission zip's layout; null = the dataset's own (MeViS
    zips for ``mevis``, Ref-YouTube-VOS zips otherwise), and a value that does not fit the
    dataset is refused.
    """

    name: str = MISSING
    description: str = ""
    nodes: dict[str, Any] = field(default_factory=dict)
    submission: str = MISSING
    package_format: PackageFormat | None = None


@dataclass
class RuntimeConfig:
    """Where outputs go and how work is spread (``dask_address``: an existing Dask scheduler or
    Ray cluster; None starts a local one).

    The compute budget: ``workers`` concurrent (node, video) tasks, each computing with
    ``threads_per_worker`` intra-op threads (torch and OpenCV); null takes the cores this
    process may use (``os.sched_getaffinity``) divided among the workers, at least 1, so that
    workers x threads = the machine's cores (:mod:`pipeline.orchestration.budget`).
    """

    output_root: str = "outputs"
    run_name: str | None = None
    workers: int = 2
    threads_per_worker: int | None = None
    task_runner: TaskRunnerKind = TaskRunnerKind.thread  # type: ignore[attr-defined]
    dask_address: str | None = None
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
) -> LsvosConfig:
    """Compose ``configs/<config_name>.yaml`` with Hydra overrides into a typed config.

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
        OmegaConf.resolve(cfg)
        missing = sorted(OmegaConf.missing_keys(cfg))
        if missing:  # every one of them, not only the first that to_object meets
            raise UserError(
                f"{len(missing)} configuration value(s) must be set (key=value on the command "
                "line, e.g. producers.soc.checkpoint=/ckpt/soc.pth):\n"
                + "\n".join(f"  {key}" for key in missing)
            )
        typed = OmegaConf.to_object(cfg)
    except (HydraException, OmegaConfBaseException, ValueError) as err:
        raise UserError(f"invalid configuration: {_describe_error(err)}") from err
    finally:
        GlobalHydra.instance().clear()
    assert isinstance(typed, LsvosConfig)
    typed.recipe.nodes = {
        name: typed_node(f"recipe.nodes.{name}", raw) for name, raw in typed.recipe.nodes.items()
    }
    return typed


def typed_node(where: str, raw: Any) -> NodeConfig:
    """One recipe node as the dataclass of its ``kind``; unknown keys and bad values name it."""
    if isinstance(raw, (ProduceNode, VoteNode, PropagateNode)):
        return raw
    if not isinstance(raw, (dict, DictConfig)):
        raise UserError(f"{where}: expected a mapping with a 'kind', not {raw!r}")
    kind = raw.get("kind")
    if kind not in NODE_TYPES:
        raise UserError(f"{where}.kind must be one of {sorted(NODE_TYPES)}, not {kind!r}")
    try:
        node = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(NODE_TYPES[kind]), raw))
    except OmegaConfBaseException as err:
        key = f"{where}.{err.full_key}" if getattr(err, "full_key", None) else where
        wrong = _wrong_value(err)
        detail = wrong or getattr(err, "msg", err)
        raise UserError(f"invalid configuration: {key}: {detail}") from err
    return node  # type: ignore[return-value]


def plain_data(value: Any) -> Any:
    """A JSON-able copy of a typed config (enums as their values), for ``config.json``."""
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain_data(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, dict):
        return {str(k): plain_data(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain_data(v) for v in value]
    return value


# --------------------------------------------------------------------------------------------
# messages for values of the wrong type

_TYPE_NAMES = {int: "an int", float: "a float", bool: "a bool", str: "a string"}
_EXPECTED = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}


def _expected(tp: Any) -> str | None:
    """What a field of annotation ``tp`` accepts, in words (None when it cannot tell)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        parts = [_expected(a) for a in args if a is not type(None)]
        if None in parts:
            return None
        text = " or ".join(p for p in parts if p)
        return f"{text} or null" if type(None) in args else text
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return "one of " + ", ".join(str(m.value) for m in tp)
    if origin in (list, tuple, Sequence):
        return "a list"
    if origin is dict or tp is dict:
        return "a mapping"
    if isinstance(tp, type) and is_dataclass(tp):
        return f"a mapping of {tp.__name__} keys"
    return _EXPECTED.get(tp)


def _field_type(owner: Any, key: Any) -> Any:
    if not (isinstance(owner, type) and is_dataclass(owner)) or not isinstance(key, str):
        return None
    try:
        return typing.get_type_hints(owner).get(key)
    except (NameError, TypeError):
        return None


def _wrong_value(err: BaseException) -> str | None:
    """``'abc' is not an int (expected an integer)`` for a ValidationError of a typed field."""
    if not isinstance(err, ValidationError):
        return None
    tp = _field_type(getattr(err, "object_type", None), getattr(err, "key", None))
    expected = _expected(tp) if tp is not None else None
    if expected is None:
        return None
    value = getattr(err, "value", None)
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        plain = [a for a in typing.get_args(tp) if a is not type(None)]
        tp = plain[0] if len(plain) == 1 else tp
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        kind = f"a valid {tp.__name__}"
    else:
        kind = _TYPE_NAMES.get(tp, "of the expected type")
    return f"{value!r} is not {kind} (expected {expected})"


def _describe_error(err: BaseException) -> str:
    """A one-line reason for a composition error: for a value of the wrong type, the key, the
    value and what the key expects; else Hydra's message."""
    seen: set[int] = set()
    cause: BaseException | None = err
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        wrong = _wrong_value(cause)
        if wrong:
            key = getattr(cause, "full_key", None) or getattr(cause, "key", None)
            return f"{key}: {wrong}" if key else wrong
        cause = cause.__cause__ or cause.__context__
    return str(err)
