"""lsvos-2stage pipeline: everything that touches files, Prefect and Hydra, by concern.

- ``core/``: the ensemble as a library (datasets, mask sets, votes, key frames, submissions,
  scoring, atomic I/O); imports no Prefect, Hydra, OmegaConf or torch, and nothing else of
  ``pipeline``.
- ``orchestration/``: the typed configuration, the recipe graph, the plan and its cache keys,
  one module per node kind, the Prefect flow, serving and reports; imports ``core`` and
  ``adapters``.
- ``adapters/``: files to typed arguments for the libraries' builders (``models.build``,
  ``vos.build``): producers, engines, project weights, tokenizers, the parity runner; imports
  ``core``.
- ``training/``: training runs of the tiny models; ``commands/``: the thin ``lsvos``
  sub-commands; ``cli``: the entry point.
"""
