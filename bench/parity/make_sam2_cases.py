"""Make the SAM 2 / SAM 2.1 parity cases by running the official package on CPU.

Run it with the Python of an environment where the official ``sam2`` package is installed
(``SAM2_BUILD_CUDA=0 pip install sam2==1.1.0``, byte-identical to facebookresearch/sam2@2b90b9f;
or ``--sam2-path`` to a checkout), never the project's venv:

    /tmp/sam2env/bin/python bench/parity/make_sam2_cases.py --out tests/parity
    /tmp/sam2env/bin/python bench/parity/make_sam2_cases.py --measure-hf   # docs/vos.md numbers

Each case (format: ../shared/parity/README.md) is built with the official
``build_sam2_video_predictor`` and seeded random weights from ``tests/parity/recipe.py``; the
object-score head's last bias is pinned positive (``buffers.npz``) so propagated frames carry
real mask logits rather than the ``no_obj`` -1024 fill. The protocol: ``init_state`` on a
folder of frames, ``add_new_mask`` for two objects on a middle frame k, ``propagate_in_video``
forward from k, then ``reverse=True`` from k in the same state. Image size is reduced through
the official config override ``++model.image_size=S`` (recorded in config.json).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
SEED = 0
OBJ_SCORE_BIAS = "sam_mask_decoder.pred_obj_score_head.layers.2.bias"
COMMIT = "2b90b9f5ceec907a1c18123530e92e794ad901a4"

CONFIGS = {
    "sam2.1_hiera_tiny": "configs/sam2.1/sam2.1_hiera_t.yaml",
    "sam2.1_hiera_small": "configs/sam2.1/sam2.1_hiera_s.yaml",
    "sam2.1_hiera_base_plus": "configs/sam2.1/sam2.1_hiera_b+.yaml",
    "sam2.1_hiera_large": "configs/sam2.1/sam2.1_hiera_l.yaml",
    "sam2_hiera_tiny": "configs/sam2/sam2_hiera_t.yaml",
    "sam2_hiera_small": "configs/sam2/sam2_hiera_s.yaml",
    "sam2_hiera_base_plus": "configs/sam2/sam2_hiera_b+.yaml",
    "sam2_hiera_large": "configs/sam2/sam2_hiera_l.yaml",
}


def _recipe() -> Any:
    spec = importlib.util.spec_from_file_location("recipe", ROOT / "tests/parity/recipe.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def synthetic_frames(num_frames: int, height: int, width: int, seed: int) -> np.ndarray:
    """T x H x W x 3 uint8: a smooth background and two moving coloured ellipses."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack(
        [
            80 + 60 * np.sin(xx / width * 3.0),
            90 + 50 * np.cos(yy / height * 2.5),
            110 + 40 * np.sin((xx + yy) / (height + width) * 4.0),
        ],
        axis=-1,
    )
    frames = []
    for t in range(num_frames):
        img = base.copy()
        for i, color in enumerate(((230, 60, 40), (40, 200, 230))):
            cy = height * (0.35 + 0.3 * i) + 3.0 * t * (1 - 2 * i)
            cx = width * (0.3 + 0.4 * i) + 4.0 * t
            inside = ((yy - cy) / (height * 0.18)) ** 2 + ((xx - cx) / (width * 0.14)) ** 2 <= 1
            img[inside] = color
        img += rng.normal(0, 6, img.shape)
        frames.append(np.clip(img, 0, 255).astype(np.uint8))
    return np.stack(frames)


def prompt_masks(frame: np.ndarray) -> np.ndarray:
    """2 x H x W bool: the two ellipses of one frame, found by colour."""
    red = (frame[..., 0] > 170) & (frame[..., 1] < 120)
    cyan = (frame[..., 2] > 170) & (frame[..., 0] < 120)
    return np.stack([red, cyan])


