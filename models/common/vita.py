"""VITA-style video object decoder: the frame queries of a whole clip become video queries.

Shared by SOC's VOC ("video-level object cluster") and MUTR's MTI; both are copies of VITA's
object decoder (``sukjunhwang/VITA``). Layout and sub-module names follow the checkpoints
(``RobertLuo1/NeurIPS2023_SOC@76b2915:models/voc.py``, ``OpenGVLab/MUTR@c5f5044:models/mti.py``),
so the state dict under ``voc.*`` / ``mti.*`` loads with its own key names.

Two stages:

1. **Encoder** over the T x Q frame queries, post-norm, no positional term. ``window_size = 0``
   (SOC): full attention over the clip. ``window_size = W > 0`` (MUTR): the frame axis is
   zero-padded to a multiple of W; layers attend inside windows of W frames, and in evaluation the
   odd layers use windows shifted by ceil(W/2) frames with an additive mask (-1000, not -inf) that
   blocks pairs touching padded frames and, in the first window, pairs across its two halves (the
   wrapped-around frames). In training every layer uses plain windows, as the official code does.
2. **Decoder**: Nq video queries start from ``query_feat`` (MUTR, learned) or from a given
   feature (SOC: the sentence feature, repeated); each layer is cross-attention to the encoded
   frame queries (key position ``fq_pos`` tiled over frames), then self-attention, then an FFN;
   ``decoder_norm`` on the output.

Naming: B = clips, T = frames, Q = frame queries per frame, Nq = video queries, C = channels.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class SelfAttentionLayer(nn.Module):
    """Post-norm self-attention block: ``norm(x + attn(x + pos, x + pos, x))``."""

    def __init__(self, d_model: int, nhead: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d_model, nhead, dropout=dropout, batch_first=True)
        self.norm = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(
        self,
        x: torch.Tensor,
        *,
        pos: torch.Tensor | None = None,
        attn_mask: torch.Tensor | None = None,
        key_padding_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """x: N x S x C; attn_mask: (N * heads) x S x S float; key_padding_mask: N x S bool."""
        qk = x if pos is None else x + pos
        out = self.self_attn(
            qk, qk, x, attn_mask=attn_mask, key_padding_mask=key_padding_mask, need_weights=False
        )[0]
        return self.norm(x + self.dropout(out))


class CrossAttentionLayer(nn.Module):
    """Post-norm cross-attention block: ``norm(x + attn(x + pos, mem + mem_pos, mem))``."""

    def __init__(self, d_model: int, nhead: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.multihead_attn = nn.MultiheadAttention(
            d_model, nhead, dropout=dropout, batch_first=True
        )
        self.norm = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(
        self,
        x: torch.Tensor,
        memory: torch.Tensor,
        *,
        pos: torch.Tensor | None = None,
        memory_pos: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """x: N x Lq x C; memory: N x S x C."""
        query = x if pos is None else x + pos
        key = memory if memory_pos is None else memory + memory_pos
        out = self.multihead_attn(query, key, memory, need_weights=False)[0]
        return self.norm(x + self.dropout(out))


class FFNLayer(nn.Module):
    """Post-norm feed-forward block: ``norm(x + linear2(relu(linear1(x))))``."""

    def __init__(self, d_model: int, dim_feedforward: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.linear2(self.dropout(F.relu(self.linear1(x))))
        return self.norm(x + self.dropout(out))


def shifted_window_mask(
    frame_is_pad: torch.Tensor, window: int, frame_queries: int, *, value: float = -1000.0
) -> torch.Tensor:
    """The additive mask of the shifted-window encoder layers, one per (clip, window).

    Args:
        frame_is_pad: B x T' bool, True on padded frames (T' a multiple of ``window``), in the
            un-shifted frame order.
        window: W frames per window.
        frame_queries: Q queries per frame.
        value: the blocking value (the official code uses -1000, not -inf).

    Returns:
        (B * Nw) x (W * Q) x (W * Q) float, tokens in (frame, query) order inside each window.
    """
    B, T = frame_is_pad.shape
    num_windows = T // window
    half = math.ceil(window / 2)
    rolled = torch.roll(frame_is_pad, half, dims=1).view(B, num_windows, window)
    blocked = rolled[..., :, None].expand(B, num_windows, window, window).clone()
    for edge in (0, -1):  # padded frames sit in the first and last window after the roll
        blocked[:, edge] = blocked[:, edge] | blocked[:, edge].transpose(-2, -1)
    # in the first window the two halves come from opposite ends of the clip
    blocked[:, 0, :half, half:] = True
    blocked[:, 0, half:, :half] = True
    blocked = blocked.repeat_interleave(frame_queries, dim=2)
    blocked = blocked.repeat_interleave(frame_queries, dim=3)
    return (
        blocked.reshape(B * num_windows, window * frame_queries, window * frame_queries).to(
            torch.float32
        )
        * value
    )


class VideoQueryDecoder(nn.Module):
    """Frame queries of a clip -> video-level queries (VITA object decoder; SOC VOC, MUTR MTI).

    Args:
        d_model: channels C.
        num_frame_queries: Q, queries per frame coming from the per-frame decoder.
        num_queries: Nq, video queries produced.
        nheads: attention heads.
        dim_feedforward: FFN width.
        enc_layers: encoder layers over the frame queries.
        dec_layers: decoder layers.
        window_size: 0 for full attention over the clip, else frames per (shifted) window.
        learned_init: create ``query_feat`` (MUTR) as the decoder's initial queries; without it
            the caller passes the initial queries (SOC: the sentence feature).
        dropout: dropout inside every block (0.1 SOC, 0.2 MUTR; inactive in eval).
        shift_mask_value: additive blocking value of the shifted windows.
    """

    def __init__(
        self,
        *,
        d_model: int = 256,
        num_frame_queries: int,
        num_queries: int,
        nheads: int = 8,
        dim_feedforward: int = 2048,
        enc_layers: int = 3,
        dec_layers: int = 3,
        window_size: int = 0,
        learned_init: bool = True,
        dropout: float = 0.0,
        shift_mask_value: float = -1000.0,
    ) -> None:
        super().__init__()
        if window_size < 0:
            raise ValueError(f"window_size must be >= 0, got {window_size}")
        self.num_frame_queries = num_frame_queries
        self.num_queries = num_queries
        self.window_size = window_size
        self.shift_mask_value = shift_mask_value
        self.nheads = nheads
        self.enc_self_attn = nn.ModuleList(
            SelfAttentionLayer(d_model, nheads, dropout) for _ in range(enc_layers)
        )
        self.enc_ffn = nn.ModuleList(
            FFNLayer(d_model, dim_feedforward, dropout) for _ in range(enc_layers)
        )
        self.transformer_cross_attention_layers = nn.ModuleList(
            CrossAttentionLayer(d_model, nheads, dropout) for _ in range(dec_layers)
        )
        self.transformer_self_attention_layers = nn.ModuleList(
            SelfAttentionLayer(d_model, nheads, dropout) for _ in range(dec_layers)
        )
        self.transformer_ffn_layers = nn.ModuleList(
            FFNLayer(d_model, dim_feedforward, dropout) for _ in range(dec_layers)
        )
        self.fq_pos = nn.Embedding(num_frame_queries, d_model)
        self.query_embed = nn.Embedding(num_queries, d_model)
        self.query_feat = nn.Embedding(num_queries, d_model) if learned_init else None
        self.decoder_norm = nn.LayerNorm(d_model)
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)

    def forward(
        self,
        frame_queries: torch.Tensor,
        init_queries: torch.Tensor | None = None,
        *,
        all_layers: bool = False,
    ) -> torch.Tensor:
        """Decode the video queries of each clip.

        Args:
            frame_queries: B x T x Q x C, one decoder layer's per-frame queries.
            init_queries: B x C (repeated for every video query) or B x Nq x C; required
                without ``learned_init``, ignored with it.
            all_layers: return every decoder layer (for auxiliary losses), each normalised.

        Returns:
            B x Nq x C, or D x B x Nq x C with ``all_layers``.
        """
        B, T, Q, C = frame_queries.shape
        if self.num_frame_queries != Q:
            raise ValueError(f"expected {self.num_frame_queries} queries per frame, got {Q}")
        memory = self.encode(frame_queries).reshape(B, T * Q, C)
        memory_pos = self.fq_pos.weight.repeat(T, 1)[None]  # token t*Q + q -> fq_pos[q]
        query_pos = self.query_embed.weight[None]
        if self.query_feat is not None:
            out = self.query_feat.weight[None].expand(B, -1, -1)
        elif init_queries is None:
            raise ValueError("this decoder starts from given queries: pass init_queries")
        elif init_queries.dim() == 2:
            out = init_queries[:, None, :].expand(B, self.num_queries, C)
        else:
            out = init_queries
        layers = []
        for cross, self_attn, ffn in zip(
            self.transformer_cross_attention_layers,
            self.transformer_self_attention_layers,
            self.transformer_ffn_layers,
            strict=True,
        ):
            out = cross(out, memory, pos=query_pos, memory_pos=memory_pos)
            out = self_attn(out, pos=query_pos)
            out = ffn(out)
            if all_layers:
                layers.append(self.decoder_norm(out))
        if all_layers:
            return torch.stack(layers)
        return self.decoder_norm(out)

    def encode(self, frame_queries: torch.Tensor) -> torch.Tensor:
        """The encoder: B x T x Q x C -> B x T x Q x C."""
        B, T, Q, C = frame_queries.shape
        if self.window_size == 0:
            x = frame_queries.reshape(B, T * Q, C)
            for attn, ffn in zip(self.enc_self_attn, self.enc_ffn, strict=True):
                x = ffn(attn(x))
            return x.view(B, T, Q, C)
        W = self.window_size
        padded_T = math.ceil(T / W) * W
        x = F.pad(frame_queries, (0, 0, 0, 0, 0, padded_T - T))
        frame_is_pad = torch.zeros(B, padded_T, dtype=torch.bool, device=x.device)
        frame_is_pad[:, T:] = True
        num_windows = padded_T // W
        # key padding of the plain windows: B*Nw x (W*Q), tokens in (frame, query) order
        window_pad = frame_is_pad.view(B * num_windows, W, 1).expand(-1, -1, Q).reshape(-1, W * Q)
        shift_mask = None
        for layer, (attn, ffn) in enumerate(zip(self.enc_self_attn, self.enc_ffn, strict=True)):
            shifted = not self.training and layer % 2 == 1
            if shifted:
                if shift_mask is None:
                    shift_mask = shifted_window_mask(
                        frame_is_pad, W, Q, value=self.shift_mask_value
                    ).repeat_interleave(self.nheads, dim=0)
                    shift_mask = shift_mask.to(x.dtype)
                half = math.ceil(W / 2)
                x = torch.roll(x, half, dims=1)
                x = ffn(attn(x.reshape(B * num_windows, W * Q, C), attn_mask=shift_mask))
                x = torch.roll(x.view(B, padded_T, Q, C), -half, dims=1)
            else:
                x = ffn(attn(x.reshape(B * num_windows, W * Q, C), key_padding_mask=window_pad))
                x = x.view(B, padded_T, Q, C)
        return x[:, :T]
