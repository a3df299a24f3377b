"""What ``lsvos train-rvos`` and ``lsvos train-vos`` share: run arguments, the work folder, its
JSON-lines log and atomic checkpoints.

A training run lives in a work folder (``--work``, default ``<out>.work/``): a checkpoint is
replaced atomically every ``--checkpoint-every`` steps, so an interrupted run resumes from the
last one, and ``log.jsonl`` gets one JSON record per logged step (and per command that ran).
"""

from __future__ import annotations

import argparse
import io
import json
import shlex
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pipeline.core.io import atomic_write_bytes


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """The options every training command takes (seed, work folder, threads, evaluation)."""
    parser.add_argument("--seed", type=int, default=0, help="seed of weights and batches")
    parser.add_argument("--work", type=Path, help="checkpoint/log folder (default <out>.work)")
    parser.add_argument("--checkpoint-every", type=int, default=100, help="steps (default 100)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    parser.add_argument("--eval-data", type=Path, help="dataset root scored (default --data)")
    parser.add_argument("--eval-split", default="valid", help="split scored at the end")
    parser.add_argument("--no-eval", action="store_true", help="skip the final evaluation")
    parser.add_argument(
        "--eval-only", action="store_true", help="score existing --out weights, do not train"
    )


def work_folder(args: argparse.Namespace) -> Path:
    """``args.work`` or ``<out>.work/``, created."""
    work = args.work or args.out.with_name(args.out.name + ".work")
    work.mkdir(parents=True, exist_ok=True)
    return work


def append_log(work: Path, record: dict[str, Any]) -> None:
    """One JSON record appended to ``work/log.jsonl``."""
    with (work / "log.jsonl").open("a") as f:
        f.write(json.dumps(record) + "\n")


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """``torch.save`` written atomically (:func:`pipeline.core.io.atomic_write_bytes`)."""
    import torch

    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def command_line(args: argparse.Namespace) -> str:
    """The ``lsvos ...`` command of ``args`` (recorded with the weights): the arguments
    :func:`pipeline.cli.main` parsed, else this process's."""
    return "lsvos " + shlex.join(getattr(args, "_argv", sys.argv[1:]))


def join_history(commands: Iterable[str]) -> str:
    """The commands that trained a weights file, in order, as its ``lsvos.trained_with``."""
    return " && ".join(commands)


def split_history(trained_with: str) -> list[str]:
    """The commands of a ``lsvos.trained_with`` value (:func:`join_history`'s inverse)."""
    return [c for c in trained_with.split(" && ") if c]
