"""Training Cutie on clips (the project's own loop; tensors in, no files).

Follows the official recipe (hkchengrex/Cutie@ec5cdd4 ``cutie/model/train_wrapper.py``,
``losses.py``, ``aux_modules.py``, ``config/train_config.yaml`` ``main_training``) at small
scale. Each clip's first frame is encoded with its ground-truth masks; every later frame reads
the memory of up to ``num_ref_frames`` earlier frames (all of them while there are that few,
else a random choice per clip), is segmented, and - except the last - is encoded back into
memory with the network's own soft masks (gradients flow through them), the mask encoder
deep-updating the sensory memory with probability ``deep_update_prob``. Reading memory in
training is the official ``read_memory``: a softmax over every memory token (no top-k).

Loss per clip (``LossComputer``): cross-entropy + dice of the final aggregated logits over
{background, objects}, summed over the propagated frames, on points sampled PointRend-style
(``importance_sample_ratio`` of them where the two best logits are closest, among
``oversample_ratio`` x as many random candidates; the rest at random), plus the same two terms
at weight 0.01 for the auxiliary masks: the sensory memory's linear read-out (the training-only
``aux_computer.sensory_aux``) and every level of the object transformer's mask predictions.
Padded objects (clips with fewer objects than the batch's most) are zeroed by a selector before
every aggregation, as the official.

Small-scale departures (from scratch, no pretrained ResNets): AdamW with the warm-up and
polynomial decay of :func:`vos.train.learning_rate` instead of a constant rate with steps, the
same rate for the backbones (the official ``backbone_lr_ratio`` 0.1 protects pretrained
weights), batch norms trained (the port's network keeps them frozen for inference), and points
as a fraction of each frame (the official 12544 points of a 480 x 480 crop are 5 %; the
synthetic objects are a few hundred pixels, so the default takes 25 %).

Batches are :class:`vos.train.VOSBatch` with frames in [0, 1] (``pipeline.training.vos_clips``
with ``normalized=False`` reads the files).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from vos.cutie.blocks import GConv2d, aggregate
from vos.cutie.memory import full_softmax, similarity
from vos.cutie.network import CutieNetwork, ImageFeatures
from vos.cutie.transformer import QueryTransformer
from vos.train import TrainConfig, VOSBatch, learning_rate


@dataclass(frozen=True)
class CutieTrainConfig:
    """Optimisation and objective settings (official names where they exist)."""

    steps: int = 3000
    lr: float = 1e-3
    weight_decay: float = 1e-3
    warmup_steps: int = 150
    poly_power: float = 0.9
    min_lr: float = 1e-5
    grad_clip: float = 3.0
    num_ref_frames: int = 3
    deep_update_prob: float = 0.2
    point_fraction: float = 0.25
    oversample_ratio: float = 3.0
    importance_sample_ratio: float = 0.75
    sensory_weight: float = 0.01
    query_weight: float = 0.01
    seed: int = 0

    def __post_init__(self) -> None:
        if self.num_ref_frames < 1 or not 0 < self.point_fraction <= 1:
            raise ValueError(
                "num_ref_frames >= 1 and 0 < point_fraction <= 1 are required, got "
                f"{self.num_ref_frames}, {self.point_fraction}"
            )

    def schedule(self) -> TrainConfig:
        """The learning-rate schedule as :func:`vos.train.learning_rate` reads it."""
        return TrainConfig(
            steps=self.steps,
            lr=self.lr,
            warmup_steps=self.warmup_steps,
            poly_power=self.poly_power,
            min_lr=self.min_lr,
        )


class SensoryAuxHead(nn.Module):
    """The training-only read-out of the sensory memory (official ``AuxComputer.sensory_aux``,
    a ``LinearPredictor``): a 1x1 group conv gives per-pixel weights and a bias, dotted with the
    frame's ``pix_feat``."""

    def __init__(self, sensory_dim: int, pixel_dim: int) -> None:
        super().__init__()
        self.projection = GConv2d(sensory_dim, pixel_dim + 1, kernel_size=1)

    def forward(self, pix_feat: torch.Tensor, sensory: torch.Tensor) -> torch.Tensor:
        """pix_feat B x C x h x w, sensory B x N x Cs x h x w -> logits B x N x h x w."""
        weights = self.projection(sensory)
        return (pix_feat.unsqueeze(1) * weights[:, :, :-1]).sum(dim=2) + weights[:, :, -1]


