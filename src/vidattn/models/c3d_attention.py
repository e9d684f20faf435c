"""The UCF-101 paper's models (Shrestha et al., "3D Convolutional with Attention for Action Recognition",
Sec. 2, Fig. 1): "3D-ConvNet + Attention" and its baseline "3D-ConvNet" (the same model without the gate).

16 RGB frames of 112x112 -> one 3D conv with 64 channels + ReLU -> features F; attention: a sigmoid gate
computed from F, multiplied elementwise with F; 3D average pooling; fully connected layers with ReLU and
dropout 0.25; a classifier over the 101 classes. Trained from scratch (no pre-training).
Open choices (docs/models.md): conv kernel 3x3x3, gate = sigmoid of a 1x1x1 conv of F, pooling to
4x14x14 (average pooling 4x8x8 at 16x112x112), one hidden FC layer of 512.
This forward is the reference (plain `nn.Conv3d` and `nn.AdaptiveAvgPool3d`); `vidattn.models.fast` swaps
in `FastC3D` (the same sums as 2D convs over stacked frames), tested against it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from vidattn.models.heads import ClassifierHead
from vidattn.models.recognizer import Logits, VideoModel, VideoOutput


class C3DAttention(VideoModel):
    """3D-ConvNet (+ Attention when `attention=True`) of the UCF-101 paper.

    Args:
        gate: "conv" (sigmoid of a learned 1x1x1 conv of the features) or "self" (sigmoid of the features
            themselves, parameter-free).
        pool_output: (T, H, W) size after the 3D average pooling (adaptive, so other input sizes work).
        hidden: widths of the fully connected layers before the classifier.
    """

    def __init__(self, num_classes: int | Sequence[int] = 101, num_segments: int = 16, attention: bool = True,
                 channels: int = 64, kernel_size: int = 3, gate: str = "conv",
                 pool_output: Sequence[int] = (4, 14, 14), hidden: Sequence[int] = (512,),
                 dropout: float = 0.25, causal: bool = False) -> None:
        super().__init__()
        if causal:
            raise ValueError("causal=True: the UCF-101 paper's C3D (c3d, c3d_attention) convolves over time with "
                             "centred 3D kernels and has no causal variant")
        if gate not in ("conv", "self"):
            raise ValueError(f"gate must be 'conv' or 'self', not {gate!r}")
        self.num_segments = num_segments
        self.conv = nn.Conv3d(3, channels, kernel_size, padding=kernel_size // 2)
        self.gate = (nn.Conv3d(channels, channels, 1) if gate == "conv" else nn.Identity()) if attention else None
        self.pool = nn.AdaptiveAvgPool3d(tuple(pool_output))
        layers: list[nn.Module] = []
        width = channels * math.prod(pool_output)
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU(inplace=True), nn.Dropout(dropout)]
            width = h
        self.fc = nn.Sequential(nn.Flatten(1), *layers)
        self.num_features = width
        self.head = ClassifierHead(width, num_classes, dropout=0.0, init_std=0.01)

    def forward_features(self, x: Tensor, keep_maps: bool = False) -> VideoOutput:
        """Features F (or F * gate) as `(B, C, T, H, W)`; with `keep_maps` the gate averaged over channels
        (B, T, H, W) as attention map "gate"."""
        self.check_clip(x)
        f = torch.relu(self.conv(x))  # the 3D-CNN features F
        maps: dict[str, dict[str, Tensor]] = {}
        if self.gate is not None:
            g = torch.sigmoid(self.gate(f))  # the sigmoid gate
            if keep_maps:
                maps["gate"] = {"spatial": g.mean(dim=1)}
            f = f * g
        return VideoOutput(logits=(), features=f, attention=maps)

    def forward_head(self, features: Tensor) -> Logits:
        """3D average pooling, the fully connected layers, the classifier."""
        return self.head(self.fc(self.pool(features)))

    def reset_classifier(self, num_classes: int | Sequence[int], dropout: float | None = None) -> None:
        self.head = ClassifierHead(self.num_features, num_classes, dropout=0.0, init_std=0.01)
