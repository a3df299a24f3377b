"""One node on one video, one module per job kind: ``produce``, ``import_predictions``,
``vote``, ``propagate``; :mod:`~pipeline.orchestration.nodes.run` dispatches to them.

Each reads its inputs' mask sets (and frames where needed), computes, writes the node's mask set
for the video and marks the video complete last, so an interrupted task leaves nothing visible.
This ``__init__`` imports nothing: a kind's code version (its import closure) covers only what
that kind runs.
"""