class CutieTrainingModel(nn.Module):
    """The network and its training-only auxiliary head (one state dict for checkpoints; the
    inference weights are ``network``'s alone)."""

    def __init__(self, network: CutieNetwork) -> None:
        super().__init__()
        self.network = network
        self.sensory_aux = SensoryAuxHead(network.spec.sensory_dim, network.spec.pixel_dim)

    def train(self, mode: bool = True) -> CutieTrainingModel:
        """Train mode for every module, batch norms included (batch statistics, running ones
        updated): :meth:`CutieNetwork.train` refuses it for inference, so the flag is set on
        each module here instead of through it."""
        for module in self.modules():
            module.training = mode
        return self


@dataclass(frozen=True)
class FrameLogits:
    """The predictions scored on one propagated frame (aggregated over background + objects).

    Attributes:
        final: B x (N + 1) x H x W logits of the decoder (x4 upsampled).
        sensory: B x (N + 1) x h x w logits of the sensory read-out.
        query: B x (N + 1) x L x h x w logits of the object transformer's L mask levels.
    """

    final: torch.Tensor
    sensory: torch.Tensor
    query: torch.Tensor


def _aggregate_selected(logits: torch.Tensor, selector: torch.Tensor) -> torch.Tensor:
    """Per-object logits B x N x ... -> B x (N + 1) x ... with padded objects (selector 0,
    B x N) given probability 0 (official ``_aggregate_with_selector``)."""
    shape = (*selector.shape, *([1] * (logits.ndim - 2)))
    return aggregate(torch.sigmoid(logits) * selector.view(shape), dim=1)


@contextlib.contextmanager
def _query_mask_levels(
    transformer: QueryTransformer, selector: torch.Tensor
) -> Iterator[list[torch.Tensor]]:
    """Collect the object transformer's auxiliary mask logits while it runs.

    The inference forward (:meth:`QueryTransformer.forward`) computes ``mask_pred[i]`` for the
    attention masks but returns only the pixels; hooks record each level's B x N x h x w
    logits and hand the attention masks logits of padded objects at -1e4 (sigmoid 0: the
    official selector). The last level, which inference skips, is computed by the caller.
    """
    levels: list[torch.Tensor] = []
    dead = selector[:, :, None, None] == 0  # B x N x 1 x 1

    def record(_module: nn.Module, _inputs: Any, output: torch.Tensor) -> torch.Tensor:
        levels.append(output.squeeze(2))
        return output.masked_fill(dead[:, :, None], -1e4)

    handles = [head.register_forward_hook(record) for head in transformer.mask_pred]
    try:
        yield levels
    finally:
        for handle in handles:
            handle.remove()


def _frame(features: ImageFeatures, batch: int, index: int) -> ImageFeatures:
    """Time ``index`` of every clip from features of B*T frames (clip-major)."""

    def pick(t: torch.Tensor) -> torch.Tensor:
        return t.unflatten(0, (batch, -1))[:, index]

    return ImageFeatures(
        *(pick(t) for t in (features.f16, features.f8, features.f4, features.pix_feat)),
        *(pick(t) for t in (features.key, features.shrinkage, features.selection)),
    )


def _reference_frames(step: int, batch: int, num_ref_frames: int) -> list[torch.Tensor]:
    """Memory frames read at time ``step`` for each clip: all earlier ones while there are at
    most ``num_ref_frames``, else a random choice of that many (official ``randperm``)."""
    if step <= num_ref_frames:
        return [torch.arange(step)] * batch
    return [torch.randperm(step)[:num_ref_frames] for _ in range(batch)]


def _read_memory(
    query: ImageFeatures,
    keys: torch.Tensor,
    shrinkages: torch.Tensor,
    values: torch.Tensor,
    frames: list[torch.Tensor],
) -> torch.Tensor:
    """The official training ``read_memory``'s visual readout.

    query: one frame's features (B); keys B x T x CK x h x w, shrinkages B x T x 1 x h x w,
    values B x N x T x CV x h x w of the memory frames so far; ``frames[b]`` the frames clip b
    reads -> B x N x CV x h x w (full softmax over the chosen frames' tokens).
    """
    objects = values.shape[1]
    height, width = query.key.shape[-2:]
    out = []
    for b, index in enumerate(frames):
        mem_key = keys[b, index].permute(1, 0, 2, 3).flatten(1)[None]  # 1 x CK x t*h*w
        mem_shrinkage = shrinkages[b, index].permute(1, 0, 2, 3).flatten(1)[None]
        sim = similarity(
            mem_key,
            mem_shrinkage,
            query.key[b : b + 1].flatten(2),
            query.selection[b : b + 1].flatten(2),
        )
        mem_value = values[b, :, index].permute(0, 2, 1, 3, 4).flatten(2)  # N x CV x t*h*w
        readout = mem_value.flatten(0, 1) @ full_softmax(sim)[0]  # (N*CV) x hw
        out.append(readout.view(objects, -1, height, width))
    return torch.stack(out)


