"""Small blocks of Cutie's network: per-object ("group") convolutions, residual blocks with
channel attention, feature fusion, and the ResNet stages of both encoders.

Naming: ``x`` = features shared by all objects (B x C x H x W); ``g`` = per-object features
(B x N x C x H x W, N = objects). Parameter names follow the official modules
(hkchengrex/Cutie@ec5cdd4 ``cutie/model/group_modules.py``, ``channel_attn.py``,
``utils/resnet.py``) so that checkpoint keys load unchanged.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn


@contextlib.contextmanager
def full_precision(x: torch.Tensor) -> Iterator[None]:
    """Autocast off on ``x``'s device (the official ``autocast(enabled=False)`` regions)."""
    with torch.autocast(x.device.type, enabled=False):
        yield


def interpolate_groups(
    g: torch.Tensor, scale: float, mode: str, align_corners: bool | None = None
) -> torch.Tensor:
    """B x N x C x H x W -> B x N x C x (H*scale) x (W*scale)."""
    batch, objects = g.shape[:2]
    out = F.interpolate(g.flatten(0, 1), scale_factor=scale, mode=mode, align_corners=align_corners)
    return out.view(batch, objects, *out.shape[1:])


def upsample_groups(g: torch.Tensor, scale: float = 2.0) -> torch.Tensor:
    """Bilinear (align_corners=False) upsampling of per-object maps."""
    return interpolate_groups(g, scale, "bilinear", align_corners=False)


def downsample_groups(g: torch.Tensor, scale: float = 0.5) -> torch.Tensor:
    """Area downsampling of per-object maps."""
    return interpolate_groups(g, scale, "area")


class GConv2d(nn.Conv2d):
    """A 2-D convolution applied to every object: B x N x C x H x W -> B x N x C' x H' x W'."""

    def forward(self, g: torch.Tensor) -> torch.Tensor:
        batch, objects = g.shape[:2]
        out = super().forward(g.flatten(0, 1))
        return out.view(batch, objects, *out.shape[1:])


class GroupResBlock(nn.Module):
    """Pre-activation residual block on per-object maps (1x1 projection when widths differ)."""

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.downsample = (
            nn.Identity() if in_dim == out_dim else GConv2d(in_dim, out_dim, kernel_size=1)
        )
        self.conv1 = GConv2d(in_dim, out_dim, kernel_size=3, padding=1)
        self.conv2 = GConv2d(out_dim, out_dim, kernel_size=3, padding=1)

    def forward(self, g: torch.Tensor) -> torch.Tensor:
        out = self.conv2(F.relu(self.conv1(F.relu(g))))
        return out + self.downsample(g)


