"""Multiply-accumulate (MAC) counts per view, the papers' "GFLOPs" convention (REFERENCES.md): one MAC of a
convolution, linear layer or matrix product counts as one "FLOP", for one view (1 clip x 1 crop);
elementwise operations, pooling and normalisation are not counted.

Counting uses `torch.utils.flop_counter.FlopCounterMode` (which counts 2 FLOPs per MAC) on the meta device,
so no memory is allocated and no arithmetic is done. The counter sees operators, not modules: W3's depthwise
temporal convolutions (eq. 4, `nn.Conv1d` modules) normally run as shifted multiply-adds (`torch.addcmul`
in `w3._conv_over_time`), which it would count as 0, and `addcmul` cannot simply be counted since the
attention masks' elementwise multiply-add with the residual (`gating.apply_mask`) is one too. So the
counted copy's `Conv1d`s get a no-op forward hook: a hooked conv is not a plain conv
(`frames.is_plain_conv`) and runs as the module, counted as the convolution it is (the same sums, on the
meta device no slower).
`vidattn.analysis.flops` builds the papers' tables on top of it.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


@dataclass
class ComputeCount:
    """MACs for one view, parameters, and MACs by operator (e.g. convolution, bmm)."""

    macs: float
    params: int
    by_operator: dict[str, float] = field(default_factory=dict)

    @property
    def gmacs(self) -> float:
        return self.macs / 1e9


def _as_module(module: nn.Module, args: Any, output: Any) -> None:
    """No-op forward hook: marks a conv as hooked, so the fast paths of `vidattn.models.frames` call it."""


def count_macs(model: nn.Module, input_shape: tuple[int, ...]) -> ComputeCount:
    """MACs of one forward pass of `model` on an input of `input_shape` (batch included; pass batch 1 for
    the per-view figure). The model is copied to the meta device; it is not changed."""
    meta = copy.deepcopy(model).to("meta").eval()
    for module in meta.modules():
        if isinstance(module, nn.Conv1d):  # W3's eq. 4 convs: run as convolutions, not as addcmuls (above)
            module.register_forward_hook(_as_module)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        meta(torch.empty(input_shape, device="meta"))
    by_op = {str(op).replace("aten.", ""): n / 2 for op, n in counter.get_flop_counts()["Global"].items()}
    return ComputeCount(counter.get_total_flops() / 2, sum(p.numel() for p in model.parameters()), by_op)
