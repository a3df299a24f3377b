"""UNINEXT (CVPR 2023) for referring video object segmentation, in plain PyTorch.

Only the RVOS path of ``MasterBin-IIAU/UNINEXT@5ab0386`` is ported: backbone (ResNet-50,
ConvNeXt-L or ViT-H), BERT text encoder, GLIP bi-directional early fusion, a DINO-style two-stage
deformable transformer with an IoU head and a dot-product classifier, and the CondInst mask head.
See ``docs/uninext.md``.
"""
