"""I3D-style 3D ResNet (Carreira & Zisserman, CVPR 2017; the ResNet form of Wang et al., "Non-local Neural
Networks", 2018): a 2D ResNet inflated in time, with torchvision parameter names so 2D ImageNet weights
inflate into it (`vidattn.models.compat.inflate_2d_to_3d`).

Stem: conv 5x7x7 (stride 1x2x2), max-pool 1x3x3 (stride 1x2x2); a temporal max-pool 2x1x1 (stride 2)
after layer1 ("pool2"); stages inflate conv1 of selected blocks to a temporal kernel of 3. The W3 paper's
Table 8 uses I3D R18 with 32 and 64 frames; the inflation patterns are documented in docs/models.md.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from torch import Tensor, nn

from vidattn.models.resnet import BLOCKS, ResNetStages, StageOutput, kaiming_init

# Which blocks get a temporal kernel of 3 in conv1 (1 = inflated), per stage.
INFLATION_PATTERNS: dict[int, tuple[tuple[int, ...], ...]] = {
    18: ((1, 1), (1, 1), (1, 1), (1, 1)),
    34: ((1, 1, 1), (1, 1, 1, 1), (1, 1, 1, 1, 1, 1), (1, 1, 1)),
    # I3D ResNet-50 of the non-local paper: every other block from layer2 on, none in layer4's first.
    50: ((1, 1, 1), (1, 0, 1, 0), (1, 0, 1, 0, 1, 0), (0, 1, 0)),
}


class ResNet3d(ResNetStages):
    """I3D ResNet body on clips `(N, 3, T, H, W)`; returns `(N, C, T', H', W')` features."""

    def __init__(self, depth: int, attn_layer: Callable[[int, int | None], nn.Module] | None = None,
                 post_layer: Callable[[int, int | None], nn.Module] | None = None,
                 post_positions: Sequence[tuple[int, int]] = (), stem_temporal_kernel: int = 5,
                 temporal_pool: bool = True, inflation: Sequence[Sequence[int]] | None = None,
                 base_width: int = 64) -> None:
        if inflation is None:
            if depth not in INFLATION_PATTERNS:
                raise ValueError(f"no default I3D inflation pattern for ResNet-{depth}; pass `inflation`")
            inflation = INFLATION_PATTERNS[depth]
        counts = BLOCKS[depth][1]
        if [len(p) for p in inflation] != list(counts):
            raise ValueError(f"inflation pattern {inflation} does not match ResNet-{depth}'s blocks {counts}")
        kernels = [[3 if flag else 1 for flag in stage] for stage in inflation]
        super().__init__(depth, dims=3, attn_layer=attn_layer, post_layer=post_layer,
                         post_positions=post_positions, temporal_kernels=kernels, base_width=base_width)
        kt = stem_temporal_kernel
        self.conv1 = kaiming_init(nn.Conv3d(3, base_width, (kt, 7, 7), stride=(1, 2, 2),
                                            padding=(kt // 2, 3, 3), bias=False))
        self.bn1 = nn.BatchNorm3d(base_width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1))
        self.pool2 = nn.MaxPool3d((2, 1, 1), stride=(2, 1, 1)) if temporal_pool else None

    def forward_features(self, x: Tensor, num_segments: int | None = None, keep_maps: bool = False
                         ) -> StageOutput:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.run_stages(x, None, keep_maps, stage_hook=self._after_stage)

    def _after_stage(self, stage: int, x: Tensor) -> Tensor:
        return self.pool2(x) if stage == 1 and self.pool2 is not None else x
