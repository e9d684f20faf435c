"""Clip transforms: one geometry for every frame of a clip, on uint8 tensors, one float conversion.

Input: uint8 frames ``(T, H, W, 3)`` (what readers return) or ``(T, 3, H, W)``, numpy or torch.
Output: float32 ``(3, T, H, W)`` for one view, ``(V, 3, T, H, W)`` for multi-view testing.

Internally a clip is a uint8 tensor ``(V, T, 3, H, W)``; crops are views (free), resizes use
``torch.nn.functional.interpolate`` on uint8 (bilinear, antialiased like PIL), and the float conversion and
normalisation happen once at the end. Geometry follows the official TSM code (Lin et al., 2019):
``GroupMultiScaleCrop`` (scales 1, .875, .75, .66, 13 fixed offsets, max distortion 1, sizes within 3 px of
the output snap to it), ``GroupScale`` (short side, ``int`` rounding), centre crop, three crops along the
long side (``GroupFullResSample``), ten crops = 5 crops each followed by its flip (``GroupOverSample``);
and the UCF-101 3D-CNN paper: fixed resize to 128x171 then one random 112x112 crop for the whole clip.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "TSM_SCALES",
    "SSV1_FLIP_PAIRS",
    "SSV2_FLIP_PAIRS",
    "ClipTransform",
    "Resize",
    "MultiScaleCrop",
    "RandomCrop",
    "CenterCrop",
    "ThreeCrop",
    "TenCrop",
    "RandomHorizontalFlip",
    "build_train_transform",
    "build_test_transform",
    "flip_label_map",
    "to_uint8_clip",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
TSM_SCALES = (1.0, 0.875, 0.75, 0.66)
# Classes whose meaning swaps under a horizontal flip (0-based label indices).
SSV1_FLIP_PAIRS = ((2, 4), (30, 41), (52, 66))
SSV2_FLIP_PAIRS = ((86, 87), (93, 94), (166, 167))


def flip_label_map(pairs: Sequence[tuple[int, int]]) -> dict[int, int]:
    """Symmetric label map from left/right pairs, e.g. ``flip_label_map(SSV2_FLIP_PAIRS)``."""
    out: dict[int, int] = {}
    for a, b in pairs:
        out[a], out[b] = b, a
    return out


def to_uint8_clip(frames: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 ``(T, H, W, 3)`` or ``(T, 3, H, W)`` -> uint8 tensor ``(1, T, 3, H, W)`` (no copy)."""
    x = torch.from_numpy(np.asarray(frames)) if not isinstance(frames, torch.Tensor) else frames
    if x.dtype != torch.uint8 or x.ndim != 4:
        raise ValueError(f"expected uint8 frames (T,H,W,3) or (T,3,H,W), got {x.dtype} {tuple(x.shape)}")
    if x.shape[-1] == 3:
        x = x.permute(0, 3, 1, 2)
    elif x.shape[1] != 3:
        raise ValueError(f"expected 3 colour channels, got shape {tuple(x.shape)}")
    return x.unsqueeze(0)


