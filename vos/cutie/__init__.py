"""Cutie (hkchengrex/Cutie, MIT; CVPR 2024) as a propagation engine of :mod:`vos.engine`.

- :mod:`vos.cutie.spec`: the network variants (``base``, ``small``) and the inference settings;
- :mod:`vos.cutie.blocks`, :mod:`vos.cutie.transformer`, :mod:`vos.cutie.network`: the network,
  parameter names equal to the official state dict's keys;
- :mod:`vos.cutie.convert`: official state dict -> network, strict key accounting;
- :mod:`vos.cutie.memory`, :mod:`vos.cutie.inference`: the official ``InferenceCore`` semantics
  for one set of objects;
- :mod:`vos.cutie.engine`: the engine / session adapter and ``build_cutie_engine``;
- :mod:`vos.cutie.parity`: the parity runner of the ``cutie`` family.
"""
