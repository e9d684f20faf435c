"""Multiply-accumulate (MAC) counts per view, the papers' "GFLOPs" convention (REFERENCES.md): one MAC of a
convolution, linear layer or matrix product counts as one "FLOP", for one view (1 clip x 1 crop);
elementwise operations, pooling and normalisation are not counted.

Counting uses `torch.utils.flop_counter.FlopCounterMode` (which counts 2 FLOPs per MAC) on the meta device,
so no memory is allocated and no arithmetic is done. It sees operators, so it counts the reference modules
(plain `nn.Conv1d`/`Conv2d`/`Conv3d`/`Linear` in the papers' order): the counted copy of a model is first
put back on the reference path (`vidattn.models.fast.reference`), since some fast modules compute a
convolution as multiply-adds, which the counter would not see.
`vidattn.analysis.flops` builds the papers' tables on top of it.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from vidattn.models.fast import reference


@dataclass
class ComputeCount:
    """MACs for one view, parameters, and MACs by operator (e.g. convolution, bmm)."""

    macs: float
    params: int
    by_operator: dict[str, float] = field(default_factory=dict)

    @property
    def gmacs(self) -> float:
        return self.macs / 1e9


def count_macs(model: nn.Module, input_shape: tuple[int, ...]) -> ComputeCount:
    """MACs of one forward pass of `model` on an input of `input_shape` (batch included; pass batch 1 for
    the per-view figure). The model is copied to the meta device; it is not changed."""
    meta = reference(copy.deepcopy(model)).to("meta").eval()
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        meta(torch.empty(input_shape, device="meta"))
    by_op = {str(op).replace("aten.", ""): n / 2 for op, n in counter.get_flop_counts()["Global"].items()}
    return ComputeCount(counter.get_total_flops() / 2, sum(p.numel() for p in model.parameters()), by_op)
