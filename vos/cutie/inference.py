"""Cutie's inference for one set of objects (official ``InferenceCore.step`` semantics).

Per frame (hkchengrex/Cutie@ec5cdd4 ``cutie/inference/inference_core.py``):

1. the frame is resized when its short side exceeds ``max_internal_size`` (bilinear; given
   index masks nearest-exact), padded to a multiple of 16, and flipped into a second batch
   entry with ``flip_aug`` - :func:`prepare_frame` / :func:`encode_frame`, done once per frame
   and shared by every :class:`CutieProcessor` (track) of a session;
2. it is a memory frame when ``mem_every`` frames passed since the last one or a mask is given;
3. the sensory memory is updated on the stagger offsets after the last memory frame;
4. without a mask (or when a mask misses some known objects) the frame is segmented from
   memory: top-k readout per bucket, pixel fusion with sensory memory and the last mask, the
   object transformer, the decoder, soft aggregation;
5. given masks override the prediction (which is zeroed under any given pixel);
6. memory frames go through the mask encoder into working, object and sensory memory.

Naming: H x W = the original frame; H' x W' = the padded internal size; h x w = H'/16 x W'/16;
B = 1, or 2 with flip augmentation (the flipped copy second); N = objects of the processor.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from vos.cutie.batch import add_memories, segment_tracks
from vos.cutie.blocks import aggregate
from vos.cutie.memory import MemoryBank
from vos.cutie.network import CutieNetwork, ImageFeatures
from vos.cutie.spec import CutieSettings


def internal_size(height: int, width: int, max_internal_size: int) -> tuple[int, int]:
    """The size Cutie runs at: the short side brought down to ``max_internal_size`` (never up;
    -1 = keep), each side truncated like the official ``int(h / min_side * max)``."""
    short = min(height, width)
    if max_internal_size <= 0 or short <= max_internal_size:
        return height, width
    return int(height / short * max_internal_size), int(width / short * max_internal_size)


def pad_amounts(height: int, width: int, divisor: int = 16) -> tuple[int, int, int, int]:
    """(left, right, top, bottom) zero padding to multiples of ``divisor``; the smaller half on
    the left / top (official ``pad_divide_by``)."""
    new_h = -(-height // divisor) * divisor
    new_w = -(-width // divisor) * divisor
    top, left = (new_h - height) // 2, (new_w - width) // 2
    return left, new_w - width - left, top, new_h - height - top


def unpad(x: torch.Tensor, pad: tuple[int, int, int, int]) -> torch.Tensor:
    """... x H' x W' -> ... x H x W (removes :func:`pad_amounts` padding)."""
    left, right, top, bottom = pad
    return x[..., top : x.shape[-2] - bottom, left : x.shape[-1] - right]


@dataclass(frozen=True)
class PreparedFrame:
    """A frame ready for the network.

    Attributes:
        size: (H, W) original size.
        resized: (H_r, W_r) after the internal resize (== size when none).
        pad: (left, right, top, bottom) padding to H' x W'.
        image: B x 3 x H' x W' float in [0, 1] (flipped copy second with flip augmentation).
    """

    size: tuple[int, int]
    resized: tuple[int, int]
    pad: tuple[int, int, int, int]
    image: torch.Tensor

    def prepare_mask(self, mask: torch.Tensor) -> torch.Tensor:
        """H x W int64 object ids -> H' x W' (nearest-exact resize, zero padding)."""
        mask = mask.long()
        if self.resized != self.size:
            mask = F.interpolate(mask[None, None].float(), size=self.resized, mode="nearest-exact")
            mask = mask[0, 0].round().long()
        return F.pad(mask, self.pad)

    def restore(self, probs: torch.Tensor) -> torch.Tensor:
        """C x H' x W' -> C x H x W (unpad, then bilinear back to the original size)."""
        probs = unpad(probs, self.pad)
        if self.resized != self.size:
            probs = F.interpolate(probs[None], size=self.size, mode="bilinear", align_corners=False)
            probs = probs[0]
        return probs


def prepare_frame(frame: torch.Tensor, settings: CutieSettings) -> PreparedFrame:
    """A 3 x H x W uint8 RGB frame (or float in [0, 1]) -> :class:`PreparedFrame`."""
    if frame.ndim != 3 or frame.shape[0] != 3:
        raise ValueError(f"expected a 3 x H x W frame, got {tuple(frame.shape)}")
    image = frame.float() / 255.0 if frame.dtype == torch.uint8 else frame.float()
    size = (int(image.shape[1]), int(image.shape[2]))
    resized = internal_size(*size, settings.max_internal_size)
    if resized != size:
        image = F.interpolate(image[None], size=resized, mode="bilinear", align_corners=False)[0]
    pad = pad_amounts(*resized)
    image = F.pad(image, pad)[None]
    if settings.flip_aug:
        image = torch.cat([image, image.flip(-1)], dim=0)
    return PreparedFrame(size, resized, pad, image)


@dataclass(frozen=True)
class CutieEncoding:
    """One frame encoded once for every track of a session.

    Attributes:
        frame: the prepared frame.
        features: its :class:`~vos.cutie.network.ImageFeatures` (batch B).
    """

    frame: PreparedFrame
    features: ImageFeatures

    @property
    def size(self) -> tuple[int, int]:
        return self.frame.size

    @property
    def nbytes(self) -> int:
        image = self.frame.image
        return self.features.nbytes + image.numel() * image.element_size()


def encode_frame(
    network: CutieNetwork, frame: torch.Tensor, settings: CutieSettings
) -> CutieEncoding:
    """Prepare and encode a 3 x H x W frame on the network's device."""
    device = network.pixel_mean.device
    prepared = prepare_frame(frame.to(device), settings)
    return CutieEncoding(prepared, network.encode_image(prepared.image))


