"""AOT's long short-term transformer (LSTT), block version "v1".

Follows aot-benchmark ``networks/layers/transformer.py::LongShortTermTransformer`` /
``LongShortTermTransformerBlock`` (parameter names are the checkpoint's). Execution order per
block (pre-LN): self-attention (``norm1``, sine position on Q and K), long/short-term attention
(``norm2``; ``linear_Q`` gives Q = K; memory values ``linear_V(x + id)``), feed-forward
(``norm3``, ``linear1``, GroupNorm-GELU-5x5 DW conv, ``linear2``).

Memory of one block = (key, value) tokens: keys carry no identity, values are ID-fused.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from vos.layers.attention import KeyValue, LocalAttention, MemoryKV, MultiheadAttention
from vos.layers.basic import DropPath, GNActDWConv


@dataclass
class FrameMemory:
    """One frame's per-layer memory before its mask is known.

    ``key[i]`` and ``value[i]`` are layer i's B x L x C tokens; ``id_value[i]`` is the DeAOT ID
    branch state needed to fuse the identity later (``None`` for AOT and for DeAOT layer 0).
    """

    key: list[torch.Tensor]
    value: list[torch.Tensor]
    id_value: list[torch.Tensor | None]


@dataclass
class PropagationOutput:
    """Result of propagating one frame through the stack.

    Attributes:
        decoder_inputs: B x L x C' tokens the decoder concatenates (after the decoder norms).
        last: the last layer's normalised output (the parity ``lstt_out``), B x L x C'.
        memory: the frame's own memory (fused with the identity when one was given).
    """

    decoder_inputs: list[torch.Tensor]
    last: torch.Tensor
    memory: FrameMemory


# Per layer: long-term memory of the batch and short-term (key, value) tokens.
LayerMemories = Sequence[tuple[MemoryKV, KeyValue]]


def propagation_batch(
    x: torch.Tensor, memories: LayerMemories | None, id_emb: torch.Tensor | None
) -> int:
    """B of a propagation: the identity's batch for a reference frame, else the short-term
    memory's; ``x`` (the frame tokens) is B x L x C or a batch of one shared by all B."""
    if id_emb is not None:
        batch = int(id_emb.shape[0])
    elif memories is not None:
        _, (short_key, _) = memories[0]
        batch = int(short_key.shape[0])
    else:
        raise ValueError("propagation needs memories or an identity embedding")
    if x.shape[0] not in (1, batch):
        raise ValueError(f"frame tokens have batch {x.shape[0]}, the memories {batch}")
    return batch


def batched(x: torch.Tensor, batch: int) -> torch.Tensor:
    """``x`` (1 x ... or batch x ...) as a batch of ``batch`` (a view: no copy)."""
    return x if x.shape[0] == batch else x.expand(batch, *x.shape[1:])


def apply_decoder_norms(
    outputs: list[torch.Tensor], norms: nn.ModuleList, intermediate: bool
) -> list[torch.Tensor]:
    """The official stacks' output norms: the last norm on the last layer's output, and with
    ``intermediate`` norm i on layer i's output for the others."""
    outputs = list(outputs)
    outputs[-1] = norms[-1](outputs[-1])
    if intermediate:
        for idx in range(len(outputs) - 1):
            outputs[idx] = norms[idx](outputs[idx])
    return outputs


