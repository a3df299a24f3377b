"""AOT: Associating Objects with Transformers (yoxu515/aot-benchmark ``networks/models/aot.py``).

The network is stateless; a per-video :class:`vos.session.Session` owns the memories. Stage
methods, composed by the session and by the training loop:

- :meth:`AOT.encode_image` - normalised frames -> :class:`EncodedFrame` (shortcuts + tokens);
- :meth:`AOT.id_embedding` - one-hot masks -> identity tokens (the patch-wise ID bank);
- :meth:`AOT.propagate` - tokens + memories (or an identity, for a reference) -> outputs;
- :meth:`AOT.fuse_memory` - a propagated frame's memory + its identity -> memory entries;
- :meth:`AOT.decode` - outputs + shortcuts -> ID logits at stride 4.

Submodules (= the project's state-dict prefixes; :mod:`vos.convert` maps the official names):
``encoder``, ``encoder_projector``, ``propagation`` (official ``LSTT``), ``decoder``,
``id_bank`` (official ``patch_wise_id_bank``).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import torch
from torch import nn

from vos.encoders import build_encoder
from vos.layers.attention import KeyValue
from vos.layers.basic import map_to_tokens, tokens_to_map
from vos.layers.decoder import FPNSegmentationHead
from vos.layers.lstt import FrameMemory, LayerMemories, LongShortTermTransformer, PropagationOutput
from vos.layers.position import sine_position_embedding
from vos.variants import EngineSpec

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class EncodedFrame:
    """Encoder output for a batch of frames (usually 1, or 2 with a flipped copy).

    Attributes:
        shortcuts: [stride 4, 8, 16 (raw), 16 (projected)] maps, each N x C_i x h_i x w_i.
        tokens: N x L x C projected stride-16 tokens (the propagation input).
        size_2d: (h, w) of the stride-16 grid.
        input_size: (H, W) of the network input.
    """

    shortcuts: list[torch.Tensor]
    tokens: torch.Tensor
    size_2d: tuple[int, int]
    input_size: tuple[int, int]

    def select(self, index: int) -> EncodedFrame:
        """Element ``index`` of the batch, as a batch of one (views, no copy)."""
        return EncodedFrame(
            [s[index : index + 1] for s in self.shortcuts],
            self.tokens[index : index + 1],
            self.size_2d,
            self.input_size,
        )


@lru_cache(maxsize=16)
def _position(size_2d: tuple[int, int], dim: int, device: torch.device) -> torch.Tensor:
    return sine_position_embedding(size_2d, dim, device=device)


class AOT(nn.Module):
    """The AOT network for one :class:`~vos.variants.EngineSpec` (``family == "aot"``)."""

    def __init__(self, spec: EngineSpec, *, trainable_norm: bool = False) -> None:
        super().__init__()
        self.spec = spec
        self.max_objects = spec.max_objects
        self.encoder = build_encoder(spec.encoder, nn.BatchNorm2d if trainable_norm else None)
        dims = tuple(self.encoder.out_dims)  # type: ignore[arg-type]
        self.encoder_dims = dims
        self.encoder_projector = nn.Conv2d(dims[-1], spec.d_model, kernel_size=1)
        self.propagation = self._build_propagation(spec)
        self.decoder = FPNSegmentationHead(
            self._decoder_in_dim(spec),
            spec.max_objects + 1,
            shortcut_dims=dims,
            hidden_dim=spec.d_model,
            decode_intermediate_input=spec.decoder_intermediate,
            align_corners=spec.align_corners,
        )
        if spec.align_corners:
            self.id_bank = nn.Conv2d(spec.max_objects + 1, spec.d_model, 17, stride=16, padding=8)
        else:
            self.id_bank = nn.Conv2d(spec.max_objects + 1, spec.d_model, 16, stride=16, padding=0)
        self.reset_parameters()

    def _build_propagation(self, spec: EngineSpec) -> nn.Module:
        return LongShortTermTransformer(
            spec.num_layers,
            spec.d_model,
            spec.self_heads,
            spec.att_heads,
            dim_feedforward=spec.dim_feedforward,
            droppath=spec.droppath,
            intermediate_norm=spec.decoder_intermediate,
            max_dis=spec.max_dis,
        )

    def _decoder_in_dim(self, spec: EngineSpec) -> int:
        return spec.d_model * (spec.num_layers + 1) if spec.decoder_intermediate else spec.d_model

    def reset_parameters(self) -> None:
        """Training initialisation (official ``_init_weight``): Xavier for matrices, the ID bank
        orthogonal with gain kernel**-2."""
        for name, p in self.named_parameters():
            if p.dim() > 1 and not name.startswith("encoder."):
                nn.init.xavier_uniform_(p)
        kernel = self.id_bank.kernel_size[0]
        nn.init.orthogonal_(self.id_bank.weight.view(self.spec.d_model, -1), gain=kernel**-2)

    # --- stages -------------------------------------------------------------------------

    def encode_image(self, images: torch.Tensor) -> EncodedFrame:
        """``N x 3 x H x W`` normalised RGB (ImageNet mean/std) -> :class:`EncodedFrame`."""
        feats = list(self.encoder(images))
        feats[-1] = self.encoder_projector(feats[-1])
        h, w = feats[-1].shape[-2:]
        return EncodedFrame(
            feats, map_to_tokens(feats[-1]), (int(h), int(w)), tuple(images.shape[-2:])
        )

    def id_embedding(self, one_hot: torch.Tensor) -> torch.Tensor:
        """``B x (K+1) x H x W`` float one-hot masks at network size -> ``B x L x C`` tokens."""
        return map_to_tokens(self.id_bank(one_hot))

    def position(self, size_2d: tuple[int, int], device: torch.device) -> torch.Tensor:
        return _position(size_2d, self.spec.d_model, device)

    def propagate(
        self,
        tokens: torch.Tensor,
        size_2d: tuple[int, int],
        memories: LayerMemories | None = None,
        id_emb: torch.Tensor | None = None,
    ) -> PropagationOutput:
        """Propagate ``tokens`` (B x L x C, or 1 x L x C: one frame for all B memories).

        Give either ``memories`` (per layer: long-term :data:`MemoryKV`, short-term batched
        (key, value)) or ``id_emb`` (B x L x C) for a reference frame. A batch-1 frame is not
        copied B times: the first layer computes what depends on the frame alone once (every
        track reads the same frame) and only then meets the B memories or identities. The
        outputs have batch B.
        """
        pos = self.position(size_2d, tokens.device).to(tokens.dtype)
        return self.propagation(tokens, pos, size_2d, memories, id_emb)

    def fuse_memory(self, memory: FrameMemory, id_emb: torch.Tensor) -> list[KeyValue]:
        """Per-layer memory entries (key, value) of a propagated frame given its identity."""
        return self.propagation.fuse_id(memory, id_emb)

    def decode(self, output: PropagationOutput, encoded: EncodedFrame) -> torch.Tensor:
        """ID logits ``B x (K+1) x H/4 x W/4``; ``encoded`` may be a batch of one (broadcast)."""
        batch = output.last.shape[0]
        projected = encoded.shortcuts[-1]
        if projected.shape[0] != batch:
            projected = projected.expand(batch, -1, -1, -1)
        inputs = [projected] + [tokens_to_map(x, encoded.size_2d) for x in output.decoder_inputs]
        return self.decoder(inputs, encoded.shortcuts)