class CutieProcessor:
    """One set of objects through Cutie (one official ``InferenceCore`` whose image features
    come from outside).

    Object ids map to channels in first-seen order: ``objects[i]`` is channel ``i + 1`` of
    every output (channel 0 = background), for the processor's life.

    Attributes:
        taps: when a dict, per segmented frame the tensors ``visual_readout`` (B x N x CV x
            h x w), ``pixel_readout`` (after fusion), ``query_readout`` (object transformer
            output) and, per step, ``sensory`` (B x N x Cs x h x w, after the step) are
            appended (parity checks).
    """

    def __init__(self, network: CutieNetwork, settings: CutieSettings) -> None:
        self.network = network
        self.settings = settings
        self.stagger = settings.stagger_steps
        self.objects: list[int] = []
        self.memory = MemoryBank(settings)
        self.curr_ti = -1
        self.last_mem_ti = 0
        self.last_mask: torch.Tensor | None = None  # B x N x H' x W'
        self.taps: dict[str, list[torch.Tensor]] | None = None

    @property
    def nbytes(self) -> int:
        return self.memory.nbytes

    def tap(self, name: str, value: torch.Tensor) -> None:
        """Record ``value`` under ``name`` when :attr:`taps` is a dict."""
        if self.taps is not None:
            self.taps.setdefault(name, []).append(value.detach().clone())

    def begin_step(self, *, mask_given: bool) -> tuple[bool, bool]:
        """Count the next frame -> (memory frame, sensory update on the decoder)."""
        self.curr_ti += 1
        since = self.curr_ti - self.last_mem_ti
        return since >= self.settings.mem_every or mask_given, since in self.stagger

    def end_step(self, prob: torch.Tensor) -> torch.Tensor:
        """Keep the (1 + N) x H' x W' probabilities as the last mask -> B x N x H' x W'."""
        last = prob[1:].unsqueeze(0)
        if self.settings.flip_aug:
            last = torch.cat([last, last.flip(-1)], dim=0)
        self.last_mask = last
        return last

    @torch.inference_mode()
    def step(
        self,
        enc: CutieEncoding,
        mask: torch.Tensor | None = None,
        objects: list[int] | None = None,
        *,
        force_permanent: bool = False,
    ) -> torch.Tensor:
        """Process the next frame.

        Args:
            enc: the frame's encoding (from :func:`encode_frame`, same settings).
            mask: H x W object ids at the original size, or None to propagate.
            objects: the ids the mask gives (default: the non-zero ids in ``mask``).
            force_permanent: memorise this frame permanently.

        Returns:
            (1 + N) x H' x W' probabilities (padded internal size), background first.
        """
        if mask is None and not force_permanent:
            return step_tracks([self], enc)[0]
        if mask is not None and objects is None:
            objects = sorted(int(o) for o in torch.unique(mask) if int(o) > 0)
        if mask is not None and not objects:
            raise ValueError("a mask step needs at least one object (the official returns zeros)")
        is_mem_frame, update_sensory = self.begin_step(mask_given=mask is not None)
        need_segment = mask is None or (
            bool(self.objects) and any(o not in self.objects for o in objects or [])
        )
        prob = None
        if need_segment:
            prob = segment_tracks([self], enc.features, [update_sensory])[0]
        if mask is not None:
            assert objects is not None
            prob = self._merge_mask(enc.frame.prepare_mask(mask), objects, prob)
        assert prob is not None
        last = self.end_step(prob)
        if is_mem_frame or force_permanent:
            add_memories(enc, [self], [last], force_permanent=force_permanent)
        self.tap("sensory", self.memory.get_sensory(self.objects))
        return prob

    def _merge_mask(
        self, mask: torch.Tensor, objects: list[int], prob: torch.Tensor | None
    ) -> torch.Tensor:
        """Register new objects and let the given H' x W' mask override the prediction."""
        for obj in objects:
            if obj not in self.objects:
                self.objects.append(obj)
        ordered = sorted(objects, key=self.objects.index)
        if prob is not None:
            predicted = prob[1:].clone()
            predicted[:, mask > 0] = 0
            channels = [predicted[i] for i in range(predicted.shape[0])]
            for obj in ordered:
                index = self.objects.index(obj)
                given = (mask == obj).to(predicted.dtype)
                if index < len(channels):
                    channels[index] = given
                else:
                    channels.append(given)
            stacked = torch.stack(channels)
        else:
            stacked = torch.stack([(mask == obj) for obj in ordered]).float()
        return torch.softmax(aggregate(stacked, dim=0), dim=0)

    def drop_objects(self, objects: list[int]) -> None:
        """Forget ``objects`` (channels of the others shift down, as the official)."""
        keep = [o for o in self.objects if o not in objects]
        if self.last_mask is not None:
            index = [self.objects.index(o) for o in keep]
            self.last_mask = self.last_mask[:, index]
        self.objects = keep
        self.memory.drop_objects(keep)


@torch.inference_mode()
def step_tracks(processors: Sequence[CutieProcessor], enc: CutieEncoding) -> list[torch.Tensor]:
    """Propagate every processor (track) to the frame ``enc`` (no mask) with the per-object
    network work batched over the tracks (:mod:`vos.cutie.batch`) -> per track
    (1 + N) x H' x W' probabilities, as :meth:`CutieProcessor.step` gives each alone."""
    if not processors:
        return []
    if any(p.network is not processors[0].network for p in processors):
        raise ValueError("step_tracks needs processors of one network")
    plans = [p.begin_step(mask_given=False) for p in processors]
    probs = segment_tracks(processors, enc.features, [update for _, update in plans])
    lasts = [p.end_step(prob) for p, prob in zip(processors, probs, strict=True)]
    memory_frames = [i for i, (is_mem_frame, _) in enumerate(plans) if is_mem_frame]
    if memory_frames:
        add_memories(enc, [processors[i] for i in memory_frames], [lasts[i] for i in memory_frames])
    for processor in processors:
        processor.tap("sensory", processor.memory.get_sensory(processor.objects))
    return probs
