"""Make the Cutie parity cases by running the official code (hkchengrex/Cutie) on CPU.

The official package is imported from a checkout given on the command line (its ``cutie/``
folder needs torch, numpy, hydra-core and omegaconf, all in the project's venv):

    python bench/parity/make_cutie_cases.py --cutie-path /tmp/cutie_up --out tests/parity

Each case (format: ../shared/parity/README.md) builds the official ``CUTIE`` from
``cutie/config/eval_config.yaml`` with ``model=<variant>``, its two ResNets constructed with
``pretrained=False`` (the official builder would download ImageNet weights; every weight is
replaced anyway), loads seeded random weights from ``tests/parity/recipe.py`` (scaled by the
case's ``tensor_scale`` rules so the deep random ResNets stay finite; the ``inv_freq`` buffers of
the positional encodings and the integer BatchNorm counters are stored whole in
``buffers.npz``), and runs the official ``InferenceCore`` with the challenge protocol: a mask
for two objects on the key frame k, frames k+1 .. T-1, then frame k again with its mask in the
same core, then k-1 .. 0.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
SEED = 0
COMMIT = "ec5cdd4"  # hkchengrex/Cutie HEAD (merge of PR #122), 2024-11-08
TAP_STEP = 16  # channel subsampling of the stored feature taps

# Per variant: frame size, internal-size cap, the weight scaling that keeps random activations
# finite (re.fullmatch on official keys; first match wins), and tensors pinned to a chosen value
# (stored whole in buffers.npz): a negative logit bias so that background, object 1 and
# object 2 all win part of the frames with random weights.
CASES: dict[str, dict[str, Any]] = {
    "small": {
        "frames_hw": (88, 120),
        "max_internal_size": 80,
        "pinned": {"mask_decoder.pred.bias": -1.5},
        "tensor_scale": {r"key_proj\.(key_proj|d_proj|e_proj)\.weight": 0.3},
    },
    "base": {
        "frames_hw": (84, 116),
        "max_internal_size": 80,
        "pinned": {"mask_decoder.pred.bias": -3.0},
        "tensor_scale": {r"pixel_encoder\.(res2|layer2|layer3)\.\d+\.bn3\.weight": 0.3},
    },
}
# Inference settings: chosen so that short clips exercise the memory. Small: FIFO working
# memory (the d17 / y19 / MOSE mode) with eviction and skipped sensory updates. Base: long-term
# memory (the LVOS / BURST / generic mode) with consolidation and prototype removal, and flip
# augmentation.
COMMON = {"top_k": 30, "flip_aug": False, "chunk_size": -1, "amp": False}
SETTINGS: dict[str, dict[str, Any]] = {
    "small": {
        **COMMON,
        "mem_every": 3,
        "max_mem_frames": 3,
        "stagger_updates": 2,
        "use_long_term": False,
    },
    "base": {
        **COMMON,
        "flip_aug": True,
        "mem_every": 1,
        "max_mem_frames": 5,
        "stagger_updates": 5,
        "use_long_term": True,
        "long_term": {
            "count_usage": True,
            "max_mem_frames": 3,
            "min_mem_frames": 2,
            "num_prototypes": 16,
            "max_num_tokens": 64,
            "buffer_tokens": 16,
        },
    },
}
SETTINGS_NOTES = {
    "small": (
        "`mem_every` 3, `max_mem_frames` 3 (FIFO eviction happens), `stagger_updates` 2 "
        "(sensory updates skip the middle offset), no long-term memory"
    ),
    "base": (
        "long-term memory on, `mem_every` 1, `long_term` max/min_mem_frames 3/2, 16 "
        "prototypes, max 64 tokens, buffer 16: every frame from the third on consolidates old "
        "working memory into prototypes, and full long-term memory drops its least used ones; "
        "`flip_aug` on (taps are batch entry 0, the unflipped frame)"
    ),
}


def _recipe() -> Any:
    spec = importlib.util.spec_from_file_location("recipe", ROOT / "tests/parity/recipe.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def synthetic_frames(num_frames: int, height: int, width: int, seed: int) -> np.ndarray:
    """T x H x W x 3 uint8: a smooth gradient background, two moving coloured discs, noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    background = np.stack(
        [60 + 80 * xx / width, 70 + 60 * yy / height, 100 + 50 * np.cos(xx / width * 4.0)], -1
    )
    frames = []
    for t in range(num_frames):
        img = background.copy()
        for i, color in enumerate(((220, 50, 50), (50, 210, 220))):
            cy = height * (0.3 + 0.4 * i) + 2.0 * t * (1 - 2 * i)
            cx = width * (0.25 + 0.45 * i) + 3.0 * t
            disc = (yy - cy) ** 2 + (xx - cx) ** 2 <= (0.2 * height) ** 2
            img[disc] = color
        img += rng.normal(0, 5, img.shape)
        frames.append(np.clip(img, 0, 255).astype(np.uint8))
    return np.stack(frames)


