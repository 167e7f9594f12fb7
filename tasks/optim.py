"""Optimizers (timm's factory: no weight decay on biases and norms; SGD with airbench's decoupled units and
BatchNorm-bias learning rate) and LR schedules with warmup."""

from __future__ import annotations

import math
from typing import Any

import torch
from timm.optim import create_optimizer_v2
from torch import nn

from zoo.registry import ZooError

SCHEDULES = ("constant", "cosine", "onecycle", "step", "linear")


SGD_NAMES = {"sgd": True, "nesterov": True, "momentum": False}  # timm's names -> Nesterov or not


def build_optimizer(model: nn.Module, *, name: str = "adamw", lr: float = 1e-3, weight_decay: float = 0.0,
                    decoupled: bool = False, batch_size: int | None = None, norm_bias_lr_scale: float = 1.0,
                    **kwargs: Any) -> torch.optim.Optimizer:
    """``name`` is any of timm's optimizer names (sgd, momentum, adam, adamw, lamb, ...).

    ``decoupled`` or ``norm_bias_lr_scale`` (SGD only) build SGD as airbench does (:func:`sgd_param_groups`).
    """
    if decoupled or norm_bias_lr_scale != 1.0:
        if name not in SGD_NAMES:
            raise ZooError(f"task.optimizer: decoupled/norm_bias_lr_scale are for SGD (name=sgd, nesterov or "
                           f"momentum), not name={name!r}")
        momentum = kwargs.pop("momentum", 0.9)
        if kwargs:
            raise ZooError(f"task.optimizer: unexpected {', '.join(kwargs)} for decoupled SGD; it takes lr, "
                           "weight_decay, momentum, batch_size and norm_bias_lr_scale")
        groups = sgd_param_groups(model, lr=lr, weight_decay=weight_decay, momentum=momentum, decoupled=decoupled,
                                  batch_size=batch_size, norm_bias_lr_scale=norm_bias_lr_scale)
        return torch.optim.SGD(groups, momentum=momentum, nesterov=SGD_NAMES[name])
    try:
        return create_optimizer_v2(model, opt=name, lr=lr, weight_decay=weight_decay, **kwargs)
    except (AssertionError, ValueError) as e:
        raise ZooError(f"task.optimizer: {e}. Use e.g. name=sgd, adam or adamw.") from None


def sgd_param_groups(model: nn.Module, *, lr: float, weight_decay: float, momentum: float, decoupled: bool,
                     batch_size: int | None, norm_bias_lr_scale: float = 1.0) -> list[dict[str, Any]]:
    """Two parameter groups for SGD, as airbench (Jordan 2024) builds them; every trainable parameter decays.

    ``decoupled``: ``lr`` and ``weight_decay`` are in airbench's units (after Page 2019, "How to train your
    ResNet"), per 1024 examples of a summed loss, so that they tune independently: the step does not grow with
    momentum (Nesterov's 1 + 1 / (1 - momentum) is divided out), and the decay per example does not follow
    ``lr``. For the mean loss of a ``batch_size`` batch that is PyTorch's ``lr * batch_size / (1024 * (1 + 1 /
    (1 - momentum)))`` and ``weight_decay / lr``. Otherwise both are PyTorch's. BatchNorm biases step
    ``norm_bias_lr_scale`` times faster (airbench: 64) with the same decay per step.
    """
    if decoupled:
        if not batch_size:
            raise ZooError("task.optimizer.decoupled=true needs batch_size (e.g. batch_size: ${data.batch_size}): "
                           "its lr and weight_decay are per 1024 examples")
        if not 0 <= momentum < 1:
            raise ZooError(f"task.optimizer.momentum={momentum} must be in [0, 1)")
        lr, weight_decay = lr * batch_size / (1024 * (1 + 1 / (1 - momentum))), weight_decay / lr
    norm_biases, others = [], []
    for module in model.modules():
        for pname, p in module.named_parameters(recurse=False):
            if p.requires_grad:
                bn_bias = isinstance(module, nn.modules.batchnorm._BatchNorm) and pname == "bias"
                (norm_biases if bn_bias else others).append(p)
    groups = [{"params": others, "lr": lr, "weight_decay": weight_decay}]
    if norm_biases:  # lr x scale, decay / scale: the decay per step (lr * weight_decay) stays the same
        groups.append({"params": norm_biases, "lr": lr * norm_bias_lr_scale,
                       "weight_decay": weight_decay / norm_bias_lr_scale})
    return groups


def build_scheduler(
    optimizer: torch.optim.Optimizer,
    *,
    total_steps: int,
    name: str = "cosine",
    warmup_steps: int | float = 0,
    warmup_start_ratio: float = 0.0,
    min_lr_ratio: float = 0.0,
    step_size: float = 0.3,
    gamma: float = 0.1,
) -> torch.optim.lr_scheduler.LRScheduler | None:
    """A per-step schedule. ``warmup_steps`` (and ``step_size``) below 1 are fractions of ``total_steps``.

    cosine: linear warmup, then cosine decay to ``min_lr_ratio * lr``; onecycle: torch's OneCycleLR
    (warmup = its pct_start); step: multiply by ``gamma`` every ``step_size``; linear: warmup, then linear
    decay (with ``warmup_start_ratio=0.2, min_lr_ratio=0.07`` over ``warmup_steps=0.23``: airbench's triangle);
    constant: warmup, then flat. Warmup rises linearly from ``warmup_start_ratio * lr`` to ``lr``.
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
            return warmup_start_ratio + (1 - warmup_start_ratio) * (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
        if name == "cosine":
            return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
        if name == "linear":
            return min_lr_ratio + (1 - min_lr_ratio) * (1 - progress)
        return 1.0

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
