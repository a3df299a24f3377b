"""Per-frame inference time of SgMg (Video-Swin-T / -B) at a 360-pixel short side.

Random weights of the released network (speed does not depend on the values), a random-content
video of T frames at 720x1280 resized to 360x640 (the Ref-YouTube-VOS rule), E expressions of
L tokens. Measured in the same run:

- ``official``: one full forward per expression (backbone included), as ``inference_ytvos.py``;
  the baseline;
- ``sgmg``: this project's protocol (:func:`models.sgmg.inference.predict_clip`): the video is
  encoded once and the expressions are decoded in a batch -- identical outputs;
- ``multi`` (with ``--multi``): multi-object SgMg of the same size, one shared fusion and encoder
  for all expressions, per-expression decoupling and decoder.

Prints seconds per frame (per expression and per video) and the ratios to ``official``. On a GPU
(``--device cuda``) it also prints frames per second (video frames x expressions / s).

    python bench/sgmg_inference.py --backbone tiny --frames 8 --expressions 4 --multi
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import torch

from models.common.rvos_inference import prepare_frames, resized_size
from models.sgmg.build import PRESETS, build_sgmg
from models.sgmg.inference import predict_clip


def _tokens(expressions: int, length: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(4, 50000, (expressions, length), generator=g)
    ids[:, 0], ids[:, -1] = 0, 2
    return ids, torch.ones_like(ids)


def _timed(device: torch.device, fn) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="tiny", choices=["tiny", "base"])
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--expressions", type=int, default=4)
    parser.add_argument("--tokens", type=int, default=12)
    parser.add_argument("--height", type=int, default=720)
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--short-side", type=int, default=360)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--multi", action="store_true", help="also time multi-object SgMg")
    parser.add_argument("--skip-official", action="store_true")
    parser.add_argument("--fp16", action="store_true", help="autocast (GPU), as the --amp scripts")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    preset = PRESETS["video_swin_t" if args.backbone == "tiny" else "video_swin_b"]
    torch.manual_seed(0)
    model = build_sgmg(preset, attn_implementation="sdpa").eval().to(device)
    g = torch.Generator().manual_seed(0)
    video = torch.randint(0, 256, (args.frames, 3, args.height, args.width), generator=g)
    size = resized_size(args.height, args.width, args.short_side)
    frames = prepare_frames(video.to(torch.uint8).to(device), size)
    ids, mask = (t.to(device) for t in _tokens(args.expressions, args.tokens))
    T, E = args.frames, args.expressions
    print(
        f"SgMg Video-Swin-{args.backbone[0].upper()}, {T} frames at {size[0]}x{size[1]}, "
        f"{E} expressions, {args.threads} threads, {device}"
    )

    autocast = torch.autocast(device.type, dtype=torch.float16, enabled=args.fp16)

    def run_all(net: torch.nn.Module) -> None:
        with torch.inference_mode(), autocast:
            text = net.encode_text(ids, mask)
            predict_clip(net, frames, text)

    def run_official() -> None:
        with torch.inference_mode(), autocast:
            for e in range(E):
                text = model.encode_text(ids[e : e + 1], mask[e : e + 1])
                predict_clip(model, frames, text)

    run_all(model)  # warm-up (allocations, kernels)
    results: dict[str, float] = {}
    if not args.skip_official:
        results["official"] = _timed(device, run_official)
    results["sgmg"] = _timed(device, lambda: run_all(model))
    if args.multi:
        torch.manual_seed(0)
        multi_config = dataclasses.replace(preset, multi_object=True)
        multi = build_sgmg(multi_config, attn_implementation="sdpa").eval().to(device)
        run_all(multi)
        results["multi"] = _timed(device, lambda: run_all(multi))
    base = results.get("official")
    for name, seconds in results.items():
        line = (
            f"{name:9s} {seconds:8.2f} s  {seconds / T:7.3f} s/frame (all expressions)  "
            f"{seconds / (T * E):7.3f} s/frame/expression"
        )
        if base is not None and name != "official":
            line += f"  {base / seconds:5.2f}x vs official"
        if "sgmg" in results and name == "multi":
            line += f"  {results['sgmg'] / seconds:5.2f}x vs sgmg"
        if device.type == "cuda":
            line += f"  {T * E / seconds:7.1f} frame-expressions/s"
        print(line, flush=True)


if __name__ == "__main__":
    main()
