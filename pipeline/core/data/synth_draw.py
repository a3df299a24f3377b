"""Drawing for the synthetic benchmarks: textured shapes pasted over a panning background.

Shared by the Ref-YouTube-VOS-layout benchmark (:mod:`pipeline.core.data.synth`) and the
MeViS-layout one (:mod:`pipeline.core.data.synth_mevis`). Everything draws from the caller's
random stream in a fixed order, so a scene renders to the same pixels for the same stream.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from typing import Protocol

import cv2
import numpy as np

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (215, 35, 35),
    "green": (40, 170, 55),
    "blue": (35, 75, 215),
    "yellow": (230, 205, 35),
    "purple": (135, 55, 185),
    "orange": (240, 125, 25),
    "cyan": (35, 200, 205),
    "pink": (240, 120, 185),
    "white": (238, 238, 238),
    "black": (22, 22, 22),
}
SHAPES = ("circle", "square", "triangle", "star", "diamond", "hexagon", "cross", "ring")
TEXTURES = ("flat", "stripes", "noise", "spots")


class Sprite(Protocol):
    """What the renderer needs to know of an object."""

    colour: str
    shape: str
    radius: float
    texture: str
    spin: tuple[float, float]  # rotation amplitude (degrees), phase
    depth: float  # drawing order: smaller is further back
    obj_id: int  # label written under the object, 0 for unannotated clutter


def shape_mask(shape: str, radius: float, angle_deg: float) -> np.ndarray:
    """The shape rasterised on a square canvas centred on the object (``L x L bool``)."""
    half = math.ceil(radius * 1.05) + 1
    size = 2 * half + 1
    canvas = np.zeros((size, size), np.uint8)
    c = float(half)
    scale = 16  # cv2 fixed-point shift of 4 bits for sub-pixel vertices
    if shape in ("circle", "ring"):
        cv2.circle(canvas, (half, half), max(round(radius), 1), 1, -1)
        if shape == "ring":
            cv2.circle(canvas, (half, half), max(round(radius * 0.5), 1), 0, -1)
        return canvas.astype(bool)
    a = np.deg2rad(angle_deg)
    if shape == "square":
        angles, radii = np.deg2rad([45, 135, 225, 315]), np.full(4, 0.92)
    elif shape == "diamond":
        angles = np.deg2rad([0, 90, 180, 270])
        radii = np.array([0.62, 1.0, 0.62, 1.0])
    elif shape == "triangle":
        angles, radii = np.deg2rad([-90, 30, 150]), np.ones(3)
    elif shape == "hexagon":
        angles, radii = np.deg2rad(np.arange(6) * 60.0), np.ones(6)
    elif shape == "star":
        angles = np.deg2rad(np.arange(10) * 36.0 - 90)
        radii = np.where(np.arange(10) % 2 == 0, 1.0, 0.45)
    elif shape == "cross":
        w = 0.36
        pts = [(w, 1), (w, w), (1, w), (1, -w), (w, -w), (w, -1)]
        pts += [(-w, -1), (-w, -w), (-1, -w), (-1, w), (-w, w), (-w, 1)]
        xy = np.array(pts, np.float64) * 0.95
        angles, radii = np.arctan2(xy[:, 1], xy[:, 0]), np.hypot(xy[:, 0], xy[:, 1])
    else:
        raise ValueError(f"unknown shape {shape!r}")
    xs = c + radius * radii * np.cos(angles + a)
    ys = c + radius * radii * np.sin(angles + a)
    poly = np.round(np.stack([xs, ys], axis=1) * scale).astype(np.int32)
    cv2.fillPoly(canvas, [poly], 1, lineType=cv2.LINE_8, shift=4)
    return canvas.astype(bool)


def smooth_noise(rng: np.random.Generator, H: int, W: int, cell: float) -> np.ndarray:
    """Band-limited noise in [-1, 1] (``H x W float32``): random grid, bicubic upsampling."""
    gh, gw = max(int(H / cell) + 2, 2), max(int(W / cell) + 2, 2)
    grid = rng.uniform(-1, 1, (gh, gw)).astype(np.float32)
    return np.clip(cv2.resize(grid, (W, H), interpolation=cv2.INTER_CUBIC), -1, 1)


def background(rng: np.random.Generator, H: int, W: int) -> np.ndarray:
    """A low-saturation textured background (``H x W x 3 float32`` in 0..255)."""
    base = rng.uniform(70, 170)
    tint = rng.uniform(-18, 18, 3)
    tex = 30 * smooth_noise(rng, H, W, rng.uniform(20, 60))
    tex += 14 * smooth_noise(rng, H, W, rng.uniform(4, 10))
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    for _ in range(int(rng.integers(1, 4))):
        theta, freq = rng.uniform(0, np.pi), rng.uniform(0.03, 0.15)
        tex += rng.uniform(4, 14) * np.sin(
            freq * (np.cos(theta) * xx + np.sin(theta) * yy) + rng.uniform(0, 6.3)
        )
    img = base + tex[:, :, None] + tint[None, None, :]
    # dull blobs of colour, so colour alone never segments an object
    for _ in range(int(rng.integers(2, 7))):
        centre = (int(rng.integers(0, W)), int(rng.integers(0, H)))
        axes = (int(rng.uniform(0.05, 0.25) * W), int(rng.uniform(0.05, 0.25) * H))
        colour = np.array(COLOURS[str(rng.choice(list(COLOURS)))], np.float32)
        blob = np.zeros((H, W), np.uint8)
        cv2.ellipse(blob, centre, axes, rng.uniform(0, 180), 0, 360, 1, -1)
        mix = 0.25 * blob.astype(np.float32)[:, :, None]
        img = img * (1 - mix) + (0.5 * colour + 0.5 * img.mean()) * mix
    return img.astype(np.float32)


def object_patch(rng: np.random.Generator, obj: Sprite) -> np.ndarray:
    """The object's textured colour on its canvas (``L x L x 3 float32``)."""
    size = 2 * (math.ceil(obj.radius * 1.05) + 1) + 1
    colour = np.array(COLOURS[obj.colour], np.float32) * rng.uniform(0.9, 1.1)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    if obj.texture == "stripes":
        theta = rng.uniform(0, np.pi)
        period = rng.uniform(0.25, 0.6) * obj.radius
        mod = 0.18 * np.sign(np.sin(2 * np.pi * (np.cos(theta) * xx + np.sin(theta) * yy) / period))
    elif obj.texture == "noise":
        mod = 0.2 * smooth_noise(rng, size, size, max(obj.radius / 3, 2))
    elif obj.texture == "spots":
        mod = np.zeros((size, size), np.float32)
        for _ in range(int(rng.integers(3, 8))):
            cx, cy = rng.uniform(0, size, 2)
            rr = rng.uniform(0.08, 0.2) * obj.radius
            mod -= 0.25 * (((xx - cx) ** 2 + (yy - cy) ** 2) < rr**2)
    else:
        mod = np.zeros((size, size), np.float32)
    shade = 0.12 * (xx + yy - size) / size  # light from the top left
    gain = 1 + mod - shade
    # dark colours get a lighter texture so the modulation stays visible
    offset = 40 * mod if obj.colour == "black" else 0
    return np.clip(colour[None, None, :] * gain[:, :, None] + np.asarray(offset)[..., None], 0, 255)


