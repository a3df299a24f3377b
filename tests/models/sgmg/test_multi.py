"""Multi-object SgMg: the shared-query attention, shared fusion/encoder, chunking, training."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from models.common.producer import TokenizedText
from models.sgmg.build import build_sgmg, tiny_config
from models.sgmg.inference import predict_clip
from models.sgmg.model import pad_video
from models.sgmg.multi import MultiObjectSgMg, attend_each
from models.sgmg.train import sgmg_loss
from models.train.batch import ClipBatch


def test_attend_each_is_multihead_attention_per_expression() -> None:
    torch.manual_seed(0)
    mha = nn.MultiheadAttention(16, 4).eval()
    query = torch.randn(7, 2, 16)  # 2 videos
    owners = torch.tensor([0, 0, 1])
    words, pos = torch.randn(5, 3, 16), torch.randn(5, 3, 16)
    pad = torch.tensor([[False] * 5, [False] * 3 + [True] * 2, [False] * 4 + [True]])
    ours = mha.out_proj(attend_each(mha, query, owners, words, pad, pos))
    want = mha(query[:, owners], words + pos, words, key_padding_mask=pad)[0]
    torch.testing.assert_close(ours, want, atol=1e-5, rtol=1e-5)


@pytest.fixture(scope="module")
def model() -> MultiObjectSgMg:
    torch.manual_seed(0)
    net = build_sgmg(tiny_config(vocab_size=20, multi_object=True)).eval()
    assert isinstance(net, MultiObjectSgMg)
    return net


def _text(rows: list[list[int]]) -> TokenizedText:
    L = max(len(r) for r in rows)
    ids = torch.ones(len(rows), L, dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r)
    return TokenizedText(ids, ids.ne(1).long())


def test_expressions_share_the_pass(model: MultiObjectSgMg) -> None:
    frames = pad_video(torch.randn(1, 2, 3, 144, 150))
    a = _text([[0, 5, 6, 2], [0, 7, 2], [0, 8, 9, 10, 2]])
    b = _text([[0, 5, 6, 2], [0, 7, 2], [0, 11, 12, 2]])  # only the last expression differs
    with torch.no_grad():
        video = model.encode_video(frames, torch.tensor([[144, 150]]))
        ta = model.encode_text(a.input_ids, a.attention_mask)
        tb = model.encode_text(b.input_ids, b.attention_mask)
        out_a, out_b = model.decode(video, ta), model.decode(video, tb)
        # a chunk decoded against the memory shared with all expressions = the full decode
        shared = model.encode_shared(video, ta)
        part = model.decode(video, ta.select(slice(0, 1)), shared=shared)
    T = 2
    torch.testing.assert_close(part.logits, out_a.logits[:, :T], atol=1e-5, rtol=1e-5)
    # the fusion gate sums every expression: changing one moves the others' outputs
    assert not torch.allclose(out_a.logits[:, :T], out_b.logits[:, :T])


def test_frame_and_expression_chunks(model: MultiObjectSgMg) -> None:
    text = _text([[0, 5, 6, 2], [0, 7, 2], [0, 8, 9, 10, 2]])
    with torch.no_grad():
        encoded = model.encode_text(text.input_ids, text.attention_mask)
    frames = torch.randn(4, 3, 144, 160)
    whole = predict_clip(model, frames, encoded, frame_chunk=36, expression_chunk=8)
    chunked = predict_clip(model, frames, encoded, frame_chunk=3, expression_chunk=2)
    for x, y in zip(whole, chunked, strict=True):
        assert x.query == y.query
        torch.testing.assert_close(x.logits, y.logits, atol=1e-3, rtol=1e-4)


def test_trains_on_clips_with_several_expressions() -> None:
    torch.manual_seed(0)
    net = build_sgmg(tiny_config(vocab_size=20, multi_object=True)).train()
    masks = torch.zeros(2, 2, 144, 160)
    masks[0, :, 20:60, 20:60] = 1
    masks[1, :, 80:120, 90:150] = 1
    text = _text([[0, 5, 6, 2], [0, 7, 2]])
    batch = ClipBatch(
        frames=torch.randn(1, 2, 3, 144, 160),
        image_sizes=torch.tensor([[144, 160]]),
        input_ids=text.input_ids,
        attention_mask=text.attention_mask,
        masks=masks,
        boxes=torch.tensor(
            [
                [[40 / 160, 40 / 144, 40 / 160, 40 / 144]] * 2,
                [[120 / 160, 100 / 144, 60 / 160, 40 / 144]] * 2,
            ]
        ),
        valid=masks.flatten(2).any(-1),
        expression_counts=[2],
    )
    terms = sgmg_loss(net, batch)
    assert torch.isfinite(terms["loss"])
    terms["loss"].backward()
    assert net.decouple.multihead_attn.in_proj_weight.grad is not None
