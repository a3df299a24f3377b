"""Every engine family builds through the pipeline's adapter from an official-layout file, with
its shipped config's settings (configs/engine/*.yaml), and a wrong variant or setting is one
line naming the file."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from pipeline.adapters.engines import engine_from_config, engine_problems
from pipeline.core.errors import UserError
from pipeline.orchestration.config import compose_config
from vos.engine import PropagationEngine


def _engine_config(option: str, checkpoint: Path):
    cfg = compose_config(
        [f"+engine@engines.extra={option}", f"engines.extra.checkpoint={checkpoint}"]
    )
    return replace(cfg.engines["extra"], device="cpu", precision="fp32")


def _official_cutie_small(path: Path) -> Path:
    from vos.cutie.network import CutieNetwork
    from vos.cutie.spec import get_cutie_variant

    torch.manual_seed(0)
    torch.save(CutieNetwork(get_cutie_variant("small")).state_dict(), path)  # a bare state dict
    return path


def _official_sam2_tiny(path: Path) -> Path:
    from vos.sam2.model import Sam2Model
    from vos.sam2.spec import get_sam2_variant

    torch.manual_seed(0)
    torch.save({"model": Sam2Model(get_sam2_variant("sam2.1_hiera_tiny")).state_dict()}, path)
    return path


def test_cutie_small_builds_from_its_config_and_propagates(tmp_path: Path) -> None:
    from tests.vos.conftest import synthetic_video
    from vos.protocol import propagate_video

    settings = _engine_config("cutie_small", _official_cutie_small(tmp_path / "cutie-small.pth"))
    assert engine_problems("engines.extra", settings) == []
    engine = engine_from_config(settings)
    assert isinstance(engine, PropagationEngine)
    frames, labels = synthetic_video(frames=4, height=48, width=64)
    masks = {"e": (labels == 1).clone()}
    result = propagate_video(engine, frames, masks, {"e": 1})["e"]
    assert result.masks.shape == (4, 48, 64) and torch.equal(result.masks[1], masks["e"][1])


def test_sam2_builds_from_its_config(tmp_path: Path) -> None:
    settings = _engine_config("sam2.1_hiera_tiny", _official_sam2_tiny(tmp_path / "sam2.1.pt"))
    assert engine_problems("engines.extra", settings) == []
    assert isinstance(engine_from_config(settings), PropagationEngine)


def test_a_setting_an_engine_does_not_have_is_one_line(tmp_path: Path) -> None:
    checkpoint = _official_cutie_small(tmp_path / "cutie-small.pth")
    settings = replace(_engine_config("cutie_small", checkpoint), scales=[0.8, 1.0])
    with pytest.raises(UserError, match="Cutie runs at one scale") as caught:
        engine_from_config(settings)
    assert "\n" not in str(caught.value)


def test_an_unknown_variant_is_found_in_preflight(tmp_path: Path) -> None:
    settings = replace(_engine_config("cutie_small", tmp_path / "absent.pth"), variant="cutie-huge")
    problems = engine_problems("engines.extra", settings)
    assert any(p.startswith("engines.extra.variant:") for p in problems), problems
    assert any("file not found" in p for p in problems), problems
