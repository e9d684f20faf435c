"""Optimizers, TSM-style parameter groups and the learning-rate schedule as a pure function.

TSM recipe (official repository, ``get_optim_policies``): BatchNorm parameters and biases get no weight
decay, biases learn at 2x the base lr, and a freshly initialised classifier fine-tuned from ImageNet
weights learns at 5x (weight) / 10x (bias). The UCF-101 paper trains with Adam (lr 1e-4, wd 1e-4).
Each group carries an ``lr_mult``; :func:`set_lr` writes ``lr_at(step) * lr_mult`` before every step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from vidattn.config import OptimConfig

__all__ = ["LRSchedule", "lr_at", "param_groups", "build_optimizer", "build_schedule", "set_lr"]

_NORM_TYPES = (
    nn.modules.batchnorm._BatchNorm,
    nn.GroupNorm,
    nn.LayerNorm,
    nn.modules.instancenorm._InstanceNorm,
)


@dataclass(frozen=True)
class LRSchedule:
    """Everything :func:`lr_at` needs, in optimizer steps."""

    base_lr: float
    total_steps: int
    kind: str = "constant"  # constant | step | multistep | cosine
    milestones: tuple[int, ...] = ()  # multistep: steps at which lr *= gamma
    step_size: int = 0  # step: period in steps
    gamma: float = 0.1
    warmup_steps: int = 0
    warmup_start_factor: float = 0.01
    min_lr: float = 0.0


def lr_at(step: int, s: LRSchedule) -> float:
    """Learning rate at optimizer step ``step`` (0-based): linear warm-up, then the decay rule."""
    if step < s.warmup_steps:
        frac = step / max(1, s.warmup_steps)
        return s.base_lr * (s.warmup_start_factor + (1.0 - s.warmup_start_factor) * frac)
    if s.kind == "constant":
        return s.base_lr
    if s.kind == "step":
        return s.base_lr * s.gamma ** (step // max(1, s.step_size))
    if s.kind == "multistep":
        return s.base_lr * s.gamma ** sum(step >= m for m in s.milestones)
    if s.kind == "cosine":
        span = max(1, s.total_steps - s.warmup_steps)
        progress = min(1.0, (step - s.warmup_steps) / span)
        return s.min_lr + 0.5 * (s.base_lr - s.min_lr) * (1.0 + math.cos(math.pi * progress))
    raise ValueError(f"optim.schedule: unknown schedule '{s.kind}'")


def build_schedule(cfg: OptimConfig, steps_per_epoch: int, epochs: int, global_batch: int) -> LRSchedule:
    """Turn the epoch-based config into a step-based :class:`LRSchedule` (with linear lr scaling)."""
    base_lr = cfg.lr
    if cfg.lr_batch_size:
        base_lr = cfg.lr * global_batch / cfg.lr_batch_size
    return LRSchedule(
        base_lr=base_lr,
        total_steps=steps_per_epoch * epochs,
        kind=cfg.schedule,
        milestones=tuple(m * steps_per_epoch for m in cfg.milestones),
        step_size=cfg.step_size * steps_per_epoch,
        gamma=cfg.gamma,
        warmup_steps=round(cfg.warmup_epochs * steps_per_epoch),
        warmup_start_factor=cfg.warmup_start_factor,
        min_lr=cfg.min_lr,
    )


def param_groups(model: nn.Module, cfg: OptimConfig, fine_tune: bool) -> list[dict]:
    """Split trainable parameters into the TSM groups; each dict has params, weight_decay, lr_mult, name.

    ``fine_tune`` (pretrained backbone, new classifier) enables the ``head.`` multipliers.
    """
    norm_params = {id(p) for m in model.modules() if isinstance(m, _NORM_TYPES) for p in m.parameters(False)}
    groups: dict[str, dict] = {}

    def add(name: str, p: nn.Parameter, wd: float, mult: float) -> None:
        groups.setdefault(name, {"name": name, "params": [], "weight_decay": wd, "lr_mult": mult})
        groups[name]["params"].append(p)

    for pname, p in model.named_parameters():
        if not p.requires_grad:
            continue
        is_head = fine_tune and pname.startswith("head.")
        is_bias = pname.endswith("bias")
        if is_head:
            mult = cfg.head_bias_lr_mult if is_bias else cfg.head_weight_lr_mult
            wd = 0.0 if (is_bias and cfg.no_decay_bn_bias) else cfg.weight_decay
            add("head_bias" if is_bias else "head_weight", p, wd, mult)
        elif not cfg.no_decay_bn_bias:
            add("bias" if is_bias else "weight", p, cfg.weight_decay, cfg.bias_lr_mult if is_bias else 1.0)
        elif id(p) in norm_params:
            add("norm", p, 0.0, 1.0)
        elif is_bias:
            add("bias", p, 0.0, cfg.bias_lr_mult)
        else:
            add("weight", p, cfg.weight_decay, 1.0)
    return list(groups.values())


def build_optimizer(model: nn.Module, cfg: OptimConfig, fine_tune: bool) -> torch.optim.Optimizer:
    """SGD with momentum (TSM) or Adam/AdamW (the UCF-101 paper) over :func:`param_groups`."""
    groups = param_groups(model, cfg, fine_tune)
    if not groups:
        raise ValueError("model has no trainable parameters")
    if cfg.name == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov)
    if cfg.name == "adam":
        return torch.optim.Adam(groups, lr=cfg.lr, betas=tuple(cfg.betas))
    if cfg.name == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas))
    raise ValueError(f"optim.name: unknown optimizer '{cfg.name}' (sgd, adam, adamw)")


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Write ``lr * lr_mult`` into every parameter group."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_mult", 1.0)
