"""ResNet-18/34/50/101 (He et al., CVPR 2016) with slots for temporal modules and attention.

Parameter names match torchvision's ResNet (`conv1`, `bn1`, `layer1.0.conv1`, ..., `downsample.0/1`), so an
ImageNet state dict from torchvision or timm loads without renaming (its `fc.*` is the only extra key).
One block implementation serves 2D (per-frame, TSN/TSM/TAM) and 3D (I3D) networks: `dims` picks
Conv2d/BatchNorm2d or Conv3d/BatchNorm3d, and `temporal_kernel` inflates a block's first conv in time.

Slots, in the style of timm's `attn_layer` (STYLE.md):
- `temporal`: a module applied to the residual branch input ("residual", TSM's "blockres") or to the
  whole block input ("block"): temporal shift or TAM.
- `attn`: applied to the residual branch output after its last BN, before the residual add (CBAM's
  placement; W3 "at each residual block"). Its `forward_with_maps(x)` returns the attended map and its
  masks, so the maps come from the same forward.
- `post`: applied to the block output (TSM's non-local blocks).
A block's forward is the reference (`out = attn(out); out += identity; relu`); `vidattn.models.fast` swaps
in blocks whose attention adds the identity in its last multiply, tested against these.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from torch import Tensor, nn

LayerFactory = Callable[[int], nn.Module]  # channels -> module


@dataclass
class StageOutput:
    """What a backbone returns: the final map, each stage's last spatial mask, every block's maps."""

    features: Tensor
    stage_masks: list[Tensor] = field(default_factory=list)  # (N, T, H, W) per stage, when attention has one
    maps: dict[str, dict[str, Tensor]] = field(default_factory=dict)


def _conv(dims: int, cin: int, cout: int, k: int, stride: int = 1, kt: int = 1) -> nn.Module:
    """A bias-free k x k conv; in 3D its temporal kernel is `kt` (padded to keep T) and stride is spatial."""
    if dims == 2:
        conv: nn.Conv2d | nn.Conv3d = nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, bias=False)
    else:
        conv = nn.Conv3d(cin, cout, (kt, k, k), stride=(1, stride, stride), padding=(kt // 2, k // 2, k // 2),
                         bias=False)
    return kaiming_init(conv)


def kaiming_init(conv: nn.Conv2d | nn.Conv3d) -> nn.Conv2d | nn.Conv3d:
    """torchvision's ResNet initialisation of a conv: Kaiming-normal, fan-out (BNs start at 1 / 0)."""
    nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
    return conv


def _norm(dims: int, channels: int) -> nn.Module:
    return nn.BatchNorm2d(channels) if dims == 2 else nn.BatchNorm3d(channels)


