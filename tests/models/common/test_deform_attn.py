"""MSDeformAttn against an independent per-point bilinear oracle."""

from __future__ import annotations

import pytest
import torch

from models.common.deform_attn import MSDeformAttn, ms_deform_attn_sample


def _bilinear(img: torch.Tensor, x: float, y: float) -> torch.Tensor:
    """Sample img (D x H x W) at normalised (x, y) like grid_sample(align_corners=False, zeros)."""
    D, H, W = img.shape
    px, py = x * W - 0.5, y * H - 0.5
    x0, y0 = int(torch.floor(torch.tensor(px))), int(torch.floor(torch.tensor(py)))
    out = torch.zeros(D, dtype=torch.float64)
    for dy in (0, 1):
        for dx in (0, 1):
            xi, yi = x0 + dx, y0 + dy
            wx = 1 - abs(px - xi)
            wy = 1 - abs(py - yi)
            if 0 <= xi < W and 0 <= yi < H:
                out += wx * wy * img[:, yi, xi].double()
    return out


def test_sampling_matches_per_point_oracle() -> None:
    torch.manual_seed(0)
    shapes = [(5, 7), (3, 4)]
    N, M, D, Lq, P = 2, 2, 3, 4, 3
    L = len(shapes)
    Lin = sum(h * w for h, w in shapes)
    value = torch.randn(N, Lin, M, D)
    loc = torch.rand(N, Lq, M, L, P, 2) * 1.4 - 0.2  # some points fall outside
    attn = torch.rand(N, Lq, M, L, P)
    attn = attn / attn.sum((-1, -2), keepdim=True)
    out = ms_deform_attn_sample(value, torch.tensor(shapes), loc, attn)
    assert out.shape == (N, Lq, M * D)
    starts = [0, shapes[0][0] * shapes[0][1]]
    for n in range(N):
        for q in range(Lq):
            for m in range(M):
                acc = torch.zeros(D, dtype=torch.float64)
                for lvl, (h, w) in enumerate(shapes):
                    img = value[n, starts[lvl] : starts[lvl] + h * w, m].T.reshape(D, h, w)
                    for p in range(P):
                        x, y = loc[n, q, m, lvl, p].tolist()
                        acc += attn[n, q, m, lvl, p].double() * _bilinear(img, x, y)
                torch.testing.assert_close(
                    out[n, q, m * D : (m + 1) * D].double(), acc, atol=1e-5, rtol=1e-5
                )


def test_module_shapes_padding_and_any_batch() -> None:
    torch.manual_seed(0)
    attn = MSDeformAttn(d_model=16, n_levels=2, n_heads=4, n_points=2)
    shapes = torch.tensor([[6, 8], [3, 4]])
    Lin = 48 + 12
    N = 70  # more than the CUDA op's 64-frame step and not a multiple of it
    src = torch.randn(N, Lin, 16)
    query = torch.randn(N, 5, 16)
    ref = torch.rand(N, 5, 2, 2)
    out = attn(query, ref, src, shapes)
    assert out.shape == (N, 5, 16)
    # Padded tokens contribute nothing: changing their values leaves the output unchanged.
    mask = torch.zeros(N, Lin, dtype=torch.bool)
    mask[:, 40:48] = True
    src2 = src.clone()
    src2[:, 40:48] = 100.0
    torch.testing.assert_close(
        attn(query, ref, src, shapes, None, mask), attn(query, ref, src2, shapes, None, mask)
    )
    boxes = torch.cat([ref, torch.rand(N, 5, 2, 2) * 0.5], -1)
    assert attn(query, boxes, src, shapes).shape == (N, 5, 16)


def test_sampling_in_query_chunks_is_bounded_and_exact(monkeypatch) -> None:
    """Regression (peak memory): the sampled values of all queries were stacked and weighted
    at once, N*M x D x Lq x L*P floats (600 MB per encoder layer on a 35-frame demo video);
    the sampling now runs in query chunks of a bounded size with a bit-identical result."""
    import models.common.deform_attn as deform_attn

    torch.manual_seed(0)
    shapes = [(6, 8), (3, 4)]
    N, M, D, Lq, P = 3, 2, 4, 50, 3
    L = len(shapes)
    value = torch.randn(N, sum(h * w for h, w in shapes), M, D)
    loc = torch.rand(N, Lq, M, L, P, 2)
    attn = torch.rand(N, Lq, M, L, P).softmax(-1)
    whole = ms_deform_attn_sample(value, shapes, loc, attn, chunk_elements=10**9)
    sampled_sizes: list[int] = []
    grid_sample = deform_attn.F.grid_sample

    def recording(*args: object, **kwargs: object) -> torch.Tensor:
        out = grid_sample(*args, **kwargs)  # type: ignore[arg-type]
        sampled_sizes.append(out.numel())
        return out

    monkeypatch.setattr(deform_attn.F, "grid_sample", recording)
    bound = N * M * D * L * P * 7  # 7 queries a chunk
    chunked = ms_deform_attn_sample(value, shapes, loc, attn, chunk_elements=bound)
    assert torch.equal(chunked, whole)
    assert len(sampled_sizes) == L * -(-Lq // 7)
    assert max(sampled_sizes) * L <= bound


@pytest.mark.parametrize("box", [False, True])
def test_module_in_query_chunks_is_exact(monkeypatch, box: bool) -> None:
    """Offsets, weights and locations are built per query chunk; the result is bit-identical."""
    import models.common.deform_attn as deform_attn

    torch.manual_seed(0)
    attn = MSDeformAttn(d_model=16, n_levels=2, n_heads=4, n_points=2)
    shapes = torch.tensor([[6, 8], [3, 4]])
    N, Lq = 3, 40
    src = torch.randn(N, 60, 16)
    query = torch.randn(N, Lq, 16)
    ref = torch.rand(N, Lq, 2, 4 if box else 2)
    with torch.no_grad():
        whole = attn(query, ref, src, shapes)
        monkeypatch.setattr(deform_attn, "SAMPLE_CHUNK_ELEMENTS", N * 4 * 2 * 2 * 2 * 6)
        chunked = attn(query, ref, src, shapes)
    assert torch.equal(chunked, whole)
