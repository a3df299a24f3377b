"""Semi-supervised VOS propagation engines (AOT, DeAOT) and the challenge protocol.

Pure PyTorch: tensors in, tensors out; no files, Prefect or Hydra. Engines plug in through
:mod:`vos.engine` (the session protocol :mod:`vos.protocol` drives) and :mod:`vos.build` (the
registry and the one builder)."""
