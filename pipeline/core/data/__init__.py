"""Datasets: Ref-YouTube-VOS, MeViS and Ref-DAVIS17 readers, and the synthetic benchmarks."""

from pipeline.core.data.datasets import (
    FORMATS,
    DAVISDataset,
    Expression,
    MeViSDataset,
    RVOSDataset,
    SplitMeta,
    Video,
    YTVOSDataset,
    open_dataset,
    read_split_meta,
)
from pipeline.core.data.synth import synthetic_vocabulary, write_synthetic_benchmark
from pipeline.core.data.synth_mevis import write_synthetic_mevis_benchmark
from pipeline.core.data.synth_motion import mevis_vocabulary

__all__ = [
    "FORMATS",
    "DAVISDataset",
    "Expression",
    "MeViSDataset",
    "RVOSDataset",
    "SplitMeta",
    "Video",
    "YTVOSDataset",
    "mevis_vocabulary",
    "open_dataset",
    "read_split_meta",
    "synthetic_vocabulary",
    "write_synthetic_benchmark",
    "write_synthetic_mevis_benchmark",
]