def clip_logits(
    model: CutieTrainingModel, batch: VOSBatch, config: CutieTrainConfig
) -> list[FrameLogits]:
    """Propagate every clip of ``batch`` (frames in [0, 1]) from its first frame's ground
    truth; the logits of frames 1 .. T-1 (official ``CutieTrainWrapper.forward``)."""
    network = model.network
    frames, labels, live = batch.frames, batch.labels, batch.num_objects
    b, t = frames.shape[:2]
    objects = max(1, int(live.max()))
    ids = torch.arange(1, objects + 1, device=labels.device)
    selector = (ids[None] <= live[:, None]).float()  # B x N
    features = network.encode_image(frames.flatten(0, 1))
    keys = features.key.unflatten(0, (b, t))
    shrinkages = features.shrinkage.unflatten(0, (b, t))
    first = _frame(features, b, 0)
    height, width = first.key.shape[-2:]
    sensory = frames.new_zeros(b, objects, network.spec.sensory_dim, height, width)
    masks = (labels[:, 0, None] == ids[None, :, None, None]).float()  # B x N x H x W
    value, sensory, summary = network.encode_mask(frames[:, 0], first.pix_feat, sensory, masks)
    values, summaries = [value], [summary]
    transformer = network.object_transformer
    outputs = []
    for ti in range(1, t):
        query = _frame(features, b, ti)
        readout = _read_memory(
            query,
            keys,
            shrinkages,
            torch.stack(values, dim=2),
            _reference_frames(ti, b, config.num_ref_frames),
        )
        pixel = network.pixel_fusion(query.pix_feat, readout, sensory, masks)
        with _query_mask_levels(transformer, selector) as levels:
            refined = network.readout_query(pixel, torch.stack(summaries, dim=2))
        levels.append(transformer.mask_pred[-1](refined).squeeze(2))
        sensory_logits = model.sensory_aux(query.pix_feat, sensory)
        sensory, logits = network.mask_decoder(
            query.f8, query.f4, refined, sensory, update_sensory=True
        )
        final = _aggregate_selected(logits, selector)
        final = F.interpolate(final, scale_factor=4, mode="bilinear", align_corners=False)
        masks = final.softmax(dim=1)[:, 1:]
        outputs.append(
            FrameLogits(
                final,
                _aggregate_selected(sensory_logits, selector),
                _aggregate_selected(torch.stack(levels, dim=2), selector),
            )
        )
        if ti < t - 1:
            deep_update = bool(torch.rand(()) < config.deep_update_prob)
            value, sensory, summary = network.encode_mask(
                frames[:, ti], query.pix_feat, sensory, masks, deep_update=deep_update
            )
            values.append(value)
            summaries.append(summary)
    return outputs


# --------------------------------------------------------------------------------------------
# the objective (official cutie/model/losses.py, cutie/utils/point_features.py)


