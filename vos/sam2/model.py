"""The SAM 2 / SAM 2.1 network: the modules and the per-frame computations of ``SAM2Base``.

The module holds no video state (:mod:`vos.sam2.tracker` does). Parameter names equal the
official checkpoint's keys (``torch.load(path)["model"]``; facebookresearch/sam2@2b90b9f
``sam2/modeling/sam2_base.py``), so :func:`models.shared.checkpoint.load_state_strict` loads
an official file without renaming. Configuration values fixed here are shared by every
official config (``sam2{,.1}_hiera_*.yaml``); the version flags come from the spec.

Naming: S = image size, h = w = S/16 (the stride-16 grid), C = 256, D = 64 (memory width).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from vos.sam2.heads import MaskDecoder, PromptEncoder
from vos.sam2.hiera import ImageEncoder
from vos.sam2.layers import MLP
from vos.sam2.memory import MemoryAttention, MemoryBank, MemoryEncoder
from vos.sam2.position import sine_1d
from vos.sam2.spec import Sam2Spec

NUM_MASKMEM = 7  # 1 input frame + 6 previous frames
HIDDEN = 256
MEM_DIM = 64
NO_OBJ_SCORE = -1024.0
MASK_OUT_SCALE, MASK_OUT_BIAS = 20.0, -10.0  # mask-as-output logits and memory sigmoid scaling


@dataclass(frozen=True)
class ImageFeatures:
    """One frame through the image encoder (batch 1).

    Attributes:
        vision: 1 x C x h x w stride-16 features.
        vision_pos: 1 x C x h x w their sine position map.
        high_res: the stride-4 and stride-8 maps after ``conv_s0`` / ``conv_s1``
            (1 x C/8 x 4h x 4w, 1 x C/4 x 2h x 2w).
    """

    vision: torch.Tensor
    vision_pos: torch.Tensor
    high_res: tuple[torch.Tensor, torch.Tensor]

    @property
    def nbytes(self) -> int:
        tensors = (self.vision, self.vision_pos, *self.high_res)
        return sum(t.numel() * t.element_size() for t in tensors)


@dataclass(frozen=True)
class HeadOutput:
    """The SAM heads' result for one object on one frame.

    Attributes:
        low_res: 1 x 1 x S/4 x S/4 logits of the chosen mask.
        high_res: 1 x 1 x S x S the same, upsampled bilinearly.
        obj_ptr: 1 x C object pointer.
        object_score: 1 x 1 object-score logit.
    """

    low_res: torch.Tensor
    high_res: torch.Tensor
    obj_ptr: torch.Tensor
    object_score: torch.Tensor


class Sam2Model(nn.Module):
    """SAM 2.x with the official checkpoint layout (``spec.version`` adds the 2.1 parameters)."""

    def __init__(self, spec: Sam2Spec, stability_fallback: bool = True) -> None:
        super().__init__()
        self.spec = spec
        self.maskmem_tpos_enc = nn.Parameter(torch.zeros(NUM_MASKMEM, 1, 1, MEM_DIM))
        self.no_mem_embed = nn.Parameter(torch.zeros(1, 1, HIDDEN))
        self.no_mem_pos_enc = nn.Parameter(torch.zeros(1, 1, HIDDEN))
        self.no_obj_ptr = nn.Parameter(torch.zeros(1, HIDDEN))
        if spec.no_obj_embed_spatial:
            self.no_obj_embed_spatial = nn.Parameter(torch.zeros(1, MEM_DIM))
        self.image_encoder = ImageEncoder(spec.trunk)
        self.mask_downsample = nn.Conv2d(1, 1, kernel_size=4, stride=4)
        self.memory_attention = MemoryAttention(HIDDEN, MEM_DIM)
        self.memory_encoder = MemoryEncoder(HIDDEN, MEM_DIM)
        self.sam_prompt_encoder = PromptEncoder(HIDDEN, spec.feat_size, spec.image_size)
        self.sam_mask_decoder = MaskDecoder(HIDDEN, stability_fallback=stability_fallback)
        self.obj_ptr_proj = MLP(HIDDEN, HIDDEN, HIDDEN, 3)
        if spec.proj_tpos_enc_in_obj_ptrs:
            self.obj_ptr_tpos_proj = nn.Linear(HIDDEN, MEM_DIM)

    # -- image -----------------------------------------------------------------------------

    def encode_image(self, image: torch.Tensor) -> ImageFeatures:
        """1 x 3 x S x S normalised image -> :class:`ImageFeatures` (``forward_image``)."""
        feats, pos = self.image_encoder(image)
        decoder = self.sam_mask_decoder
        return ImageFeatures(
            vision=feats[2],
            vision_pos=pos[2],
            high_res=(decoder.conv_s0(feats[0]), decoder.conv_s1(feats[1])),
        )

    # -- SAM heads -------------------------------------------------------------------------

    def heads(
        self,
        pix_feat: torch.Tensor,
        high_res: tuple[torch.Tensor, torch.Tensor],
        mask_prompt: torch.Tensor | None = None,
        multimask: bool = True,
    ) -> HeadOutput:
        """``_forward_sam_heads`` without points: B x C x h x w (memory-conditioned) features,
        an optional B x 1 x S/4 x S/4 mask prompt -> :class:`HeadOutput`."""
        b = pix_feat.shape[0]
        coords = pix_feat.new_zeros(b, 1, 2)
        labels = -torch.ones(b, 1, dtype=torch.int32, device=pix_feat.device)
        prompt = self.sam_prompt_encoder
        sparse, dense = prompt(coords, labels, mask_prompt)
        out = self.sam_mask_decoder(pix_feat, prompt.dense_pe(), sparse, dense, high_res, multimask)
        present = out.object_scores > 0  # B x 1
        masks = torch.where(present[:, :, None, None], out.masks, NO_OBJ_SCORE).float()
        token = out.tokens[:, 0]
        if multimask:
            best = out.ious.argmax(dim=-1)
            rows = torch.arange(b, device=pix_feat.device)
            masks = masks[rows, best][:, None]
            token = out.tokens[rows, best]
        else:
            masks = masks[:, :1]
        high = F.interpolate(masks, size=(self.spec.image_size,) * 2, mode="bilinear")
        obj_ptr = self._mix_no_obj_ptr(self.obj_ptr_proj(token), present.float())
        return HeadOutput(masks, high, obj_ptr, out.object_scores)

    def _mix_no_obj_ptr(self, obj_ptr: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        """``fixed_no_obj_ptr``: an absent object's pointer is the learned ``no_obj_ptr``."""
        return present * obj_ptr + (1 - present) * self.no_obj_ptr

    def mask_as_output(self, feats: ImageFeatures, mask: torch.Tensor) -> HeadOutput:
        """``_use_mask_as_output``: a 1 x 1 x S x S binary mask becomes +-10 logits directly;
        the pointer comes from the heads on the un-conditioned features with the mask
        downsampled by ``mask_downsample`` as the dense prompt (single-mask output)."""
        mask = mask.float()
        high = mask * MASK_OUT_SCALE + MASK_OUT_BIAS
        side = high.shape[-1] // 4
        low = F.interpolate(high, size=(side, side), mode="bilinear", antialias=True)
        sam = self.heads(feats.vision, feats.high_res, self.mask_downsample(mask), multimask=False)
        present = mask.flatten(1).gt(0).any(dim=1, keepdim=True).float()  # 1 x 1
        score = MASK_OUT_SCALE * present + MASK_OUT_BIAS
        return HeadOutput(low, high, self._mix_no_obj_ptr(sam.obj_ptr, present), score)

    # -- memory ----------------------------------------------------------------------------

    def condition_first_frame(self, feats: ImageFeatures) -> torch.Tensor:
        """``directly_add_no_mem_embed``: an initial conditioning frame adds ``no_mem_embed``."""
        return feats.vision + self.no_mem_embed.reshape(1, -1, 1, 1)

    def condition_on_memory(
        self,
        feats: ImageFeatures,
        memory: torch.Tensor,
        memory_pos: torch.Tensor,
        num_ptr_tokens: int,
    ) -> torch.Tensor:
        """1 x C x h x w features, 1 x M x D memory tokens and their PE -> 1 x C x h x w."""
        b, c, h, w = feats.vision.shape
        tokens = feats.vision.flatten(2).transpose(1, 2)
        pos = feats.vision_pos.flatten(2).transpose(1, 2)
        out = self.memory_attention(tokens, pos, memory, memory_pos, num_ptr_tokens)
        return out.transpose(1, 2).reshape(b, c, h, w)

    def condition_on_memories(
        self, feats: ImageFeatures, banks: Sequence[MemoryBank]
    ) -> torch.Tensor:
        """:meth:`condition_on_memory` for B memories at once (one per object of any track,
        memories of any sizes): -> B x C x h x w, entry ``i`` conditioned on ``banks[i]``."""
        _, c, h, w = feats.vision.shape
        tokens = feats.vision.flatten(2).transpose(1, 2)
        pos = feats.vision_pos.flatten(2).transpose(1, 2)
        out = self.memory_attention.forward_many(tokens, pos, banks)
        return out.transpose(1, 2).reshape(len(banks), c, h, w)

    def pointer_positions(self, t_diffs: torch.Tensor, max_ptrs: int) -> torch.Tensor:
        """N temporal offsets -> N x D pointer position encodings (zero in 2.0, whose configs
        set ``add_tpos_enc_to_obj_ptrs: false``; a projected 1-D sine of t / (max - 1) in
        2.1)."""
        if not self.spec.add_tpos_enc_to_obj_ptrs:
            return t_diffs.new_zeros(t_diffs.shape[0], MEM_DIM, dtype=torch.float32)
        pe = sine_1d(t_diffs.float() / (max_ptrs - 1), HIDDEN)
        return self.obj_ptr_tpos_proj(pe)

    def encode_memory(
        self,
        feats: ImageFeatures,
        high_res_logits: torch.Tensor,
        object_score: torch.Tensor,
        binarize: bool,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``_encode_new_memory``: B x 1 x S x S logits and B x 1 object scores of B objects on
        one frame -> (B x D x h x w memory features, 1 x D x h x w their PE); 2.1 adds
        ``no_obj_embed_spatial`` where the object is absent."""
        mask = (high_res_logits > 0).float() if binarize else torch.sigmoid(high_res_logits)
        mask = mask * MASK_OUT_SCALE + MASK_OUT_BIAS
        features, pos = self.memory_encoder(feats.vision, mask)
        if self.spec.no_obj_embed_spatial:
            absent = 1 - (object_score > 0).float()  # 1 x 1
            features = (
                features + absent[..., None, None] * self.no_obj_embed_spatial[..., None, None]
            )
        return features, pos
