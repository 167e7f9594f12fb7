"""Optimizers (timm's factory: no weight decay on biases and norms) and LR schedules with warmup."""

from __future__ import annotations

import math
from typing import Any

import torch
from timm.optim import create_optimizer_v2
from torch import nn

from zoo.registry import ZooError

SCHEDULES = ("constant", "cosine", "onecycle", "step", "linear")


def build_optimizer(model: nn.Module, *, name: str = "adamw", lr: float = 1e-3, weight_decay: float = 0.0,
                    **kwargs: Any) -> torch.optim.Optimizer:
    """``name`` is any of timm's optimizer names (sgd, momentum, adam, adamw, lamb, ...)."""
    try:
        return create_optimizer_v2(model, opt=name, lr=lr, weight_decay=weight_decay, **kwargs)
    except (AssertionError, ValueError) as e:
        raise ZooError(f"task.optimizer: {e}. Use e.g. name=sgd, adam or adamw.") from None


def build_scheduler(
    optimizer: torch.optim.Optimizer,
    *,
    total_steps: int,
    name: str = "cosine",
    warmup_steps: int | float = 0,
    min_lr_ratio: float = 0.0,
    step_size: float = 0.3,
    gamma: float = 0.1,
) -> torch.optim.lr_scheduler.LRScheduler | None:
    """A per-step schedule. ``warmup_steps`` (and ``step_size``) below 1 are fractions of ``total_steps``.

    cosine: linear warmup, then cosine decay to ``min_lr_ratio * lr``; onecycle: torch's OneCycleLR
    (warmup = its pct_start); step: multiply by ``gamma`` every ``step_size``; linear: warmup, then linear
    decay; constant: warmup, then flat.
    """
    if name not in SCHEDULES:
        raise ZooError(f"task.scheduler.name={name!r}; choose one of {', '.join(SCHEDULES)}")
    total_steps = max(1, int(total_steps))
    warmup = int(warmup_steps * total_steps) if 0 < warmup_steps < 1 else int(warmup_steps)
    if name == "onecycle" and total_steps >= 4:
        max_lr = [g["lr"] for g in optimizer.param_groups]
        # OneCycleLR needs at least two steps in each phase
        pct = min(max(warmup / total_steps if warmup else 0.25, 2 / total_steps), 1 - 2 / total_steps)
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=max_lr, total_steps=total_steps,
                                                   pct_start=pct, final_div_factor=1e3)
    if name == "step":
        every = int(step_size * total_steps) if step_size < 1 else int(step_size)
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=max(1, every), gamma=gamma)

    if name == "onecycle":  # too short for one cycle: warmup then flat
        name = "constant"

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
        if name == "cosine":
            return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
        if name == "linear":
            return min_lr_ratio + (1 - min_lr_ratio) * (1 - progress)
        return 1.0

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
