"""Swin Transformer encoder with the first three stages (strides 4, 8, 16), as AOT/DeAOT use it.

The detection Swin of ``models.shared.swin`` (one algorithm and one key layout for every model
of the project) built with three of its four stages. State-dict layout of aot-benchmark
``networks/encoders/swin/swin_transformer.py`` (Swin-B) and of the ICCV-2023 RVOS challenge's
``soc_test/AOT`` copy (Swin-L, window 12): ``patch_embed.{proj,norm}``,
``layers.i.blocks.j.{norm1, attn.{qkv, proj, relative_position_bias_table}, norm2, mlp.fc1,
mlp.fc2}``, ``layers.{0,1}.downsample.{norm,reduction}``, ``norm0..2``. The checkpoints also
carry ``attn.relative_position_index``: derived from the window, so it is checked by the
converter (:func:`vos.convert.load_official`), not loaded. No stage 4 is built; the 4th output
repeats the 3rd. Inside a block the map is zero-padded at the bottom / right to a multiple of
the window after ``norm1``; padded tokens take part in window attention (only the shift mask
applies) and are cropped afterwards.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from models.shared.swin import SwinBackbone


class SwinEncoder(SwinBackbone):
    """Swin stages 1-3 (of ``depths``' four) with a LayerNorm per output.

    Swin-B: ``embed_dim=128, depths=(2, 2, 18, 2), heads=(4, 8, 16, 32), window=7``; the
    challenge's Swin-L: ``embed_dim=192, heads=(6, 12, 24, 48), window=12``.

    Attributes:
        window: the attention window (checked against checkpoints' position indices).
        out_dims: widths of the four returned maps.
    """

    def __init__(
        self,
        embed_dim: int = 128,
        depths: Sequence[int] = (2, 2, 18, 2),
        num_heads: Sequence[int] = (4, 8, 16, 32),
        window: int = 7,
        drop_path_rate: float = 0.3,
    ) -> None:
        super().__init__(
            embed_dim=embed_dim,
            depths=depths,
            num_heads=num_heads,
            window=window,
            drop_path_rate=drop_path_rate,
            num_stages=len(depths) - 1,
        )
        self.window = window
        self.out_dims = (*self.out_channels, self.out_channels[-1])

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:  # type: ignore[override]
        """B x 3 x H x W normalised RGB -> [stride 4, 8, 16, 16] maps (C, 2C, 4C, 4C)."""
        outs = super().forward(x[:, None])
        return [*outs, outs[-1]]
