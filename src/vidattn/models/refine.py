"""AFR, attention-guided feature refinement (W3 paper Sec. 3.4, eqs. 7-8, Fig. 2).

Each stage's spatio-temporal mask M^{s,j} is adaptive-average-pooled to the last stage's size, the N masks
are concatenated as N channels (eq. 7), a 1x1 conv with C_l kernels and ReLU maps them to the last stage's
channels, and the result is added to the last feature map: y_i = x_i + f_ref(M^ms_i) (eq. 8). Besides
refining, this gives every attention module a short gradient path to the loss (deep supervision).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class AttentionRefinement(nn.Module):
    """AFR for `num_stages` masks and a last feature map of `channels` channels."""

    def __init__(self, num_stages: int, channels: int) -> None:
        super().__init__()
        self.num_stages = num_stages
        self.proj = nn.Conv3d(num_stages, channels, 1)  # the 1x1 conv of Fig. 2, frames kept apart

    def forward(self, features: Tensor, stage_masks: list[Tensor]) -> Tensor:
        """Refine `features` ((N*T, C, H, W) of a 2D recognizer or (N, C, T, H, W) of a 3D one) with the
        stage masks, each (N, T_j, H_j, W_j)."""
        if len(stage_masks) != self.num_stages:
            raise ValueError(f"AFR expects {self.num_stages} stage masks, got {len(stage_masks)}")
        frames_in_batch = features.dim() == 4
        if frames_in_batch:
            n, t = stage_masks[-1].shape[:2]
            size = (t, *features.shape[2:])
        else:
            size = tuple(features.shape[2:])
        # Eq. 7: AAP of every stage's mask to the last stage's (T, H, W), concatenated as channels.
        pooled = torch.cat([F.adaptive_avg_pool3d(m.unsqueeze(1).to(features.dtype), size) for m in stage_masks],
                           dim=1)
        refine = F.relu(self.proj(pooled))  # (N, C, T, H, W)
        if frames_in_batch:
            refine = refine.transpose(1, 2).reshape(features.shape)
        return features + refine  # eq. 8
