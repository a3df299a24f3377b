"""The base of the ReferFormer / MUTR / SOC family: config, shared parts, the trunk network,
official-checkpoint loader, producer, training objective and parity runner.

The leaves (:mod:`models.referformer`, :mod:`models.mutr`, :mod:`models.soc`) assemble their
networks from these parts; this package imports none of them (``tests/test_layering.py``).
"""