class CAResBlock(nn.Module):
    """Pre-activation residual block with ECA-style channel attention (a 1-D conv over the
    pooled channels); B x C x H x W -> B x C' x H x W."""

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_dim, out_dim, kernel_size=3, padding=1)
        self.conv2 = nn.Conv2d(out_dim, out_dim, kernel_size=3, padding=1)
        t = int((abs(math.log2(out_dim)) + 1) // 2)
        k = t if t % 2 else t + 1
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.conv = nn.Conv1d(1, 1, kernel_size=k, padding=(k - 1) // 2, bias=False)
        self.downsample = (
            nn.Identity() if in_dim == out_dim else nn.Conv2d(in_dim, out_dim, kernel_size=1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv2(F.relu(self.conv1(F.relu(x))))
        batch, channels = out.shape[:2]
        weights = self.conv(self.pool(out).view(batch, 1, channels))
        weights = weights.transpose(-1, -2).unsqueeze(-1).sigmoid()  # B x C x 1 x 1
        return out * weights + self.downsample(x)


class GroupDistributor(nn.Module):
    """Adds (after optional 1x1 projections) the shared map ``x`` to every object's ``g``.

    Official ``MainToGroupDistributor(method='add')``; the ``cat`` form of the mask encoder is
    a plain concatenation there and needs no module here.
    """

    def __init__(self, x_transform: nn.Module | None = None, g_transform: nn.Module | None = None):
        super().__init__()
        self.x_transform = x_transform
        self.g_transform = g_transform

    def forward(self, x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        if self.x_transform is not None:
            x = self.x_transform(x)
        if self.g_transform is not None:
            g = self.g_transform(g)
        return g + x.unsqueeze(1)


class GroupFeatureFusionBlock(nn.Module):
    """Fuses a shared map (``x_in_dim``) into per-object features (``g_in_dim``):
    B x C x H x W, B x N x C' x H x W -> B x N x ``out_dim`` x H x W."""

    def __init__(self, x_in_dim: int, g_in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.distributor = GroupDistributor(
            x_transform=nn.Conv2d(x_in_dim, out_dim, kernel_size=1),
            g_transform=GConv2d(g_in_dim, out_dim, kernel_size=1),
        )
        self.block1 = CAResBlock(out_dim, out_dim)
        self.block2 = CAResBlock(out_dim, out_dim)

    def forward(self, x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        batch, objects = g.shape[:2]
        out = self.distributor(x, g).flatten(0, 1)
        out = self.block2(self.block1(out))
        return out.view(batch, objects, *out.shape[1:])


# --------------------------------------------------------------------------------------------
# ResNet stages (official cutie/model/utils/resnet.py layout: conv1 / bn1 / layerN.i.*)


def _conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    """ResNet-18/34 block."""

    expansion = 1

    def __init__(
        self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None
    ) -> None:
        super().__init__()
        self.conv1 = _conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        residual = x if self.downsample is None else self.downsample(x)
        return F.relu(out + residual)


class Bottleneck(nn.Module):
    """ResNet-50 block (stride on the 3x3 conv)."""

    expansion = 4

    def __init__(
        self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        residual = x if self.downsample is None else self.downsample(x)
        return F.relu(out + residual)


RESNET_LAYERS: dict[str, tuple[type[BasicBlock] | type[Bottleneck], tuple[int, int, int]]] = {
    "resnet18": (BasicBlock, (2, 2, 2)),
    "resnet50": (Bottleneck, (3, 4, 6)),
}


def resnet_stages(
    depth: str, width: int = 64
) -> tuple[nn.Sequential, nn.Sequential, nn.Sequential]:
    """``layer1`` .. ``layer3`` of a ResNet (strides 4, 8, 16 after the stem) whose stem gives
    ``width`` channels and whose stages have ``width`` x 1, 2, 4 planes (64: the official
    ResNets); never any pretrained download: every weight comes from the Cutie checkpoint."""
    block, counts = RESNET_LAYERS[depth]
    inplanes = width
    stages = []
    planes_of = (width, 2 * width, 4 * width)
    for planes, count, stride in zip(planes_of, counts, (1, 2, 2), strict=True):
        downsample = None
        if stride != 1 or inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                nn.Conv2d(inplanes, planes * block.expansion, 1, stride=stride, bias=False),
                nn.BatchNorm2d(planes * block.expansion),
            )
        blocks: list[nn.Module] = [block(inplanes, planes, stride, downsample)]
        inplanes = planes * block.expansion
        blocks += [block(inplanes, planes) for _ in range(1, count)]
        stages.append(nn.Sequential(*blocks))
    return stages[0], stages[1], stages[2]


def aggregate(prob: torch.Tensor, dim: int) -> torch.Tensor:
    """Soft aggregation: per-object probabilities -> logits over {background, objects}.

    The background probability is the product of ``1 - p``; all are clamped to
    [1e-7, 1 - 1e-7] and turned into logits (official ``cutie/utils/tensor_utils.py``), in
    float32. ``prob``: ... x N x ... -> ... x (N + 1) x ... along ``dim``.
    """
    with full_precision(prob):
        prob = prob.float()
        background = torch.prod(1 - prob, dim=dim, keepdim=True)
        merged = torch.cat([background, prob], dim).clamp(1e-7, 1 - 1e-7)
        return torch.log(merged / (1 - merged))
