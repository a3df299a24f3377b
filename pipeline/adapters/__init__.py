"""Adapters from files to the libraries: read checkpoints, project weights files and tokenizer
files, and map configuration to the typed arguments of ``models.build`` and ``vos.build``
(producers, engines, weights, tokenize), plus the parity-case runner.

May import ``pipeline.core``, ``models`` and ``vos``; never Prefect or Hydra.
"""