class LSTTBlock(nn.Module):
    """One AOT block; ``forward`` returns the new tokens and this frame's (key, value)."""

    def __init__(
        self,
        d_model: int,
        self_heads: int,
        att_heads: int,
        dim_feedforward: int = 1024,
        droppath: float = 0.1,
        max_dis: int = 7,
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(d_model)
        self.linear_Q = nn.Linear(d_model, d_model)
        self.linear_V = nn.Linear(d_model, d_model)
        self.long_term_attn = MultiheadAttention(d_model, att_heads, use_linear=False)
        self.short_term_attn = LocalAttention(d_model, att_heads, max_dis=max_dis)
        self.norm2 = nn.LayerNorm(d_model)
        self.self_attn = MultiheadAttention(d_model, self_heads)
        self.norm3 = nn.LayerNorm(d_model)
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.activation = GNActDWConv(dim_feedforward)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.droppath = DropPath(droppath)

    def fuse_id(self, value: torch.Tensor, id_emb: torch.Tensor) -> torch.Tensor:
        """Memory value of a frame from its raw value (``norm2`` output) and ID embedding."""
        return self.linear_V(value + id_emb)

    def forward(
        self,
        x: torch.Tensor,
        pos: torch.Tensor,
        size_2d: tuple[int, int],
        memory: tuple[MemoryKV, KeyValue] | None,
        id_emb: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Propagate ``x`` (B x L x C, or 1 x L x C shared by the B memories / identities: the
        first layer's self-attention, norms and ``linear_Q`` then run once for all B).

        With ``id_emb`` (B x L x C) the frame is a reference: it attends to its own ID-fused
        keys and values (long- and short-term), and the returned value is fused. Otherwise
        ``memory`` = (long-term, short-term) is read and the returned value is the raw
        ``norm2`` output, to be fused once the frame's mask is known.

        Returns (x', key, value): x' B x L x C; key and the raw value keep the batch of one of
        a shared ``x``.
        """
        y = self.norm1(x)
        qk = y + pos
        x = x + self.droppath(self.self_attn(qk, (qk, y)))

        y = self.norm2(x)
        query = self.linear_Q(y)
        if id_emb is not None:
            value = self.fuse_id(y, id_emb)
            long_term: MemoryKV = (query, value)
            short_key, short_value = query, value
        else:
            assert memory is not None
            long_term, (short_key, short_value) = memory
            value = y
        long_out = self.long_term_attn(query, long_term)
        short_out = self.short_term_attn(query, short_key, short_value, size_2d)
        x = x + long_out + short_out

        y = self.norm3(x)
        x = x + self.droppath(self.linear2(self.activation(self.linear1(y), size_2d)))
        return x, query, value


class LongShortTermTransformer(nn.Module):
    """The AOT stack: ``layers`` and ``decoder_norms`` (LayerNorms)."""

    def __init__(
        self,
        num_layers: int,
        d_model: int,
        self_heads: int,
        att_heads: int,
        dim_feedforward: int = 1024,
        droppath: float = 0.1,
        intermediate_norm: bool = True,
        max_dis: int = 7,
    ) -> None:
        super().__init__()
        self.intermediate_norm = intermediate_norm
        self.layers = nn.ModuleList(
            LSTTBlock(d_model, self_heads, att_heads, dim_feedforward, droppath, max_dis)
            for _ in range(num_layers)
        )
        num_norms = (num_layers - 1 if intermediate_norm else 0) + 1
        self.decoder_norms = nn.ModuleList(nn.LayerNorm(d_model) for _ in range(num_norms))

    def forward(
        self,
        x: torch.Tensor,
        pos: torch.Tensor,
        size_2d: tuple[int, int],
        memories: LayerMemories | None = None,
        id_emb: torch.Tensor | None = None,
    ) -> PropagationOutput:
        """Propagate the projected stride-16 tokens ``x`` (B x L x C, or 1 x L x C: one frame
        shared by the B memories or identities); see :class:`LSTTBlock`. Every output has
        batch B."""
        batch = propagation_batch(x, memories, id_emb)
        outputs, keys, values = [], [], []
        for idx, layer in enumerate(self.layers):
            x, key, value = layer(
                x, pos, size_2d, None if memories is None else memories[idx], id_emb
            )
            outputs.append(batched(x, batch))
            keys.append(batched(key, batch))
            values.append(batched(value, batch))
        outputs = apply_decoder_norms(outputs, self.decoder_norms, self.intermediate_norm)
        return PropagationOutput(
            outputs, outputs[-1], FrameMemory(keys, values, [None] * len(keys))
        )

    def fuse_id(self, memory: FrameMemory, id_emb: torch.Tensor) -> list[KeyValue]:
        """Per-layer (key, ID-fused value) of a propagated frame once its mask is known."""
        return [
            (key, layer.fuse_id(value, id_emb))
            for layer, key, value in zip(self.layers, memory.key, memory.value, strict=True)
        ]