def point_sample(maps: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """Bilinear values of R x C x H x W ``maps`` at R x P x 2 (x, y) ``coords`` in [0, 1]
    -> R x C x P (``align_corners=False``)."""
    grid = (2.0 * coords - 1.0).unsqueeze(2)
    return F.grid_sample(maps, grid, mode="bilinear", align_corners=False).squeeze(3)


def uncertainty(logits: torch.Tensor) -> torch.Tensor:
    """R x C x P -> R x P: highest where the two best logits are closest (for two classes:
    where the object's logit is nearest 0)."""
    if logits.shape[1] == 2:
        return -logits[:, 1].abs()
    top2 = logits.topk(2, dim=1).values
    return top2[:, 1] - top2[:, 0]


def uncertain_points(
    logits: torch.Tensor, num_points: int, oversample_ratio: float, importance_ratio: float
) -> torch.Tensor:
    """PointRend sampling: R x C x H x W logits -> R x ``num_points`` x 2 coordinates in
    [0, 1]: the ``importance_ratio`` most uncertain of ``oversample_ratio`` x as many random
    candidates, then uniform random points."""
    rows = logits.shape[0]
    candidates = torch.rand(rows, int(num_points * oversample_ratio), 2, device=logits.device)
    scores = uncertainty(point_sample(logits, candidates))
    num_uncertain = int(importance_ratio * num_points)
    index = scores.topk(num_uncertain, dim=1).indices
    chosen = candidates.gather(1, index[..., None].expand(-1, -1, 2))
    rest = torch.rand(rows, num_points - num_uncertain, 2, device=logits.device)
    return torch.cat([chosen, rest], dim=1)


def mask_loss(
    logits: torch.Tensor, soft_gt: torch.Tensor, config: CutieTrainConfig
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-entropy and dice of T x C x h x w logits against T x C x H x W one-hot targets
    (background first) on sampled points: each summed over T, averaged over points / objects."""
    num_points = max(1, round(config.point_fraction * soft_gt.shape[-2] * soft_gt.shape[-1]))
    with torch.no_grad():
        coords = uncertain_points(
            logits, num_points, config.oversample_ratio, config.importance_sample_ratio
        )
        targets = point_sample(soft_gt, coords)
    point_logits = point_sample(logits, coords)
    ce = F.cross_entropy(point_logits, targets, reduction="none").sum(0).mean()
    probs = point_logits.softmax(dim=1)[:, 1:]
    gt = targets[:, 1:]
    dice = 1 - (2 * (probs * gt).sum(-1) + 1) / (probs.sum(-1) + gt.sum(-1) + 1)
    return ce, dice.sum(0).mean()


def clip_loss(
    model: CutieTrainingModel, batch: VOSBatch, config: CutieTrainConfig
) -> tuple[torch.Tensor, dict[str, float]]:
    """The batch's mean loss and its terms (official ``LossComputer.compute``)."""
    outputs = clip_logits(model, batch, config)
    terms: dict[str, torch.Tensor] = {}

    def add(name: str, value: torch.Tensor, weight: float) -> None:
        terms[name] = terms.get(name, torch.zeros_like(value)) + value * weight

    size = batch.frames.shape[0]
    for bi in range(size):
        n = int(batch.num_objects[bi]) + 1
        labels = batch.labels[bi, 1:]
        soft_gt = F.one_hot(labels.clamp(max=n - 1), n).permute(0, 3, 1, 2).float()
        final = torch.stack([o.final[bi, :n] for o in outputs])
        ce, dice = mask_loss(final, soft_gt, config)
        add("ce", ce, 1 / size)
        add("dice", dice, 1 / size)
        sensory = torch.stack([o.sensory[bi, :n] for o in outputs])
        ce, dice = mask_loss(sensory, soft_gt, config)
        add("aux_sensory_ce", ce, config.sensory_weight / size)
        add("aux_sensory_dice", dice, config.sensory_weight / size)
        for level in range(outputs[0].query.shape[2]):
            query = torch.stack([o.query[bi, :n, level] for o in outputs])
            ce, dice = mask_loss(query, soft_gt, config)
            add(f"aux_query_ce_l{level}", ce, config.query_weight / size)
            add(f"aux_query_dice_l{level}", dice, config.query_weight / size)
    loss = torch.stack(list(terms.values())).sum()
    return loss, {k: float(v.detach()) for k, v in terms.items()}


# --------------------------------------------------------------------------------------------
# the optimiser


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups: weight decay on weights, none on biases, norms and the query embeddings
    (official ``embed_weight_decay`` 0)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        embedding = name.endswith(("query_init.weight", "query_emb.weight"))
        (no_decay if p.ndim <= 1 or embedding else decay).append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


class CutieTrainer:
    """Optimiser state around a network (and its auxiliary head); :meth:`step` runs a batch."""

    def __init__(self, network: CutieNetwork, config: CutieTrainConfig) -> None:
        self.model = CutieTrainingModel(network)
        self.network = network
        self.config = config
        self.optimizer = torch.optim.AdamW(
            parameter_groups(self.model, config.weight_decay), lr=config.lr
        )
        self.step_index = 0

    def step(self, batch: VOSBatch) -> dict[str, float]:
        """One optimiser step on ``batch``; returns the loss, its terms and the learning rate."""
        self.model.train()
        lr = learning_rate(self.step_index, self.config.schedule())
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        loss, terms = clip_loss(self.model, batch, self.config)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.config.grad_clip > 0:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip)
        self.optimizer.step()
        self.step_index += 1
        value = float(loss.detach())
        if not math.isfinite(value):
            raise FloatingPointError(f"training loss is {value} at step {self.step_index}")
        return {"loss": value, "lr": lr, **terms}

    def state_dict(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "step": self.step_index,
            "rng": torch.get_rng_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
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

    def inference_state(self) -> dict[str, torch.Tensor]:
        """The network's trained weights in the inference layout (no auxiliary head): what
        :class:`CutieNetwork` loads strictly (batch-norm counters included, as in the official
        checkpoints)."""
        return {k: v.detach().clone() for k, v in self.network.state_dict().items()}
