"""Training runs of the tiny models: clip loaders over the dataset folders, the trainable model
specs, the runs behind ``lsvos train-rvos`` / ``lsvos train-vos`` and their histories (the pure
training code lives in ``models/train``, ``vos/train.py`` and ``vos/cutie/train.py``).

May import ``pipeline.core``, ``pipeline.adapters``, ``models`` and ``vos``; never Prefect or
Hydra. The commands in ``pipeline/commands`` only parse arguments and call in here.
"""
