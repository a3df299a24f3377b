"""Datasets: Ref-YouTube-VOS, MeViS and Ref-DAVIS17 readers, and the synthetic benchmark."""

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

__all__ = [
    "FORMATS",
    "DAVISDataset",
    "Expression",
    "MeViSDataset",
    "RVOSDataset",
    "SplitMeta",
    "Video",
    "YTVOSDataset",
    "open_dataset",
    "read_split_meta",
    "synthetic_vocabulary",
    "write_synthetic_benchmark",
]