class _ResidualBlock(nn.Module):
    """Shared forward of both block types: temporal slot, residual branch, attention slot, add, post slot."""

    expansion = 1

    def __init__(self, temporal: nn.Module | None, temporal_place: str, attn: nn.Module | None,
                 post: nn.Module | None) -> None:
        super().__init__()
        if temporal_place not in ("residual", "block"):
            raise ValueError(f"temporal_place must be 'residual' or 'block', not {temporal_place!r}")
        self.temporal = temporal
        self.temporal_place = temporal_place
        self.attn = attn
        self.post = post
        self.relu = nn.ReLU(inplace=True)
        self.downsample: nn.Module | None = None

    def residual(self, x: Tensor) -> Tensor:  # the conv-BN stack, defined by each block type
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_with_maps(x)[0]

    def forward_with_maps(self, x: Tensor) -> tuple[Tensor, dict[str, Tensor] | None]:
        """The block output and the attention's masks (None without attention)."""
        out, identity = self.branches(x)
        maps = None
        if self.attn is not None:
            out, maps = self.attn.forward_with_maps(out)
        out += identity  # in place, as torchvision does: `out` is this block's own tensor
        return self.finish(out), maps

    def branches(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """The residual branch output (temporal slot, conv-BN stack) and the identity (downsampled)."""
        if self.temporal is not None and self.temporal_place == "block":
            x = self.temporal(x)
        identity = x if self.downsample is None else self.downsample(x)
        branch = self.temporal(x) if self.temporal is not None and self.temporal_place == "residual" else x
        return self.residual(branch), identity

    def finish(self, out: Tensor) -> Tensor:
        """ReLU after the residual add, then the post slot."""
        out = self.relu(out)
        return out if self.post is None else self.post(out)


class BasicBlock(_ResidualBlock):
    """Two 3x3 convs (ResNet-18/34). In 3D, `temporal_kernel` inflates conv1."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, *, dims: int = 2, temporal_kernel: int = 1,
                 temporal: nn.Module | None = None, temporal_place: str = "residual",
                 attn: nn.Module | None = None, post: nn.Module | None = None) -> None:
        super().__init__(temporal, temporal_place, attn, post)
        self.conv1 = _conv(dims, inplanes, planes, 3, stride, kt=temporal_kernel)
        self.bn1 = _norm(dims, planes)
        self.conv2 = _conv(dims, planes, planes, 3)
        self.bn2 = _norm(dims, planes)

    def residual(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        return self.bn2(self.conv2(out))


class Bottleneck(_ResidualBlock):
    """1x1 -> 3x3 (stride here, torchvision's "v1.5") -> 1x1 (ResNet-50/101). In 3D, `temporal_kernel`
    inflates conv1 (I3D's 3x1x1 style)."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, *, dims: int = 2, temporal_kernel: int = 1,
                 temporal: nn.Module | None = None, temporal_place: str = "residual",
                 attn: nn.Module | None = None, post: nn.Module | None = None) -> None:
        super().__init__(temporal, temporal_place, attn, post)
        self.conv1 = _conv(dims, inplanes, planes, 1, kt=temporal_kernel)
        self.bn1 = _norm(dims, planes)
        self.conv2 = _conv(dims, planes, planes, 3, stride)
        self.bn2 = _norm(dims, planes)
        self.conv3 = _conv(dims, planes, planes * 4, 1)
        self.bn3 = _norm(dims, planes * 4)

    def residual(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.bn3(self.conv3(out))


BLOCKS: dict[int, tuple[type[_ResidualBlock], tuple[int, int, int, int]]] = {
    18: (BasicBlock, (2, 2, 2, 2)),
    34: (BasicBlock, (3, 4, 6, 3)),
    50: (Bottleneck, (3, 4, 6, 3)),
    101: (Bottleneck, (3, 4, 23, 3)),
}


class ResNetStages(nn.Module):
    """Stem-less ResNet body (`layer1`..`layer4`) shared by the 2D and 3D backbones.

    Args:
        depth: 18, 34, 50 or 101.
        dims: 2 (frames folded into the batch) or 3 (clips as `(N, C, T, H, W)`).
        num_segments: frames per clip, for 2D temporal and attention modules.
        temporal_layer / attn_layer: factories `(channels, num_segments) -> module` for the block slots.
        temporal_every: put the temporal module in every k-th block of a stage (TSM shifts every other
            block of ResNet-101).
        post_layer / post_positions: a module after the blocks `(stage, index)`, 1-based stages
            (TSM's non-local: (2, 0), (2, 2), (3, 0), (3, 2), (3, 4)).
        temporal_kernels: per stage, per block temporal kernel of conv1 (3D inflation pattern).
        base_width: channels of the stem and layer1 (64 in ResNets; smaller for quick CPU experiments,
            which then cannot load ImageNet weights).
    """

    def __init__(
        self,
        depth: int,
        dims: int = 2,
        num_segments: int | None = None,
        temporal_layer: Callable[[int, int | None], nn.Module] | None = None,
        temporal_place: str = "residual",
        temporal_every: int = 1,
        attn_layer: Callable[[int, int | None], nn.Module] | None = None,
        post_layer: Callable[[int, int | None], nn.Module] | None = None,
        post_positions: Sequence[tuple[int, int]] = (),
        temporal_kernels: Sequence[Sequence[int]] | None = None,
        base_width: int = 64,
    ) -> None:
        super().__init__()
        if depth not in BLOCKS:
            raise ValueError(f"ResNet depth must be one of {sorted(BLOCKS)}, not {depth}")
        block, counts = BLOCKS[depth]
        self.block_type = block
        widths = [base_width * 2**i for i in range(4)]
        self.base_width = base_width
        self.num_features = widths[-1] * block.expansion
        self.stage_channels = [w * block.expansion for w in widths]
        post_at = set(post_positions)
        inplanes = base_width
        for s, (count, planes) in enumerate(zip(counts, widths), start=1):
            blocks = []
            for i in range(count):
                stride = 2 if (i == 0 and s > 1) else 1
                kt = temporal_kernels[s - 1][i] if temporal_kernels is not None else 1
                blk = block(
                    inplanes, planes, stride, dims=dims, temporal_kernel=kt,
                    temporal=temporal_layer(inplanes, num_segments)
                    if temporal_layer is not None and i % temporal_every == 0 else None,
                    temporal_place=temporal_place,
                    attn=attn_layer(planes * block.expansion, num_segments) if attn_layer is not None else None,
                    post=post_layer(planes * block.expansion, num_segments) if (s, i) in post_at and post_layer
                    else None,
                )
                if stride != 1 or inplanes != planes * block.expansion:
                    blk.downsample = nn.Sequential(
                        _conv(dims, inplanes, planes * block.expansion, 1, stride),
                        _norm(dims, planes * block.expansion),
                    )
                blocks.append(blk)
                inplanes = planes * block.expansion
            self.add_module(f"layer{s}", nn.Sequential(*blocks))
        self.has_attention = attn_layer is not None

    def run_stages(self, x: Tensor, num_segments: int | None, keep_maps: bool, stage_hook: Callable | None = None
                   ) -> StageOutput:
        """Run layer1..4; collect each stage's last spatial mask (as (N, T, H, W)) and, if asked, all maps."""
        out = StageOutput(features=x)
        for s in range(1, 5):
            stage = getattr(self, f"layer{s}")
            mask = None
            for i, blk in enumerate(stage):
                x, maps = blk.forward_with_maps(x)
                if maps is None:
                    continue
                if keep_maps:
                    out.maps[f"layer{s}.{i}"] = _frame_layout(maps, num_segments)
                if "spatial" in maps:
                    mask = maps["spatial"]
            if mask is not None:
                out.stage_masks.append(_as_nthw(mask, num_segments))
            if stage_hook is not None:
                x = stage_hook(s, x)
        out.features = x
        return out


def _as_nthw(mask: Tensor, num_segments: int | None) -> Tensor:
    """A spatial mask from W3 (already (N, T, H, W)) or CBAM ((N*T, H, W)) as (N, T, H, W)."""
    if mask.dim() == 3:
        assert num_segments is not None  # CBAM only runs in 2D recognizers, which always know T
        return mask.view(-1, num_segments, *mask.shape[1:])
    return mask


def _frame_layout(maps: dict[str, Tensor], num_segments: int | None) -> dict[str, Tensor]:
    """Every block's maps in one layout: spatial (N, T, H, W), channel (N, T, C)."""
    result = {}
    for key, m in maps.items():
        if key == "spatial":
            result[key] = _as_nthw(m, num_segments)
        elif m.dim() == 2 and num_segments is not None:
            result[key] = m.view(-1, num_segments, m.shape[1])
        else:
            result[key] = m
    return result


class ResNet2d(ResNetStages):
    """torchvision-layout ResNet without `fc`, run on frames `(N*T, 3, H, W)`.

    `stem="imagenet"`: 7x7 stride-2 conv and 3x3 stride-2 max-pool (ImageNet ResNets, 224 px inputs);
    `stem="small"`: one 3x3 stride-1 conv, no pooling (CIFAR-style, for inputs of 32-64 px, no ImageNet
    weights then); `stem="small_s2"`: the same conv with stride 2 (layer1 at half the input size, 4x cheaper).
    """

    def __init__(self, depth: int, stem: str = "imagenet", **kwargs: object) -> None:
        super().__init__(depth, dims=2, **kwargs)  # type: ignore[arg-type]
        if stem not in ("imagenet", "small", "small_s2"):
            raise ValueError(f"stem must be 'imagenet', 'small' or 'small_s2', not {stem!r}")
        k, stride = {"imagenet": (7, 2), "small": (3, 1), "small_s2": (3, 2)}[stem]
        self.conv1 = kaiming_init(nn.Conv2d(3, self.base_width, k, stride=stride, padding=k // 2, bias=False))
        self.bn1 = nn.BatchNorm2d(self.base_width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1) if stem == "imagenet" else nn.Identity()

    def forward_features(self, x: Tensor, num_segments: int | None = None, keep_maps: bool = False
                         ) -> StageOutput:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.run_stages(x, num_segments, keep_maps)
