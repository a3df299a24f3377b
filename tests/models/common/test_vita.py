"""The VITA video decoder (SOC's VOC, MUTR's MTI) against the official taps of the parity cases.

The MUTR case stores the last deformable-decoder layer (``decoder_hs[-1]``) and the MTI output,
the SOC case ``decoder_hs_last`` + the sentence feature and the VOC output: the decoder is checked
in isolation, with only its own official tensors rebuilt from the case's seed.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from models.common.vita import VideoQueryDecoder, shifted_window_mask
from models.shared.checkpoint import load_state_strict
from tests.models.conftest import official_substate, parity_case


def _case(name: str) -> Path:
    case = parity_case(name)
    if not (case / "expected.npz").is_file():
        pytest.skip(f"parity case {name} has no expected outputs")
    return case


def test_mti_matches_official_output() -> None:
    case = _case("mutr_vswint")
    mti = VideoQueryDecoder(
        num_frame_queries=5, num_queries=5, window_size=4, learned_init=True
    ).eval()
    load_state_strict(mti, official_substate(case, "mti."), what="mti")
    expected = np.load(case / "expected.npz")
    frame_queries = torch.from_numpy(expected["decoder_hs"][-1])[None]  # 1 x T x Q x C
    with torch.no_grad():
        out = mti(frame_queries)[0]
    torch.testing.assert_close(out, torch.from_numpy(expected["mti_output"]), atol=3e-5, rtol=1e-4)


def test_voc_matches_official_output() -> None:
    case = _case("soc_vswint")
    voc = VideoQueryDecoder(
        num_frame_queries=20, num_queries=20, window_size=0, learned_init=False
    ).eval()
    load_state_strict(voc, official_substate(case, "voc."), what="voc")
    expected = np.load(case / "expected.npz")
    frame_queries = torch.from_numpy(expected["decoder_hs_last"])[None]
    sentence = torch.from_numpy(expected["text_sentence_feature"])  # 1 x C
    with torch.no_grad():
        out = voc(frame_queries, sentence)[0]
    torch.testing.assert_close(out, torch.from_numpy(expected["voc_out"]), atol=1e-4, rtol=1e-4)


def _reference_shift_mask(pad: torch.Tensor, W: int, Q: int) -> torch.Tensor:
    """The official construction, restated literally (roll, per-window repeat, edge OR)."""
    B, T = pad.shape
    Nw, half = T // W, math.ceil(W / 2)
    m = torch.roll(pad, half, 1).view(B, Nw, W)[..., None].repeat(1, 1, 1, W)
    m[:, 0] = m[:, 0] | m[:, 0].transpose(-2, -1)
    m[:, -1] = m[:, -1] | m[:, -1].transpose(-2, -1)
    m[:, 0, :half, half:] = True
    m[:, 0, half:, :half] = True
    m = m.view(B * Nw, 1, W, 1, W, 1).repeat(1, 1, 1, Q, 1, Q).view(B * Nw, W * Q, W * Q)
    return m.float() * -1000


@pytest.mark.parametrize("T", [3, 4, 7, 9])
def test_shifted_window_mask_layout(T: int) -> None:
    W, Q = 4, 3
    padded = math.ceil(T / W) * W
    pad = torch.zeros(2, padded, dtype=torch.bool)
    pad[:, T:] = True
    torch.testing.assert_close(shifted_window_mask(pad, W, Q), _reference_shift_mask(pad, W, Q))


def test_windowed_encoder_handles_long_clips_and_batches() -> None:
    torch.manual_seed(0)
    dec = VideoQueryDecoder(
        d_model=32,
        num_frame_queries=3,
        num_queries=2,
        nheads=4,
        dim_feedforward=64,
        window_size=4,
        learned_init=True,
    ).eval()
    x = torch.randn(2, 11, 3, 32)
    with torch.no_grad():
        both = dec(x)
        first = dec(x[:1])
    assert both.shape == (2, 2, 32) and torch.isfinite(both).all()
    torch.testing.assert_close(both[:1], first, atol=1e-5, rtol=1e-5)
    # windows isolate frames: without the shifted layer, frame 0's encoding ignores frames >= 4
    dec.train()
    for m in dec.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    with torch.no_grad():
        a = dec.encode(x[:1])
        y = x[:1].clone()
        y[:, 4:] += 1.0
        b = dec.encode(y)
    torch.testing.assert_close(a[:, :4], b[:, :4])
    assert not torch.allclose(a[:, 4:], b[:, 4:])


def test_sentence_initialised_decoder_needs_init_and_returns_all_layers() -> None:
    dec = VideoQueryDecoder(
        d_model=16,
        num_frame_queries=2,
        num_queries=4,
        nheads=2,
        dim_feedforward=32,
        dec_layers=2,
        learned_init=False,
    ).eval()
    x = torch.randn(1, 3, 2, 16)
    with pytest.raises(ValueError, match="init_queries"):
        dec(x)
    layers = dec(x, torch.randn(1, 16), all_layers=True)
    assert layers.shape == (2, 1, 4, 16)


def _official_encode(dec: VideoQueryDecoder, fq: torch.Tensor) -> torch.Tensor:
    """MTI's eval encoder restated from the official code (seq-first, roll, windows)."""
    T, fQ, LB, C = fq.shape
    W, heads = dec.window_size, dec.nheads
    pad = math.ceil(T / W) * W - T
    fq = torch.nn.functional.pad(fq, (0, 0, 0, 0, 0, 0, 0, pad))
    _T = T + pad
    attn_mask = fq.new_ones(LB, _T).bool()
    attn_mask[:, :T] = False
    Nw, half = _T // W, math.ceil(W / 2)
    window_mask = attn_mask.view(LB * Nw, W)[..., None].repeat(1, 1, fQ).flatten(1)
    shift = _reference_shift_mask(attn_mask, W, fQ).repeat_interleave(heads, 0)

    def block(i: int, x: torch.Tensor, **mask: torch.Tensor) -> torch.Tensor:
        sa, ffn = dec.enc_self_attn[i], dec.enc_ffn[i]
        xb = x.transpose(0, 1)
        y = sa.self_attn(xb, xb, xb, need_weights=False, **mask)[0].transpose(0, 1)
        x = sa.norm(x + y)
        return ffn.norm(x + ffn.linear2(torch.relu(ffn.linear1(x))))

    for i in range(len(dec.enc_self_attn)):
        if i % 2 == 0:
            x = fq.view(Nw, W, fQ, LB, C).permute(1, 2, 3, 0, 4).reshape(W * fQ, LB * Nw, C)
            x = block(i, x, key_padding_mask=window_mask)
            fq = x.reshape(W, fQ, LB, Nw, C).permute(3, 0, 1, 2, 4).reshape(_T, fQ, LB, C)
        else:
            x = torch.roll(fq, half, 0)
            x = x.view(Nw, W, fQ, LB, C).permute(1, 2, 3, 0, 4).reshape(W * fQ, LB * Nw, C)
            x = block(i, x, attn_mask=shift)
            x = x.reshape(W, fQ, LB, Nw, C).permute(3, 0, 1, 2, 4).reshape(_T, fQ, LB, C)
            fq = torch.roll(x, -half, 0)
    return fq[:T]


@pytest.mark.parametrize("T", [5, 9, 12])
def test_windowed_encoder_matches_official_restatement(T: int) -> None:
    torch.manual_seed(0)
    dec = VideoQueryDecoder(
        d_model=32,
        num_frame_queries=3,
        num_queries=3,
        nheads=4,
        dim_feedforward=64,
        window_size=4,
    ).eval()
    x = torch.randn(1, T, 3, 32)
    with torch.no_grad():
        ours = dec.encode(x)[0]  # T x Q x C
        theirs = _official_encode(dec, x[0][:, :, None])[:, :, 0]
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)