def _build(variant: str, image_size: int, state: dict, postprocessing: bool) -> Any:
    import torch
    from sam2.build_sam import build_sam2_video_predictor

    overrides = [f"++model.image_size={image_size}"]
    predictor = build_sam2_video_predictor(
        CONFIGS[variant],
        ckpt_path=None,
        device="cpu",
        hydra_overrides_extra=overrides,
        apply_postprocessing=postprocessing,
    )
    missing, unexpected = predictor.load_state_dict(state, strict=True)
    assert not missing and not unexpected
    torch.set_grad_enabled(False)
    return predictor


class Recorder:
    """Taps on the official predictor: per track_step call its frame, memory-attention output
    (channels [::8]), object pointer and object score; per memory-encoder run its features."""

    def __init__(self, predictor: Any) -> None:
        self.calls: list[dict[str, Any]] = []
        self._pending: list[Any] = []
        predictor.memory_attention.register_forward_hook(self._on_memory_attention)
        original: Callable[..., Any] = predictor.track_step

        def track_step(*args: Any, **kwargs: Any) -> Any:
            self._pending = []
            out = original(*args, **kwargs)
            mem = self._pending[0] if self._pending else None
            self.calls.append(
                {
                    "frame": int(kwargs["frame_idx"]),
                    "reverse": bool(kwargs.get("track_in_reverse", False)),
                    "memory_attention": mem,
                    "obj_ptr": out["obj_ptr"][0].float().numpy().copy(),
                }
            )
            return out

        predictor.track_step = track_step

    def _on_memory_attention(self, module: Any, args: Any, output: Any) -> None:
        side = round(output.shape[0] ** 0.5)
        fmap = output[:, 0].permute(1, 0).reshape(-1, side, side)
        self._pending.append(fmap[::8].float().numpy().copy())


def run_protocol(
    predictor: Any,
    frames: np.ndarray,
    masks: np.ndarray,
    key: int,
    hf_prompt_memory: bool = False,
) -> dict[str, Any]:
    """The official predictor on ``frames`` with ``masks`` on frame ``key``; forward, reverse.

    ``hf_prompt_memory``: encode the prompted frame's memory from the full-resolution mask
    (what transformers' Sam2VideoModel does) instead of the 256^2 round trip.
    """
    import torch
    from PIL import Image

    recorder = Recorder(predictor)
    with tempfile.TemporaryDirectory() as folder:
        for t, frame in enumerate(frames):
            # PNG content under a .jpg name: the loader keys on the extension, PIL on the
            # content, so the frames reach the model without JPEG loss.
            Image.fromarray(frame).save(Path(folder) / f"{t:05d}.jpg", format="PNG")
        decoded = np.stack(
            [np.array(Image.open(Path(folder) / f"{t:05d}.jpg")) for t in range(len(frames))]
        )
        state = predictor.init_state(folder)
    if hf_prompt_memory:
        original = predictor._run_memory_encoder
        counter = iter(range(masks.shape[0]))

        def full_res_memory(inference_state: dict, frame_idx: int, **kw: Any) -> Any:
            obj_idx = next(counter)
            mask = inference_state["mask_inputs_per_obj"][obj_idx][frame_idx]
            kw["high_res_masks"] = mask * 20.0 - 10.0
            return original(inference_state=inference_state, frame_idx=frame_idx, **kw)

        predictor._run_memory_encoder = full_res_memory
    for obj, mask in enumerate(masks, start=1):
        predictor.add_new_mask(state, frame_idx=key, obj_id=obj, mask=torch.from_numpy(mask))
    video: dict[int, np.ndarray] = {}
    order: list[int] = []
    for reverse in (False, True):
        for t, _ids, logits in predictor.propagate_in_video(
            state, start_frame_idx=key, reverse=reverse
        ):
            arr = logits[:, 0].float().numpy().copy()
            if t in video:
                assert np.array_equal(video[t], arr), "key frame differs between passes"
            video[t] = arr
            order.append(t)
    outputs = state["output_dict_per_obj"]
    n_obj, n_t = masks.shape[0], frames.shape[0]
    low = np.zeros((n_t, n_obj, *outputs[0]["cond_frame_outputs"][key]["pred_masks"].shape[-2:]))
    scores = np.zeros((n_t, n_obj))
    ptrs = np.zeros((n_t, n_obj, outputs[0]["cond_frame_outputs"][key]["obj_ptr"].shape[-1]))
    for obj in range(n_obj):
        for t in range(n_t):
            out = outputs[obj]["cond_frame_outputs"].get(t) or outputs[obj][
                "non_cond_frame_outputs"
            ].get(t)
            low[t, obj] = out["pred_masks"][0, 0].float().numpy()
            scores[t, obj] = float(out["object_score_logits"].reshape(-1)[0])
            ptrs[t, obj] = out["obj_ptr"][0].float().numpy()
    steps = [c for c in recorder.calls if c["memory_attention"] is not None]
    return {
        "decoded": decoded,
        "images": state["images"].float().numpy(),
        "video_logits": np.stack([video[t] for t in range(n_t)]).astype(np.float32),
        "low_res_logits": low.astype(np.float32),
        "object_score_logits": scores.astype(np.float32),
        "obj_ptr": ptrs.astype(np.float32),
        "memory_attention": np.stack(
            [
                np.stack([steps[i + o]["memory_attention"] for o in range(n_obj)])
                for i in range(0, len(steps), n_obj)
            ]
        ).astype(np.float32),
        "step_frames": np.array([steps[i]["frame"] for i in range(0, len(steps), n_obj)]),
        "order": np.array(order),
    }


