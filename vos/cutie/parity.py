"""Parity runner of the ``cutie`` family (see ``models/shared/parity_case.py``).

The network is the case's ``variant_id`` (``base`` / ``small``), loaded from the case's
official-layout state dict strictly; the case's protocol (``config.json`` ``protocol``) runs
through :class:`~vos.cutie.inference.CutieProcessor` with the case's ``settings``: the key
frame with its mask, the frames after it, the key frame again with its mask, the frames before
it. Returned arrays are shaped like ``expected.npz`` (taps: batch 0, channels subsampled as the
case's ``TAP_STEP``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from models.shared.checkpoint import KeyReport
from models.shared.parity_case import ParityCase
from vos.cutie.convert import load_official
from vos.cutie.inference import CutieProcessor, encode_frame
from vos.cutie.network import CutieNetwork
from vos.cutie.spec import CutieSettings, LongTermSettings, get_cutie_variant

SETTING_NAMES = ("mem_every", "max_mem_frames", "top_k", "stagger_updates", "max_internal_size")


def case_settings(case: ParityCase) -> CutieSettings:
    """The case's inference settings (``config.json`` ``settings``)."""
    given: dict[str, Any] = dict(case.config.get("settings", {}))
    values: dict[str, Any] = {name: given[name] for name in SETTING_NAMES if name in given}
    values["flip_aug"] = bool(given.get("flip_aug", False))
    values["use_long_term"] = bool(given.get("use_long_term", False))
    if "long_term" in given:
        values["long_term"] = LongTermSettings(**given["long_term"])
    return CutieSettings(**values)


def build_case_network(case: ParityCase) -> tuple[CutieNetwork, KeyReport]:
    """The case's network with its state dict loaded strictly."""
    network = CutieNetwork(get_cutie_variant(case.variant_id)).eval()
    report = load_official(network, case.state, what=f"parity case {case.name}")
    return network, report


def convert_parity(case: ParityCase) -> KeyReport:
    """Build the model and convert every key (manifest-only cases)."""
    return build_case_network(case)[1]


def _tap_step(case: ParityCase) -> int:
    text = str(case.config.get("arrays", {}).get("expected.npz", {}).get("sensory", ""))
    marker = "channels [::"
    if marker in text:
        return int(text.split(marker, 1)[1].split("]", 1)[0])
    return 1


def _memory_tokens(processor: CutieProcessor) -> tuple[int, int, int]:
    """(working tokens, of which permanent, long-term tokens) of the first bucket."""
    bucket = processor.memory.work.buckets[0]
    long = processor.memory.long
    long_bucket = None if long is None else long.buckets.get(0)
    return bucket.size, bucket.permanent, 0 if long_bucket is None else long_bucket.size


def run_parity(case: ParityCase) -> dict[str, np.ndarray]:
    """Run the case's protocol; returns every array of ``expected.npz`` the port produces."""
    torch.set_num_threads(max(1, min(torch.get_num_threads(), 2)))
    network, _ = build_case_network(case)
    settings = case_settings(case)
    protocol: dict[str, Any] = case.config["protocol"]
    key = int(protocol["key_frame"])
    objects = [int(o) for o in protocol.get("objects", [1, 2])]
    frames = torch.from_numpy(case.inputs["frames_uint8"]).permute(0, 3, 1, 2).contiguous()
    mask = torch.from_numpy(case.inputs["key_mask"].astype(np.int64))
    num_frames = int(frames.shape[0])
    order = [key, *range(key + 1, num_frames), key, *range(key - 1, -1, -1)]
    with_mask = {0, num_frames - key}

    processor = CutieProcessor(network, settings)
    processor.taps = {}
    step = _tap_step(case)
    probs, labels, tokens = [], [], []
    with torch.inference_mode():
        for i, t in enumerate(order):
            enc = encode_frame(network, frames[t], settings)
            if i in with_mask:
                processor.step(enc, mask, objects)
                tokens.append(_memory_tokens(processor))
                continue
            out = enc.frame.restore(processor.step(enc))
            tokens.append(_memory_tokens(processor))
            probs.append(out[1:].numpy())
            lut = torch.tensor([0, *processor.objects], dtype=torch.long)
            labels.append(lut[out.argmax(0)].float().numpy())
    taps = processor.taps
    outputs = {
        "probs": np.stack(probs),
        "labels": np.stack(labels),
        "frame_order": np.asarray(order, dtype=np.float32),
        "memory_tokens": np.asarray(tokens, dtype=np.float32),
    }
    for name in ("visual_readout", "pixel_readout", "query_readout", "sensory"):
        outputs[name] = np.stack([x[0, :, ::step].float().numpy() for x in taps[name]])
    return outputs
