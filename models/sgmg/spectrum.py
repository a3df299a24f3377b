"""SgMg's spectrum modulator (``models/modules.py`` ``LFMResizeAdaptive`` of bo-miao/SgMg).

Around the text fusion of every feature level, SgMg filters each frame's feature map in the 2-D
Fourier domain: a learned scalar per frame (``coef`` in (0, 1), from a valid 3x3 conv, global
average pooling and a 2-layer MLP) scales a fixed Gaussian ``G`` centred on the array centre of
the *unshifted* spectrum, which holds the highest frequencies; the spectrum is multiplied by
``1 - coef * G``, its real and imaginary parts mixed by two 1x1 convs (a global spatial mix),
brought back by the inverse FFT (real part) and added to the input. Always float32.

``G`` is built once, at the first call of a forward (level 0, before fusion, stride-8 size), and
every later call bilinearly resizes the previous call's map: the chain L0 pre, L0 post, L1 pre,
..., L3 post (:func:`gaussian_chain`).

Parameter names ``conv1``, ``conv2``, ``laplace`` (a learned conv, despite the name) and
``fc.0``, ``fc.2`` match the official checkpoints under ``input_fft.{l}`` / ``input_fft_post.{l}``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def gaussian_map(height: int, width: int, sigma: float, device: torch.device) -> torch.Tensor:
    """1 x 1 x H x W ``exp(-((i - H//2)^2 + (j - W//2)^2) / (2 sigma^2))``."""
    ys = torch.arange(height, dtype=torch.float32, device=device)[:, None]
    xs = torch.arange(width, dtype=torch.float32, device=device)[None, :]
    g = torch.exp(-((ys - height // 2) ** 2 + (xs - width // 2) ** 2) / (2 * sigma**2))
    return g[None, None]


def gaussian_chain(
    sizes: Sequence[tuple[int, int]], sigma: float, device: torch.device
) -> list[torch.Tensor]:
    """The maps of consecutive calls at ``sizes``: built at the first, then resized in turn."""
    maps = [gaussian_map(*sizes[0], sigma, device)]
    for size in sizes[1:]:
        maps.append(F.interpolate(maps[-1], size=size, mode="bilinear", align_corners=False))
    return maps


class SpectrumModulator(nn.Module):
    """Adaptive high-frequency damping with a learned spectral channel mix.

    Args:
        channels: feature channels (256).
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(2 * channels, 2 * channels, kernel_size=1)
        self.conv2 = nn.Conv2d(2 * channels, 2 * channels, kernel_size=1)
        self.laplace = nn.Conv2d(channels, channels, kernel_size=3, padding=0)
        self.fc = nn.Sequential(
            nn.Linear(channels, channels, bias=False),
            nn.ReLU(inplace=True),
            nn.Linear(channels, 1, bias=False),
            nn.Sigmoid(),
        )

    def coefficient(self, x: torch.Tensor) -> torch.Tensor:
        """N x C x h x w -> N per-frame damping coefficients in (0, 1)."""
        return self.fc(self.laplace(x).mean((2, 3)))[:, 0]

    def forward(self, x: torch.Tensor, gauss: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Filter.

        Args:
            x: N x C x h x w (any float dtype; computed in float32, h and w >= 3).
            gauss: 1 x 1 x h x w map from :func:`gaussian_chain`.

        Returns:
            (N x C x h x w float32 output, N coefficients).
        """
        h, w = x.shape[-2:]
        if h < 3 or w < 3:
            raise ValueError(
                f"spectrum modulation needs feature maps of at least 3x3, got {h}x{w} "
                "(the padded input must be at least 144 pixels on each side)"
            )
        with torch.autocast(device_type=x.device.type, enabled=False):
            x = x.float()
            coef = self.coefficient(x)
            spectrum = torch.fft.fft2(x) * (1 - coef.view(-1, 1, 1, 1) * gauss)
            mixed = self.conv2(F.relu(self.conv1(torch.cat([spectrum.real, spectrum.imag], 1))))
            real, imag = mixed.float().chunk(2, dim=1)
            y = torch.fft.ifft2(torch.complex(real, imag), s=(h, w)).real
        return x + y, coef
