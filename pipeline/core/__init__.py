"""The ensemble core, usable as a library without Prefect or Hydra: dataset readers and the
synthetic benchmarks (``data``), mask sets and imports (``masks``), the pixel vote, key frames,
submission packaging and validation, scoring, atomic I/O and process pools.

May import only numpy, opencv, Pillow, pycocotools, scipy and itself (no torch, Prefect, Hydra
or OmegaConf, no other part of ``pipeline``); ``tests/pipeline/test_core_layering.py`` checks.
"""
