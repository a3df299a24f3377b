"""The README's demo table is the table the demo prints (issue 'What a team sees', item 6)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def readme_demo_table() -> str:
    text = (REPO / "README.md").read_text()
    match = re.search(r"^\| node \| stage \| kind \| J&F \|.*?(?=\n\n)", text, re.M | re.S)
    assert match, "README.md has no demo table"
    return match.group(0).strip()


def report_table(report_md: Path) -> str:
    text = report_md.read_text()
    section = text[text.index("## J&F per node") :]
    match = re.search(r"^\| node \|.*?(?=\n\n|\Z)", section, re.M | re.S)
    assert match, f"{report_md} has no J&F table"
    return match.group(0).strip()


def test_readme_table_has_every_demo_node_in_graph_order() -> None:
    from pipeline.orchestration.config import compose_config
    from pipeline.orchestration.recipe import Recipe

    rows = [line.split("|")[1].strip() for line in readme_demo_table().splitlines()[2:]]
    recipe = Recipe.from_config(compose_config(["recipe=demo"]))
    assert rows == [node.name for node in recipe.nodes]


@pytest.mark.slow
def test_readme_table_is_what_the_demo_prints(tmp_path: Path) -> None:
    """The demo recipe run here (the same graph, tiny models and benchmark as ``lsvos demo``)."""
    from pipeline.cli import main

    outputs = tmp_path / "outputs"
    assert main(["run", "recipe=demo", "dataset=synth", f"runtime.output_root={outputs}"]) == 0
    (report_md,) = outputs.glob("runs/*/report.md")
    assert report_table(report_md) == readme_demo_table()
