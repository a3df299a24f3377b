"""Parity runner for the ``aot`` and ``deaot`` families (see ``models/shared/parity_case.py``).

The model is built from the case's ``config.json`` hyper-parameters (the encoder size completed
from the state dict), loaded through the project's converter (strict), and run through the
project's :class:`~vos.session.Session` with the case's protocol: frame 0 with ``ref_label`` as
the reference, then each later frame propagated, decoded, arg-maxed and written back into memory
with its own label (long-term gap and short-term skip from ``config.json`` ``protocol``).
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import torch

from models.shared.checkpoint import KeyReport
from models.shared.parity_case import ParityCase
from vos.aot import AOT
from vos.convert import check_spec_matches, complete_encoder_spec, load_official
from vos.deaot import build_network
from vos.layers.basic import tokens_to_map
from vos.preprocess import ResizeRule, normalize_frames
from vos.session import Propagator
from vos.variants import EngineSpec, spec_from_official_config


def case_spec(case: ParityCase) -> EngineSpec:
    """The case's architecture: its ``MODEL_*`` values, the encoder size from the weights."""
    hp = dict(case.config["hyper_parameters"])
    hp.setdefault("MODEL_VOS", case.family)
    spec = spec_from_official_config(hp, name=case.variant_id)
    spec = complete_encoder_spec(spec, case.state)
    check_spec_matches(spec, case.state)
    return spec


def build_case_network(case: ParityCase) -> tuple[AOT, KeyReport]:
    """Build the case's network and load its official-layout state dict strictly."""
    torch.manual_seed(0)
    network = build_network(case_spec(case)).eval()
    report = load_official(network, case.state, what=f"parity case {case.name}")
    return network, report


def convert_parity(case: ParityCase) -> KeyReport:
    """Build the model and convert every key (manifest-only cases)."""
    return build_case_network(case)[1]


def _channel_step(case: ParityCase, array: str, channels: int) -> int:
    """Channel subsampling of a stored array, read from its description in config.json."""
    text = str(case.config.get("arrays", {}).get("expected.npz", {}).get(array, ""))
    match = re.search(r"channels \[::(\d+)\]", text)
    if match:
        return int(match.group(1))
    if "all" in text:
        return 1
    return max(1, channels // 32)


def _subsample(case: ParityCase, array: str, x: torch.Tensor) -> np.ndarray:
    """``C x ...`` -> every k-th channel as the case stores it."""
    step = _channel_step(case, array, int(x.shape[0]))
    return x[::step].float().cpu().numpy()


def run_parity(case: ParityCase) -> dict[str, np.ndarray]:
    """Run the case's protocol; returns every array of ``expected.npz`` the port produces."""
    torch.set_num_threads(max(1, min(torch.get_num_threads(), 2)))
    network, _ = build_case_network(case)
    protocol: dict[str, Any] = case.config["protocol"]
    obj_num = int(protocol["obj_num"])
    propagator = Propagator(
        network,
        long_term_gap=int(protocol["long_term_mem_gap"]),
        short_term_skip=int(protocol.get("short_term_mem_skip", 1)),
        resize=ResizeRule(max_long_edge=1040),
    )
    frames = torch.from_numpy(case.inputs["frames_uint8"]).permute(0, 3, 1, 2).contiguous()
    ref_label = torch.from_numpy(case.inputs["ref_label"].astype(np.int64))
    session = propagator.new_session()
    session.taps = {}
    session.add_reference(frames[0], ref_label, obj_ids=list(range(1, obj_num + 1)))
    labels = []
    for t in range(1, frames.shape[0]):
        result = session.step(frames[t])["main"]
        labels.append(result.labels.float().cpu().numpy())
    taps = session.taps
    enc = taps["encoded"][0]
    size_2d = enc.size_2d  # type: ignore[attr-defined]
    lstt = [tokens_to_map(x, size_2d)[0] for x in taps["lstt_out"]]  # type: ignore[arg-type]
    outputs: dict[str, np.ndarray] = {
        "logits": np.stack([x[0, : obj_num + 1].cpu().numpy() for x in taps["logits"]]),
        "logits_s4": np.stack([x[0, : obj_num + 1].cpu().numpy() for x in taps["logits_s4"]]),
        "labels": np.stack(labels),
        "lstt_out": np.stack([_subsample(case, "lstt_out", x) for x in lstt]),
        "enc_s4": _subsample(case, "enc_s4", enc.shortcuts[0][0]),  # type: ignore[attr-defined]
        "enc_s8": _subsample(case, "enc_s8", enc.shortcuts[1][0]),  # type: ignore[attr-defined]
        "enc_s16": _subsample(case, "enc_s16", enc.shortcuts[2][0]),  # type: ignore[attr-defined]
        "enc_s16_proj": enc.shortcuts[3][0].cpu().numpy(),  # type: ignore[attr-defined]
        "id_emb_ref": _subsample(
            case,
            "id_emb_ref",
            tokens_to_map(taps["id_emb"][0], size_2d)[0],  # type: ignore[arg-type]
        ),
    }
    if "prep_uint8" in case.inputs:
        image = torch.from_numpy(case.inputs["prep_uint8"]).permute(2, 0, 1)
        size = propagator.resize.network_size(
            int(image.shape[1]), int(image.shape[2]), 1.0, network.spec.align_corners
        )
        outputs["prep_frame"] = normalize_frames(image[None], size)[0].numpy()
    return outputs