def key_mask(frame: np.ndarray) -> np.ndarray:
    """H x W int64 ids of the two discs (1 = red, 2 = cyan), found by colour."""
    mask = np.zeros(frame.shape[:2], dtype=np.int64)
    mask[(frame[..., 0] > 160) & (frame[..., 1] < 120)] = 1
    mask[(frame[..., 2] > 160) & (frame[..., 0] < 120)] = 2
    return mask


def official_config(cutie_path: Path, variant: str, max_internal_size: int) -> Any:
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf, open_dict

    with initialize_config_dir(version_base="1.3.2", config_dir=str(cutie_path / "cutie/config")):
        cfg = compose("eval_config", overrides=[f"model={variant}"])
    with open_dict(cfg):
        for name, value in SETTINGS[variant].items():
            cfg[name] = OmegaConf.create(value) if isinstance(value, dict) else value
        cfg["max_internal_size"] = max_internal_size
    return cfg


def build_official(cfg: Any) -> Any:
    """The official CUTIE with ``pretrained=False`` ResNets (no download)."""
    import cutie.model.utils.resnet as resnet

    real18, real50 = resnet.resnet18, resnet.resnet50

    def no_download18(pretrained: bool = True, extra_dim: int = 0, model_dir: Any = None) -> Any:
        return real18(pretrained=False, extra_dim=extra_dim)

    def no_download50(pretrained: bool = True, extra_dim: int = 0, model_dir: Any = None) -> Any:
        return real50(pretrained=False, extra_dim=extra_dim)

    resnet.resnet18, resnet.resnet50 = no_download18, no_download50
    try:
        from cutie.model.cutie import CUTIE

        return CUTIE(cfg).eval()
    finally:
        resnet.resnet18, resnet.resnet50 = real18, real50


def case_state(
    network: Any, rules: dict[str, float], pinned: dict[str, float]
) -> tuple[dict, list, dict]:
    """Recipe weights for every key, the manifest rows and the tensors stored whole."""
    import re

    import torch

    recipe = _recipe()
    rows, state, whole = [], {}, {}
    for name, tensor in network.state_dict().items():
        dtype = str(tensor.dtype).removeprefix("torch.")
        rows.append((name, dtype, tuple(tensor.shape)))
        if name in pinned:
            whole[name] = torch.full(tuple(tensor.shape), pinned[name], dtype=tensor.dtype)
            state[name] = whole[name].clone()
            continue
        if not tensor.is_floating_point() or name.endswith("inv_freq"):
            whole[name] = tensor.clone()
            state[name] = tensor.clone()
            continue
        scale = next((f for p, f in rules.items() if re.fullmatch(p, name)), 1.0)
        value = recipe.parity_tensor(name, tuple(tensor.shape), SEED) * scale
        state[name] = value.to(tensor.dtype)
    return state, rows, whole


class Taps:
    """Records the official readouts: visual readout and fused pixel readout (pixel_fusion's
    input and output) and the object transformer's output (readout_query)."""

    def __init__(self, network: Any) -> None:
        self.records: dict[str, list] = {"visual_readout": [], "pixel_readout": []}
        self.records["query_readout"] = []
        fusion, query = network.pixel_fusion, network.readout_query

        def pixel_fusion(pix_feat: Any, pixel: Any, *args: Any, **kwargs: Any) -> Any:
            out = fusion(pix_feat, pixel, *args, **kwargs)
            self.records["visual_readout"].append(pixel[0, :, ::TAP_STEP].clone())
            self.records["pixel_readout"].append(out[0, :, ::TAP_STEP].clone())
            return out

        def readout_query(pixel: Any, *args: Any, **kwargs: Any) -> Any:
            out, aux = query(pixel, *args, **kwargs)
            self.records["query_readout"].append(out[0, :, ::TAP_STEP].clone())
            return out, aux

        network.pixel_fusion = pixel_fusion
        network.readout_query = readout_query


