"""Propagation speed: all expressions of a video at once vs the official algorithm, per frame.

Both run the RVOS challenge's bidirectional protocol (key frame, forward then backward on the
same engine) on one synthetic video with 4 expressions, with the same random weights:

- baseline: the official algorithm as written - one expression at a time, the encoder re-run
  for every expression and pass, short-term attention through a dense hw x hw matrix (the
  official ``local2global`` scatter, here as ``MultiheadLocalAttentionV2(enable_corr=False)``
  computes it: unfolded keys for the window logits, then a dense matrix for the aggregation),
  long-term / self attention as explicit matmul + softmax, every identity channel's logits
  upsampled to full size and soft-maxed (``decode_current_logits``), ``argmax`` labels;
- ours: :func:`vos.protocol.propagate_video` - expressions as tracks of one session (one
  encoding per frame and scale, cached between the two sweeps; the first propagation layer
  once per frame for all tracks), batched propagation, banded local attention, fused
  attention kernels, only the used channels upsampled, the backward pass's key-frame
  reference copied from memory instead of recomputed.

Prints seconds per video frame for both (wall and process CPU time, medians of ``--repeats``
interleaved runs), the ratio, the load average, and the share of equal output pixels.

    python bench/vos_propagation.py --variant r50_deaotl --size 240x432 --frames 10
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import time
from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F

import vos.layers.attention as attention
import vos.session as session_module
from vos.deaot import build_network
from vos.protocol import ProtocolConfig, propagate_video
from vos.session import Propagator, Session, TTAConfig
from vos.variants import get_variant


def dense_local_attention(q, k, v, max_dis, rel_logits=None):
    """Official V2 path: unfold keys for the window logits, scatter to a dense hw x hw matrix.

    Same contract as :func:`vos.layers.attention.local_attention` (``... x h x w x d``, leading
    dims broadcast); the official code has one batch dim, so they are flattened into it."""
    lead = torch.broadcast_shapes(q.shape[:-3], k.shape[:-3], v.shape[:-3])
    h, w = q.shape[-3:-1]
    q, k, v = (x.expand(*lead, *x.shape[-3:]).reshape(-1, *x.shape[-3:]) for x in (q, k, v))
    if rel_logits is not None:
        rel_logits = rel_logits.expand(*lead, *rel_logits.shape[-3:]).reshape(q.shape[0], h, w, -1)
    out, attn = _dense_local_attention(q, k, v, max_dis, rel_logits)
    return out.view(*lead, *out.shape[1:]), attn.view(*lead, *attn.shape[1:])


def _dense_local_attention(q, k, v, max_dis, rel_logits=None):
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
    shared = qh.shape[0] == 1  # one query frame for every memory (the first layer)
    return attention.merge_heads(
        torch.cat([one(qh if shared else qh[i : i + 1], k, v) for i, (k, v) in enumerate(memory)])
    )


def all_channels(self: Session, logits: torch.Tensor, track: object) -> torch.Tensor:
    """Official ``decode_current_logits``: every identity channel goes to full size."""
    del self, track
    return logits


def argmax(probs: torch.Tensor) -> torch.Tensor:
    return probs.argmax(0)


@contextlib.contextmanager
def official_kernels() -> Iterator[None]:
    """The official arithmetic where the session has a shortcut: dense local attention,
    explicit softmax attention, every identity channel upsampled, ``argmax``."""
    saved = (
        attention.local_attention,
        attention.attend,
        Session._channels_to_upsample,
        session_module.first_argmax,
    )
    attention.local_attention, attention.attend = dense_local_attention, explicit_attend
    Session._channels_to_upsample = all_channels  # type: ignore[method-assign]
    session_module.first_argmax = argmax
    try:
        yield
    finally:
        (
            attention.local_attention,
            attention.attend,
            Session._channels_to_upsample,  # type: ignore[method-assign]
            session_module.first_argmax,
        ) = saved


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
    parser.add_argument(
        "--repeats", type=int, default=1, help="interleaved runs of each; medians are printed"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    height, width = (int(v) for v in args.size.split("x"))
    torch.manual_seed(0)
    network = build_network(get_variant(args.variant)).eval()
    tta = TTAConfig(scales=(0.8, 1.0, 1.2), flip=True) if args.tta else TTAConfig()
    propagator = Propagator(network, long_term_gap=args.gap, tta=tta)
    video, masks, keys = make_video(args.frames, height, width, args.expressions)
    baseline_config = ProtocolConfig(batch_expressions=False, dedupe=False, feature_cache_bytes=0)

    def run_baseline() -> dict:
        with official_kernels():
            return propagate_video(propagator, video, masks, keys, baseline_config)

    def run_ours() -> dict:
        return propagate_video(propagator, video, masks, keys, ProtocolConfig())

    load_before = os.getloadavg()
    baseline_runs, ours_runs = [], []
    for _ in range(args.repeats):  # interleaved, so both see the same load drift
        baseline, seconds = timed(run_baseline)
        baseline_runs.append(seconds)
        ours, seconds = timed(run_ours)
        ours_runs.append(seconds)
    load_after = os.getloadavg()

    equal = sum(int((baseline[e].masks == ours[e].masks).sum()) for e in masks)
    total = sum(m.numel() for m in masks.values())
    print(
        f"{args.variant} {height}x{width}, {args.frames} frames, {args.expressions} expressions "
        f"(key frames {sorted(keys.values())}), TTA {'on' if args.tta else 'off'}, "
        f"{args.threads} threads, median of {args.repeats} interleaved runs"
    )
    print(f"  load average before {_load(load_before)}, after {_load(load_after)}")
    for clock, index in (("wall", 0), ("CPU", 1)):
        baseline_s = statistics.median(run[index] for run in baseline_runs)
        ours_s = statistics.median(run[index] for run in ours_runs)
        ratios = sorted(b[index] / o[index] for b, o in zip(baseline_runs, ours_runs, strict=True))
        print(
            f"  {clock:4s} s per frame: baseline (official) {baseline_s / args.frames:.3f}"
            f", ours (propagate_video) {ours_s / args.frames:.3f}; speed-up "
            f"{baseline_s / ours_s:.2f}x (per run {', '.join(f'{r:.2f}' for r in ratios)})"
        )
    print(f"  equal output pixels: {equal / total:.5f}")


def timed(run: Callable[[], dict]) -> tuple[dict, tuple[float, float]]:
    """``run()``'s result and its (wall, process CPU) seconds. On a shared machine the CPU
    time of a one-thread run is the steadier figure: time spent waiting for a core is not in it.
    """
    wall, cpu = time.perf_counter(), time.process_time()
    result = run()
    return result, (time.perf_counter() - wall, time.process_time() - cpu)


def _load(load: tuple[float, float, float]) -> str:
    return " ".join(f"{v:.2f}" for v in load)


if __name__ == "__main__":
    main()
