"""lsvos-2stage pipeline: datasets, mask sets, votes, propagation driving, submissions, scoring,
the Prefect flow and the ``lsvos`` command line. The only package that touches files."""
