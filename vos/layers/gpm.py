"""DeAOT's dual-branch gated propagation (GPM).

Follows aot-benchmark ``networks/layers/transformer.py::DualBranchGPM`` /
``GatedPropagationModule`` (parameter names are the checkpoint's). Two branches: visual (starts
from the projected encoder tokens) and ID (starts at 0 and receives object information only
through propagated ID values). Attention maps come from the visual keys alone and are shared by
both branches' values. Per layer: long/short-term propagation (``norm1``, ``linear_QV``,
``linear_U``, ``linear_ID_V`` [+ ``id_norm1``, ``linear_ID_U`` beyond layer 0]) then
self-propagation (``norm2``, ``id_norm2``, ``self_attn``). No FFN; the sine position is not
used. Memory of one layer: key (visual Q), value = cat(visual V, ID V).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vos.layers.attention import (
    GatedPropagation,
    KeyValue,
    LocalGatedPropagation,
    MemoryKV,
)
from vos.layers.basic import DropPath, TokenGroupNorm
from vos.layers.lstt import (
    FrameMemory,
    LayerMemories,
    PropagationOutput,
    apply_decoder_norms,
    batched,
    propagation_batch,
)


class GatedPropagationModule(nn.Module):
    """One GPM layer (``layer_idx`` 0 has no incoming ID branch)."""

    def __init__(
        self,
        d_model: int,
        self_heads: int,
        att_heads: int,
        droppath: float = 0.1,
        max_dis: int = 7,
        layer_idx: int = 0,
        expand_ratio: float = 2.0,
    ) -> None:
        super().__init__()
        expand = int(d_model * expand_ratio)
        self.d_model = d_model
        self.expand_d_model = expand
        self.d_att = d_model // 2 if att_heads == 1 else d_model // att_heads
        self.att_heads = att_heads
        self.layer_idx = layer_idx
        self.norm1 = nn.LayerNorm(d_model)
        self.linear_QV = nn.Linear(d_model, self.d_att * att_heads + expand)
        self.linear_U = nn.Linear(d_model, expand)
        if layer_idx == 0:
            self.linear_ID_V = nn.Linear(d_model, expand)
        else:
            self.id_norm1 = nn.LayerNorm(d_model)
            self.linear_ID_V = nn.Linear(d_model * 2, expand)
            self.linear_ID_U = nn.Linear(d_model, expand)
        self.long_term_attn = GatedPropagation(
            d_model,
            d_model * 2,
            att_heads,
            use_linear=False,
            d_att=self.d_att,
            expand_ratio=expand_ratio,
        )
        self.short_term_attn = LocalGatedPropagation(
            d_model,
            d_model * 2,
            att_heads,
            max_dis=max_dis,
            d_att=self.d_att,
            expand_ratio=expand_ratio,
        )
        self.norm2 = nn.LayerNorm(d_model)
        self.id_norm2 = nn.LayerNorm(d_model)
        self.self_attn = GatedPropagation(
            d_model * 2, d_model * 2, self_heads, d_att=self.d_att, expand_ratio=expand_ratio
        )
        self.droppath = DropPath(droppath)

    def fuse_id(self, id_state: torch.Tensor | None, id_emb: torch.Tensor) -> torch.Tensor:
        """The ID value of a frame: SiLU(linear_ID_V(cat(id branch state, id_emb)))."""
        x = id_emb if id_state is None else torch.cat([id_state, id_emb], dim=-1)
        return F.silu(self.linear_ID_V(x))

    def forward(
        self,
        x: torch.Tensor,
        x_id: torch.Tensor | None,
        size_2d: tuple[int, int],
        memory: tuple[MemoryKV, KeyValue] | None,
        id_emb: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Propagate visual tokens ``x`` and ID tokens ``x_id`` (B x L x C; ``None`` = 0).

        ``x`` may be 1 x L x C shared by the B memories / identities (the first layer, whose
        ``x_id`` is ``None``): ``norm1``, ``linear_QV`` and ``linear_U`` then run once for all B.

        With ``id_emb`` the frame is a reference (self matching; the returned value is the
        fused cat(V, ID V)); otherwise ``memory`` = (long-term, short-term) is read and the
        returned value is the visual V alone, with the ID branch state for a later fusion.

        Returns (x', x_id', key, value, id_state): x' and x_id' B x L x C; key and the raw
        visual value keep the batch of one of a shared ``x``.
        """
        y = self.norm1(x)
        query, visual_value = torch.split(
            self.linear_QV(y), [self.d_att * self.att_heads, self.expand_d_model], dim=-1
        )
        visual_value = F.silu(visual_value)
        gate = self.linear_U(y)
        if x_id is None:
            id_state = None
            gate = torch.cat([F.silu(gate), torch.ones_like(gate)], dim=-1)
        else:
            id_state = self.id_norm1(x_id)
            gate = F.silu(torch.cat([gate, self.linear_ID_U(id_state)], dim=-1))

        if id_emb is not None:
            id_value = self.fuse_id(id_state, id_emb)
            visual_value = batched(visual_value, id_value.shape[0])
            value = torch.cat([visual_value, id_value], dim=-1)
            long_term: MemoryKV = (query, value)
            short_key, short_value = query, value
            returned_value = value
        else:
            assert memory is not None
            long_term, (short_key, short_value) = memory
            returned_value = visual_value
        long_out = self.long_term_attn(query, long_term, gate, size_2d)
        short_out = self.short_term_attn(query, short_key, short_value, gate, size_2d)
        out = long_out + short_out
        x = x + out[..., : self.d_model]
        x_id = out[..., self.d_model :] if x_id is None else x_id + out[..., self.d_model :]

        joint = torch.cat([self.norm2(x), self.id_norm2(x_id)], dim=-1)
        out = self.self_attn.self_propagate(joint, size_2d)
        x = x + self.droppath(out[..., : self.d_model])
        x_id = x_id + self.droppath(out[..., self.d_model :])
        return x, x_id, query, returned_value, id_state