def _resize(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    v, t, c, ih, iw = x.shape
    if (ih, iw) == (h, w):
        return x
    flat = x.reshape(v * t, c, ih, iw).contiguous(memory_format=torch.channels_last)
    out = F.interpolate(flat, size=(h, w), mode="bilinear", align_corners=False, antialias=True)
    return out.reshape(v, t, c, h, w)


def _crop(x: torch.Tensor, top: int, left: int, h: int, w: int) -> torch.Tensor:
    return x[..., top : top + h, left : left + w]


def _pair(size: int | Sequence[int]) -> tuple[int, int]:
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


def _fixed_offsets(more: bool, w: int, h: int, cw: int, ch: int) -> list[tuple[int, int]]:
    """TSM ``fill_fix_offset``: (left, top) of 5 or 13 fixed crop positions."""
    ws, hs = (w - cw) // 4, (h - ch) // 4
    out = [(0, 0), (4 * ws, 0), (0, 4 * hs), (4 * ws, 4 * hs), (2 * ws, 2 * hs)]
    if more:
        out += [(0, 2 * hs), (4 * ws, 2 * hs), (2 * ws, 4 * hs), (2 * ws, 0),
                (ws, hs), (3 * ws, hs), (ws, 3 * hs), (3 * ws, 3 * hs)]
    return out


class _Op:
    """A geometric step: ``op(x, rng, state) -> x`` with ``x`` uint8 ``(V, T, 3, H, W)``."""

    def __call__(self, x: torch.Tensor, rng: np.random.Generator, state: dict) -> torch.Tensor:
        raise NotImplementedError


@dataclass
class Resize(_Op):
    """Short side to ``size`` (int, TSM ``GroupScale``) or fixed ``(h, w)`` such as (128, 171)."""

    size: int | tuple[int, int]

    def __call__(self, x: torch.Tensor, rng: np.random.Generator, state: dict) -> torch.Tensor:
        h, w = x.shape[-2:]
        if isinstance(self.size, int):
            if w <= h:
                return _resize(x, int(self.size * h / w), self.size)
            return _resize(x, self.size, int(self.size * w / h))
        return _resize(x, *self.size)


@dataclass
class MultiScaleCrop(_Op):
    """TSM multi-scale crop: random (w, h) from ``short side x scales`` with scale indices at most
    ``max_distort`` apart (sizes within 3 px of the output snap to it), at one of 13 fixed offsets
    (5 with ``more_fix_crop=False``), then resized to ``size``."""

    size: int | tuple[int, int]
    scales: Sequence[float] = TSM_SCALES
    max_distort: int = 1
    more_fix_crop: bool = True

    def box(self, h: int, w: int, rng: np.random.Generator) -> tuple[int, int, int, int]:
        """(top, left, crop_h, crop_w) exactly as TSM draws it."""
        out_h, out_w = _pair(self.size)
        base = min(h, w)
        sizes = [int(base * s) for s in self.scales]
        crop_h = [out_h if abs(s - out_h) < 3 else s for s in sizes]
        crop_w = [out_w if abs(s - out_w) < 3 else s for s in sizes]
        pairs = [(cw, ch) for i, ch in enumerate(crop_h) for j, cw in enumerate(crop_w)
                 if abs(i - j) <= self.max_distort]
        cw, ch = pairs[int(rng.integers(len(pairs)))]
        cw, ch = min(cw, w), min(ch, h)
        offsets = _fixed_offsets(self.more_fix_crop, w, h, cw, ch)
        left, top = offsets[int(rng.integers(len(offsets)))]
        return top, left, ch, cw

    def __call__(self, x: torch.Tensor, rng: np.random.Generator, state: dict) -> torch.Tensor:
        top, left, ch, cw = self.box(x.shape[-2], x.shape[-1], rng)
        return _resize(_crop(x, top, left, ch, cw), *_pair(self.size))


@dataclass
class RandomCrop(_Op):
    """One uniformly random ``size`` crop for the whole clip (UCF-101 paper: 112 from 128x171)."""

    size: int | tuple[int, int]

    def __call__(self, x: torch.Tensor, rng: np.random.Generator, state: dict) -> torch.Tensor:
        th, tw = _pair(self.size)
        h, w = x.shape[-2:]
        if th > h or tw > w:
            raise ValueError(f"crop {th}x{tw} larger than frames {h}x{w}; resize first")
        top, left = int(rng.integers(0, h - th + 1)), int(rng.integers(0, w - tw + 1))
        return _crop(x, top, left, th, tw)


@dataclass
class CenterCrop(_Op):
    """Centre crop (torchvision rounding: ``round((h - th) / 2)``)."""

    size: int | tuple[int, int]

    def __call__(self, x: torch.Tensor, rng: np.random.Generator, state: dict) -> torch.Tensor:
        th, tw = _pair(self.size)
        h, w = x.shape[-2:]
        th, tw = min(th, h), min(tw, w)
        return _crop(x, int(round((h - th) / 2.0)), int(round((w - tw) / 2.0)), th, tw)


@dataclass
class ThreeCrop(_Op):
    """Three square crops along the long side: left/top, right/bottom, centre (TSM ``GroupFullResSample``)."""

    size: int | tuple[int, int]

    def __call__(self, x: torch.Tensor, rng: np.random.Generator, state: dict) -> torch.Tensor:
        th, tw = _pair(self.size)
        h, w = x.shape[-2:]
        th, tw = min(th, h), min(tw, w)
        ws, hs = (w - tw) // 4, (h - th) // 4
        if w >= h:
            offsets = [(0, 2 * hs), (4 * ws, 2 * hs), (2 * ws, 2 * hs)]
        else:
            offsets = [(2 * ws, 0), (2 * ws, 4 * hs), (2 * ws, 2 * hs)]
        return torch.cat([_crop(x, top, left, th, tw) for left, top in offsets], dim=0)


@dataclass
class TenCrop(_Op):
    """Four corners + centre, each followed by its horizontal flip (TSM ``GroupOverSample``);
    ``flip=False`` gives the five crops only."""

    size: int | tuple[int, int]
    flip: bool = True

    def __call__(self, x: torch.Tensor, rng: np.random.Generator, state: dict) -> torch.Tensor:
        th, tw = _pair(self.size)
        h, w = x.shape[-2:]
        views = []
        for left, top in _fixed_offsets(False, w, h, tw, th):
            crop = _crop(x, top, left, th, tw)
            views.append(crop)
            if self.flip:
                views.append(crop.flip(-1))
        return torch.cat(views, dim=0)


@dataclass
class RandomHorizontalFlip(_Op):
    """Flip the whole clip with probability ``p``; sets ``state["flipped"]`` so labels can be remapped."""

    p: float = 0.5

    def __call__(self, x: torch.Tensor, rng: np.random.Generator, state: dict) -> torch.Tensor:
        if rng.random() < self.p:
            state["flipped"] = True
            return x.flip(-1)
        return x


@dataclass
class ClipTransform:
    """Geometric ops then one float conversion + normalisation.

    ``transform(frames, rng)`` returns ``(clip, flipped)``; ``clip`` is float32 ``(3, T, H, W)`` (one view)
    or ``(V, 3, T, H, W)``.
    """

    ops: list[_Op] = field(default_factory=list)
    mean: Sequence[float] = IMAGENET_MEAN
    std: Sequence[float] = IMAGENET_STD

    def __call__(
        self, frames: np.ndarray | torch.Tensor, rng: np.random.Generator | None = None
    ) -> tuple[torch.Tensor, bool]:
        rng = rng if rng is not None else np.random.default_rng()
        state: dict = {"flipped": False}
        x = to_uint8_clip(frames)
        for op in self.ops:
            x = op(x, rng, state)
        clip = x.permute(0, 2, 1, 3, 4).to(torch.float32)  # (V, 3, T, H, W), one conversion
        mean = torch.tensor(self.mean, dtype=torch.float32).view(1, 3, 1, 1, 1)
        std = torch.tensor(self.std, dtype=torch.float32).view(1, 3, 1, 1, 1)
        clip.mul_(1.0 / (255.0 * std)).sub_(mean / std)
        return (clip[0] if clip.shape[0] == 1 else clip), state["flipped"]


def _resize_op(size: int, resize: int | tuple[int, int] | str | None) -> list[_Op]:
    if resize is None or resize == "none":
        return []
    if resize == "auto":
        return [Resize(round(size * 256 / 224))]
    if isinstance(resize, str):
        raise ValueError(f"resize must be an int, (h, w), 'auto' or 'none', got {resize!r}")
    return [Resize(resize if isinstance(resize, int) else _pair(resize))]


def build_train_transform(
    size: int = 224,
    *,
    crop: str = "multiscale",
    resize: int | tuple[int, int] | str | None = "auto",
    scales: Sequence[float] = TSM_SCALES,
    max_distort: int = 1,
    flip: bool = True,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> ClipTransform:
    """Training transform.

    Args:
        size: output side (224 for TSM/W3, 112 for the UCF-101 paper).
        crop: ``"multiscale"`` (TSM) or ``"random"`` (UCF-101 paper).
        resize: before cropping: short side (int), fixed ``(h, w)`` e.g. ``(128, 171)``, ``"auto"``
            (short side ``round(size * 256 / 224)``: 256 for 224, as mmaction2's TSM recipes) or ``"none"``.
        flip: random horizontal flip per clip; TSM turns it off for Something-Something. Datasets remap
            the labels of left/right classes when a clip is flipped.
    """
    ops = _resize_op(size, resize)
    if crop == "multiscale":
        ops.append(MultiScaleCrop(size, scales=scales, max_distort=max_distort))
    elif crop == "random":
        ops.append(RandomCrop(size))
    else:
        raise ValueError(f"unknown train crop {crop!r}; choose 'multiscale' or 'random'")
    if flip:
        ops.append(RandomHorizontalFlip())
    return ClipTransform(ops, mean=mean, std=std)


def build_test_transform(
    size: int = 224,
    *,
    resize: int | tuple[int, int] | str | None = "auto",
    crops: int = 1,
    full_res: bool = False,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> ClipTransform:
    """Test transform: resize then 1 (centre), 3 (along the long side), 5 or 10 crops.

    ``full_res=True`` is TSM's full-resolution test: the crop side equals the resized short side (256),
    so a 256-short-side frame gives one 256x256 centre crop or three 256x256 crops.
    """
    ops = _resize_op(size, resize)
    crop_size: int | tuple[int, int] = size
    if full_res:
        target = ops[0].size if ops else None
        if not isinstance(target, int):
            raise ValueError("full_res needs a short-side resize (an int or 'auto')")
        crop_size = target
    if crops == 1:
        ops.append(CenterCrop(crop_size))
    elif crops == 3:
        ops.append(ThreeCrop(crop_size))
    elif crops in (5, 10):
        ops.append(TenCrop(crop_size, flip=crops == 10))
    else:
        raise ValueError(f"crops must be 1, 3, 5 or 10, got {crops}")
    return ClipTransform(ops, mean=mean, std=std)
