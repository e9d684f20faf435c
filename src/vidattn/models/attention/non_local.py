"""Non-local block, embedded-Gaussian version (Wang et al., "Non-local Neural Networks", CVPR 2018), as in
TSM's non-local variant: 3D (space-time) over a clip, inner channels C/2, 1x1x1 theta/phi/g convs with
bias, (1, 2, 2) max-pooling after phi and g, softmax without scaling, output 1x1x1 conv + BatchNorm3d whose
weight and bias start at zero (so the block starts as the identity), residual add.
`mode="dot_product"` replaces the softmax by division by the number of positions (the non-local paper's
dot-product version, used by mmaction2's TSM-NL configs).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class NonLocalBlock(nn.Module):
    """Non-local block on `(N*T, C, H, W)` with `num_segments`, or on `(N, C, T, H, W)`."""

    causal = False  # every position attends to every frame of the clip

    def __init__(self, channels: int, num_segments: int | None = None, inner_channels: int | None = None,
                 subsample: bool = True, mode: str = "embedded_gaussian") -> None:
        super().__init__()
        if mode not in ("embedded_gaussian", "dot_product"):
            raise ValueError(f"non-local mode must be 'embedded_gaussian' or 'dot_product', not {mode!r}")
        self.mode = mode
        self.num_segments = num_segments
        inner = inner_channels or channels // 2
        self.theta = nn.Conv3d(channels, inner, 1)
        self.phi = nn.Conv3d(channels, inner, 1)
        self.g = nn.Conv3d(channels, inner, 1)
        self.pool = nn.MaxPool3d((1, 2, 2)) if subsample else nn.Identity()
        self.out_conv = nn.Conv3d(inner, channels, 1)
        self.out_bn = nn.BatchNorm3d(channels)
        nn.init.zeros_(self.out_bn.weight)
        nn.init.zeros_(self.out_bn.bias)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() == 4:
            if self.num_segments is None:
                raise ValueError("a 4D (N*T, C, H, W) input needs num_segments")
            nt, c, h, w = x.shape
            x5 = x.view(nt // self.num_segments, self.num_segments, c, h, w).transpose(1, 2)
            return self._attend(x5).transpose(1, 2).reshape(nt, c, h, w)
        return self._attend(x)

    def _attend(self, x: Tensor) -> Tensor:
        n = x.shape[0]
        theta = self.theta(x).flatten(2)  # (N, C', THW)
        phi = self.pool(self.phi(x)).flatten(2)  # (N, C', THW/4)
        g = self.pool(self.g(x)).flatten(2)
        affinity = torch.bmm(theta.transpose(1, 2), phi)  # (N, THW, THW/4): theta_i . phi_j
        if self.mode == "embedded_gaussian":  # softmax over j, no 1/sqrt(d) scaling
            affinity = F.softmax(affinity, dim=-1)
        else:  # dot product, normalised by the number of positions j
            affinity = affinity / affinity.shape[-1]
        y = torch.bmm(g, affinity.transpose(1, 2)).view(n, -1, *x.shape[2:])  # (N, C', T, H, W)
        return x + self.out_bn(self.out_conv(y))
