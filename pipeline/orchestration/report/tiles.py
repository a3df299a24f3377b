"""Overlay tiles of the report's figures: a frame with a node's prediction tinted red and the
ground truth outlined green; the key frame (where propagation starts) framed yellow."""

from __future__ import annotations

import base64

import cv2
import numpy as np

from pipeline.core.io import encode_jpeg

TILE_FRAMES = 6
TILE_HEIGHT = 96  # pixels encoded; the page shows tiles 40 px high and zooms on hover
PREDICTION_RGB = (255, 0, 0)
TRUTH_RGB = (0, 255, 0)
KEY_FRAME_RGB = (255, 210, 0)


def frame_indices(num_frames: int, key_frame: int | None, n: int = TILE_FRAMES) -> list[int]:
    """``n`` frames evenly spread over the video, the key frame among them (sorted, unique)."""
    if num_frames <= 0:
        return []
    spread = max(1, n - (key_frame is not None))
    picked = set(np.linspace(0, num_frames - 1, min(spread, num_frames)).round().astype(int))
    if key_frame is not None and 0 <= key_frame < num_frames:
        picked.add(int(key_frame))
    return sorted(int(i) for i in picked)


def overlay_tile(
    frame: np.ndarray, mask: np.ndarray, gt: np.ndarray | None, *, key: bool = False
) -> np.ndarray:
    """One frame, ``TILE_HEIGHT`` high: ``mask`` tinted red, ``gt``'s outline in green, and a
    yellow border where ``key``.

    Args:
        frame: H x W x 3 uint8 RGB. mask: H x W bool. gt: H x W bool or None.
    """
    img = frame.astype(np.float32)
    tint = np.array(PREDICTION_RGB, np.float32)
    img = np.where(mask[..., None], 0.5 * img + 0.5 * tint, img).astype(np.uint8)
    h, w = img.shape[:2]
    img = cv2.resize(img, (max(1, round(w * TILE_HEIGHT / h)), TILE_HEIGHT))
    if gt is not None:
        small = cv2.resize(
            gt.astype(np.uint8), (img.shape[1], TILE_HEIGHT), interpolation=cv2.INTER_NEAREST
        )
        contours, _ = cv2.findContours(small, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        img = np.ascontiguousarray(img)
        cv2.drawContours(img, contours, -1, TRUTH_RGB, 2)
    if key:
        cv2.rectangle(img, (1, 1), (img.shape[1] - 2, TILE_HEIGHT - 2), KEY_FRAME_RGB, 3)
    return img


def jpeg_data_uri(rgb: np.ndarray, quality: int = 85) -> str:
    """An inline ``data:`` URI of ``rgb`` as a JPEG."""
    data = base64.b64encode(encode_jpeg(rgb, quality)).decode("ascii")
    return f"data:image/jpeg;base64,{data}"
