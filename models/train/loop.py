"""A small, model-agnostic training loop: AdamW with per-part learning rates, step decay,
gradient clipping, resumable state. No file access: the caller persists :meth:`Trainer.state_dict`
through ``on_checkpoint`` (``pipeline/commands/train_rvos.py`` writes it atomically).

The reference recipes (SgMg, ReferFormer): AdamW, lr 1e-4, backbone 5e-5, text encoder 1e-5,
weight decay 5e-4, gradient clipping at max-norm 0.1, MultiStepLR (x 0.1 at the drops).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

StepFn = Callable[[nn.Module, Any], Mapping[str, torch.Tensor]]


@dataclass(frozen=True)
class OptimConfig:
    """Optimisation hyper-parameters.

    Attributes:
        steps: optimiser steps in all.
        lr: learning rate of every parameter not matched by ``lr_by_prefix``.
        lr_by_prefix: parameter-name prefix -> learning rate (first match wins).
        weight_decay: AdamW weight decay.
        grad_clip: max gradient norm (0 disables).
        lr_drops: steps at which the rates are multiplied by ``lr_gamma``.
        lr_gamma: the decay factor.
        warmup_steps: linear warm-up from 0 (0 = none; the references use none).
    """

    steps: int
    lr: float = 1e-4
    lr_by_prefix: Mapping[str, float] = field(
        default_factory=lambda: {"backbone.": 5e-5, "text_encoder.": 1e-5}
    )
    weight_decay: float = 5e-4
    grad_clip: float = 0.1
    lr_drops: tuple[int, ...] = ()
    lr_gamma: float = 0.1
    warmup_steps: int = 0


def param_groups(model: nn.Module, config: OptimConfig) -> list[dict[str, Any]]:
    """Trainable parameters grouped by learning rate (``lr_by_prefix``, else ``lr``)."""
    groups: dict[float, list[nn.Parameter]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        lr = next((v for p, v in config.lr_by_prefix.items() if name.startswith(p)), config.lr)
        groups.setdefault(lr, []).append(param)
    return [{"params": params, "lr": lr, "base_lr": lr} for lr, params in groups.items()]


def lr_factor(step: int, config: OptimConfig) -> float:
    """The multiplier of every base rate at ``step`` (warm-up, then step decay)."""
    factor = config.lr_gamma ** sum(step >= d for d in config.lr_drops)
    if config.warmup_steps and step < config.warmup_steps:
        factor *= (step + 1) / config.warmup_steps
    return factor


class Trainer:
    """Runs ``step_fn`` over batches, one optimiser step each.

    Args:
        model: the network (put in train mode by :meth:`fit`).
        step_fn: ``(model, batch) -> {"loss": total, other terms...}`` (weighted, scalar).
        config: optimisation settings.
    """

    def __init__(self, model: nn.Module, step_fn: StepFn, config: OptimConfig) -> None:
        self.model = model
        self.step_fn = step_fn
        self.config = config
        self.optimizer = torch.optim.AdamW(
            param_groups(model, config), lr=config.lr, weight_decay=config.weight_decay
        )
        self.step = 0
        self.history: list[dict[str, float]] = []

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume exactly (model, optimiser, step, RNG, loss history)."""
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "step": self.step,
            "rng": torch.get_rng_state(),
            "history": list(self.history),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.step = int(state["step"])
        torch.set_rng_state(state["rng"])
        self.history = list(state.get("history", []))

    def _set_lr(self) -> None:
        factor = lr_factor(self.step, self.config)
        for group in self.optimizer.param_groups:
            group["lr"] = group["base_lr"] * factor

    def fit(
        self,
        batches: Iterable[Any] | Callable[[int], Any],
        *,
        on_log: Callable[[int, dict[str, float]], None] | None = None,
        log_every: int = 10,
        on_checkpoint: Callable[[int, dict[str, Any]], None] | None = None,
        checkpoint_every: int = 0,
    ) -> list[dict[str, float]]:
        """Train until ``config.steps``.

        Args:
            batches: an iterable of batches, or ``step -> batch`` (deterministic per step, so
                a resumed run sees exactly the batches it would have seen).
            on_log: called every ``log_every`` steps with the mean of the terms since the
                last call (and ``sec_per_step``).
            on_checkpoint: called with :meth:`state_dict` every ``checkpoint_every`` steps
                and at the end.
        """
        self.model.train()
        source: Iterator[Any] | None = None if callable(batches) else iter(batches)
        running: dict[str, float] = {}
        count = 0
        started = time.perf_counter()
        while self.step < self.config.steps:
            batch = batches(self.step) if source is None else next(source)  # type: ignore[operator]
            self._set_lr()
            terms = self.step_fn(self.model, batch)
            loss = terms["loss"]
            if not torch.isfinite(loss):
                raise FloatingPointError(f"step {self.step}: loss is {float(loss.detach())}")
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if self.config.grad_clip > 0:
                nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip)
            self.optimizer.step()
            self.step += 1
            for k, v in terms.items():
                running[k] = running.get(k, 0.0) + float(v.detach())
            count += 1
            if self.step % log_every == 0 or self.step == self.config.steps:
                mean = {k: v / count for k, v in running.items()}
                mean["sec_per_step"] = (time.perf_counter() - started) / count
                mean["lr"] = self.optimizer.param_groups[0]["lr"]
                self.history.append({"step": float(self.step), **mean})
                if on_log is not None:
                    on_log(self.step, mean)
                running, count, started = {}, 0, time.perf_counter()
            is_last = self.step == self.config.steps
            periodic = checkpoint_every and self.step % checkpoint_every == 0
            if on_checkpoint is not None and (periodic or is_last):
                on_checkpoint(self.step, self.state_dict())
        return self.history
