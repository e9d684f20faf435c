"""Recognizers: a backbone, optional AFR, a classifier head and the video-level consensus.

- 2D recognizers (TSN, TSM, TAM and their attention variants) fold time into the batch, run the backbone
  per frame and average the per-frame logits over the T segments (TSN consensus; W3 paper: "video-level
  prediction is obtained by averaging the frame-level predictions").
- 3D recognizers (I3D) run the backbone on the clip and pool over time and space.
Both take a clip batch `(B, 3, T, H, W)` and return logits, or a `VideoOutput` with the refined features
(for MFR, W3 eq. 9) and every block's attention maps when `return_all=True`, from the same forward pass.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field

from torch import Tensor, nn

from vidattn.models.heads import ClassifierHead
from vidattn.models.refine import AttentionRefinement
from vidattn.models.resnet import ResNetStages

Logits = Tensor | tuple[Tensor, ...]


@dataclass
class VideoOutput:
    """Everything one forward pass produces.

    logits: (B, K), or one tensor per head.
    features: the refined last feature map y (eq. 8): (B*T, C, h, w) for 2D models, (B, C, t, h, w) for 3D.
    attention: per block ("layer3.2"), its masks: "spatial" (B, T, h, w) and/or "channel" (B, T, C).
    """

    logits: Logits
    features: Tensor
    attention: dict[str, dict[str, Tensor]] = field(default_factory=dict)


class VideoModel(nn.Module):
    """The interface of every vidattn model (timm's): `forward_features`, `forward_head`, and `forward`
    returning logits, or a `VideoOutput` with features and attention maps when `return_all=True`."""

    def forward(self, x: Tensor, return_all: bool = False) -> Logits | VideoOutput:
        out = self.forward_features(x, keep_maps=return_all)
        logits = self.forward_head(out.features)
        if return_all:
            out.logits = logits
            return out
        return logits

    def forward_features(self, x: Tensor, keep_maps: bool = False) -> VideoOutput:
        raise NotImplementedError

    def forward_head(self, features: Tensor) -> Logits:
        raise NotImplementedError

    @staticmethod
    def check_clip(x: Tensor) -> None:
        if x.dim() != 5 or x.shape[1] != 3:
            raise ValueError(f"expected a clip batch (B, 3, T, H, W), got shape {tuple(x.shape)}")


class VideoRecognizer(VideoModel):
    """Backbone + AFR + head + consensus. `per_frame=True` for 2D backbones, False for 3D ones."""

    def __init__(self, backbone: ResNetStages, num_classes: int | Sequence[int], num_segments: int,
                 per_frame: bool, dropout: float = 0.5, afr: bool = False) -> None:
        super().__init__()
        self.backbone = backbone
        self.num_segments = num_segments
        self.per_frame = per_frame
        self.num_features = backbone.num_features
        if afr and not backbone.has_attention:
            raise ValueError("AFR refines features with attention masks; this backbone has no attention")
        self.afr = AttentionRefinement(4, backbone.num_features) if afr else None
        self.head = ClassifierHead(backbone.num_features, num_classes, dropout)

    def forward_features(self, x: Tensor, keep_maps: bool = False) -> VideoOutput:
        """Backbone and AFR: the refined feature map (and attention maps when `keep_maps`)."""
        self.check_clip(x)
        if self.per_frame:
            t = x.shape[2]
            if t != self.num_segments:
                raise ValueError(f"model built for num_segments={self.num_segments} got clips of {t} frames")
            x = x.transpose(1, 2).flatten(0, 1)  # (B*T, 3, H, W): frames folded into the batch
        stages = self.backbone.forward_features(x, self.num_segments if self.per_frame else None, keep_maps)
        features = stages.features
        if self.afr is not None:
            features = self.afr(features, stages.stage_masks)
        return VideoOutput(logits=(), features=features, attention=stages.maps)

    def forward_head(self, features: Tensor) -> Logits:
        """Pool and classify; a 2D recognizer's frame logits averaged over frames (the TSN consensus)."""
        if self.per_frame:
            logits = self.frame_logits(features)
            return tuple(z.mean(dim=1) for z in logits) if isinstance(logits, tuple) else logits.mean(dim=1)
        return self.head(features.mean(dim=(2, 3, 4)))

    def frame_logits(self, features: Tensor) -> Logits:
        """A 2D recognizer's per-frame logits (B, T, K) (one per head) before the consensus, from its
        (B*T, C, h, w) features: each frame pooled and classified on its own."""
        if not self.per_frame:
            raise ValueError("frame_logits: a 3D recognizer pools over time; it has no per-frame logits")
        logits = self.head(features.mean(dim=(2, 3)))
        t = self.num_segments
        if isinstance(logits, tuple):
            return tuple(z.view(-1, t, z.shape[-1]) for z in logits)
        return logits.view(-1, t, logits.shape[-1])

    def with_num_segments(self, num_segments: int) -> VideoRecognizer:
        """A twin of this model for clips of `num_segments` frames: every parameter and buffer is shared (the
        same tensors, nothing copied), every temporal module is told the new clip length. A causal model's
        frame t computes the same in both (the online runner's 1-frame twin, `vidattn.online`)."""
        shared = {id(t): t for t in (*self.parameters(), *self.buffers())}
        twin = copy.deepcopy(self, memo=shared)
        for module in twin.modules():
            if getattr(module, "num_segments", None) is not None:
                module.num_segments = num_segments
        if isinstance(getattr(twin, "vidattn_config", None), dict):
            twin.vidattn_config["num_segments"] = num_segments
        return twin

    def reset_classifier(self, num_classes: int | Sequence[int], dropout: float | None = None) -> None:
        """Replace the classifier (fine-tuning on a new label space)."""
        p = self.head.dropout.p if isinstance(self.head.dropout, nn.Dropout) else 0.0
        self.head = ClassifierHead(self.num_features, num_classes, p if dropout is None else dropout)
