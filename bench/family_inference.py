"""Per-frame inference time of ReferFormer, MUTR and SOC, each at its own resolution.

For every model: its official Ref-YouTube-VOS protocol (ReferFormer short side 360, MUTR 432,
SOC 360 with max 640) on a synthetic 720x1280 video, through :class:`FamilyProducer`, with
random weights of the released network (Video-Swin-B by default; the speed does not depend on
the values). Two runs per model:

- ``shared``: all E expressions in one call (the video is encoded once, expressions decoded
  together) -- the project's producer;
- ``naive``: one call per expression (the video re-encoded each time), as the official scripts
  do; the baseline.

Prints seconds per frame per expression and the naive/shared ratio, measured in the same run.
On a GPU (``--device cuda``) it also prints frames per second.

    python bench/family_inference.py --backbone base --frames 4 --expressions 3 --threads 2
"""

from __future__ import annotations

import argparse
import time
from dataclasses import asdict

import torch

from models.build import network_from_config
from models.common.producer import TokenizedText
from models.family.config import released_config
from models.family.producer import FamilyProducer, protocol_for


def _text(expressions: int, length: int = 12) -> TokenizedText:
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(4, 50000, (expressions, length), generator=g)
    ids[:, 0], ids[:, -1] = 0, 2
    return TokenizedText(ids, torch.ones_like(ids))


def _run(producer: FamilyProducer, frames: torch.Tensor, text: TokenizedText) -> float:
    if producer.device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in producer.segment_video(frames, text):
        pass
    if producer.device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="base", choices=["tiny", "small", "base"])
    parser.add_argument("--models", nargs="+", default=["referformer", "mutr", "soc"])
    parser.add_argument("--frames", type=int, default=4)
    parser.add_argument("--expressions", type=int, default=3)
    parser.add_argument("--height", type=int, default=720)
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    frames = torch.randint(0, 256, (args.frames, 3, args.height, args.width), dtype=torch.uint8)
    text = _text(args.expressions)
    print(
        f"{args.frames} frames {args.height}x{args.width}, {args.expressions} expressions, "
        f"Video-Swin-{args.backbone[0].upper()}, {args.device}, {args.threads} threads"
    )
    for name in args.models:
        config = asdict(released_config(name, args.backbone))
        model = network_from_config(name, config).eval().to(args.device)
        protocol = protocol_for(name, expression_batch=args.expressions)
        producer = FamilyProducer(model, protocol)
        size = producer.network_size(args.height, args.width)
        _run(producer, frames[:2], _text(1))  # warm-up
        shared = _run(producer, frames, text)
        naive = sum(_run(producer, frames, text.select(e)) for e in range(len(text)))
        per_frame = shared / (args.frames * args.expressions)
        line = (
            f"{name:<12} input {size[0]}x{size[1]}: shared {per_frame:.2f} s/frame/expression, "
            f"naive {naive / (args.frames * args.expressions):.2f}; "
            f"naive/shared = {naive / shared:.2f}x"
        )
        if args.device != "cpu":
            line += f"; {args.frames * args.expressions / shared:.1f} frames/s"
        print(line, flush=True)
        del model, producer


if __name__ == "__main__":
    main()
