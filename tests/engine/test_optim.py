"""Parameter groups (TSM recipe) and the pure lr schedule."""

import math

import pytest
import torch
from torch import nn

from vidattn.config import OptimConfig
from vidattn.engine.optim import LRSchedule, build_optimizer, build_schedule, lr_at, param_groups


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.bn = nn.BatchNorm2d(4)
        self.head = nn.Linear(4, 2)


def test_tsm_groups_when_fine_tuning():
    m = Tiny()
    groups = {g["name"]: g for g in param_groups(m, OptimConfig(weight_decay=5e-4), fine_tune=True)}
    ids = lambda g: {id(p) for p in groups[g]["params"]}  # noqa: E731
    assert ids("weight") == {id(m.conv.weight)}
    assert ids("bias") == {id(m.conv.bias)}
    assert ids("norm") == {id(m.bn.weight), id(m.bn.bias)}
    assert ids("head_weight") == {id(m.head.weight)} and ids("head_bias") == {id(m.head.bias)}
    assert groups["weight"]["weight_decay"] == 5e-4 and groups["head_weight"]["weight_decay"] == 5e-4
    assert groups["bias"]["weight_decay"] == groups["norm"]["weight_decay"] == 0.0
    assert groups["bias"]["lr_mult"] == 2.0 and groups["norm"]["lr_mult"] == 1.0
    assert groups["head_weight"]["lr_mult"] == 5.0 and groups["head_bias"]["lr_mult"] == 10.0
    total = sum(len(g["params"]) for g in groups.values())
    assert total == len(list(m.parameters()))


def test_groups_from_scratch_and_without_policy():
    m = Tiny()
    groups = {g["name"]: g for g in param_groups(m, OptimConfig(), fine_tune=False)}
    assert "head_weight" not in groups and any(p is m.head.weight for p in groups["weight"]["params"])
    flat = {
        g["name"]: g for g in param_groups(m, OptimConfig(no_decay_bn_bias=False, bias_lr_mult=1.0), fine_tune=False)
    }
    assert set(flat) == {"weight", "bias"} and flat["bias"]["weight_decay"] == 5e-4
    m.conv.weight.requires_grad_(False)
    assert all(p is not m.conv.weight for g in param_groups(m, OptimConfig(), False) for p in g["params"])


def test_optimizers():
    m = Tiny()
    assert isinstance(build_optimizer(m, OptimConfig(name="sgd"), False), torch.optim.SGD)
    adam = build_optimizer(m, OptimConfig(name="adam", lr=1e-4, weight_decay=1e-4), False)
    assert isinstance(adam, torch.optim.Adam)
    assert {g["weight_decay"] for g in adam.param_groups} == {0.0, 1e-4}


def test_multistep_with_warmup():
    s = LRSchedule(
        base_lr=0.1,
        total_steps=100,
        kind="multistep",
        milestones=(50, 80),
        warmup_steps=10,
        warmup_start_factor=0.0,
    )
    assert lr_at(0, s) == 0.0
    assert lr_at(5, s) == pytest.approx(0.05)
    assert lr_at(10, s) == pytest.approx(0.1)
    assert lr_at(49, s) == pytest.approx(0.1)
    assert lr_at(50, s) == pytest.approx(0.01)
    assert lr_at(80, s) == pytest.approx(0.001)


def test_step_cosine_constant():
    step = LRSchedule(base_lr=1.0, total_steps=40, kind="step", step_size=10, gamma=0.5)
    assert [lr_at(i, step) for i in (0, 9, 10, 25)] == [1.0, 1.0, 0.5, 0.25]
    cos = LRSchedule(base_lr=1.0, total_steps=100, kind="cosine", min_lr=0.0)
    assert lr_at(0, cos) == 1.0 and lr_at(50, cos) == pytest.approx(0.5) and lr_at(100, cos) == pytest.approx(0.0)
    assert lr_at(1000, LRSchedule(base_lr=0.3, total_steps=1)) == 0.3


def test_build_schedule_converts_epochs_and_scales_lr():
    cfg = OptimConfig(lr=0.01, lr_batch_size=64, milestones=[20, 40], warmup_epochs=0.5)
    s = build_schedule(cfg, steps_per_epoch=10, epochs=50, global_batch=128)
    assert s.base_lr == pytest.approx(0.02)
    assert s.milestones == (200, 400) and s.warmup_steps == 5 and s.total_steps == 500
    assert math.isclose(lr_at(199, s), 0.02) and math.isclose(lr_at(200, s), 0.002)
