"""Cutie's network: stateless stage methods that :mod:`vos.cutie.inference` composes.

Module and parameter names are those of hkchengrex/Cutie@ec5cdd4 ``cutie/model/cutie.py``
(``CUTIE``), ``big_modules.py`` and ``modules.py``, so an official state dict loads with
strict key accounting (:mod:`vos.cutie.convert`); the training-only ``aux_computer`` is not
built. Nothing is downloaded: both ResNets start random and take the checkpoint's weights.

Naming: images are B x 3 x H x W in [0, 1] (H, W multiples of 16; B = 2 with flip
augmentation); ``x`` = features shared by all objects, ``g`` = per-object features
B x N x C x h x w; a trailing number is the stride (f16 = stride 16, h x w = H/16 x W/16).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from vos.cutie.blocks import (
    GConv2d,
    GroupDistributor,
    GroupFeatureFusionBlock,
    GroupResBlock,
    aggregate,
    downsample_groups,
    full_precision,
    resnet_stages,
    upsample_groups,
)
from vos.cutie.spec import CutieSpec
from vos.cutie.transformer import ObjectSummarizer, QueryTransformer


@dataclass(frozen=True)
class ImageFeatures:
    """One (padded) frame encoded for memory reading and decoding.

    Attributes:
        f16, f8, f4: pixel-encoder maps (B x ms_dims[i] x H/s x W/s).
        pix_feat: B x pixel_dim x h x w projection of f16.
        key: B x key_dim x h x w; shrinkage: B x 1 x h x w (>= 1); selection: B x key_dim x h x w
            in (0, 1).
    """

    f16: torch.Tensor
    f8: torch.Tensor
    f4: torch.Tensor
    pix_feat: torch.Tensor
    key: torch.Tensor
    shrinkage: torch.Tensor
    selection: torch.Tensor

    @property
    def nbytes(self) -> int:
        tensors = (self.f16, self.f8, self.f4, self.pix_feat, self.key, self.shrinkage)
        return sum(t.numel() * t.element_size() for t in (*tensors, self.selection))

    def select(self, index: int) -> ImageFeatures:
        """The batch entry ``index`` (kept as a batch of one)."""
        return ImageFeatures(
            *(t[index : index + 1] for t in (self.f16, self.f8, self.f4, self.pix_feat)),
            *(t[index : index + 1] for t in (self.key, self.shrinkage, self.selection)),
        )


def others_mask(masks: torch.Tensor) -> torch.Tensor:
    """B x N x H x W -> for every object, the union of the other objects (clamped sum)."""
    return (masks.sum(dim=1, keepdim=True) - masks).clamp(0, 1)


class PixelEncoder(nn.Module):
    """ResNet-18/50 stem and ``layer1`` (named ``res2``) .. ``layer3``: image -> f16, f8, f4
    (``width``: the stem's channels, 64 in the official ResNets)."""

    def __init__(self, depth: str, width: int = 64) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.res2, self.layer2, self.layer3 = resnet_stages(depth, width)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.maxpool(F.relu(self.bn1(self.conv1(x))))
        f4 = self.res2(x)
        f8 = self.layer2(f4)
        return self.layer3(f8), f8, f4


class KeyProjection(nn.Module):
    """f16 -> key, shrinkage (``d_proj(x)**2 + 1``) and selection (``sigmoid(e_proj(x))``)."""

    def __init__(self, in_dim: int, mid_dim: int, key_dim: int) -> None:
        super().__init__()
        self.pix_feat_proj = nn.Conv2d(in_dim, mid_dim, kernel_size=1)
        self.key_proj = nn.Conv2d(mid_dim, key_dim, kernel_size=3, padding=1)
        self.d_proj = nn.Conv2d(mid_dim, 1, kernel_size=3, padding=1)
        self.e_proj = nn.Conv2d(mid_dim, key_dim, kernel_size=3, padding=1)

    def forward(self, f16: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.pix_feat_proj(f16)
        return self.key_proj(x), self.d_proj(x) ** 2 + 1, torch.sigmoid(self.e_proj(x))


def recurrent_update(h: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """GRU-style gate: h B x N x C x h x w, values B x N x 3C x h x w -> new h."""
    dim = values.shape[2] // 3
    forget = torch.sigmoid(values[:, :, :dim])
    update = torch.sigmoid(values[:, :, dim : 2 * dim])
    candidate = torch.tanh(values[:, :, 2 * dim :])
    return forget * h * (1 - update) + update * candidate


class SensoryDeepUpdater(nn.Module):
    """Sensory update from the mask encoder's value (memory frames), in float32."""

    def __init__(self, value_dim: int, sensory_dim: int) -> None:
        super().__init__()
        self.transform = GConv2d(value_dim + sensory_dim, sensory_dim * 3, kernel_size=3, padding=1)

    def forward(self, g: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        with full_precision(g):
            g, h = g.float(), h.float()
            return recurrent_update(h, self.transform(torch.cat([g, h], dim=2)))


class SensoryUpdater(nn.Module):
    """Sensory update from the decoder's p16, p8 and p4 (+ logit) maps, in float32."""

    def __init__(self, g_dims: tuple[int, int, int], mid_dim: int, sensory_dim: int) -> None:
        super().__init__()
        self.g16_conv = GConv2d(g_dims[0], mid_dim, kernel_size=1)
        self.g8_conv = GConv2d(g_dims[1], mid_dim, kernel_size=1)
        self.g4_conv = GConv2d(g_dims[2], mid_dim, kernel_size=1)
        self.transform = GConv2d(mid_dim + sensory_dim, sensory_dim * 3, kernel_size=3, padding=1)

    def forward(
        self, p16: torch.Tensor, p8: torch.Tensor, p4: torch.Tensor, h: torch.Tensor
    ) -> torch.Tensor:
        g = self.g16_conv(p16)
        g = g + self.g8_conv(downsample_groups(p8, 0.5))
        g = g + self.g4_conv(downsample_groups(p4, 0.25))
        with full_precision(g):
            g, h = g.float(), h.float()
            return recurrent_update(h, self.transform(torch.cat([g, h], dim=2)))


class MaskEncoder(nn.Module):
    """Image + object mask + others' mask (5 channels) -> per-object value and deep-updated
    sensory memory. ResNet-18 stem (max-pool *before* the ReLU, as the official) and
    ``layer1`` .. ``layer3`` (stem ``width`` channels, 64 officially; ``final_dim`` =
    4 x ``width``), fused with the frame's ``pix_feat``."""

    def __init__(
        self, pixel_dim: int, value_dim: int, sensory_dim: int, final_dim: int, width: int = 64
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(5, width, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1, self.layer2, self.layer3 = resnet_stages("resnet18", width)
        self.fuser = GroupFeatureFusionBlock(pixel_dim, final_dim, value_dim)
        self.sensory_update = SensoryDeepUpdater(value_dim, sensory_dim)

    def forward(
        self,
        image: torch.Tensor,
        pix_feat: torch.Tensor,
        sensory: torch.Tensor,
        masks: torch.Tensor,
        *,
        deep_update: bool = True,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """image: B x 3 x H x W normalised; masks: B x N x H x W -> (value B x N x Cv x h x w,
        sensory B x N x Cs x h x w)."""
        batch, objects = masks.shape[:2]
        g = torch.stack([masks, others_mask(masks)], dim=2)
        g = torch.cat([image.unsqueeze(1).expand(-1, objects, -1, -1, -1), g], dim=2)
        x = F.relu(self.maxpool(self.bn1(self.conv1(g.flatten(0, 1)))))
        x = self.layer3(self.layer2(self.layer1(x)))
        value = self.fuser(pix_feat, x.view(batch, objects, *x.shape[1:]))
        if deep_update:
            sensory = self.sensory_update(value, sensory)
        return value, sensory


class PixelFeatureFuser(nn.Module):
    """Memory readout + compressed sensory memory and last mask, fused with ``pix_feat``."""

    def __init__(self, pixel_dim: int, value_dim: int, sensory_dim: int, embed_dim: int) -> None:
        super().__init__()
        self.fuser = GroupFeatureFusionBlock(pixel_dim, value_dim, embed_dim)
        self.sensory_compress = GConv2d(sensory_dim + 2, value_dim, kernel_size=1)

    def forward(
        self,
        pix_feat: torch.Tensor,
        readout: torch.Tensor,
        sensory: torch.Tensor,
        last_mask: torch.Tensor,
    ) -> torch.Tensor:
        """readout B x N x Cv x h x w, sensory B x N x Cs x h x w, last_mask B x N x h x w ->
        B x N x embed_dim x h x w."""
        masks = torch.stack([last_mask, others_mask(last_mask)], dim=2)
        p16 = readout + self.sensory_compress(torch.cat([sensory, masks], dim=2))
        return self.fuser(pix_feat, p16)


class MaskUpsampleBlock(nn.Module):
    """x2 bilinear upsampling of per-object maps, plus a shared skip map, then a res block."""

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.distributor = GroupDistributor()
        self.out_conv = GroupResBlock(in_dim, out_dim)

    def forward(self, g: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.out_conv(self.distributor(skip, upsample_groups(g, 2.0)))


class DecoderFeatureProcessor(nn.Module):
    """1x1 projections of the f8 and f4 skip maps."""

    def __init__(self, in_dims: tuple[int, int], out_dims: tuple[int, int]) -> None:
        super().__init__()
        self.transforms = nn.ModuleList(
            nn.Conv2d(i, o, kernel_size=1) for i, o in zip(in_dims, out_dims, strict=True)
        )

    def forward(self, f8: torch.Tensor, f4: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.transforms[0](f8), self.transforms[1](f4)


class MaskDecoder(nn.Module):
    """Readout (stride 16) -> per-object logits at stride 4, and the decoder's sensory update."""

    def __init__(
        self, ms_dims: tuple[int, int, int], up_dims: tuple[int, int, int], sensory_dim: int
    ):
        super().__init__()
        self.sensory_update = SensoryUpdater(
            (up_dims[0], up_dims[1], up_dims[2] + 1), sensory_dim, sensory_dim
        )
        self.decoder_feat_proc = DecoderFeatureProcessor(
            (ms_dims[1], ms_dims[2]), (up_dims[0], up_dims[1])
        )
        self.up_16_8 = MaskUpsampleBlock(up_dims[0], up_dims[1])
        self.up_8_4 = MaskUpsampleBlock(up_dims[1], up_dims[2])
        self.pred = nn.Conv2d(up_dims[2], 1, kernel_size=3, padding=1)

    def forward(
        self,
        f8: torch.Tensor,
        f4: torch.Tensor,
        readout: torch.Tensor,
        sensory: torch.Tensor,
        *,
        update_sensory: bool,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (sensory B x N x Cs x h x w, logits B x N x H/4 x W/4 float32)."""
        batch, objects = readout.shape[:2]
        f8, f4 = self.decoder_feat_proc(f8, f4)
        p8 = self.up_16_8(readout, f8)
        p4 = self.up_8_4(p8, f4)
        with full_precision(p4):
            logits = self.pred(F.relu(p4.flatten(0, 1).float()))
        logits = logits.view(batch, objects, *logits.shape[-2:])
        if update_sensory:
            p4 = torch.cat([p4, logits.unsqueeze(2).to(p4.dtype)], dim=2)
            sensory = self.sensory_update(readout, p8, p4, sensory)
        return sensory, logits


class CutieNetwork(nn.Module):
    """The Cutie network (official ``CUTIE`` without the training-only ``aux_computer``)."""

    def __init__(self, spec: CutieSpec) -> None:
        super().__init__()
        self.spec = spec
        self.pixel_encoder = PixelEncoder(spec.pixel_encoder, spec.encoder_width)
        self.pix_feat_proj = nn.Conv2d(spec.ms_dims[0], spec.pixel_dim, kernel_size=1)
        self.key_proj = KeyProjection(spec.ms_dims[0], spec.pixel_dim, spec.key_dim)
        self.mask_encoder = MaskEncoder(
            spec.pixel_dim,
            spec.value_dim,
            spec.sensory_dim,
            spec.mask_encoder_dim,
            spec.mask_encoder_width,
        )
        self.mask_decoder = MaskDecoder(spec.ms_dims, spec.up_dims, spec.sensory_dim)
        self.pixel_fuser = PixelFeatureFuser(
            spec.pixel_dim, spec.value_dim, spec.sensory_dim, spec.embed_dim
        )
        self.object_transformer = QueryTransformer(
            spec.embed_dim,
            spec.num_heads,
            spec.ff_dim,
            spec.num_queries,
            spec.num_blocks,
            spec.pixel_pe_scale,
            spec.pixel_pe_temperature,
        )
        self.object_summarizer = ObjectSummarizer(
            spec.value_dim,
            spec.embed_dim,
            spec.num_queries,
            spec.pixel_pe_scale,
            spec.pixel_pe_temperature,
        )
        mean = torch.tensor(spec.pixel_mean).view(-1, 1, 1)
        std = torch.tensor(spec.pixel_std).view(-1, 1, 1)
        self.register_buffer("pixel_mean", mean, persistent=False)
        self.register_buffer("pixel_std", std, persistent=False)

    def train(self, mode: bool = True) -> CutieNetwork:
        """Inference only: batch norms always use their running statistics."""
        return super().train(False)

    def normalize(self, image: torch.Tensor) -> torch.Tensor:
        return (image - self.pixel_mean) / self.pixel_std

    def encode_image(self, image: torch.Tensor) -> ImageFeatures:
        """B x 3 x H x W in [0, 1] -> :class:`ImageFeatures`."""
        f16, f8, f4 = self.pixel_encoder(self.normalize(image))
        key, shrinkage, selection = self.key_proj(f16)
        return ImageFeatures(f16, f8, f4, self.pix_feat_proj(f16), key, shrinkage, selection)

    def encode_mask(
        self,
        image: torch.Tensor,
        pix_feat: torch.Tensor,
        sensory: torch.Tensor,
        masks: torch.Tensor,
        *,
        deep_update: bool = True,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """-> (mask value B x N x Cv x h x w, sensory B x N x Cs x h x w,
        object summaries B x N x Q x (C + 1))."""
        value, sensory = self.mask_encoder(
            self.normalize(image), pix_feat, sensory, masks, deep_update=deep_update
        )
        return value, sensory, self.object_summarizer(masks, value)

    def pixel_fusion(
        self,
        pix_feat: torch.Tensor,
        readout: torch.Tensor,
        sensory: torch.Tensor,
        last_mask: torch.Tensor,
    ) -> torch.Tensor:
        """last_mask B x N x H x W (area-downsampled to h x w here) -> B x N x C x h x w."""
        last_mask = F.interpolate(last_mask, size=sensory.shape[-2:], mode="area")
        return self.pixel_fuser(pix_feat, readout, sensory, last_mask)

    def readout_query(self, pixel: torch.Tensor, obj_memory: torch.Tensor) -> torch.Tensor:
        """The object transformer: B x N x C x h x w, B x N x 1 x Q x (C + 1) ->
        B x N x C x h x w."""
        return self.object_transformer(pixel, obj_memory)

    def segment(
        self,
        features: ImageFeatures,
        readout: torch.Tensor,
        sensory: torch.Tensor,
        *,
        update_sensory: bool,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (sensory, probabilities B x (N + 1) x H x W over background and objects: sigmoid,
        soft aggregation, x4 bilinear upsampling of the logits, softmax)."""
        sensory, logits = self.mask_decoder(
            features.f8, features.f4, readout, sensory, update_sensory=update_sensory
        )
        scores = aggregate(torch.sigmoid(logits), dim=1)
        scores = F.interpolate(scores, scale_factor=4, mode="bilinear", align_corners=False)
        return sensory, F.softmax(scores, dim=1)