def official_state(variant: str, image_size: int, bias: float) -> tuple[dict, list]:
    """Seeded random weights for ``variant`` (recipe rule) and the manifest rows."""
    import torch
    from sam2.build_sam import build_sam2_video_predictor

    recipe = _recipe()

    predictor = build_sam2_video_predictor(
        CONFIGS[variant],
        ckpt_path=None,
        device="cpu",
        hydra_overrides_extra=[f"++model.image_size={image_size}"],
    )
    rows, state = [], {}
    for name, tensor in predictor.state_dict().items():
        dtype = str(tensor.dtype).removeprefix("torch.")
        rows.append((name, dtype, tuple(tensor.shape)))
        if name == OBJ_SCORE_BIAS:
            state[name] = torch.full(tuple(tensor.shape), bias)
        else:
            state[name] = recipe.parity_tensor(name, tuple(tensor.shape), SEED).to(tensor.dtype)
    return state, rows


def write_manifest(case: Path, rows: list) -> None:
    lines = ["name\tdtype\tshape\talias_of"]
    lines += [f"{n}\t{d}\t{'x'.join(str(s) for s in shape)}\t" for n, d, shape in rows]
    (case / "manifest.tsv").write_text("\n".join(lines) + "\n")


def make_full_case(
    out: Path,
    variant: str,
    image_size: int,
    frames_hw: tuple[int, int],
    num_frames: int,
    key: int,
    bias: float,
) -> None:
    import torch

    case = out / variant.replace(".", "_")
    case.mkdir(parents=True, exist_ok=True)
    state, rows = official_state(variant, image_size, bias)
    write_manifest(case, rows)
    np.savez(case / "buffers.npz", **{OBJ_SCORE_BIAS: state[OBJ_SCORE_BIAS].numpy()})
    frames = synthetic_frames(num_frames, *frames_hw, seed=SEED)
    masks = prompt_masks(frames[key])
    predictor = _build(variant, image_size, state, postprocessing=True)
    torch.set_num_threads(2)
    result = run_protocol(predictor, frames, masks, key)
    assert np.array_equal(result["decoded"], frames)
    np.savez_compressed(
        case / "inputs.npz",
        frames_uint8=result["decoded"],
        images_f32=result["images"].astype(np.float32),
        prompt_masks=masks,
    )
    expected = {
        k: result[k]
        for k in (
            "video_logits",
            "low_res_logits",
            "object_score_logits",
            "obj_ptr",
            "memory_attention",
        )
    }
    expected["video_masks"] = (result["video_logits"] > 0).astype(np.float32)
    np.savez_compressed(case / "expected.npz", **expected)
    fg = float((result["low_res_logits"] > 0).mean())
    config = _config(variant, image_size, num_frames, frames_hw, key, bias, rows, result, fg)
    (case / "config.json").write_text(json.dumps(config, indent=1) + "\n")
    (case / "README.md").write_text(_readme(variant, image_size, key, num_frames))
    print(f"{case}: {len(rows)} keys, foreground share {fg:.3f}")


