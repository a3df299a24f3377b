"""The README is true to the letter (issue 'What a team sees', item 6): its demo table is the
table the demo prints, every command it names exists, every ``lsvos run`` example composes, the
official example reports all its missing paths at once, and the re-run examples recompute what
their comments say."""

from __future__ import annotations

import argparse
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


def readme_commands(program: str = "lsvos") -> list[list[str]]:
    """Every ``program ...`` line of the README's bash blocks, continuation lines joined and
    comments dropped, split into words."""
    text = (REPO / "README.md").read_text()
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            words = line.split("#", 1)[0].split()
            if words[:1] == [program]:
                commands.append(words)
    return commands


def test_every_command_the_readme_names_exists() -> None:
    from pipeline.cli import build_parser

    parser = build_parser()
    (subparsers,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    named = set(re.findall(r"`lsvos ([a-z][a-z-]*)", (REPO / "README.md").read_text()))
    named |= {words[1] for words in readme_commands()}
    assert named - {"COMMAND"} <= set(subparsers.choices), named - set(subparsers.choices)


def _run_overrides(words: list[str]) -> list[str]:
    return [w for w in words[2:] if "=" in w and not w.startswith("-")]


def test_every_run_override_in_the_readme_is_a_real_key() -> None:
    """Each ``lsvos run`` example composes (an unknown key or group would fail here)."""
    from pipeline.core.errors import UserError
    from pipeline.orchestration.config import compose_config

    runs = [w for w in readme_commands() if w[1] == "run"]
    assert len(runs) >= 4
    for words in runs:
        overrides = _run_overrides(words)
        try:
            compose_config(overrides)
        except UserError as err:  # an example that elides ("...") values it must set
            assert "..." in words and "must be set" in str(err), str(err)
            unset = [line.strip() for line in str(err).splitlines()[1:]]
            compose_config([*overrides, *(f"{key}=/elided" for key in unset)])


def test_the_readme_official_run_reports_every_missing_path_at_once() -> None:
    """The README's lsvos2023 example on a machine without its files: one error names the
    dataset root and every checkpoint and tokenizer path the command passes."""
    from pipeline.core.errors import UserError
    from pipeline.orchestration.config import compose_config
    from pipeline.orchestration.prepare import check_run

    (words,) = [w for w in readme_commands() if w[1] == "run" and "recipe=lsvos2023" in w]
    overrides = _run_overrides(words)
    paths = [v for o in overrides for k, v in [o.split("=", 1)] if v.startswith("/")]
    assert len(paths) >= 10
    if any(Path(p).exists() for p in paths):
        pytest.skip("this machine has some of the README's example paths")
    with pytest.raises(UserError) as err:
        check_run(compose_config(overrides))
    message = str(err.value)
    for key, value in (o.split("=", 1) for o in overrides):
        if value.startswith("/"):
            assert f"{key}: " in message and value in message, (key, value)


def test_the_readme_rerun_examples_recompute_what_they_say(tmp_path: Path) -> None:
    """``--stages stage1`` selects stage I only; flipping DeAOT's flip changes the keys of
    stage2 and final only (the card's graph, here on the demo's tiny models)."""
    from pipeline.orchestration.config import compose_config
    from pipeline.orchestration.recipe import Recipe
    from tests.pipeline.flow_fixtures import demo_with_imports, plan_keys

    assert any("--stages" in w and "stage1" in w for w in readme_commands())
    readme = (REPO / "README.md").read_text()
    assert "engines.deaot.flip=false      # recomputes stage2 and final only" in readme
    overrides = demo_with_imports(tmp_path)
    cfg = compose_config(overrides)
    recipe = Recipe.from_config(cfg)
    assert {n.name for n in recipe.select(stages=["stage1"])} == {
        n.name for n in recipe.nodes if n.stage == "stage1"
    }
    flip = not cfg.engines["deaot"].flip
    before = plan_keys(cfg)
    after = plan_keys(compose_config([*overrides, f"engines.deaot.flip={str(flip).lower()}"]))
    assert {n for n in before if before[n] != after[n]} == {"stage2", "final"}