def run_protocol(network: Any, cfg: Any, frames: np.ndarray, mask: np.ndarray, key: int) -> dict:
    """Forward from ``key`` then backward, in one InferenceCore; per propagated step the
    object probabilities, labels and taps, and the sensory memory after every step."""
    import torch
    from cutie.inference.inference_core import InferenceCore

    taps = Taps(network)
    core = InferenceCore(network, cfg)
    order = [key, *range(key + 1, len(frames)), key, *range(key - 1, -1, -1)]
    given = [True] + [False] * (len(frames) - 1 - key) + [True] + [False] * key
    probs, labels, sensory, tokens = [], [], [], []
    with torch.inference_mode():
        for t, with_mask in zip(order, given, strict=True):
            image = torch.from_numpy(frames[t]).permute(2, 0, 1).float() / 255.0
            if with_mask:
                out = core.step(image, torch.from_numpy(mask), objects=[1, 2])
            else:
                out = core.step(image)
                probs.append(out[1:].numpy().astype(np.float32))
                labels.append(core.output_prob_to_mask(out).numpy().astype(np.float32))
            state = core.memory.get_sensory(core.object_manager.all_obj_ids)
            sensory.append(state[0, :, ::TAP_STEP].numpy().astype(np.float32))
            memory = core.memory
            long_size = memory.long_mem.size(0) if memory.use_long_term else 0
            tokens.append((memory.work_mem.size(0), memory.work_mem.perm_size(0), long_size))
    expected = {
        "probs": np.stack(probs),
        "labels": np.stack(labels),
        "sensory": np.stack(sensory),
        "memory_tokens": np.asarray(tokens, dtype=np.float32),
    }
    for name, values in taps.records.items():
        expected[name] = np.stack([v.numpy() for v in values]).astype(np.float32)
    expected["frame_order"] = np.asarray(order, dtype=np.float32)
    return expected


def write_manifest(case: Path, rows: list) -> None:
    lines = ["name\tdtype\tshape\talias_of"]
    lines += [f"{n}\t{d}\t{'x'.join(str(s) for s in shape)}\t" for n, d, shape in rows]
    (case / "manifest.tsv").write_text("\n".join(lines) + "\n")


def make_case(cutie_path: Path, out: Path, variant: str, num_frames: int, key: int) -> None:
    import torch

    setup = CASES[variant]
    cfg = official_config(cutie_path, variant, setup["max_internal_size"])
    network = build_official(cfg)
    state, rows, whole = case_state(network, setup["tensor_scale"], setup["pinned"])
    network.load_state_dict(state, strict=True)
    frames = synthetic_frames(num_frames, *setup["frames_hw"], seed=SEED)
    mask = key_mask(frames[key])
    torch.set_num_threads(2)
    expected = run_protocol(network, cfg, frames, mask, key)
    bad = [name for name, value in expected.items() if not np.isfinite(value).all()]
    if bad:
        raise SystemExit(f"{variant}: non-finite official outputs {bad}; adjust tensor_scale")

    case = out / f"cutie_{variant}"
    case.mkdir(parents=True, exist_ok=True)
    write_manifest(case, rows)
    np.savez_compressed(case / "buffers.npz", **{k: v.numpy() for k, v in whole.items()})
    np.savez_compressed(case / "inputs.npz", frames_uint8=frames, key_mask=mask)
    np.savez_compressed(case / "expected.npz", **expected)
    config = _config(variant, setup, num_frames, key, expected)
    (case / "config.json").write_text(json.dumps(config, indent=1) + "\n")
    (case / "README.md").write_text(_readme(variant, setup, num_frames, key))
    shares = [round(float((expected["labels"] == i).mean()), 3) for i in range(3)]
    size = sum(p.stat().st_size for p in case.iterdir())
    print(f"{case}: {len(rows)} keys, label shares {shares}, {size / 1e6:.2f} MB")


