"""What a run carries to its tasks: one :class:`NodeJob` per node and the :class:`RunPlan`.

Plain, picklable, typed data: Prefect tasks (threads, processes, Dask workers) receive it whole,
never a Hydra object. Made by :mod:`pipeline.orchestration.plan`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pipeline.core.masks import MaskSet
from pipeline.orchestration.budget import resolve_budget
from pipeline.orchestration.config import (
    DatasetConfig,
    EngineConfig,
    LsvosConfig,
    NodeConfig,
    ProduceNode,
    ProducerConfig,
    PropagateNode,
    RuntimeConfig,
)

JOB_KINDS = ("produce", "import", "vote", "propagate")


@dataclass(frozen=True)
class NodeJob:
    """One node, with everything a task needs to compute it on a video.

    ``producer`` / ``engine``: the configuration of a produce / propagate node's model.
    ``keep_probs``: the plan's flag that a downstream vote reads this node's soft probabilities.
    ``input_dirs``: the mask-set folder of each input node. ``dataset``: the split, its root
    resolved.
    """

    name: str
    node: NodeConfig
    key: str
    out_dir: str
    input_dirs: dict[str, str]
    dataset: DatasetConfig
    producer: ProducerConfig | None = None
    engine: EngineConfig | None = None
    keep_probs: bool = False

    @property
    def kind(self) -> str:
        """``produce``, ``import`` (a produce node whose producer imports predictions),
        ``vote`` or ``propagate``."""
        if isinstance(self.node, ProduceNode) and self.producer and self.producer.is_import:
            return "import"
        return str(self.node.kind)

    @property
    def stage(self) -> str:
        return self.node.stage

    @property
    def inputs(self) -> tuple[str, ...]:
        return self.node.inputs

    def is_complete(self, video: str) -> bool:
        """Whether this node's mask set holds a complete output for ``video``."""
        return MaskSet.is_mask_set(self.out_dir) and MaskSet(self.out_dir).is_complete(video)

    def required_producer(self) -> ProducerConfig:
        assert self.producer is not None, f"{self.name}: a produce node without a producer"
        return self.producer

    def required_engine(self) -> EngineConfig:
        assert isinstance(self.node, PropagateNode) and self.engine is not None, self.name
        return self.engine


@dataclass
class RunPlan:
    """The whole run, decided before any work: ``todo`` lists, per node, the videos to compute."""

    cfg: LsvosConfig
    recipe_name: str
    run_dir: str
    dataset: DatasetConfig
    dataset_id: str
    videos: list[str]
    jobs: list[NodeJob]
    todo: dict[str, list[str]]
    submission_node: str | None
    package_format: str
    has_ground_truth: bool
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)

    @property
    def progress(self) -> bool:
        return self.runtime.progress

    @property
    def packages_submission(self) -> bool:
        return self.submission_node is not None

    @property
    def scores(self) -> bool:
        return self.has_ground_truth and self.runtime.score

    def job(self, name: str) -> NodeJob:
        return next(j for j in self.jobs if j.name == name)

    def describe(self) -> str:
        todo = sum(len(v) for v in self.todo.values())
        total = len(self.jobs) * len(self.videos)
        return (
            f"recipe {self.recipe_name}: {len(self.jobs)} nodes x {len(self.videos)} videos; "
            f"{todo} of {total} (node, video) outputs to compute, {total - todo} cached; "
            f"{resolve_budget(self.runtime).describe()}; run folder {self.run_dir}"
        )
