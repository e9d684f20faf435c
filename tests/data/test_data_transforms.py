"""Clip transforms: one geometry per clip, TSM's crop grid, test views, flips, normalisation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vidattn.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    MultiScaleCrop,
    build_test_transform,
    build_train_transform,
    flip_label_map,
)


def ramp_clip(t=4, h=60, w=80):
    """Frame t, pixel (y, x) has R = x, G = y, B = 10 * t: crops and flips are readable from values."""
    y, x = np.mgrid[0:h, 0:w]
    frames = np.zeros((t, h, w, 3), np.uint8)
    frames[..., 0], frames[..., 1] = x, y
    frames[..., 2] = (10 * np.arange(t))[:, None, None]
    return frames


def unnormalise(clip):
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1, 1)
    return clip * std * 255 + mean * 255


def test_output_layout_normalisation_and_one_geometry_per_clip():
    frames = ramp_clip()
    tf = build_train_transform(32, resize="none", flip=False)
    clip, flipped = tf(frames, np.random.default_rng(0))
    assert clip.shape == (3, 4, 32, 32) and clip.dtype == torch.float32 and not flipped
    raw = unnormalise(clip)
    # The same crop in every frame: R and G planes identical over time, B carries the frame number.
    torch.testing.assert_close(raw[0, 0], raw[0, 3], atol=1e-3, rtol=0)
    torch.testing.assert_close(raw[2, :, 5, 5], torch.tensor([0.0, 10, 20, 30]), atol=1e-3, rtol=0)
    # torch (T, 3, H, W) input gives the same result.
    again, _ = tf(torch.from_numpy(frames).permute(0, 3, 1, 2), np.random.default_rng(0))
    torch.testing.assert_close(clip, again)


def test_multiscale_crop_grid_matches_tsm():
    op = MultiScaleCrop(224)
    rng = np.random.default_rng(0)
    sizes, offsets = set(), set()
    for _ in range(3000):
        top, left, ch, cw = op.box(256, 340, rng)
        sizes.add((cw, ch))
        offsets.add((left, top, cw, ch))
    # base 256 x (1, .875, .75, .66) = 256, 224, 192, 168; index gap <= 1 -> 10 (w, h) pairs.
    assert sizes == {(256, 256), (224, 256), (256, 224), (224, 224), (192, 224), (224, 192), (192, 192),
                     (168, 192), (192, 168), (168, 168)}
    per_size = {}
    for left, top, cw, ch in offsets:
        per_size.setdefault((cw, ch), set()).add((left, top))
    assert all(len(v) == 13 for k, v in per_size.items() if k[0] < 256 and k[1] < 256)
    ws, hs = (340 - 224) // 4, (256 - 224) // 4
    assert {(0, 0), (4 * ws, 4 * hs), (2 * ws, 2 * hs), (ws, 3 * hs)} <= per_size[(224, 224)]
    # Snap: 0.875 * 250 = 218 is within 3 px of 220 -> 220.
    assert {s for _ in range(200) for s in MultiScaleCrop(220).box(250, 300, rng)[2:]} >= {220}


def test_ucf101_fixed_resize_and_random_crop():
    tf = build_train_transform(112, crop="random", resize=(128, 171), flip=False)
    clip, _ = tf(ramp_clip(16, 240, 320), np.random.default_rng(1))
    assert clip.shape == (3, 16, 112, 112)
    small = ramp_clip(2, 128, 171)
    tops = {int(unnormalise(tf(small, np.random.default_rng(s))[0])[1, 0, 0, 0]) for s in range(40)}
    assert len(tops) > 5 and max(tops) <= 128 - 112


def test_test_views_centre_three_ten_full_res():
    frames = ramp_clip(2, 240, 320)
    centre, _ = build_test_transform(224)(frames)  # short side 256 -> 256x341, centre 224
    assert centre.shape == (3, 2, 224, 224)
    three, _ = build_test_transform(224, crops=3)(frames)
    assert three.shape == (3, 3, 2, 224, 224)
    r = unnormalise(three[:, 0])[:, 0, 100, 0]  # R = x position: left < centre < right
    assert r[0] < r[2] < r[1]
    ten, _ = build_test_transform(224, crops=10)(frames)
    assert ten.shape == (10, 3, 2, 224, 224)
    torch.testing.assert_close(ten[1], ten[0].flip(-1))
    full, _ = build_test_transform(224, full_res=True)(frames)
    assert full.shape == (3, 2, 256, 256)
    full3, _ = build_test_transform(224, full_res=True, crops=3)(frames)
    assert full3.shape == (3, 3, 2, 256, 256)


def test_flip_is_reported_and_can_be_disabled():
    frames = ramp_clip()
    tf = build_train_transform(32, resize="none", crop="random")
    results = [tf(frames, np.random.default_rng(s)) for s in range(40)]
    flipped = [clip for clip, f in results if f]
    assert 5 < len(flipped) < 35
    raw = unnormalise(flipped[0])
    assert raw[0, 0, 0, 0] > raw[0, 0, 0, -1]  # R = x decreases left to right once flipped
    off = build_train_transform(32, resize="none", crop="random", flip=False)
    assert not any(off(frames, np.random.default_rng(s))[1] for s in range(40))
    assert flip_label_map([(86, 87), (93, 94)]) == {86: 87, 87: 86, 93: 94, 94: 93}


def test_bad_inputs():
    with pytest.raises(ValueError, match="uint8"):
        build_test_transform(32)(np.zeros((2, 40, 40, 3), np.float32))
    with pytest.raises(ValueError, match="crops must be"):
        build_test_transform(32, crops=4)
