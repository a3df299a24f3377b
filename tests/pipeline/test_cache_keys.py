"""Cache keys come from the final job: every schema field that can change an output changes the
key (the schema is walked, not listed), plan flags count, the code version follows each kind's
imports, and nothing depends on where the outputs, dataset or weights are mounted."""

from __future__ import annotations

import enum
import os
import shutil
import types
import typing
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

import pytest

from pipeline.orchestration import code_version as versions
from pipeline.orchestration.cache import FileIdentities, node_key
from pipeline.orchestration.config import (
    ProduceNode,
    ProducerConfig,
    PropagateNode,
    VoteNode,
    compose_config,
)
from pipeline.orchestration.nodes.run import run_node_video
from pipeline.orchestration.prepare import prepare_run
from tests.pipeline.flow_fixtures import demo_with_imports, plan_keys

ROOT = Path(__file__).resolve().parents[2]


def changed(value: Any, hint: Any) -> Any:
    """A different value of the type ``hint`` (None, for an optional, becomes a value)."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        inner = next(a for a in typing.get_args(hint) if a is not type(None))
        return _example(inner) if value is None else changed(value, inner)
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return next(m for m in hint if m != value)
    if hint is bool:
        return not value
    if hint in (int, float):
        return value + 1
    if hint is str:
        return value + "x"
    if typing.get_origin(hint) is list:
        return [*value, _example(typing.get_args(hint)[0])]
    if typing.get_origin(hint) is dict:
        return {**value, "extra": 1}
    raise AssertionError(f"no changed value for {hint!r}")


def _example(hint: Any) -> Any:
    """Some value of the type ``hint``."""
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return next(iter(hint))
    if typing.get_origin(hint) is list:
        return [_example(typing.get_args(hint)[0])]
    if typing.get_origin(hint) is dict:
        return {"extra": 1}
    return {bool: True, int: 3, float: 0.25, str: "x"}[hint]


def _walk(config: Any) -> list[tuple[str, Any, bool]]:
    """(field, changed copy, whether the key must change) for every field of ``config``."""
    hints = typing.get_type_hints(type(config))
    out = []
    for f in fields(config):
        if f.name == "kind":
            continue
        value = getattr(config, f.name)
        out.append((f.name, replace(config, **{f.name: changed(value, hints[f.name])}), f))
    return [(name, copy, f.metadata.get("key", True)) for name, copy, f in out]


def _key(node: Any, kind: str, files: FileIdentities, **extra: Any) -> str:
    args: dict[str, Any] = {
        "kind": kind,
        "producer": None,
        "engine": None,
        "keep_probs": False,
        "input_keys": ["a" * 16],
        "dataset_id": "ytvos-valid-00000000",
        "files": files,
    }
    args.update(extra)
    return node_key(node, **args)


@pytest.fixture(scope="module")
def demo_configs() -> dict[str, Any]:
    cfg = compose_config(["recipe=demo"])
    return {"producer": cfg.producers["sgmg"], "engine": cfg.engines["aot"]}


@pytest.mark.parametrize(
    ("kind", "node"),
    [
        ("produce", ProduceNode(producer="sgmg")),
        ("vote", VoteNode(sources=["a", "b"])),
        ("propagate", PropagateNode(source="a", engine="aot")),
    ],
    ids=["produce", "vote", "propagate"],
)
def test_every_output_field_changes_the_key(
    kind: str, node: Any, demo_configs: dict[str, Any], tmp_path: Path
) -> None:
    files = FileIdentities(tmp_path)
    model: dict[str, Any] = {}
    if kind == "produce":
        model = {"producer": demo_configs["producer"]}
    elif kind == "propagate":
        model = {"engine": demo_configs["engine"]}
    base = _key(node, kind, files, **model)
    for name, copy, counts in _walk(node):
        assert (_key(copy, kind, files, **model) != base) == counts, f"{kind} node field {name}"
    for slot, settings in model.items():
        for name, copy, counts in _walk(settings):
            other = _key(node, kind, files, **{slot: copy})
            assert (other != base) == counts, f"{kind}: {slot}.{name}"
    assert _key(node, kind, files, keep_probs=True, **model) != base
    assert _key(node, kind, files, input_keys=["b" * 16], **model) != base
    assert _key(node, kind, files, dataset_id="ytvos-valid-11111111", **model) != base


def test_a_changed_checkpoint_content_changes_the_key(tmp_path: Path) -> None:
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(b"one")
    producer = ProducerConfig(family="sgmg", checkpoint=str(weights), tokenizer=None)  # type: ignore[arg-type]
    node = ProduceNode(producer="p")
    before = _key(node, "produce", FileIdentities(tmp_path), producer=producer)
    moved = tmp_path / "elsewhere.safetensors"
    shutil.copy(weights, moved)
    same = replace(producer, checkpoint=str(moved))
    assert _key(node, "produce", FileIdentities(tmp_path), producer=same) == before
    weights.write_bytes(b"two")
    assert _key(node, "produce", FileIdentities(tmp_path), producer=producer) != before


def test_file_identities_are_memoised_on_disk(tmp_path: Path) -> None:
    weights = tmp_path / "w.bin"
    weights.write_bytes(b"x" * 1000)
    files = FileIdentities(tmp_path / "out")
    first = files.identity(str(weights))
    files.save()
    assert (tmp_path / "out" / "cache" / "file-identities.json").is_file()
    assert FileIdentities(tmp_path / "out").identity(str(weights)) == first
    assert files.identity(str(tmp_path / "absent")) == "missing"


@pytest.mark.parametrize("kind", sorted(versions.KIND_MODULES))
def test_editing_any_module_a_kind_imports_changes_its_version(kind: str) -> None:
    closure = versions.import_closure(versions.KIND_MODULES[kind])
    contents = {p: p.read_bytes() for p in closure}
    base = versions.files_version(kind, closure, contents.__getitem__)
    for path in closure:
        edited = {**contents, path: contents[path] + b"\n# edited\n"}
        assert versions.files_version(kind, closure, edited.__getitem__) != base, path


def test_each_kind_imports_what_it_runs_and_nothing_else() -> None:
    def rel(kind: str) -> set[str]:
        closure = versions.import_closure(versions.KIND_MODULES[kind])
        return {str(p.relative_to(ROOT)) for p in closure}

    produce, vote, propagate = rel("produce"), rel("vote"), rel("propagate")
    assert {"pipeline/adapters/producers.py", "models/build.py", "models/sgmg/model.py"} <= produce
    assert {"models/uninext/model.py", "models/family/model.py"} <= produce
    assert {"pipeline/adapters/engines.py", "vos/session.py", "vos/protocol.py"} <= propagate
    assert "pipeline/core/vote.py" in vote
    assert not any(p.startswith(("models/", "vos/")) for p in vote)
    assert not any(p.startswith("vos/") for p in produce)
    assert not any(p.startswith("models/sgmg") for p in propagate)


def test_plan_flags_are_in_the_key(tmp_path: Path) -> None:
    """vit_huge keeps its probabilities only for lsvos2023's sigmoid-twice vote: turning that
    vote's flag off gives vit_huge another key, so a warm cache without probabilities is never
    read by a vote that needs them."""
    data = tmp_path / "synth"
    overrides = ["recipe=lsvos2023", "dataset=synth", f"dataset.root={data}"]
    overrides += [f"runtime.output_root={tmp_path / 'out'}"]
    for name in ("soc", "mutr", "referformer_ft", "vit_huge", "convnext"):
        path = tmp_path / f"{name}.pth"
        path.write_bytes(name.encode())
        overrides.append(f"producers.{name}.checkpoint={path}")
    for name in ("aot", "deaot"):
        path = tmp_path / f"{name}.pth"
        path.write_bytes(name.encode())
        overrides.append(f"engines.{name}.checkpoint={path}")
    from pipeline.core.data import write_synthetic_benchmark

    write_synthetic_benchmark(data, seed=0, videos=1, sizes=((32, 48),))
    with_flag = plan_keys(compose_config(overrides))
    without = plan_keys(compose_config([*overrides, "recipe.nodes.v2.sigmoid_twice_compat=false"]))
    assert with_flag["vit_huge"] != without["vit_huge"]
    assert with_flag["convnext"] == without["convnext"]  # source 1 keeps no probabilities


def test_a_copied_outputs_folder_recomputes_nothing(tmp_path: Path) -> None:
    """The whole work folder (split, predictions, engine weights, outputs) copied elsewhere,
    with fresh modification times: the copy's plan finds every (node, video) complete."""
    first = tmp_path / "first"
    cfg = compose_config(demo_with_imports(first, videos=1))
    plan = prepare_run(cfg, nodes=["stage1"], run_name="a")
    for job in plan.jobs:
        for video in plan.todo[job.name]:
            run_node_video(job, video)
    assert prepare_run(cfg, nodes=["stage1"], run_name="b").todo == {j.name: [] for j in plan.jobs}
    second = tmp_path / "second"
    shutil.copytree(first, second, copy_function=shutil.copy)  # new mtimes, as cp does
    for path in second.rglob("*"):
        os.utime(path)
    copied = prepare_run(compose_config(demo_with_imports(second, videos=1)), nodes=["stage1"])
    assert copied.todo == {j.name: [] for j in copied.jobs}
    assert [j.key for j in copied.jobs] == [j.key for j in plan.jobs]
