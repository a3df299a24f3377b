"""Attention for AOT and DeAOT: global (long-term / self) and exact 15x15 local (short-term).

Long-term and self attention are plain multi-head softmax attention, computed with
:func:`torch.nn.functional.scaled_dot_product_attention` (memory-efficient kernels, no
``hw x hw`` matrix kept). Short-term attention is *local*: each query attends to the
(2m+1) x (2m+1) window of the memory frame centred on its own position (m = ``max_dis`` = 7),
with slots outside the frame excluded. The official code computes the window logits with a
correlation op and then scatters them into a dense ``hw x hw`` matrix for the aggregation;
here both steps are banded GEMMs, one per query row over the stacked window rows of the
memory frame (see :func:`local_attention`), so the cost is linear in ``hw`` and the result is
the same function.

Parameter names follow aot-benchmark ``networks/layers/attention.py`` (``MultiheadAttention``,
``MultiheadLocalAttentionV2``, ``GatedPropagation``, ``LocalGatedPropagation``), which the
checkpoints use.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import nn

from vos.layers.basic import DepthwiseConvTokens, tokens_to_map

# A memory's keys and values as tokens: (B x N x Ck, B x N x Cv).
KeyValue = tuple[torch.Tensor, torch.Tensor]
# Long-term memory for a batch: one batched pair, or one (1 x N_i x C) pair per batch element
# (elements may hold different numbers of memory frames).
MemoryKV = KeyValue | Sequence[KeyValue]


def masked_fill_value(dtype: torch.dtype) -> float:
    """The large negative logit the official code uses: -1e8 in float32, -1e4 otherwise."""
    return -1e8 if dtype == torch.float32 else -1e4


def split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """``B x N x (heads*d)`` -> ``B x heads x N x d`` (head-major channels, a view)."""
    b, n, c = x.shape
    return x.view(b, n, heads, c // heads).transpose(1, 2)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """``B x heads x N x d`` -> ``B x N x (heads*d)``."""
    b, h, n, d = x.shape
    return x.transpose(1, 2).reshape(b, n, h * d)


def attend(q: torch.Tensor, memory: MemoryKV, heads: int) -> torch.Tensor:
    """Softmax attention of ``q`` (``B x L x Cq``, already scaled by 1/sqrt(d)) over ``memory``.

    ``memory`` is a batched ``(K, V)`` pair or a sequence of per-element ``(1 x N_i x C)``
    pairs, so batch elements may carry memories of different lengths without padding. ``q``
    may be a batch of one shared by every memory element (the first propagation layer, whose
    input is the same frame for every track); a batched pair's K and V may be a batch of one too.
    Returns ``B x L x Cv``.
    """
    qh = split_heads(q, heads)
    if isinstance(memory, tuple) and isinstance(memory[0], torch.Tensor):
        key, value = memory
        kh, vh = split_heads(key, heads), split_heads(value, heads)
        batch = max(qh.shape[0], kh.shape[0], vh.shape[0])
        qh, kh, vh = (t.expand(batch, -1, -1, -1) for t in (qh, kh, vh))
        return merge_heads(F.scaled_dot_product_attention(qh, kh, vh, scale=1.0))
    shared = qh.shape[0] == 1
    outs = []
    for i, (key, value) in enumerate(memory):
        out = F.scaled_dot_product_attention(
            qh if shared else qh[i : i + 1],
            split_heads(key, heads),
            split_heads(value, heads),
            scale=1.0,
        )
        outs.append(out)
    return merge_heads(torch.cat(outs, dim=0))


@lru_cache(maxsize=32)
def _window_outside(h: int, w: int, max_dis: int, device: torch.device) -> torch.Tensor:
    """``h x w x S`` bool: window slot s = (dy*(2m+1) + dx) of query (y, x) lies outside."""
    win = 2 * max_dis + 1
    off = torch.arange(win, device=device) - max_dis
    ys = torch.arange(h, device=device)[:, None] + off[None, :]  # h x win
    xs = torch.arange(w, device=device)[:, None] + off[None, :]  # w x win
    y_out = (ys < 0) | (ys >= h)
    x_out = (xs < 0) | (xs >= w)
    outside = y_out[:, None, :, None] | x_out[None, :, None, :]  # h x w x win x win
    return outside.reshape(h, w, win * win)


def _skew_to_band(a: torch.Tensor, width: int) -> torch.Tensor:
    """``... x w x win`` window weights -> ``... x w x (w + win - 1)`` banded rows.

    Row x of the result holds ``a[x, j]`` at column ``x + j`` and zeros elsewhere (the
    Transformer-XL skew: pad, flatten, drop the tail, reshape).
    """
    win = a.shape[-1]
    padded_width = width + win - 1
    flat = F.pad(a, (0, width)).flatten(-2)  # ... x w*(win + w)
    return flat[..., : width * padded_width].unflatten(-1, (width, padded_width))


def _band_to_skew(full: torch.Tensor, win: int) -> torch.Tensor:
    """Inverse of :func:`_skew_to_band`: ``... x w x (w + win - 1)`` -> ``... x w x win``."""
    width = full.shape[-2]
    flat = F.pad(full.flatten(-2), (0, width))  # ... x w*(w + win)
    return flat.unflatten(-1, (width, width + win))[..., :win]


def _row_windows(padded: torch.Tensor, h: int) -> torch.Tensor:
    """``N x (h+2m) x W x c`` padded maps -> ``N x h x (2m+1)*W x c``: for each query row y the
    window rows y .. y+2m stacked (a view with overlapping rows: no copy)."""
    win = padded.shape[1] - h + 1
    windows = padded.unfold(1, win, 1)  # N x h x W x c x win
    return windows.permute(0, 1, 4, 2, 3).flatten(2, 3)


def local_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    max_dis: int,
    rel_logits: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact local softmax attention over a (2m+1) x (2m+1) window.

    Args:
        q: ``... x h x w x d`` queries, already scaled.
        k: ``... x h x w x d`` keys of the memory frame (same grid).
        v: ``... x h x w x dv`` values of the memory frame.
        max_dis: m; the window holds offsets -m..m in y and x (slot s = (dy+m)*(2m+1) + dx+m).
        rel_logits: optional ``... x h x w x S`` relative-position logits added before the mask.

    The leading dims broadcast (e.g. one query frame shared by N memory frames: ``q`` 1 x ...,
    ``k`` and ``v`` N x ...; or a batch of one key frame whose values differ per element).

    Returns:
        (out ``... x h x w x dv``, attn ``... x h x w x S``; attn's leading dims are those of
        ``q``, ``k`` and ``rel_logits`` broadcast). Slots outside the frame get the official
        -1e8 logit (-1e4 in half precision), i.e. no weight.

    Per query row y, the window rows y-m .. y+m of the padded key / value map are one block
    of (2m+1) x (w+2m) tokens. The logits of the row are one ``w x (2m+1)(w+2m)`` GEMM whose
    2m+1 bands (x .. x+2m in each window row) are the window slots; the aggregation is one GEMM
    of the banded weights (zeros off the band) with the value block. Cost ~
    (2m+1) * h * w * (w+2m) * (d + dv): linear in ``h``.
    """
    h, w = q.shape[-3], q.shape[-2]
    win = 2 * max_dis + 1
    padded_width = w + 2 * max_dis
    pad = (0, 0, max_dis, max_dis, max_dis, max_dis)
    rel_lead = () if rel_logits is None else rel_logits.shape[:-3]
    attn_lead = torch.broadcast_shapes(q.shape[:-3], k.shape[:-3], rel_lead)
    lead = torch.broadcast_shapes(attn_lead, v.shape[:-3])

    def flat(x: torch.Tensor, shape: torch.Size) -> torch.Tensor:  # ... x h x w x c -> N x ...
        return x.expand(*shape, *x.shape[-3:]).reshape(-1, *x.shape[-3:])

    # One batched GEMM per element: its batch (the query rows) reads the overlapping window
    # blocks in place; folding the elements into the batch would copy every block 2m+1 times.
    key_windows = _row_windows(F.pad(flat(k, attn_lead), pad), h)  # N x h x win*W x d
    queries = flat(q, attn_lead)
    logits = torch.stack(
        [torch.bmm(queries[i], key_windows[i].transpose(-1, -2)) for i in range(len(queries))]
    )  # N x h x w x win*W
    logits = logits.unflatten(-1, (win, padded_width)).transpose(-3, -2)  # N x h x dy x w x W
    logits = _band_to_skew(logits, win).transpose(-3, -2).flatten(-2)  # N x h x w x S
    if rel_logits is not None:
        logits = logits + flat(rel_logits, attn_lead)
    outside = _window_outside(h, w, max_dis, q.device)
    logits = logits.masked_fill(outside, masked_fill_value(logits.dtype))
    attn = torch.softmax(logits, dim=-1)

    rows = attn.unflatten(-1, (win, win)).transpose(-3, -2)  # N x h x dy x w x dx
    band = _skew_to_band(rows, w).transpose(-3, -2).flatten(-2)  # N x h x w x win*W
    band = flat(band.view(*attn_lead, h, w, -1), lead)
    value_windows = _row_windows(F.pad(flat(v, lead), pad), h)  # N x h x win*W x dv
    out = torch.stack([torch.bmm(band[i], value_windows[i]) for i in range(len(band))])
    return out.view(*lead, h, w, -1), attn.view(*attn_lead, h, w, -1)


