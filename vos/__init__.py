"""Semi-supervised VOS propagation engines (AOT, DeAOT) and the challenge protocol.

Pure PyTorch: tensors in, tensors out; no files, Prefect or Hydra."""
