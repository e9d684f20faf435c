"""Depthwise temporal aggregation module, TAM (Fan et al., "More Is Less: Learning Efficient Video
Representations by Big-Little Network and Depthwise Temporal Aggregation", NeurIPS 2019; the W3 paper's [10]).

Each channel of frame t becomes a learned per-channel blend of frames t-1, t and t+1 (three depthwise 1x1
convolutions, zero-padded ends), followed by ReLU:
    y_t = ReLU(w_prev * x_{t-1} + w_curr * x_t + w_next * x_{t+1}).
Not TANet's "temporal adaptive module".
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class TemporalAggregation(nn.Module):
    """TAM with `blending_frames=3`. Weights start as the identity (w_curr=1, others 0) so an ImageNet
    backbone starts unchanged; `identity_init=False` uses PyTorch's default depthwise-conv init instead."""

    causal = False  # blends frame t+1 into frame t

    def __init__(self, channels: int, num_segments: int, identity_init: bool = True) -> None:
        super().__init__()
        self.num_segments = num_segments
        # (3, C): rows are the weights for frames t-1, t, t+1 (a depthwise conv's weight, flattened).
        self.weight = nn.Parameter(torch.empty(3, channels))
        if identity_init:
            with torch.no_grad():
                self.weight.zero_()
                self.weight[1].fill_(1.0)
        else:
            nn.init.uniform_(self.weight, -1.0, 1.0)  # kaiming-uniform bound for a fan-in of 1
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        nt, c = x.shape[:2]
        t = self.num_segments
        v = x.view(nt // t, t, c, *x.shape[2:])
        w = self.weight.view(3, 1, 1, c, *([1] * (x.dim() - 2))).to(x.dtype)
        out = v * w[1]
        out[:, 1:] += v[:, :-1] * w[0]  # from the previous frame
        out[:, :-1] += v[:, 1:] * w[2]  # from the next frame
        return self.relu(out.view_as(x))

    def extra_repr(self) -> str:
        return f"channels={self.weight.shape[1]}, num_segments={self.num_segments}"
