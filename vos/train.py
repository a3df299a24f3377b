"""Training AOT / DeAOT on clips (the project's own loop; tensors in, no files).

Follows the official recipe (aot-benchmark ``networks/engines/aot_engine.py::AOTEngine.forward``,
``networks/managers/trainer.py``, ``networks/layers/loss.py``) at small scale: each clip's
first frame is the reference (ground truth), every later frame is propagated, decoded and
scored, then written into memory - with its ground-truth identities during the first part of
training and with the network's own (detached) prediction afterwards ("sequential training").
Loss = 0.5 x bootstrapped cross-entropy (the hardest ``top_k_percent`` pixels, the share
annealed from all pixels over the first ``hard_mining_ratio`` of the steps) + 0.5 x soft
Jaccard over the clip's identities. AdamW with linear warm-up and polynomial (0.9) decay.

Batches come from :mod:`pipeline.training.vos_clips` (which reads the files).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from vos.aot import AOT, EncodedFrame
from vos.layers.attention import KeyValue
from vos.preprocess import one_hot_labels


@dataclass(frozen=True)
class VOSBatch:
    """B training clips.

    Attributes:
        frames: B x T x 3 x H x W float normalised frames (network size).
        labels: B x T x H x W int64 identities 0..n_b (0 = background).
        num_objects: B int64, identities used by each clip (<= max_objects).
    """

    frames: torch.Tensor
    labels: torch.Tensor
    num_objects: torch.Tensor


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings."""

    steps: int = 3000
    lr: float = 1e-3
    weight_decay: float = 0.03
    warmup_steps: int = 150
    poly_power: float = 0.9
    min_lr: float = 1e-5
    grad_clip: float = 5.0
    top_k_percent: float = 0.15
    hard_mining_ratio: float = 0.5
    sequential_start: float = 0.5
    long_term_gap: int = 2
    seed: int = 0


def learning_rate(step: int, config: TrainConfig) -> float:
    """Warm-up then polynomial decay."""
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    progress = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
    decay = (1 - min(progress, 1.0)) ** config.poly_power
    return config.min_lr + (config.lr - config.min_lr) * decay


def bootstrapped_cross_entropy(
    logits: torch.Tensor, labels: torch.Tensor, top_fraction: float
) -> torch.Tensor:
    """Mean cross-entropy of the hardest ``top_fraction`` pixels of each sample."""
    losses = F.cross_entropy(logits, labels, reduction="none").flatten(1)
    if top_fraction >= 1.0:
        return losses.mean()
    k = max(1, int(losses.shape[1] * top_fraction))
    return losses.topk(k, dim=1).values.mean()


def soft_jaccard(probs: torch.Tensor, labels: torch.Tensor, live: torch.Tensor) -> torch.Tensor:
    """1 - soft IoU averaged over each sample's live channels (background included)."""
    num = probs.shape[1]
    target = one_hot_labels(labels, num)
    inter = (probs * target).flatten(2).sum(-1)
    union = (probs + target - probs * target).flatten(2).sum(-1)
    iou = (inter + 1.0) / (union + 1.0)
    channel = torch.arange(num, device=probs.device)[None]
    mask = (channel <= live[:, None]).float()
    return ((1 - iou) * mask).sum() / mask.sum()


