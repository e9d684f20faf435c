"""CBAM, the convolutional block attention module (Woo et al., ECCV 2018), applied frame by frame.

Channel attention (eq. 2 of CBAM): global avg- and max-pooled descriptors through one shared MLP
(C -> C/r -> C, with biases), summed, sigmoid. Spatial attention (eq. 3): channel-wise [max, mean] maps,
7x7 conv (no bias), BatchNorm, sigmoid. Applied in sequence (eq. 1): F' = M_c(F) * F, F'' = M_s(F') * F'.
The W3 paper's Table 6 baseline "TSM+CBAM". This forward is the reference; `vidattn.models.fast` swaps
in `FastCBAM` (the residual add fused into the last multiply), tested against it.

Initialisation: as W3 (`W3Attention.open_masks`), the layers before both sigmoids start with bias
`mask_init_bias` = 3 by default (masks near 0.95: a fresh CBAM branch is ~0.9 x the plain one; the masks of
CBAM's own init start near 0.5); `mask_init_bias=None` keeps PyTorch's default (CBAM as published).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class CBAM(nn.Module):
    """CBAM on `(N*T, C, H, W)` (or any `(B, C, H, W)` 2D map); time plays no part."""

    def __init__(self, channels: int, num_segments: int | None = None, reduction: int = 16,
                 spatial_kernel: int = 7, mask_init_bias: float | None = 3.0) -> None:
        super().__init__()
        hidden = max(channels // reduction, 1)
        self.channel_mlp = nn.Sequential(
            nn.Linear(channels, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, channels)
        )
        self.spatial_conv = nn.Conv2d(2, 1, spatial_kernel, padding=spatial_kernel // 2, bias=False)
        self.spatial_bn = nn.BatchNorm2d(1)
        if mask_init_bias is not None:
            nn.init.constant_(self.channel_mlp[-1].bias, mask_init_bias / 2)  # enters twice: avg + max
            nn.init.constant_(self.spatial_bn.bias, mask_init_bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_with_maps(x)[0]

    def forward_with_maps(self, x: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """The attended map and the masks "channel" (B, C) and "spatial" (B, H, W)."""
        m_c = self.channel_mask(x)
        f = x * m_c[:, :, None, None]
        m_s = self.spatial_mask(f)
        return f * m_s, {"channel": m_c, "spatial": m_s[:, 0]}

    def channel_mask(self, x: Tensor) -> Tensor:
        """M_c (B, C) = sigmoid(MLP(AvgPool(F)) + MLP(MaxPool(F)))."""
        return torch.sigmoid(self.channel_mlp(x.mean(dim=(2, 3))) + self.channel_mlp(x.amax(dim=(2, 3))))

    def spatial_mask(self, f: Tensor) -> Tensor:
        """M_s (B, 1, H, W) = sigmoid(BN(conv7x7([MaxPool_c(F'), AvgPool_c(F')])))."""
        pooled = torch.cat((f.amax(dim=1, keepdim=True), f.mean(dim=1, keepdim=True)), dim=1)
        return torch.sigmoid(self.spatial_bn(self.spatial_conv(pooled)))
