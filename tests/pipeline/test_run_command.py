"""``lsvos run``'s argument handling (no flow is run)."""

from __future__ import annotations

from pipeline.cli import build_parser
from pipeline.commands.run import split_overrides


def _parse(*argv: str):
    args = build_parser().parse_args(["run", *argv])
    split_overrides(args)
    return args


def test_overrides_after_a_node_list_stay_overrides() -> None:
    args = _parse("--nodes", "sgmg", "producers.sgmg.checkpoint=/ckpt/s.pth")
    assert args.nodes == ["sgmg"]
    assert args.overrides == ["producers.sgmg.checkpoint=/ckpt/s.pth"]
    args = _parse("recipe=card", "--stages", "stage2", "engines.deaot.flip=false")
    assert args.stages == ["stage2"]
    assert args.overrides == ["recipe=card", "engines.deaot.flip=false"]
    args = _parse("--refresh-nodes", "v1", "v2", "runtime.workers=1")
    assert args.refresh_nodes == ["v1", "v2"] and args.overrides == ["runtime.workers=1"]


def test_plain_lists_are_kept() -> None:
    args = _parse("--nodes", "v1", "stage1")
    assert args.nodes == ["v1", "stage1"] and args.overrides == [] and args.stages is None
