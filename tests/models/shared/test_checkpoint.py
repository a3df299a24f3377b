from __future__ import annotations

import argparse
import pickle
import re
from pathlib import Path

import pytest
import torch
from torch import nn

from models.shared.checkpoint import (
    CheckpointError,
    KeyMismatchError,
    RenameRule,
    SkipRule,
    convert_state_dict,
    extract_state_dict,
    load_state_strict,
    read_checkpoint,
)


class _Evil:
    def __reduce__(self):  # pragma: no cover - must never run
        return (print, ("arbitrary code ran",))


def test_reads_weights_and_allow_listed_namespace(tmp_path: Path) -> None:
    path = tmp_path / "ok.pth"
    torch.save({"model": {"w": torch.ones(2)}, "args": argparse.Namespace(lr=1.0)}, path)
    ckpt = read_checkpoint(path)
    assert torch.equal(extract_state_dict(ckpt)["w"], torch.ones(2))
    assert ckpt["args"].lr == 1.0


def test_refuses_arbitrary_pickled_object(tmp_path: Path, capsys) -> None:
    path = tmp_path / "evil.pth"
    torch.save({"model": {"w": torch.ones(2)}, "payload": _Evil()}, path, pickle_protocol=2)
    with pytest.raises(CheckpointError, match="refusing to load"):
        read_checkpoint(path)
    assert "arbitrary code ran" not in capsys.readouterr().out


def test_refuses_plain_pickle_file(tmp_path: Path) -> None:
    path = tmp_path / "raw.pkl"
    path.write_bytes(pickle.dumps(_Evil()))
    with pytest.raises(CheckpointError, match=re.escape(path.name)):
        read_checkpoint(path)


def test_missing_file_names_path(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"nope\.pth"):
        read_checkpoint(tmp_path / "nope.pth")


def test_safetensors_round_trip(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    path = tmp_path / "w.safetensors"
    save_file({"a": torch.arange(3.0)}, str(path))
    assert torch.equal(read_checkpoint(path)["a"], torch.arange(3.0))


def test_strict_load_lists_every_offending_key() -> None:
    model = nn.Sequential(nn.Linear(2, 3), nn.Linear(3, 1))
    state = {
        "0.weight": torch.zeros(3, 2),
        "0.bias": torch.zeros(4),  # wrong shape
        "1.weight": torch.zeros(1, 3),
        "extra.weight": torch.zeros(1),
    }
    with pytest.raises(KeyMismatchError) as info:
        load_state_strict(model, state, what="test ckpt")
    err = info.value
    assert err.missing == ["1.bias"]
    assert err.unexpected == ["extra.weight"]
    assert len(err.mismatched) == 1 and "0.bias" in err.mismatched[0]
    assert "1.bias" in str(err) and "extra.weight" in str(err)


def test_strict_load_copies_values() -> None:
    model = nn.Linear(2, 1)
    load_state_strict(model, {"weight": torch.ones(1, 2), "bias": torch.full((1,), 3.0)})
    assert model.bias.item() == 3.0


def test_convert_renames_skips_and_checks_tied_keys() -> None:
    shared = torch.randn(2)
    official = {
        "backbone.0.body.x": torch.ones(1),
        "head.0.w": shared,
        "head_tied.0.w": shared,
        "text.position_ids": torch.arange(4),
    }
    state, skipped = convert_state_dict(
        official,
        rename=[
            RenameRule(r"^backbone\.0\.body\.", "backbone."),
            RenameRule(r"^head_tied", "head"),
        ],
        skip=[SkipRule(r".*position_ids", "derived from the config")],
    )
    assert set(state) == {"backbone.x", "head.0.w"}
    assert skipped == {"text.position_ids": "derived from the config"}
    with pytest.raises(CheckpointError, match="both map"):
        convert_state_dict({"a": torch.ones(1), "b": torch.zeros(1)}, rename=lambda k: "same")