def windowed_heads(
    q: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    relative_emb_k: nn.Module,
    heads: int,
    scale: float,
    max_dis: int,
    size_2d: tuple[int, int],
) -> tuple[torch.Tensor, torch.Tensor]:
    """Multi-head :func:`local_attention` of B x L x C tokens on the ``size_2d`` grid.

    ``relative_emb_k`` maps the unscaled query map to heads x S relative logits (grouped 1x1
    conv). ``q`` may be a batch of one shared by the B memory frames (the relative logits are
    then computed once), and ``key`` a batch of one shared by B values. Returns
    (out B x heads x L x dv, attn B' x heads x L x S; B' = 1 when ``q`` and ``key`` are shared).
    """
    h, w = size_2d
    rel = relative_emb_k(tokens_to_map(q, size_2d))  # Bq x heads*S x h x w
    rel = rel.unflatten(1, (heads, -1)).permute(0, 1, 3, 4, 2)  # Bq x heads x h x w x S

    def grid(x: torch.Tensor) -> torch.Tensor:  # B x L x (heads*d) -> B x heads x h x w x d
        return x.unflatten(-1, (heads, -1)).transpose(1, 2).unflatten(2, (h, w)).contiguous()

    out, attn = local_attention(grid(q * scale), grid(key), grid(value), max_dis, rel)
    return out.flatten(2, 3), attn.flatten(2, 3)


