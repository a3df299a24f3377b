"""``lsvos run``'s argument handling (no flow is run)."""

from __future__ import annotations

import re

import pytest

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


def test_help_lists_recipes_stages_and_groups_from_configs(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``lsvos run --help`` names every recipe with its stages and nodes, and every group's
    options, as ``configs/`` has them (issue 'What a team sees', item 4)."""
    from pipeline.orchestration.config import CONFIG_DIR, compose_config

    with pytest.raises(SystemExit):
        build_parser().parse_args(["run", "--help"])
    text = capsys.readouterr().out
    for group in ("dataset", "engine", "producer", "runtime", "recipe"):
        for option in (CONFIG_DIR / group).glob("*.yaml"):
            assert re.search(rf"\b{re.escape(option.stem)}\b", text), (group, option.stem)
    demo = text[text.index("  demo ") :].split("\n  lsvos2023")[0]
    listed = dict(re.findall(r"stage (\w+): ([\w, ]+)", demo))
    nodes = compose_config(["recipe=demo"]).recipe.nodes
    expected: dict[str, list[str]] = {}
    for name, node in nodes.items():
        expected.setdefault(node.stage, []).append(name)
    assert {k: v.split(", ") for k, v in listed.items()} == expected