class DualBranchGPM(nn.Module):
    """The DeAOT stack: ``layers`` and ``decoder_norms`` (GroupNorm(2) over cat(visual, ID))."""

    def __init__(
        self,
        num_layers: int,
        d_model: int,
        self_heads: int,
        att_heads: int,
        droppath: float = 0.1,
        intermediate_norm: bool = False,
        max_dis: int = 7,
    ) -> None:
        super().__init__()
        self.intermediate_norm = intermediate_norm
        self.layers = nn.ModuleList(
            GatedPropagationModule(d_model, self_heads, att_heads, droppath, max_dis, layer_idx=idx)
            for idx in range(num_layers)
        )
        num_norms = (num_layers - 1 if intermediate_norm else 0) + 1
        self.decoder_norms = nn.ModuleList(
            TokenGroupNorm(d_model * 2, groups=2) for _ in range(num_norms)
        )

    def forward(
        self,
        x: torch.Tensor,
        pos: torch.Tensor,
        size_2d: tuple[int, int],
        memories: LayerMemories | None = None,
        id_emb: torch.Tensor | None = None,
    ) -> PropagationOutput:
        """Propagate the projected stride-16 tokens ``x`` (B x L x C). ``pos`` is accepted for
        interface parity with AOT and ignored, as in the official model. ``x`` may be 1 x L x C:
        one frame shared by the B memories or identities; every output has batch B."""
        del pos
        batch = propagation_batch(x, memories, id_emb)
        x_id: torch.Tensor | None = None
        outputs, keys, values, id_states = [], [], [], []
        for idx, layer in enumerate(self.layers):
            x, x_id, key, value, id_state = layer(
                x, x_id, size_2d, None if memories is None else memories[idx], id_emb
            )
            assert x_id is not None
            outputs.append(batched(torch.cat([x, x_id], dim=-1), batch))
            keys.append(batched(key, batch))
            values.append(batched(value, batch))
            id_states.append(None if id_state is None else batched(id_state, batch))
        outputs = apply_decoder_norms(outputs, self.decoder_norms, self.intermediate_norm)
        return PropagationOutput(outputs, outputs[-1], FrameMemory(keys, values, id_states))

    def fuse_id(self, memory: FrameMemory, id_emb: torch.Tensor) -> list[KeyValue]:
        """Per-layer (key, cat(V, ID V)) of a propagated frame once its mask is known."""
        return [
            (key, torch.cat([value, layer.fuse_id(id_state, id_emb)], dim=-1))
            for layer, key, value, id_state in zip(
                self.layers, memory.key, memory.value, memory.id_value, strict=True
            )
        ]