class MultiheadAttention(nn.Module):
    """Multi-head softmax attention with an output projection (AOT self- and long-term attention).

    Parameters ``linear_Q``, ``linear_K``, ``linear_V`` (only with ``use_linear``) and
    ``projection``; temperature sqrt(d_model / heads).
    """

    def __init__(self, d_model: int, num_heads: int = 8, use_linear: bool = True) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.scale = (d_model // num_heads) ** -0.5
        self.use_linear = use_linear
        if use_linear:
            self.linear_Q = nn.Linear(d_model, d_model)
            self.linear_K = nn.Linear(d_model, d_model)
            self.linear_V = nn.Linear(d_model, d_model)
        self.projection = nn.Linear(d_model, d_model)

    def forward(self, q: torch.Tensor, memory: MemoryKV) -> torch.Tensor:
        """``q`` B x L x C; ``memory`` keys/values (see :data:`MemoryKV`). Returns B x L x C."""
        if self.use_linear:
            if not (isinstance(memory, tuple) and isinstance(memory[0], torch.Tensor)):
                raise TypeError("use_linear attention takes one batched (key, value) pair")
            q = self.linear_Q(q)
            memory = (self.linear_K(memory[0]), self.linear_V(memory[1]))
        return self.projection(attend(q * self.scale, memory, self.num_heads))


class LocalAttention(nn.Module):
    """AOT short-term attention: exact (2m+1)^2 window, relative key and value biases.

    Parameters (official ``MultiheadLocalAttentionV2`` with ``use_linear=False``):
    ``relative_emb_k`` (grouped 1x1 conv of the *unscaled* query -> heads x S logits),
    ``relative_emb_v`` (heads x d x S, added as sum_s attn_s * bias_s) and ``projection``.
    """

    def __init__(self, d_model: int, num_heads: int, max_dis: int = 7) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.max_dis = max_dis
        self.window = (2 * max_dis + 1) ** 2
        self.head_dim = d_model // num_heads
        self.scale = self.head_dim**-0.5
        self.relative_emb_k = nn.Conv2d(
            d_model, num_heads * self.window, kernel_size=1, groups=num_heads
        )
        self.relative_emb_v = nn.Parameter(torch.zeros(num_heads, self.head_dim, self.window))
        self.projection = nn.Linear(d_model, d_model)

    def forward(
        self, q: torch.Tensor, key: torch.Tensor, value: torch.Tensor, size_2d: tuple[int, int]
    ) -> torch.Tensor:
        """``q``, ``key``, ``value``: B x L x C tokens on the same ``size_2d`` grid."""
        out, attn = windowed_heads(
            q, key, value, self.relative_emb_k, self.num_heads, self.scale, self.max_dis, size_2d
        )
        bias = torch.matmul(attn, self.relative_emb_v.transpose(1, 2))
        return self.projection(merge_heads(out + bias))


def _silu(x: torch.Tensor) -> torch.Tensor:
    return F.silu(x)


class GatedPropagation(nn.Module):
    """DeAOT gated propagation: softmax attention, values gated by U, 5x5 DW conv, projection.

    With ``use_linear`` (self-propagation) ``linear_QK`` maps the input to the shared Q = K and
    ``linear_V1/V2``, ``linear_U1/U2`` map each half (visual, ID) of the input to half of the
    expanded value / gate. Without it (long-term propagation) Q, K, V and U arrive projected.
    Parameters: ``linear_*`` (optional), ``dw_conv`` and ``projection``.
    """

    def __init__(
        self,
        d_qk: int,
        d_vu: int,
        num_heads: int = 1,
        use_linear: bool = True,
        d_att: int | None = None,
        expand_ratio: float = 2.0,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.expand_d_vu = int(d_vu * expand_ratio)
        self.d_vu = d_vu
        self.num_heads = num_heads
        self.hidden_dim = self.expand_d_vu // num_heads
        self.d_att = d_qk // num_heads if d_att is None else d_att
        self.scale = self.d_att**-0.5
        self.use_linear = use_linear
        if use_linear:
            half = self.hidden_dim * num_heads // 2
            self.linear_QK = nn.Linear(d_qk, self.d_att * num_heads)
            self.linear_V1 = nn.Linear(d_vu // 2, half)
            self.linear_V2 = nn.Linear(d_vu // 2, half)
            self.linear_U1 = nn.Linear(d_vu // 2, half)
            self.linear_U2 = nn.Linear(d_vu // 2, half)
        self.dw_conv = DepthwiseConvTokens(self.expand_d_vu, dropout=dropout)
        self.projection = nn.Linear(self.expand_d_vu, d_vu)

    def _join_halves(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        """Interleave the two halves per head (official ``cat`` inside ``forward``)."""
        if self.num_heads == 1:
            return torch.cat([x1, x2], dim=-1)
        b, n, _ = x1.shape
        x1 = x1.view(b, n, self.num_heads, -1)
        x2 = x2.view(b, n, self.num_heads, -1)
        return torch.cat([x1, x2], dim=-1).view(b, n, -1)

    def project_inputs(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Self-propagation inputs from ``x`` (B x L x d_vu): (Q = K, V, U)."""
        qk = self.linear_QK(x)
        x1, x2 = torch.split(x, self.d_vu // 2, dim=-1)
        value = _silu(self._join_halves(self.linear_V1(x1), self.linear_V2(x2)))
        gate = _silu(self._join_halves(self.linear_U1(x1), self.linear_U2(x2)))
        return qk, value, gate

    def forward(
        self,
        q: torch.Tensor,
        memory: MemoryKV,
        gate: torch.Tensor,
        size_2d: tuple[int, int],
    ) -> torch.Tensor:
        """``q`` B x L x (heads*d_att); ``memory`` keys/values (values expanded);
        ``gate`` B x L x expand_d_vu. Returns B x L x d_vu."""
        out = attend(q * self.scale, memory, self.num_heads) * gate
        return self.projection(self.dw_conv(out, size_2d))

    def self_propagate(self, x: torch.Tensor, size_2d: tuple[int, int]) -> torch.Tensor:
        """Self-propagation of ``x`` (B x L x d_vu) -> B x L x d_vu."""
        qk, value, gate = self.project_inputs(x)
        return self.forward(qk, (qk, value), gate, size_2d)


class LocalGatedPropagation(nn.Module):
    """DeAOT short-term propagation: exact (2m+1)^2 window attention shared by the visual and ID
    values, relative key bias, gate, 5x5 DW conv, projection.

    Parameters (official ``LocalGatedPropagation`` with ``use_linear=False``):
    ``relative_emb_k``, ``dw_conv``, ``projection``.
    """

    def __init__(
        self,
        d_qk: int,
        d_vu: int,
        num_heads: int,
        max_dis: int = 7,
        d_att: int | None = None,
        expand_ratio: float = 2.0,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.expand_d_vu = int(d_vu * expand_ratio)
        self.num_heads = num_heads
        self.max_dis = max_dis
        self.window = (2 * max_dis + 1) ** 2
        self.hidden_dim = self.expand_d_vu // num_heads
        self.d_att = d_qk // num_heads if d_att is None else d_att
        self.scale = self.d_att**-0.5
        d_middle = self.d_att * num_heads
        self.relative_emb_k = nn.Conv2d(
            d_middle, num_heads * self.window, kernel_size=1, groups=num_heads
        )
        self.dw_conv = DepthwiseConvTokens(self.expand_d_vu, dropout=dropout)
        self.projection = nn.Linear(self.expand_d_vu, d_vu)

    def forward(
        self,
        q: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        gate: torch.Tensor,
        size_2d: tuple[int, int],
    ) -> torch.Tensor:
        """``q``/``key`` B x L x (heads*d_att), ``value``/``gate`` B x L x expand_d_vu (tokens
        of the query frame and of the short-term memory frame). Returns B x L x d_vu."""
        out, _ = windowed_heads(
            q, key, value, self.relative_emb_k, self.num_heads, self.scale, self.max_dis, size_2d
        )
        out = merge_heads(out) * gate
        return self.projection(self.dw_conv(out, size_2d))