def clip_loss(
    network: AOT,
    batch: VOSBatch,
    *,
    top_fraction: float,
    use_predictions: bool,
    long_term_gap: int,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Propagate every clip of ``batch`` from its first frame; return the mean loss."""
    frames, labels, live = batch.frames, batch.labels, batch.num_objects
    b, t = frames.shape[:2]
    ids = network.max_objects + 1
    encoded = network.encode_image(frames.flatten(0, 1))
    shortcuts = [s.unflatten(0, (b, t)) for s in encoded.shortcuts]
    tokens = encoded.tokens.unflatten(0, (b, t))
    size_2d = encoded.size_2d

    def frame(i: int) -> EncodedFrame:  # time i of every clip
        return EncodedFrame([s[:, i] for s in shortcuts], tokens[:, i], size_2d, encoded.input_size)

    ref = network.propagate(
        tokens[:, 0], size_2d, None, network.id_embedding(one_hot_labels(labels[:, 0], ids))
    )
    entries: list[KeyValue] = list(zip(ref.memory.key, ref.memory.value, strict=True))
    long_term = [[e] for e in entries]
    short_term = entries
    last_mem = 0
    channel = torch.arange(ids, device=frames.device)[None, :, None, None]
    unused = channel > live[:, None, None, None]
    ce_total = jac_total = torch.zeros((), device=frames.device)
    for i in range(1, t):
        memories = [
            ((torch.cat([k for k, _ in lt], 1), torch.cat([v for _, v in lt], 1)), st)
            for lt, st in zip(long_term, short_term, strict=True)
        ]
        out = network.propagate(tokens[:, i], size_2d, memories)
        logits = network.decode(out, frame(i))
        logits = F.interpolate(
            logits,
            size=labels.shape[-2:],
            mode="bilinear",
            align_corners=network.spec.align_corners,
        )
        logits = logits.masked_fill(unused, -1e4)
        probs = logits.softmax(1)
        ce = bootstrapped_cross_entropy(logits, labels[:, i], top_fraction)
        jac = soft_jaccard(probs, labels[:, i], live)
        ce_total = ce_total + ce
        jac_total = jac_total + jac
        if i == t - 1:
            break
        memory_label = probs.argmax(1).detach() if use_predictions else labels[:, i]
        id_emb = network.id_embedding(one_hot_labels(memory_label, ids))
        short_term = network.fuse_memory(out.memory, id_emb)
        if i - last_mem >= long_term_gap:
            for layer, entry in enumerate(short_term):
                long_term[layer].append(entry)
            last_mem = i
    steps = t - 1
    loss = 0.5 * ce_total / steps + 0.5 * jac_total / steps
    terms = {"ce": float(ce_total.detach()) / steps, "jaccard": float(jac_total.detach()) / steps}
    return loss, terms


class Trainer:
    """Optimiser state around a network; :meth:`step` runs one batch."""

    def __init__(self, network: AOT, config: TrainConfig) -> None:
        self.network = network
        self.config = config
        decay, no_decay = [], []
        for name, p in network.named_parameters():
            (no_decay if p.ndim <= 1 or name.endswith("relative_emb_v") else decay).append(p)
        self.optimizer = torch.optim.AdamW(
            [
                {"params": decay, "weight_decay": config.weight_decay},
                {"params": no_decay, "weight_decay": 0.0},
            ],
            lr=config.lr,
        )
        self.step_index = 0

    def top_fraction(self) -> float:
        ramp = self.config.hard_mining_ratio * self.config.steps
        if ramp <= 0:
            return self.config.top_k_percent
        progress = min(1.0, self.step_index / ramp)
        return 1.0 - (1.0 - self.config.top_k_percent) * progress

    def step(self, batch: VOSBatch) -> dict[str, float]:
        """One optimiser step on ``batch``; returns the loss terms and the learning rate."""
        self.network.train()
        lr = learning_rate(self.step_index, self.config)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        sequential = self.step_index >= self.config.sequential_start * self.config.steps
        loss, terms = clip_loss(
            self.network,
            batch,
            top_fraction=self.top_fraction(),
            use_predictions=sequential,
            long_term_gap=self.config.long_term_gap,
        )
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.config.grad_clip > 0:
            nn.utils.clip_grad_norm_(self.network.parameters(), self.config.grad_clip)
        self.optimizer.step()
        self.step_index += 1
        value = float(loss.detach())
        if not math.isfinite(value):
            raise FloatingPointError(f"training loss is {value} at step {self.step_index}")
        return {"loss": value, "lr": lr, **terms}

    def state_dict(self) -> dict[str, Any]:
        return {
            "network": self.network.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "step": self.step_index,
            "rng": torch.get_rng_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.network.load_state_dict(state["network"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.step_index = int(state["step"])
        torch.set_rng_state(state["rng"])

    def run(
        self,
        batches: Callable[[int], VOSBatch],
        on_step: Callable[[int, dict[str, float]], None] | None = None,
    ) -> Iterator[int]:
        """Train until ``config.steps``; ``batches(step)`` gives each step's batch. Yields the
        step index after each step (so callers can checkpoint)."""
        while self.step_index < self.config.steps:
            terms = self.step(batches(self.step_index))
            if on_step is not None:
                on_step(self.step_index, terms)
            yield self.step_index


def frozen_state(network: AOT) -> dict[str, torch.Tensor]:
    """The trained weights in the inference layout (BatchNorm counters dropped)."""
    return {
        k: v.detach().clone()
        for k, v in network.state_dict().items()
        if not k.endswith("num_batches_tracked")
    }
