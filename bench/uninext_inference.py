"""Per-frame UNINEXT inference time, the project's producer against the official loop.

UNINEXT's RVOS protocol runs frame by frame: ``ResizeShortestEdge(480, 1333)``, the expression's
BERT features, fusion + transformer, then the top-1 of the query slots by
sqrt(sigmoid(cls) * sigmoid(iou)). Two runs on the same synthetic video (random weights of the
chosen architecture; the speed does not depend on the values):

- ``official``: the official loop: for every (expression, frame) the backbone runs again, the
  mask head computes the masks of all query slots, then one is selected (the baseline);
- ``producer``: :class:`models.uninext.producer.UninextProducer`: each frame's backbone
  features are computed once and serve every expression, and only the selected slot's mask is
  computed.

Prints seconds per (frame, expression), the per-stage split of one producer frame, and the
official/producer ratio, measured in the same run.

    python bench/uninext_inference.py --variant r50 --frames 3 --expressions 2 --threads 2
    python bench/uninext_inference.py --variant vith --device cuda --frames 8 --expressions 3
"""

from __future__ import annotations

import argparse
import time

import torch

from models.common.producer import TokenizedText
from models.uninext.model import UninextModel, build_uninext
from models.uninext.postprocess import network_size, probabilities_at_original_size, resize_frames
from models.uninext.producer import UninextProducer
from models.uninext.spec import variant_spec


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _text(model: UninextModel, expressions: int, length: int = 10) -> TokenizedText:
    vocab = model.text_encoder.spec.vocab_size
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(4, vocab, (expressions, length), generator=g)
    return TokenizedText(ids, torch.ones_like(ids))


@torch.inference_mode()
def official_loop(model: UninextModel, frames: torch.Tensor, text: TokenizedText) -> None:
    """The official per-(expression, frame) loop, all slots' masks computed then one kept."""
    T, _, H, W = frames.shape
    size = network_size(H, W, model.min_size, model.max_size)
    device = next(model.parameters()).device
    slots = torch.arange(model.transformer.num_queries, device=device)[None]
    for index in range(len(text)):
        one = text.select(index)
        feats = model.encode_text(one.input_ids.to(device), one.attention_mask.to(device))
        for t in range(T):
            net = resize_frames(frames[t : t + 1], size).to(device)
            preds = model.decode(model.encode_images(net), feats)
            masks = model.mask_logits(preds, slots)[0]
            best = int(preds.final.scores[0].argmax())
            probabilities_at_original_size(masks[best], size, (H, W)).cpu()


@torch.inference_mode()
def stage_split(model: UninextModel, frames: torch.Tensor, text: TokenizedText) -> dict[str, float]:
    """Seconds of each stage for one frame and one expression (producer path)."""
    device = next(model.parameters()).device
    H, W = frames.shape[-2:]
    size = network_size(H, W, model.min_size, model.max_size)
    net = resize_frames(frames[:1], size).to(device)
    one = text.select(0)
    times: dict[str, float] = {}

    def timed(name, fn):
        _sync(device)
        start = time.perf_counter()
        out = fn()
        _sync(device)
        times[name] = time.perf_counter() - start
        return out

    feats = timed("text (once per expression)", lambda: model.encode_text(
        one.input_ids.to(device), one.attention_mask.to(device)))  # fmt: skip
    visual = timed("backbone + projections", lambda: model.encode_images(net))
    preds = timed("fusion + transformer + heads", lambda: model.decode(visual, feats))
    best = preds.final.scores.argmax(1, keepdim=True)
    timed("selected mask", lambda: model.mask_logits(preds, best))
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", default="r50", choices=["tiny", "r50", "convnextl", "vith"])
    parser.add_argument("--frames", type=int, default=3)
    parser.add_argument("--expressions", type=int, default=2)
    parser.add_argument("--height", type=int, default=720)
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    spec = variant_spec(args.variant)
    model = build_uninext(spec).eval().to(device)
    g = torch.Generator().manual_seed(0)
    frames = torch.randint(
        0, 256, (args.frames, 3, args.height, args.width), dtype=torch.uint8, generator=g
    )
    text = _text(model, args.expressions)
    size = network_size(args.height, args.width, spec.min_size, spec.max_size)
    pairs = args.frames * args.expressions
    print(
        f"UNINEXT {args.variant} on {device}: {args.frames} frames {args.height}x{args.width} "
        f"(network {size[0]}x{size[1]}), {args.expressions} expressions, "
        f"{spec.num_queries} query slots, {args.threads} threads"
    )
    stage_split(model, frames, text)  # warm-up
    for name, seconds in stage_split(model, frames, text).items():
        print(f"  {name:<32} {seconds:8.3f} s")
    producer = UninextProducer(model)
    _sync(device)
    start = time.perf_counter()
    for _ in producer.segment_video(frames, text):
        pass
    _sync(device)
    ours = time.perf_counter() - start
    start = time.perf_counter()
    official_loop(model, frames, text)
    _sync(device)
    baseline = time.perf_counter() - start
    print(f"  producer  {ours / pairs:8.3f} s per frame per expression")
    print(f"  official  {baseline / pairs:8.3f} s per frame per expression")
    print(f"  official / producer = {baseline / ours:.2f}x")
    if device.type == "cuda":
        print(f"  producer {pairs / ours:.1f} (frame, expression) pairs per second")


if __name__ == "__main__":
    main()
