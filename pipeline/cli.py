"""The ``lsvos`` command line: thin sub-commands over the pipeline's functions.

Sub-commands live in :mod:`pipeline.commands` (one module each, discovered here). Errors that
users can cause (bad paths, corrupt files, invalid configs) are raised as :class:`UserError`
and printed as one clear line with exit status 2, never as a bare traceback.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Sequence

from pipeline import commands
from pipeline.core.errors import UserError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lsvos",
        description="Two-stage RVOS ensemble: produce, vote, propagate, package, score.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{commands.__name__}.{info.name}")
        command = sub.add_parser(module.NAME, help=module.HELP, description=module.HELP)
        module.add_arguments(command)
        command.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args._argv = argv  # the command as typed (training commands record it with their weights)
    try:
        return int(args._run(args) or 0)
    except UserError as err:
        print(f"lsvos {args.command}: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # last resort: a write the filesystem refused, outside the writers
        import errno

        if err.errno not in {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC), errno.EROFS}:
            raise
        where = err.filename if err.filename is not None else "unknown path"
        print(f"lsvos {args.command}: error: {err.strerror}: {where}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"lsvos {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
