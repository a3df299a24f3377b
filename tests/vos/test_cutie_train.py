"""Cutie's training loop (vos.cutie.train) on tensors: the tiny variant, the loss going down,
the objective's pieces, and the weights it exports loading strictly into a working engine."""

from __future__ import annotations

import io
from dataclasses import replace

import pytest
import torch

from vos.build import EngineWeights, PropagatorOptions, build_engine
from vos.cutie.network import CutieNetwork
from vos.cutie.spec import CUTIE_TINY, TRAINABLE_VARIANTS, spec_to_dict
from vos.cutie.train import (
    CutieTrainConfig,
    CutieTrainer,
    CutieTrainingModel,
    clip_logits,
    mask_loss,
    parameter_groups,
    uncertain_points,
)
from vos.train import VOSBatch

torch.set_num_threads(1)

# The tiny variant at an even smaller size, so that a few steps take a second.
TOY = replace(CUTIE_TINY, ff_dim=32)


def toy_batch(size: int = 2, frames: int = 4, side: int = 48) -> VOSBatch:
    """Two squares moving right over noise; the second clip has one object (a padded one)."""
    gen = torch.Generator().manual_seed(0)
    images = torch.rand(size, frames, 3, side, side, generator=gen) * 0.3
    labels = torch.zeros(size, frames, side, side, dtype=torch.long)
    for t in range(frames):
        labels[:, t, 8:20, 4 + 3 * t : 16 + 3 * t] = 1
        labels[0, t, 28:40, 30 - 2 * t : 42 - 2 * t] = 2
    images[:, :, 0] += (labels == 1).float() * 0.7
    images[:, :, 2] += (labels == 2).float() * 0.7
    return VOSBatch(images.clamp(0, 1), labels, torch.tensor([2, 1][:size]))


def test_tiny_variant_is_small_and_registered() -> None:
    network = CutieNetwork(CUTIE_TINY)
    params = sum(p.numel() for p in network.parameters())
    assert 0.5e6 <= params <= 1.05e6
    assert TRAINABLE_VARIANTS["cutie_tiny"] == CUTIE_TINY
    assert network.pixel_encoder.conv1.out_channels == CUTIE_TINY.encoder_width
    assert network.mask_encoder.layer3[0].conv1.out_channels == CUTIE_TINY.mask_encoder_dim
    with pytest.raises(ValueError, match="ms_dims"):
        replace(CUTIE_TINY, ms_dims=(256, 128, 64))


def test_clip_logits_shapes_and_selector() -> None:
    torch.manual_seed(0)
    model = CutieTrainingModel(CutieNetwork(TOY)).train()
    assert all(m.training for m in model.modules())  # batch norms train too
    batch = toy_batch()
    outputs = clip_logits(model, batch, CutieTrainConfig(num_ref_frames=2))
    assert len(outputs) == 3  # frames 1 .. T-1
    for out in outputs:
        assert out.final.shape == (2, 3, 48, 48)
        assert out.sensory.shape == (2, 3, 3, 3)  # stride 16
        assert out.query.shape == (2, 3, TOY.num_blocks + 1, 3, 3)
        # the padded object of clip 1 gets probability ~0 (logit of 1e-7)
        assert float(out.final[1, 2].detach().max()) < -15
        assert float(out.query[1, 2].detach().max()) < -15


def test_point_sampling_prefers_uncertain_pixels() -> None:
    logits = torch.full((1, 2, 32, 32), -8.0)
    logits[:, 0] = 8.0
    logits[:, :, :, 16:] = 0.0  # right half: both classes equally likely
    coords = uncertain_points(logits, 400, 3.0, 0.75)
    assert coords.shape == (1, 400, 2)
    right = (coords[0, :, 0] > 0.5).float().mean()
    assert right > 0.75  # 75 % uncertain (all on the right) + half of the random rest


def test_mask_loss_is_low_for_the_right_answer() -> None:
    labels = torch.zeros(2, 32, 32, dtype=torch.long)
    labels[:, 8:24, 8:24] = 1
    gt = torch.nn.functional.one_hot(labels, 2).permute(0, 3, 1, 2).float()
    config = CutieTrainConfig(point_fraction=0.5)
    torch.manual_seed(0)
    good_ce, good_dice = mask_loss((gt * 2 - 1) * 10, gt, config)
    bad_ce, bad_dice = mask_loss((1 - 2 * gt) * 10, gt, config)
    # the points cluster on the boundary, where bilinear targets are soft: CE there is at
    # least their entropy, so the right answer scores low, not 0
    assert good_ce < 0.1 * bad_ce
    assert good_dice < 0.15 * bad_dice and bad_dice > 1.5  # summed over the 2 frames


def test_query_embeddings_and_norms_get_no_weight_decay() -> None:
    model = CutieTrainingModel(CutieNetwork(TOY))
    decay, no_decay = parameter_groups(model, 1e-3)
    names = {id(p): n for n, p in model.named_parameters()}
    exempt = {names[id(p)] for p in no_decay["params"]}
    assert "network.object_transformer.query_init.weight" in exempt
    assert "network.pixel_encoder.bn1.weight" in exempt
    assert all(p.ndim > 1 for p in decay["params"])


def test_training_lowers_the_loss_and_exports_strict_weights() -> None:
    torch.manual_seed(0)
    trainer = CutieTrainer(
        CutieNetwork(TOY), CutieTrainConfig(steps=12, lr=3e-3, warmup_steps=2, seed=0)
    )
    batch = toy_batch()
    losses = [trainer.step(batch)["loss"] for _ in range(12)]
    assert all(torch.isfinite(torch.tensor(losses)))
    assert sum(losses[-3:]) / 3 < 0.8 * sum(losses[:3]) / 3
    state = trainer.inference_state()
    assert not any(k.startswith("sensory_aux") for k in state)
    weights = EngineWeights.project(state, spec_to_dict(TOY), where="trained")
    engine = build_engine("cutie", weights, PropagatorOptions(device="cpu"))
    inference = engine.network  # type: ignore[attr-defined]
    assert not inference.training
    assert all(torch.equal(inference.state_dict()[k], v) for k, v in state.items())
    session = engine.new_session()
    frames = (batch.frames[0] * 255).to(torch.uint8)
    session.add_reference(frames[0], batch.labels[0, 0], track="a")
    out = session.step(frames[1])["a"]
    assert out.probs.shape == (3, 48, 48) and out.obj_ids == (1, 2)
    assert torch.allclose(out.probs.sum(0), torch.ones(48, 48), atol=1e-4)


def test_resumed_trainer_continues_identically() -> None:
    torch.manual_seed(0)
    config = CutieTrainConfig(steps=4, lr=1e-3, warmup_steps=1)
    first = CutieTrainer(CutieNetwork(TOY), config)
    batch = toy_batch(size=1, frames=3, side=32)
    first.step(batch)
    buffer = io.BytesIO()
    torch.save(first.state_dict(), buffer)  # as the run's checkpoint (live tensors otherwise)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=False)
    expected = first.step(batch)["loss"]
    second = CutieTrainer(CutieNetwork(TOY), config)
    second.load_state_dict(state)
    assert second.step_index == 1
    assert second.step(batch)["loss"] == pytest.approx(expected, rel=1e-5)
