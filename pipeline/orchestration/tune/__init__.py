"""Recipe search (``lsvos tune``): choose a vote over a finished run's cached node mask sets by
cross-validated local J&F, and write it as a recipe that ``lsvos run`` takes unchanged.

One module per concern: :mod:`.run_nodes` (a finished run's nodes and their mask-set folders),
:mod:`.evaluate` (a vote candidate scored from tracks read once, in memory), :mod:`.space` (the
candidates), :mod:`.search` (beam or exhaustive search, k-fold cross-validation),
:mod:`.recipe_file` (the chosen recipe as YAML). Nothing here imports torch or Prefect.
"""
