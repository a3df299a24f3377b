"""Video Swin Transformer as a per-frame feature extractor (MTTR's wrapper, used by RVOS models).

SgMg, ReferFormer, MUTR and SOC all run Video Swin with patch (1, 4, 4) -- no temporal
downsampling, so every frame keeps its own features -- and window (8, 7, 7); they take the
output of each stage *before* its patch merging, without the final norm. The parameter names
follow the official checkpoints under ``backbone.0.body.*`` (``SwinTransformer/Video-Swin-
Transformer`` ``mmaction/models/backbones/swin_transformer.py`` as wrapped by ``mttr``'s
``VideoSwinTransformerBackbone``): ``patch_embed.{proj,norm}``, ``layers.{i}.blocks.{j}.{norm1,
attn.{relative_position_bias_table,qkv,proj},norm2,mlp.{fc1,fc2}}`` and the merging layers moved
out to ``downsamples.{i}.{norm,reduction}``.

Quirks kept on purpose (they change the numbers; models.md 1.8 item 3):

- along an axis whose size is <= the window, the window shrinks to that size and the shift on
  that axis becomes 0; the relative-position bias is then looked up in the top-left N x N block
  of the index built for the full window, even when that is not the geometric offset;
- blocks pad to window multiples after ``norm1`` and do not mask the zero tokens; shifted
  windows use an additive -100 between regions (not -inf);
- patch merging pads odd H/W at the bottom/right and concatenates (even, even), (odd, even),
  (even, odd), (odd, odd) before LayerNorm + Linear.

Naming: B = videos, T = frames, C = channels; inside the stages tensors are B x T x H x W x C.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

Size3 = tuple[int, int, int]

# Windows attended at once: bounds the attention matrices on long, large videos (64 windows of
# 8 x 7 x 7 tokens: 39 MB of attention weights per head).
_WINDOW_CHUNK = 64


@dataclass(frozen=True)
class VideoSwinSpec:
    """The hyper-parameters that differ between the released Video Swin sizes."""

    embed_dim: int
    depths: tuple[int, ...]
    num_heads: tuple[int, ...]


VIDEO_SWIN_SPECS: dict[str, VideoSwinSpec] = {
    "tiny": VideoSwinSpec(96, (2, 2, 6, 2), (3, 6, 12, 24)),
    "small": VideoSwinSpec(96, (2, 2, 18, 2), (3, 6, 12, 24)),
    "base": VideoSwinSpec(128, (2, 2, 18, 2), (4, 8, 16, 32)),
}


def size_arguments(specs: Mapping[str, VideoSwinSpec], name: str, what: str) -> dict[str, object]:
    """``embed_dim``, ``depths`` and ``num_heads`` of the released size ``name`` in ``specs``."""
    if name not in specs:
        raise ValueError(f"unknown {what} size {name!r}; known: {sorted(specs)}")
    spec = specs[name]
    return {"embed_dim": spec.embed_dim, "depths": spec.depths, "num_heads": spec.num_heads}


def drop_path(x: torch.Tensor, rate: float, training: bool) -> torch.Tensor:
    """Stochastic depth: zero whole samples with probability ``rate`` and rescale the rest."""
    if rate == 0.0 or not training:
        return x
    keep = 1.0 - rate
    shape = (x.shape[0],) + (1,) * (x.ndim - 1)
    return x * x.new_empty(shape).bernoulli_(keep).div_(keep)


def effective_window(size: Size3, window: Size3, shift: Size3) -> tuple[Size3, Size3]:
    """The window and shift actually used for a T x H x W input (shrunk where size <= window)."""
    use_window = tuple(s if s <= w else w for s, w in zip(size, window, strict=True))
    use_shift = tuple(0 if s <= w else sh for s, w, sh in zip(size, window, shift, strict=True))
    return use_window, use_shift  # type: ignore[return-value]


def relative_position_index(window: Size3) -> torch.Tensor:
    """N x N int64 index into the (2Wd-1)(2Wh-1)(2Ww-1) bias table, N = Wd * Wh * Ww."""
    coords = torch.stack(torch.meshgrid(*(torch.arange(w) for w in window), indexing="ij")).flatten(
        1
    )  # 3 x N
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0)  # N x N x 3
    rel = rel + torch.tensor([w - 1 for w in window])
    _, wh, ww = window
    return (rel * torch.tensor([(2 * wh - 1) * (2 * ww - 1), 2 * ww - 1, 1])).sum(-1)


def _windows(x: torch.Tensor, window: Size3) -> torch.Tensor:
    """B x T x H x W x C (sizes multiples of ``window``) -> (B * nW) x N x C."""
    B, T, H, W, C = x.shape
    wd, wh, ww = window
    x = x.view(B, T // wd, wd, H // wh, wh, W // ww, ww, C)
    return x.permute(0, 1, 3, 5, 2, 4, 6, 7).reshape(-1, wd * wh * ww, C)


def _unwindows(
    windows: torch.Tensor, window: Size3, size: tuple[int, int, int, int]
) -> torch.Tensor:
    """Inverse of :func:`_windows`: (B * nW) x N x C -> B x T x H x W x C."""
    B, T, H, W = size
    wd, wh, ww = window
    x = windows.view(B, T // wd, H // wh, W // ww, wd, wh, ww, -1)
    return x.permute(0, 1, 4, 2, 5, 3, 6, 7).reshape(B, T, H, W, -1)


def _shift_mask(padded: Size3, window: Size3, shift: Size3, device: torch.device) -> torch.Tensor:
    # Built per stage call and freed with it, never cached: the mask is nW x N x N floats (270
    # MB for one 40-frame stage of 440 windows of 8 x 7 x 7), and every video's padded size is
    # a new key, so a cache kept one such mask per shape and stage alive for the process.
    # Regions of the cyclically shifted map, per axis: [0, n-w), [n-w, n-s), [n-s, n). An axis
    # without shift is one region (the official slicing overwrites it with a single label).
    labels = []
    for n, w, s in zip(padded, window, shift, strict=True):
        axis = torch.zeros(n, device=device)
        if s > 0:
            axis[n - w : n - s] = 1
            axis[n - s :] = 2
        labels.append(axis)
    region = labels[0][:, None, None] * 9 + labels[1][None, :, None] * 3 + labels[2][None, None]
    region_windows = _windows(region[None, ..., None], window).squeeze(-1)  # nW x N
    differ = region_windows[:, None, :] != region_windows[:, :, None]
    return torch.zeros(differ.shape, device=device).masked_fill(differ, -100.0)


def shifted_window_mask(
    padded: Size3, window: Size3, shift: Size3, device: torch.device
) -> torch.Tensor | None:
    """nW x N x N additive mask (0 / -100) for shifted windows, or None without shift."""
    if not any(s > 0 for s in shift):
        return None
    return _shift_mask(padded, window, shift, device)


class WindowAttention3D(nn.Module):
    """Multi-head self-attention inside 3-D windows, with a learned relative-position bias."""

    def __init__(self, dim: int, window: Size3, num_heads: int, qkv_bias: bool = True) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        table_size = (2 * window[0] - 1) * (2 * window[1] - 1) * (2 * window[2] - 1)
        self.relative_position_bias_table = nn.Parameter(torch.zeros(table_size, num_heads))
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)
        # Derived, not learned; official checkpoints carry it and the converters check it.
        self.register_buffer(
            "relative_position_index", relative_position_index(window), persistent=False
        )
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """x: (B * nW) x N x C; mask: nW x N x N additive or None. Returns (B * nW) x N x C."""
        BW, N, C = x.shape
        index = self.relative_position_index[:N, :N].reshape(-1)
        bias = self.relative_position_bias_table[index].view(N, N, -1).permute(2, 0, 1)
        outputs = []
        # Windows are independent: attend a bounded number at a time (memory stays flat); a
        # chunk takes the mask rows of its own windows (the mask repeats per video).
        nW = None if mask is None else mask.shape[0]
        for start in range(0, BW, _WINDOW_CHUNK):
            part = x[start : start + _WINDOW_CHUNK]
            n = part.shape[0]
            qkv = self.qkv(part).view(n, N, 3, self.num_heads, C // self.num_heads)
            q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each n x heads x N x D
            attn = (q * self.scale) @ k.transpose(-2, -1) + bias
            if mask is not None:
                rows = torch.arange(start, start + n, device=mask.device) % nW
                attn = attn + mask[rows][:, None]
            out = (attn.softmax(-1) @ v).transpose(1, 2).reshape(n, N, C)
            outputs.append(self.proj(out))
        return torch.cat(outputs) if len(outputs) > 1 else outputs[0]


class SwinMlp(nn.Module):
    """fc1 -> GELU -> fc2."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class SwinBlock3D(nn.Module):
    """One (shifted) window attention block; the window and shift are decided per stage."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        window: Size3,
        mlp_ratio: float,
        qkv_bias: bool,
        drop_path_rate: float,
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention3D(dim, window, num_heads, qkv_bias)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = SwinMlp(dim, int(dim * mlp_ratio))
        self.drop_path_rate = drop_path_rate

    def _attend(
        self, x: torch.Tensor, window: Size3, shift: Size3, mask: torch.Tensor | None
    ) -> torch.Tensor:
        B, T, H, W, _ = x.shape
        x = self.norm1(x)
        pads = [(w - s % w) % w for s, w in zip((T, H, W), window, strict=True)]
        x = F.pad(x, (0, 0, 0, pads[2], 0, pads[1], 0, pads[0]))
        _, Tp, Hp, Wp, _ = x.shape
        shifted = any(s > 0 for s in shift)
        if shifted:
            x = torch.roll(x, shifts=tuple(-s for s in shift), dims=(1, 2, 3))
        out = _unwindows(self.attn(_windows(x, window), mask), window, (B, Tp, Hp, Wp))
        if shifted:
            out = torch.roll(out, shifts=shift, dims=(1, 2, 3))
        return out[:, :T, :H, :W].contiguous()

    def forward(
        self, x: torch.Tensor, window: Size3, shift: Size3, mask: torch.Tensor | None
    ) -> torch.Tensor:
        """x: B x T x H x W x C -> same shape."""
        x = x + drop_path(self._attend(x, window, shift, mask), self.drop_path_rate, self.training)
        return x + drop_path(self.mlp(self.norm2(x)), self.drop_path_rate, self.training)


class SwinStage(nn.Module):
    """``depth`` blocks alternating plain and shifted windows."""

    def __init__(
        self,
        dim: int,
        depth: int,
        num_heads: int,
        window: Size3,
        mlp_ratio: float,
        qkv_bias: bool,
        drop_path_rates: Sequence[float],
        use_checkpoint: bool = False,
    ) -> None:
        super().__init__()
        self.window = window
        self.shift = tuple(w // 2 for w in window)
        self.use_checkpoint = use_checkpoint
        self.blocks = nn.ModuleList(
            SwinBlock3D(dim, num_heads, window, mlp_ratio, qkv_bias, drop_path_rates[i])
            for i in range(depth)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: B x T x H x W x C -> same shape."""
        size = tuple(x.shape[1:4])
        window, shift = effective_window(size, self.window, self.shift)  # type: ignore[arg-type]
        padded = tuple(-(-s // w) * w for s, w in zip(size, window, strict=True))
        mask = shifted_window_mask(padded, window, shift, x.device)  # type: ignore[arg-type]
        no_shift = (0, 0, 0)
        for i, block in enumerate(self.blocks):
            block_shift = no_shift if i % 2 == 0 else shift
            block_mask = None if i % 2 == 0 else mask
            if self.use_checkpoint and self.training:
                x = checkpoint(block, x, window, block_shift, block_mask, use_reentrant=False)
            else:
                x = block(x, window, block_shift, block_mask)
        return x


class PatchMerging(nn.Module):
    """2 x 2 spatial merging: B x T x H x W x C -> B x T x ceil(H/2) x ceil(W/2) x 2C."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(4 * dim)
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        H, W = x.shape[2:4]
        if H % 2 or W % 2:
            x = F.pad(x, (0, 0, 0, W % 2, 0, H % 2))
        x = torch.cat(
            [x[:, :, 0::2, 0::2], x[:, :, 1::2, 0::2], x[:, :, 0::2, 1::2], x[:, :, 1::2, 1::2]],
            -1,
        )
        return self.reduction(self.norm(x))


class PatchEmbed3D(nn.Module):
    """Non-overlapping 3-D patches: B x 3 x T x H x W -> B x C x T' x H/4 x W/4 (+ LayerNorm)."""

    def __init__(self, patch: Size3, in_channels: int, dim: int, norm: bool) -> None:
        super().__init__()
        self.patch = patch
        self.proj = nn.Conv3d(in_channels, dim, kernel_size=patch, stride=patch)
        self.norm = nn.LayerNorm(dim) if norm else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """B x 3 x T x H x W -> B x T' x H' x W' x C (channels last)."""
        T, H, W = x.shape[2:]
        pads = [(p - s % p) % p for s, p in zip((T, H, W), self.patch, strict=True)]
        if any(pads):
            x = F.pad(x, (0, pads[2], 0, pads[1], 0, pads[0]))
        x = self.proj(x).permute(0, 2, 3, 4, 1)
        return self.norm(x) if self.norm is not None else x


class VideoSwinBackbone(nn.Module):
    """Video Swin returning each stage's per-frame features before merging (no final norm).

    Args:
        embed_dim: channels of the first stage (96 for T/S, 128 for B).
        depths: blocks per stage.
        num_heads: attention heads per stage.
        num_levels: stages run and returned (4: strides 4/8/16/32; 3 drops the last stage).
        patch_size: (1, 4, 4) keeps every frame.
        window_size: (8, 7, 7) in (T, H, W).
        mlp_ratio, qkv_bias, patch_norm: as the released models (4.0, True, True).
        drop_path_rate: stochastic depth at the last block, linear from 0 (0.2 released).
        use_checkpoint: activation checkpointing of every block while training.

    Attributes:
        out_channels: channels of each returned level.
        strides: stride of each returned level.
    """

    def __init__(
        self,
        *,
        embed_dim: int,
        depths: Sequence[int],
        num_heads: Sequence[int],
        num_levels: int = 4,
        patch_size: Size3 = (1, 4, 4),
        window_size: Size3 = (8, 7, 7),
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        patch_norm: bool = True,
        drop_path_rate: float = 0.2,
        in_channels: int = 3,
        use_checkpoint: bool = False,
    ) -> None:
        super().__init__()
        if len(depths) != len(num_heads) or not 1 <= num_levels <= len(depths):
            raise ValueError(f"depths {depths}, num_heads {num_heads}, num_levels {num_levels}")
        self.patch_embed = PatchEmbed3D(tuple(patch_size), in_channels, embed_dim, patch_norm)
        rates = torch.linspace(0, drop_path_rate, sum(depths)).tolist()
        self.layers = nn.ModuleList()
        self.downsamples = nn.ModuleList()
        self.out_channels = [embed_dim * 2**i for i in range(num_levels)]
        self.strides = [patch_size[1] * 2**i for i in range(num_levels)]
        for i in range(num_levels):
            first = sum(depths[:i])
            self.layers.append(
                SwinStage(
                    self.out_channels[i],
                    depths[i],
                    num_heads[i],
                    tuple(window_size),
                    mlp_ratio,
                    qkv_bias,
                    rates[first : first + depths[i]],
                    use_checkpoint,
                )
            )
            if i < num_levels - 1:
                self.downsamples.append(PatchMerging(self.out_channels[i]))

    @classmethod
    def from_spec(cls, name: str, **kwargs: object) -> VideoSwinBackbone:
        """A released size by name: ``tiny``, ``small`` or ``base``."""
        return cls(**size_arguments(VIDEO_SWIN_SPECS, name, "Video Swin"), **kwargs)  # type: ignore[arg-type]

    def forward(self, video: torch.Tensor) -> list[torch.Tensor]:
        """Per-frame features of each level.

        Args:
            video: B x T x 3 x H x W float (normalised).

        Returns:
            One (B * T) x C_l x ceil(H / s_l) x ceil(W / s_l) tensor per level, frames of a
            video consecutive (the ``b t`` layout).
        """
        x = self.patch_embed(video.transpose(1, 2))  # B x T x H x W x C
        outputs = []
        for i, stage in enumerate(self.layers):
            x = stage(x)
            outputs.append(x.flatten(0, 1).permute(0, 3, 1, 2).contiguous())
            if i < len(self.downsamples):
                x = self.downsamples[i](x)
        return outputs


def check_relative_position_index(
    official: Mapping[str, torch.Tensor],
    prefix: str,
    windows: Sequence[Size3] = ((8, 7, 7), (2, 7, 7), (1, 7, 7), (16, 7, 7), (4, 7, 7)),
) -> list[str]:
    """Keys ``<prefix>...relative_position_index`` of ``official``, verified against our buffer.

    The index is derived from the window, so the port does not load it; a checkpoint whose
    stored index fits none of ``windows`` (matched by token count) would mean a different window
    and is an error.
    """
    keys = [k for k in official if k.startswith(prefix) and k.endswith("relative_position_index")]
    by_tokens: dict[int, Size3] = {}
    for window in windows:  # the first window of each token count
        by_tokens.setdefault(window[0] * window[1] * window[2], window)
    cache: dict[int, torch.Tensor] = {}
    for key in keys:
        stored = official[key]
        n = stored.shape[0]
        if n not in by_tokens:
            raise ValueError(f"{key}: no expected window {list(windows)} has {n} tokens")
        if n not in cache:
            cache[n] = relative_position_index(by_tokens[n])
        if stored.shape != cache[n].shape or not torch.equal(stored.long(), cache[n]):
            raise ValueError(
                f"{key}: relative_position_index does not match a {by_tokens[n]} window"
            )
    return keys


def convert_kinetics_state(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A Kinetics Video Swin checkpoint (``state_dict`` of ``swin_*_patch244_window877_*``) as
    :class:`VideoSwinBackbone` weights.

    Drops the classification head, the final norm and the derived relative-position indices;
    moves ``layers.{i}.downsample`` to ``downsamples.{i}``; sums the temporal patch-embedding
    kernel (size 2) to size 1, as the RVOS models do when they initialise from these files.
    """
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key.startswith("backbone."):
            key = key[len("backbone.") :]
        elif "." in key and key.split(".")[0] in {"cls_head", "neck"}:
            continue
        if key.startswith(("norm.", "cls_head.")) or key.endswith("relative_position_index"):
            continue
        parts = key.split(".")
        if len(parts) > 3 and parts[0] == "layers" and parts[2] == "downsample":
            key = ".".join(["downsamples", parts[1], *parts[3:]])
        if key == "patch_embed.proj.weight" and value.ndim == 5:
            value = value.sum(dim=2, keepdim=True)
        out[key] = value
    return out
