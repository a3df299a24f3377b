"""Building blocks of AOT and DeAOT: attention (global and 15x15 local), LSTT and GPM stacks,
the FPN decoder, position embedding and small helpers.

Layout convention in this package: token sequences are batch-first ``B x L x C`` (L = h*w,
row-major over the stride-16 grid); maps are ``B x C x h x w``. Parameter names follow the
official checkpoints (yoxu515/aot-benchmark ``networks/layers/*.py``) so converters stay thin.
"""
