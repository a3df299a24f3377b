"""Video-level queries over a clip's frame queries: MUTR's MTI and SOC's VOC share these.

Both run a :class:`models.common.vita.VideoQueryDecoder` on the per-frame decoder states of
the listed decoder layers (training: every layer; evaluation: the last one) and feed the
resulting video queries back to every frame's heads.
"""

from __future__ import annotations

import torch

from models.common.vita import VideoQueryDecoder


def video_queries_per_layer(
    decoder: VideoQueryDecoder,
    hs: torch.Tensor,
    layers: list[int],
    num_frames: int,
    init: torch.Tensor | None = None,
) -> torch.Tensor:
    """Run the video decoder on each listed decoder layer's frame queries (one batched pass).

    Args:
        hs: D x N x Q x d decoder states, N = E * T.
        layers: decoder layers to decode.
        init: E x d initial queries (SOC's sentence) or None.

    Returns:
        len(layers) x E x Nq x d.
    """
    _, N, Q, C = hs.shape
    E = N // num_frames
    frames = hs[layers].reshape(len(layers) * E, num_frames, Q, C)
    if init is not None:
        init = init.repeat(len(layers), 1)
    return decoder(frames, init).view(len(layers), E, -1, C)


def per_frame(queries: torch.Tensor, num_frames: int) -> torch.Tensor:
    """E x Nq x d video queries repeated for every frame: (E * T) x Nq x d."""
    E, Q, C = queries.shape
    return queries[:, None].expand(E, num_frames, Q, C).reshape(E * num_frames, Q, C)
