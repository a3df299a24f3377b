"""RVOS models (pure PyTorch): tensors in, tensors out; no files, Prefect or Hydra."""
