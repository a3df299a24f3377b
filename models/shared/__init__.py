"""Plumbing shared by both libraries, ``models/`` and ``vos/``: checkpoint reading and strict key
accounting (:mod:`~models.shared.checkpoint`), the in-memory parity case
(:mod:`~models.shared.parity_case`), the 2-D and video Swin backbones
(:mod:`~models.shared.swin`, :mod:`~models.shared.video_swin`) and the strict loader of config
dataclasses (:mod:`~models.shared.typed`).

May import: torch, numpy and the standard library only. ``vos/`` imports nothing else from
``models/`` (tests/test_layering.py enforces both).
"""
