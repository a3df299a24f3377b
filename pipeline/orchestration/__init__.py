"""Orchestration: typed configuration (``config``), the recipe graph (``recipe``), the pure plan
(``plan``) and its cache keys (``cache``, ``code_version``), the run's preparation
(``prepare``), one module per node kind (``nodes/``), packaging and scoring tasks, the Prefect
flow (``flow``), serving (``serve``), progress and reports.

May import ``pipeline.core``, ``pipeline.adapters``, Prefect, Hydra and OmegaConf; the libraries
(``models``, ``vos``) only through the adapters.
"""
