"""Propagation speed: all expressions of a video at once vs the official algorithm, per frame.

Both run the RVOS challenge's bidirectional protocol (key frame, forward then backward on the
same engine) on one synthetic video with 4 expressions, with the same random weights:

- baseline: the official algorithm as written - one expression at a time, the encoder re-run
  for every expression and pass, short-term attention through a dense hw x hw matrix (the
  official ``local2global`` scatter, here as ``MultiheadLocalAttentionV2(enable_corr=False)``
  computes it: unfolded keys for the window logits, then a dense matrix for the aggregation),
  long-term / self attention as explicit matmul + softmax;
- ours: :func:`vos.protocol.propagate_video` - expressions as tracks of one session (one
  encoding per frame and scale, cached between the two sweeps), batched propagation, banded
  local attention, fused attention kernels.

Prints seconds per video frame for both, the ratio, and the share of equal output pixels.

    python bench/vos_propagation.py --variant r50_deaotl --size 240x432 --frames 10
"""

from __future__ import annotations

import argparse
import contextlib
import time
from collections.abc import Iterator

import torch
import torch.nn.functional as F

import vos.layers.attention as attention
from vos.deaot import build_network
from vos.protocol import ProtocolConfig, propagate_video
from vos.session import Propagator, TTAConfig
from vos.variants import get_variant


def dense_local_attention(q, k, v, max_dis, rel_logits=None):
    """Official V2 path: unfold keys for the window logits, scatter to a dense hw x hw matrix."""
    n, h, w, d = q.shape
    win = 2 * max_dis + 1
    kp = F.unfold(k.permute(0, 3, 1, 2), win, padding=max_dis).view(n, d, win * win, h, w)
    logits = (q.permute(0, 3, 1, 2).unsqueeze(2) * kp).sum(1)  # n x S x h x w
    if rel_logits is not None:
        logits = logits + rel_logits.permute(0, 3, 1, 2)
    ones = torch.ones(1, 1, h, w, device=q.device)
    outside = 1 - F.unfold(ones, win, padding=max_dis).view(1, win * win, h, w)
    attn = torch.softmax(logits - outside * 1e8, dim=1)  # n x S x h x w
    ph, pw = h + 2 * max_dis, w + 2 * max_dis
    ky, kx = torch.meshgrid(torch.arange(ph), torch.arange(pw), indexing="ij")
    qy, qx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    oy = qy.reshape(-1, 1) - ky.reshape(1, -1) + max_dis
    ox = qx.reshape(-1, 1) - kx.reshape(1, -1) + max_dis
    mask = ((oy.abs() <= max_dis) & (ox.abs() <= max_dis)).view(1, h * w, ph, pw)
    dense = torch.zeros(n, h * w, ph, pw, device=q.device)
    dense[mask.expand(n, -1, -1, -1)] = attn.flatten(2).transpose(1, 2).reshape(-1)
    dense = dense[:, :, max_dis:-max_dis, max_dis:-max_dis].reshape(n, h * w, h * w)
    out = dense @ v.reshape(n, h * w, -1)
    return out.view(n, h, w, -1), attn.permute(0, 2, 3, 1)


def explicit_attend(q, memory, heads):
    """Official MultiheadAttention / GatedPropagation arithmetic: QK^T, softmax, @V."""

    def one(qh, key, value):
        kh = attention.split_heads(key, heads)
        vh = attention.split_heads(value, heads)
        return torch.softmax(qh @ kh.transpose(-1, -2), dim=-1) @ vh

    qh = attention.split_heads(q, heads)
    if isinstance(memory, tuple) and isinstance(memory[0], torch.Tensor):
        return attention.merge_heads(one(qh, *memory))
    return attention.merge_heads(
        torch.cat([one(qh[i : i + 1], k, v) for i, (k, v) in enumerate(memory)])
    )


@contextlib.contextmanager
def official_kernels() -> Iterator[None]:
    saved = attention.local_attention, attention.attend
    attention.local_attention, attention.attend = dense_local_attention, explicit_attend
    try:
        yield
    finally:
        attention.local_attention, attention.attend = saved


def make_video(frames: int, height: int, width: int, expressions: int):
    """Textured frames with moving rectangles; one expression per rectangle, key frames
    spread over the video (as producers' scores pick them)."""
    g = torch.Generator().manual_seed(0)
    video = torch.randint(0, 255, (frames, 3, height, width), generator=g, dtype=torch.uint8)
    masks, keys = {}, {}
    for e in range(expressions):
        m = torch.zeros(frames, height, width, dtype=torch.bool)
        for t in range(frames):
            y = (height // 6 + 7 * t + 31 * e) % (height // 2)
            x = (width // 8 + 9 * t + 57 * e) % (width // 2)
            m[t, y : y + height // 4, x : x + width // 5] = True
            video[t, :, m[t]] = torch.tensor([40 + 50 * e, 200, 90], dtype=torch.uint8)[:, None]
        masks[str(e)] = m
        keys[str(e)] = (1 + e * (frames - 2) // max(1, expressions - 1)) % frames
    return video, masks, keys


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--variant", default="r50_deaotl")
    parser.add_argument("--size", default="240x432", help="HxW of the frames")
    parser.add_argument("--frames", type=int, default=10)
    parser.add_argument("--expressions", type=int, default=4)
    parser.add_argument("--tta", action="store_true", help="challenge TTA: 0.8/1.0/1.2 x flip")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--gap", type=int, default=5, help="long-term memory gap")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    height, width = (int(v) for v in args.size.split("x"))
    torch.manual_seed(0)
    network = build_network(get_variant(args.variant)).eval()
    tta = TTAConfig(scales=(0.8, 1.0, 1.2), flip=True) if args.tta else TTAConfig()
    propagator = Propagator(network, long_term_gap=args.gap, tta=tta)
    video, masks, keys = make_video(args.frames, height, width, args.expressions)
    baseline_config = ProtocolConfig(batch_expressions=False, dedupe=False, feature_cache_bytes=0)

    with official_kernels():
        start = time.perf_counter()
        baseline = propagate_video(propagator, video, masks, keys, baseline_config)
        baseline_s = time.perf_counter() - start
    start = time.perf_counter()
    ours = propagate_video(propagator, video, masks, keys, ProtocolConfig())
    ours_s = time.perf_counter() - start

    equal = sum(int((baseline[e].masks == ours[e].masks).sum()) for e in masks)
    total = sum(m.numel() for m in masks.values())
    print(
        f"{args.variant} {height}x{width}, {args.frames} frames, {args.expressions} expressions "
        f"(key frames {sorted(keys.values())}), TTA {'on' if args.tta else 'off'}, "
        f"{args.threads} threads"
    )
    print(f"  baseline (official algorithm): {baseline_s / args.frames:.3f} s per frame")
    print(f"  ours (propagate_video):        {ours_s / args.frames:.3f} s per frame")
    print(f"  speed-up: {baseline_s / ours_s:.2f}x; equal output pixels: {equal / total:.5f}")


if __name__ == "__main__":
    main()