def _config(variant: str, setup: dict, num_frames: int, key: int, expected: dict) -> dict:
    height, width = setup["frames_hw"]
    return {
        "seed": SEED,
        "family": "cutie",
        "variant_id": variant,
        "kind": "full",
        "case": f"cutie_{variant}",
        "official": {
            "repo": "github.com/hkchengrex/Cutie",
            "commit": COMMIT,
            "model_config": f"cutie/config/model/{variant}.yaml",
            "eval_config": "cutie/config/eval_config.yaml (overridden by `settings`)",
            "checkpoint": f"cutie-{variant}-mega.pth (release v1.0): a bare state_dict",
            "construction": "CUTIE(cfg) with resnet18/50(pretrained=False)",
        },
        "tensor_scale": setup["tensor_scale"],
        "pinned": {name: f"{value} (in buffers.npz)" for name, value in setup["pinned"].items()},
        "tensor_scale_reason": (
            "recipe weights times the factor. Unscaled, the anisotropic L2 similarities reach "
            "-4700 (base) / -700 (small) (large random keys and shrinkage d_proj**2 + 1), and "
            "the official top-k softmax, which exponentiates without subtracting the maximum, "
            "underflows to 0/0 = NaN on rows whose top-k all lie below ~-87. Base: the "
            "bottlenecks' last BN weight x0.3 (f16 max 24 -> 7, similarities >= -16); small: "
            "the key / shrinkage / selection convs x0.3"
        ),
        "settings": {**SETTINGS[variant], "max_internal_size": setup["max_internal_size"]},
        "protocol": {
            "num_frames": num_frames,
            "key_frame": key,
            "objects": [1, 2],
            "step_order": [int(t) for t in expected["frame_order"]],
            "steps_with_mask": [0, num_frames - key],
            "description": (
                "one InferenceCore: step(frame k, key_mask, objects=[1, 2]), step(frame t) for "
                "t = k+1 .. T-1, step(frame k, key_mask, objects=[1, 2]) again, step(frame t) "
                "for t = k-1 .. 0; images 3 x H x W float = uint8 / 255; end=False always"
            ),
        },
        "preprocessing": {
            "input": "frames_uint8 / 255 (RGB), 3 x H x W float32",
            "frames_hw": [height, width],
            "resize_rule": (
                "if min(H, W) > max_internal_size: bilinear (align_corners=False) to "
                "(int(H / min * max), int(W / min * max)); key mask nearest-exact"
            ),
            "padding": "zero pad to multiples of 16, smaller half left / top",
            "output": "unpadded, bilinear back to H x W",
        },
        "arrays": {
            "inputs.npz": {
                "frames_uint8": "T x H x W x 3 uint8 RGB",
                "key_mask": "H x W int64 object ids on the key frame (0 background, 1, 2)",
            },
            "expected.npz": {
                "probs": "S x 2 x H x W: the two objects' probabilities per propagated step",
                "labels": "S x H x W object ids of the arg-max (output_prob_to_mask)",
                "visual_readout": (
                    f"S x 2 x {256 // TAP_STEP} x h x w: top-k memory readout (pixel_fusion "
                    f"input), batch 0, channels [::{TAP_STEP}]"
                ),
                "pixel_readout": f"same, pixel_fusion output, channels [::{TAP_STEP}]",
                "query_readout": f"same, object transformer output, channels [::{TAP_STEP}]",
                "sensory": (
                    f"(S + 2) x 2 x {256 // TAP_STEP} x h x w: sensory memory after every step "
                    f"(mask steps included), channels [::{TAP_STEP}]"
                ),
                "frame_order": "the frame index of every step",
                "memory_tokens": (
                    "(S + 2) x 3 after every step: working-memory tokens, of which permanent, "
                    "and long-term tokens (bucket 0)"
                ),
            },
        },
        "checks": {
            "probs": {"atol": 2e-4, "rtol": 1e-3},
            "labels": {"min_agreement": 0.999},
            "query_readout": {"atol": 2e-3, "rtol": 1e-3},
            "sensory": {"atol": 2e-4, "rtol": 1e-3},
            "memory_tokens": {"exact": True},
        },
    }


def _readme(variant: str, setup: dict, num_frames: int, key: int) -> str:
    height, width = setup["frames_hw"]
    return f"""# cutie_{variant}

Official Cutie-{variant} (hkchengrex/Cutie@{COMMIT}, `cutie/config/model/{variant}.yaml`) on CPU
in float32 with seeded random weights (`tests/parity/recipe.py`, scaled by `tensor_scale`;
`inv_freq` and BatchNorm counters whole in `buffers.npz`), made by
`bench/parity/make_cutie_cases.py`.

Protocol: {num_frames} frames of {height}x{width}, a two-object mask on frame {key}; one
`InferenceCore` steps frame {key} with the mask, frames {key + 1}..{num_frames - 1}, frame {key}
again with the mask (the challenge's backward pass on the same memory), frames {key - 1}..0.
Settings differ from `eval_config.yaml` on purpose so that short clips exercise the memory:
{SETTINGS_NOTES[variant]}; `max_internal_size` {setup["max_internal_size"]}, `top_k` 30.

Compared: `probs` (the objects' probabilities at the input size per propagated step), `labels`,
`query_readout` (object transformer output) and `sensory` (sensory memory after each step);
`visual_readout` / `pixel_readout` are debugging taps. Quirks reproduced: the top-k softmax
exponentiates without subtracting the maximum; the re-added key frame is a non-permanent memory
frame (the first one is permanent); sensory memory is deep-updated on every memory frame.
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cutie-path", type=Path, required=True, help="checkout holding cutie/")
    parser.add_argument("--out", type=Path, default=ROOT / "tests/parity")
    parser.add_argument("--variants", nargs="*", default=["small", "base"])
    parser.add_argument("--frames", type=int, default=10)
    parser.add_argument("--key", type=int, default=4)
    args = parser.parse_args()
    sys.path.insert(0, str(args.cutie_path.resolve()))
    for variant in args.variants:
        make_case(args.cutie_path.resolve(), args.out, variant, args.frames, args.key)


if __name__ == "__main__":
    main()