def _config(
    variant: str,
    image_size: int,
    num_frames: int,
    frames_hw: tuple[int, int],
    key: int,
    bias: float,
    rows: list,
    result: dict,
    fg: float,
) -> dict:
    n_params = int(sum(int(np.prod(s)) for _n, _d, s in rows))
    return {
        "seed": SEED,
        "family": "sam2",
        "variant_id": variant,
        "kind": "full",
        "official": {
            "repo": "github.com/facebookresearch/sam2",
            "commit": COMMIT,
            "package": "PyPI sam2==1.1.0 (sam2/ byte-identical to the commit), SAM2_BUILD_CUDA=0",
            "model_config": CONFIGS[variant],
            "builder": "build_sam2_video_predictor(config, ckpt_path=None, device='cpu', "
            "apply_postprocessing=True)",
            "overrides": [f"++model.image_size={image_size}"],
            "checkpoint_format": "{'model': state_dict}",
        },
        "hyper_parameters": {
            "image_size": image_size,
            "apply_postprocessing": True,
            "binarize_mask_from_pts_for_mem_enc": True,
            "fill_hole_area": 8,
            "fill_hole_area_applied": 0,
            "fill_hole_area_note": "skipped upstream: sam2._C absent on CPU (UserWarning)",
            "non_overlap_masks": False,
            "num_frames": num_frames,
        },
        "pinned": {OBJ_SCORE_BIAS: f"{bias} (buffers.npz) so propagated frames carry masks"},
        "n_parameters": n_params,
        "n_state_dict_keys": len(rows),
        "protocol": {
            "key_frame": key,
            "objects": 2,
            "steps": "add_new_mask(frame=key, obj 1 and 2); propagate_in_video(start=key); "
            "propagate_in_video(start=key, reverse=True) in the same state",
            "order": [int(t) for t in result["order"]],
            "memory_attention_frames": [int(t) for t in result["step_frames"]],
        },
        "preprocessing": {
            "frames": "a folder of .jpg files (PNG content, lossless) read by the official "
            "loader: PIL resize to S x S "
            "(bicubic, no aspect ratio), /255, ImageNet mean/std",
            "images_f32": "the loader's output (inputs.npz), fed to the port directly",
        },
        "checks": {
            "video_logits": {"atol": 2e-3, "rtol": 1e-3},
            "low_res_logits": {"atol": 2e-3, "rtol": 1e-3},
            "object_score_logits": {"atol": 1e-3, "rtol": 1e-3},
            "obj_ptr": {"atol": 1e-3, "rtol": 1e-3},
            "memory_attention": {"atol": 2e-3, "rtol": 1e-3},
            "video_masks": {"min_agreement": 0.999},
        },
        "arrays": {
            "inputs.npz": {
                "frames_uint8": "T x H x W x 3 RGB frames (lossless: PNG data in .jpg files)",
                "images_f32": "T x 3 x S x S, the official loader's normalised network input",
                "prompt_masks": "2 x H x W bool, objects 1 and 2 on the key frame",
            },
            "expected.npz": {
                "video_logits": "T x 2 x H x W, per frame the yielded logits at video size",
                "low_res_logits": "T x 2 x S/4 x S/4, stored pred_masks (the key frame: "
                "the mask-as-output +-10 logits downsampled)",
                "object_score_logits": "T x 2",
                "obj_ptr": "T x 2 x 256, object pointers",
                "memory_attention": "N x 2 x 32 x S/16 x S/16, memory-attention output "
                "(channels [::8]) per propagated frame in protocol order",
                "video_masks": "video_logits > 0",
            },
        },
        "foreground_share": fg,
        "note": "maskmem_features are stored in bfloat16 by the official predictor; "
        "a 1-ulp bf16 flip changes later frames slightly, hence the tolerances",
    }


