"""Parity runner for the ``sam2`` family (see ``models/shared/parity_case.py``).

The model is the case's variant at the case's image size, loaded through the converter
(strict), and driven through the engine's own :class:`~vos.sam2.session.Sam2Session` with the
case's protocol: one track holding both objects, their masks added on the key frame, every later
frame stepped, then the key frame added again (``frame_step=0``) and every earlier frame
stepped - the session's rendering of ``propagate_in_video`` forward then ``reverse=True``.
Frames enter as the official loader's normalised images (``images_f32``), so the comparison
is of the network and the algorithm; the port's own resize is compared as ``prep``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from models.shared.checkpoint import KeyReport
from models.shared.parity_case import ParityCase
from vos.sam2.convert import load_official
from vos.sam2.model import Sam2Model
from vos.sam2.session import Sam2Session, normalize_frame
from vos.sam2.spec import Sam2Options, get_sam2_variant

TRACK = "case"


def build_case_model(case: ParityCase) -> tuple[Sam2Model, KeyReport]:
    """The case's model with its official-layout state dict loaded strictly."""
    hp: dict[str, Any] = case.config.get("hyper_parameters", {})
    spec = get_sam2_variant(case.variant_id, image_size=int(hp.get("image_size", 1024)))
    model = Sam2Model(spec).eval()
    report = load_official(model, case.state, what=f"parity case {case.name}")
    return model, report


def convert_parity(case: ParityCase) -> KeyReport:
    """Build the model and convert every key (manifest-only cases)."""
    return build_case_model(case)[1]


def run_parity(case: ParityCase) -> dict[str, np.ndarray]:
    """Run the case's protocol; returns the arrays of ``expected.npz`` the port produces."""
    torch.set_num_threads(max(1, min(torch.get_num_threads(), 2)))
    model, _ = build_case_model(case)
    hp: dict[str, Any] = case.config["hyper_parameters"]
    images = torch.from_numpy(case.inputs["images_f32"])
    prompts = torch.from_numpy(case.inputs["prompt_masks"])
    frames = torch.from_numpy(case.inputs["frames_uint8"]).permute(0, 3, 1, 2)
    num_frames, size = int(images.shape[0]), (int(frames.shape[-2]), int(frames.shape[-1]))
    key = int(case.config["protocol"]["key_frame"])
    options = Sam2Options(
        binarize_prompt_memory=bool(hp.get("binarize_mask_from_pts_for_mem_enc", True)),
        fill_hole_area=int(hp.get("fill_hole_area_applied", 0)),
        num_frames=num_frames,
    )
    session = Sam2Session(model, options, torch.device("cpu"))
    session.taps = {}
    labels = torch.zeros(size, dtype=torch.int64)
    for obj, mask in enumerate(prompts, start=1):
        labels[mask.bool()] = obj
    with torch.inference_mode():
        encodings = {
            t: session.encode_normalized(images[t : t + 1], size) for t in range(num_frames)
        }
        session.add_reference(encodings[key], labels, track=TRACK, frame_step=0)
        for t in range(key + 1, num_frames):
            session.step(encodings[t], tracks=[TRACK])
        session.add_reference(encodings[key], labels, track=TRACK, frame_step=0)
        for t in range(key - 1, -1, -1):
            session.step(encodings[t], tracks=[TRACK])
    outputs = _outputs(session, num_frames, key, size)
    outputs["prep"] = normalize_frame(frames[key], model.spec.image_size)[0].numpy()
    return outputs


def _outputs(
    session: Sam2Session, num_frames: int, key: int, size: tuple[int, int]
) -> dict[str, np.ndarray]:
    """The taps as the case stores them (frames by index; memory attention in protocol order)."""
    assert session.taps is not None
    per_obj = [session.taps[(TRACK, obj)] for obj in (1, 2)]
    low, scores, ptrs = [], [], []
    steps: list[list[np.ndarray]] = []
    for taps in per_obj:
        by_index = {key + index: result for index, _rev, result in taps}
        low.append(torch.cat([by_index[t].low_res for t in range(num_frames)]))
        scores.append(torch.cat([by_index[t].object_score for t in range(num_frames)]))
        ptrs.append(torch.cat([by_index[t].obj_ptr for t in range(num_frames)]))
        mem = [r.memory_out[0, ::8].numpy() for _i, _rev, r in taps if r.memory_out is not None]
        steps.append(mem)
    low_res = torch.cat(low, dim=1)  # T x 2 x S/4 x S/4
    video = F.interpolate(low_res, size=size, mode="bilinear")
    return {
        "video_logits": video.numpy(),
        "low_res_logits": low_res.numpy(),
        "object_score_logits": torch.cat(scores, dim=1).numpy(),
        "obj_ptr": torch.stack(ptrs, dim=1).numpy(),
        "memory_attention": np.stack([np.stack(pair) for pair in zip(*steps, strict=True)]),
        "video_masks": (video > 0).float().numpy(),
    }
