"""Optimizer and learning-rate schedule for one trial, built from a `TrainConfig`.

Weight decay applies to weight matrices and kernels only, never to BatchNorm or bias
parameters. The schedule is a pure function of the global step: a linear warm-up over
`warmup_epochs`, then cosine decay to zero (or a constant rate), set on every step.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

__all__ = ["OPTIMIZERS", "SCHEDULES", "param_groups", "build_optimizer", "lr_at", "set_lr"]

OPTIMIZERS: tuple[str, ...] = ("adamw", "sgd")
SCHEDULES: tuple[str, ...] = ("cosine", "constant")


def _is_no_decay(name: str, param: nn.Parameter) -> bool:
    # BatchNorm weights/biases and every bias are 1-d; kernels, matrices and the GSA
    # relative embeddings (h, L, dk) are not.
    return param.ndim <= 1 or name.endswith(".bias")


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Two groups: `decay` (weight_decay) and `no_decay` (0.0: BatchNorm and bias parameters).

    Parameters that do not require a gradient are left out; an empty group is dropped.
    """
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        (no_decay if _is_no_decay(name, param) else decay).append(param)
    groups = [
        {"params": decay, "weight_decay": float(weight_decay), "name": "decay"},
        {"params": no_decay, "weight_decay": 0.0, "name": "no_decay"},
    ]
    return [g for g in groups if g["params"]]


def build_optimizer(model: nn.Module, train: Any) -> torch.optim.Optimizer:
    """AdamW or SGD (momentum, no Nesterov) over `param_groups`, at `train.lr`.

    Args:
        model: the network whose parameters are optimised.
        train: a `TrainConfig` (optimizer, lr, momentum, weight_decay).
    """
    if train.lr <= 0 or not math.isfinite(train.lr):
        raise ValueError(f"train.lr must be a positive finite number, but got train.lr={train.lr!r}.")
    if train.weight_decay < 0:
        raise ValueError(
            f"train.weight_decay must be >= 0, but got train.weight_decay={train.weight_decay!r}."
        )
    groups = param_groups(model, train.weight_decay)
    if train.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=train.lr)
    if train.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=train.lr, momentum=train.momentum, nesterov=False)
    raise ValueError(
        f"train.optimizer must be one of {', '.join(OPTIMIZERS)}, but got train.optimizer={train.optimizer!r}."
    )


def lr_at(step: int, *, base_lr: float, total_steps: int, warmup_steps: int = 0,
          schedule: str = "cosine") -> float:
    """Learning rate of update number `step` (0-based) of `total_steps`.

    Warm-up: `base_lr * (step + 1) / warmup_steps` for `step < warmup_steps`, so the first
    update is already non-zero and the last warm-up update uses `base_lr`. After it,
    `cosine` decays as `base_lr * (1 + cos(pi * t)) / 2` with
    `t = (step - warmup_steps) / (total_steps - warmup_steps)` (clamped to [0, 1]);
    `constant` stays at `base_lr`.
    """
    if schedule not in SCHEDULES:
        raise ValueError(
            f"train.schedule must be one of {', '.join(SCHEDULES)}, but got train.schedule={schedule!r}."
        )
    if total_steps <= 0:
        raise ValueError(f"total_steps must be a positive integer, but got total_steps={total_steps!r}.")
    if not 0 <= warmup_steps <= total_steps:
        raise ValueError(
            f"warmup must fit in training: warmup_steps={warmup_steps!r} must be in 0..{total_steps}; "
            "lower train.warmup_epochs below train.epochs."
        )
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    if schedule == "constant":
        return base_lr
    decay_steps = total_steps - warmup_steps
    t = min(1.0, (step - warmup_steps) / decay_steps) if decay_steps else 1.0
    return base_lr * 0.5 * (1.0 + math.cos(math.pi * t))


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set `lr` on every parameter group (weight decay per group is unchanged)."""
    for group in optimizer.param_groups:
        group["lr"] = lr