def _readme(variant: str, image_size: int, key: int, num_frames: int) -> str:
    return f"""# {variant} (SAM 2 video predictor, seeded random weights)

Made by `bench/parity/make_sam2_cases.py` with the official package (facebookresearch/sam2
@{COMMIT[:7]}, PyPI sam2==1.1.0) on CPU, float32, image size {image_size} (official override
`++model.image_size={image_size}`; the shipped configs use 1024).

Protocol: {num_frames} synthetic frames written losslessly (PNG data in `.jpg` files) and read
by `init_state`; two objects'
masks added with `add_new_mask` on frame {key}; `propagate_in_video(start_frame_idx={key})`,
then `propagate_in_video(start_frame_idx={key}, reverse=True)` on the same state. The reverse
pass reads the forward pass's memories of frames {key}+1.. (index arithmetic of
`_prepare_memory_conditioned_features`), which the port reproduces.

Compared: the yielded logits at video size, the stored low-res logits, object scores, object
pointers and the memory-attention output of every propagated frame (channels [::8]).

Quirks that matter: `apply_postprocessing=True` (the builder's default) binarises the prompted
frame's mask before memory encoding; hole filling is skipped because `sam2._C` is absent on CPU;
memory features are stored in bfloat16; the prompted frame's memory is encoded from its 256^2
(here {image_size // 4}^2) logits upsampled back, not from the input mask. The object-score
head's last bias is pinned to a positive value in `buffers.npz`.
"""


def make_manifest_case(out: Path, variant: str) -> None:
    from sam2.build_sam import build_sam2_video_predictor

    case = out / (variant.replace(".", "_"))
    case.mkdir(parents=True, exist_ok=True)
    predictor = build_sam2_video_predictor(CONFIGS[variant], ckpt_path=None, device="cpu")
    rows = [
        (n, str(t.dtype).removeprefix("torch."), tuple(t.shape))
        for n, t in predictor.state_dict().items()
    ]
    write_manifest(case, rows)
    config = {
        "seed": SEED,
        "family": "sam2",
        "variant_id": variant,
        "kind": "manifest_only",
        "official": {
            "repo": "github.com/facebookresearch/sam2",
            "commit": COMMIT,
            "model_config": CONFIGS[variant],
        },
        "hyper_parameters": {"image_size": 1024},
        "n_state_dict_keys": len(rows),
        "n_parameters": int(sum(int(np.prod(s)) for _n, _d, s in rows)),
        "checks": {},
    }
    (case / "config.json").write_text(json.dumps(config, indent=1) + "\n")
    (case / "README.md").write_text(
        f"# {variant} (key layout only)\n\nThe official checkpoint's state-dict layout "
        f"({len(rows)} keys, built from `{CONFIGS[variant]}` at commit {COMMIT[:7]}); no "
        "inputs. The port must convert every key strictly.\n"
    )
    print(f"{case}: manifest only, {len(rows)} keys")


def write_key_lists(out: Path) -> None:
    """third_party/sam2/<variant>.keys: every official key with its shape, per variant."""
    from sam2.build_sam import build_sam2_video_predictor

    out.mkdir(parents=True, exist_ok=True)
    for variant, cfg in CONFIGS.items():
        predictor = build_sam2_video_predictor(cfg, ckpt_path=None, device="cpu")
        lines = [f"# {variant}: state-dict keys of {cfg} (facebookresearch/sam2@{COMMIT[:7]})"]
        lines += [
            f"{n}\t{'x'.join(str(s) for s in t.shape)}" for n, t in predictor.state_dict().items()
        ]
        (out / f"{variant}.keys").write_text("\n".join(lines) + "\n")
        print(variant, len(lines) - 1)


