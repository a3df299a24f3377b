"""Datasets: Ref-YouTube-VOS, MeViS and Ref-DAVIS17 readers, and the synthetic benchmark."""

from pipeline.data.synth import synthetic_vocabulary, write_synthetic_benchmark

__all__ = ["synthetic_vocabulary", "write_synthetic_benchmark"]
