"""One module per ``lsvos`` sub-command.

Each module defines ``NAME`` (the sub-command), ``HELP`` (one line), ``add_arguments(parser)``
and ``run(args) -> int`` (the exit status). :mod:`pipeline.cli` discovers them, so adding a
command never edits the CLI itself. Keep imports of heavy libraries inside ``run``, and keep
the work itself in ``orchestration``, ``training`` or ``core``: a command parses, calls, prints.
"""
