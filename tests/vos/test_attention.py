"""Local (15x15) and global attention against brute-force references."""

from __future__ import annotations

import pytest
import torch

from vos.layers.attention import LocalAttention, attend, local_attention


def brute_local(q, k, v, max_dis, rel=None):
    """Per-offset reference: logits for each window slot, in-frame slots only."""
    n, h, w, _ = q.shape
    win = 2 * max_dis + 1
    logits = torch.full((n, h, w, win * win), float("-inf"), dtype=torch.float64)
    for dy in range(-max_dis, max_dis + 1):
        for dx in range(-max_dis, max_dis + 1):
            s = (dy + max_dis) * win + (dx + max_dis)
            for y in range(h):
                for x in range(w):
                    yy, xx = y + dy, x + dx
                    if 0 <= yy < h and 0 <= xx < w:
                        val = (q[:, y, x].double() * k[:, yy, xx].double()).sum(-1)
                        if rel is not None:
                            val = val + rel[:, y, x, s].double()
                        logits[:, y, x, s] = val
    attn = torch.softmax(logits, dim=-1)
    out = torch.zeros(n, h, w, v.shape[-1], dtype=torch.float64)
    for dy in range(-max_dis, max_dis + 1):
        for dx in range(-max_dis, max_dis + 1):
            s = (dy + max_dis) * win + (dx + max_dis)
            for y in range(h):
                for x in range(w):
                    yy, xx = y + dy, x + dx
                    if 0 <= yy < h and 0 <= xx < w:
                        out[:, y, x] += attn[:, y, x, s, None] * v[:, yy, xx].double()
    return out, attn


@pytest.mark.parametrize(("h", "w", "max_dis"), [(5, 7, 2), (3, 9, 3), (6, 4, 1), (2, 2, 7)])
def test_local_attention_matches_brute_force(h: int, w: int, max_dis: int) -> None:
    torch.manual_seed(0)
    n, d, dv = 3, 4, 5
    win = 2 * max_dis + 1
    q, k = torch.randn(n, h, w, d), torch.randn(n, h, w, d)
    v = torch.randn(n, h, w, dv)
    rel = torch.randn(n, h, w, win * win)
    out, attn = local_attention(q, k, v, max_dis, rel)
    ref_out, ref_attn = brute_local(q, k, v, max_dis, rel)
    assert torch.allclose(out.double(), ref_out, atol=1e-5)
    assert torch.allclose(attn.double(), ref_attn, atol=1e-6)


def dense_official(module: LocalAttention, q, k, v, size_2d):
    """The official formulation: a dense hw x hw matrix masked to the window."""
    h, w = size_2d
    b, length, c = q.shape
    heads, m = module.num_heads, module.max_dis
    win = 2 * m + 1
    rel = module.relative_emb_k(q.transpose(1, 2).reshape(b, c, h, w))
    rel = rel.view(b, heads, win * win, length)
    qh = (q * module.scale).view(b, length, heads, -1).transpose(1, 2)
    kh = k.view(b, length, heads, -1).transpose(1, 2)
    vh = v.view(b, length, heads, -1).transpose(1, 2)
    logits = qh @ kh.transpose(-1, -2)  # b x heads x L x L
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    ys, xs = ys.flatten(), xs.flatten()
    dy = ys[None, :] - ys[:, None]
    dx = xs[None, :] - xs[:, None]
    inside = (dy.abs() <= m) & (dx.abs() <= m)
    slot = ((dy + m) * win + (dx + m)).clamp(0, win * win - 1)
    bias = torch.gather(rel.transpose(2, 3), 3, slot[None, None].expand(b, heads, -1, -1))
    logits = (logits + bias).masked_fill(~inside, float("-inf"))
    attn = logits.softmax(-1)
    out = attn @ vh
    value_bias = module.relative_emb_v  # heads x d x S
    # relative value bias: sum over in-window slots of attn * bias[slot]
    bias_v = torch.zeros_like(out)
    for s in range(win * win):
        weight = (attn * (slot == s)[None, None]).sum(-1)  # b x heads x L
        bias_v += weight[..., None] * value_bias[None, :, None, :, s]
    out = out + bias_v
    return module.projection(out.transpose(1, 2).reshape(b, length, c))


def test_aot_local_attention_equals_dense_official_formulation() -> None:
    torch.manual_seed(1)
    module = LocalAttention(16, num_heads=2, max_dis=2)
    with torch.no_grad():
        module.relative_emb_v.normal_()
    size = (4, 6)
    q, k, v = (torch.randn(2, 24, 16) for _ in range(3))
    with torch.no_grad():
        ours = module(q, k, v, size)
        ref = dense_official(module, q, k, v, size)
    assert torch.allclose(ours, ref, atol=1e-5)


def test_attend_per_element_memories_equal_batched() -> None:
    torch.manual_seed(2)
    q = torch.randn(3, 10, 8)
    keys, values = torch.randn(3, 12, 8), torch.randn(3, 12, 6)
    batched = attend(q, (keys, values), heads=2)
    listed = attend(q, [(keys[i : i + 1], values[i : i + 1]) for i in range(3)], heads=2)
    assert torch.allclose(batched, listed, atol=1e-6)
    # Elements may have memories of different lengths.
    mixed = attend(q[:2], [(keys[:1, :5], values[:1, :5]), (keys[1:2], values[1:2])], heads=2)
    alone = attend(q[:1], (keys[:1, :5], values[:1, :5]), heads=2)
    assert torch.allclose(mixed[:1], alone, atol=1e-6)