def paste(
    image: np.ndarray,
    labels: np.ndarray,
    patch: np.ndarray,
    mask: np.ndarray,
    x: float,
    y: float,
    label: int,
) -> None:
    """Draw ``patch`` where ``mask`` is set, centred at (x, y), clipped to the frame."""
    H, W = labels.shape
    half = mask.shape[0] // 2
    x0, y0 = round(x) - half, round(y) - half
    x1, y1 = x0 + mask.shape[1], y0 + mask.shape[0]
    cx0, cy0, cx1, cy1 = max(x0, 0), max(y0, 0), min(x1, W), min(y1, H)
    if cx0 >= cx1 or cy0 >= cy1:
        return
    m = mask[cy0 - y0 : cy1 - y0, cx0 - x0 : cx1 - x0]
    image[cy0:cy1, cx0:cx1][m] = patch[cy0 - y0 : cy1 - y0, cx0 - x0 : cx1 - x0][m]
    labels[cy0:cy1, cx0:cx1][m] = label


def render_scene(
    rng: np.random.Generator,
    H: int,
    W: int,
    T: int,
    sprites: Sequence[Sprite],
    centres: Sequence[tuple[np.ndarray, np.ndarray]],
    *,
    occluder_counts: Sequence[int] = (0, 1, 1, 2),
    pan: float = 0.08,
    looks: Sequence[Hashable] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Render ``T`` frames (``T x H x W x 3 uint8``) and their labels (``T x H x W uint8``).

    ``centres[i]``: sprite ``i``'s centre ``(x[T], y[T])`` in pixels. ``occluder_counts``: the
    number of static occluding bars is drawn from these. ``pan``: the background's largest
    drift over the video, as a fraction of the frame. ``looks``: sprites with equal keys share
    one textured patch (identical look-alikes); by default every sprite gets its own.
    """
    shift = rng.uniform(-pan, pan, 2) * np.array([W, H])
    margin = int(np.ceil(np.abs(shift).max())) + 2
    ground = background(rng, H + 2 * margin, W + 2 * margin)
    shared: dict[Hashable, np.ndarray] = {}
    patches = []
    for i, sprite in enumerate(sprites):
        key = (looks[i],) if looks is not None else ("own", i)
        if key not in shared:
            shared[key] = object_patch(rng, sprite)
        patches.append(shared[key])
    occluders = []
    for _ in range(int(rng.choice(list(occluder_counts)))):
        vertical = rng.random() < 0.6
        width = int(rng.uniform(0.03, 0.07) * (W if vertical else H)) + 2
        pos = int(rng.uniform(0.15, 0.85) * (W if vertical else H))
        shade = rng.uniform(60, 200) + rng.uniform(-15, 15, 3)
        occluders.append((vertical, pos, width, shade.astype(np.float32)))
    light = rng.uniform(0.85, 1.15)
    light_drift = rng.uniform(-0.12, 0.12)
    noise_sigma = rng.uniform(2.0, 6.0)
    order = sorted(range(len(sprites)), key=lambda i: sprites[i].depth)
    frames = np.empty((T, H, W, 3), np.uint8)
    labels = np.zeros((T, H, W), np.uint8)
    for k in range(T):
        ox = round(margin + shift[0] * k / max(T - 1, 1))
        oy = round(margin + shift[1] * k / max(T - 1, 1))
        image = ground[oy : oy + H, ox : ox + W].copy()
        for i in order:
            sprite = sprites[i]
            angle = sprite.spin[0] * np.sin(0.3 * k + sprite.spin[1])
            mask = shape_mask(sprite.shape, sprite.radius, angle)
            x, y = centres[i][0][k], centres[i][1][k]
            paste(image, labels[k], patches[i], mask, x, y, sprite.obj_id)
        for vertical, pos, width, shade in occluders:
            if vertical:
                image[:, pos : pos + width] = shade
                labels[k][:, pos : pos + width] = 0
            else:
                image[pos : pos + width, :] = shade
                labels[k][pos : pos + width, :] = 0
        gain = light * (1 + light_drift * k / max(T - 1, 1))
        image = image * gain + rng.standard_normal((H, W, 3), dtype=np.float32) * noise_sigma
        image = cv2.GaussianBlur(image, (3, 3), 0.6)
        frames[k] = np.clip(image, 0, 255).astype(np.uint8)
    return frames, labels