def measure_hf(image_size: int, num_frames: int, key: int) -> None:
    """STEP 1: how much the HF prompt-frame memory (full-res mask) changes the outputs."""
    import torch

    torch.set_num_threads(2)
    variant = "sam2.1_hiera_tiny"
    state, _ = official_state(variant, image_size, 2.0)
    frames = synthetic_frames(num_frames, 96, 128, seed=SEED)
    masks = prompt_masks(frames[key])
    runs = []
    for hf in (False, True):
        predictor = _build(variant, image_size, state, postprocessing=True)
        runs.append(run_protocol(predictor, frames, masks, key, hf_prompt_memory=hf))
    a, b = runs[0]["video_logits"], runs[1]["video_logits"]
    ma, mb = a > 0, b > 0
    others = [t for t in range(num_frames) if t != key]
    inter = (ma & mb)[others].sum(axis=(2, 3))
    union = (ma | mb)[others].sum(axis=(2, 3))
    iou = np.where(union > 0, inter / np.maximum(union, 1), 1.0)
    print(
        json.dumps(
            {
                "image_size": image_size,
                "frames": num_frames,
                "key": key,
                "max_abs_logit_diff": float(np.abs(a - b)[others].max()),
                "mean_abs_logit_diff": float(np.abs(a - b)[others].mean()),
                "pixel_disagreement": float((ma != mb)[others].mean()),
                "min_iou_per_frame_object": float(iou.min()),
                "mean_iou": float(iou.mean()),
            }
        )
    )


def encoder_taps(out: Path, variants: list[str], image_size: int) -> None:
    """The image encoder alone (``forward_image``) of ``variants`` on one seeded random image:
    ``<variant>.npz`` with ``img``, ``vision`` and the projected stride-4 / stride-8 maps ``s0``,
    ``s1`` (a check of the Hiera sizes the full cases do not cover; not stored in the repo)."""
    import torch

    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(2)
    for variant in variants:
        state, _ = official_state(variant, image_size, 2.0)
        predictor = _build(variant, image_size, state, postprocessing=True)
        image = torch.randn(
            1, 3, image_size, image_size, generator=torch.Generator().manual_seed(1)
        )
        feats = predictor.forward_image(image)
        np.savez(
            out / f"{variant}.npz",
            img=image.numpy(),
            vision=feats["vision_features"].numpy(),
            s0=feats["backbone_fpn"][0].numpy(),
            s1=feats["backbone_fpn"][1].numpy(),
        )
        print(out / f"{variant}.npz")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sam2-path", default=None, help="folder holding the sam2 package")
    parser.add_argument("--out", type=Path, default=ROOT / "tests/parity")
    parser.add_argument("--variants", nargs="*", default=["sam2.1_hiera_tiny"])
    parser.add_argument("--manifest-only", nargs="*", default=[])
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--key", type=int, default=3)
    parser.add_argument("--bias", type=float, default=2.0)
    parser.add_argument("--key-lists", type=Path, default=None)
    parser.add_argument("--measure-hf", action="store_true")
    parser.add_argument("--encoder-taps", type=Path, default=None, help="folder for the taps")
    args = parser.parse_args()
    if args.sam2_path:
        sys.path.insert(0, args.sam2_path)
    if args.measure_hf:
        measure_hf(args.image_size, args.frames, args.key)
        return
    if args.encoder_taps is not None:
        encoder_taps(args.encoder_taps, args.variants, args.image_size)
        return
    if args.key_lists is not None:
        write_key_lists(args.key_lists)
    for variant in args.variants:
        make_full_case(
            args.out, variant, args.image_size, (96, 128), args.frames, args.key, args.bias
        )
    for variant in args.manifest_only:
        make_manifest_case(args.out, variant)


if __name__ == "__main__":
    main()
