"""Sampling indices against the TSM / UCF-101 paper conventions."""

from __future__ import annotations

import numpy as np
import pytest

from vidattn.data.sampling import (
    build_sampler,
    consecutive_test_indices,
    consecutive_train_indices,
    dense_test_indices,
    dense_train_indices,
    tsn_test_indices,
    tsn_train_indices,
)


def test_tsn_train_one_frame_per_segment():
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(200):
        idx = tsn_train_indices(100, 8, rng)  # segments of 12 frames
        assert idx.shape == (8,)
        assert np.all(idx // 12 == np.arange(8))
        seen.update(idx[:1].tolist())
    assert seen == set(range(12))  # every offset of the first segment is reachable


def test_tsn_test_centres_and_twice():
    np.testing.assert_array_equal(tsn_test_indices(80, 8)[0], [5, 15, 25, 35, 45, 55, 65, 75])
    two = tsn_test_indices(30, 4, num_clips=2)  # tick 7.5
    np.testing.assert_array_equal(two, [[3, 11, 18, 26], [0, 7, 15, 22]])


def test_short_videos_are_deterministic_and_ordered():
    rng = np.random.default_rng(0)
    a, b = tsn_train_indices(5, 8, rng), tsn_train_indices(5, 8, rng)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, [0, 0, 1, 1, 2, 3, 3, 4])
    np.testing.assert_array_equal(tsn_test_indices(5, 8)[0], [0, 0, 1, 2, 2, 3, 4, 4])  # centres
    np.testing.assert_array_equal(dense_train_indices(10, 4, 4, rng), [0, 4, 8, 2])  # loops
    np.testing.assert_array_equal(consecutive_train_indices(3, 5, rng), [0, 1, 2, 0, 1])
    np.testing.assert_array_equal(tsn_train_indices(1, 8, rng), np.zeros(8))


def test_dense_stride_window_and_test_clips():
    rng = np.random.default_rng(1)
    starts = set()
    for _ in range(300):
        idx = dense_train_indices(100, 8, 8, rng)
        assert np.all(np.diff(idx) == 8)
        starts.add(int(idx[0]))
    assert min(starts) == 0 and max(starts) == 100 - 64 - 1  # TSM: start in [0, F - 64)
    clips = dense_test_indices(200, 8, 8, num_clips=10)
    assert clips.shape == (10, 8)
    np.testing.assert_array_equal(clips[:, 0], np.linspace(0, 136, 10).astype(int))
    # one test clip: the centre window (of 300 frames, 8 x 8: frames 118 ... 174), not the video's start
    np.testing.assert_array_equal(dense_test_indices(300, 8, 8, num_clips=1), [np.arange(118, 175, 8)])


def test_ucf101_consecutive_16_with_jitter():
    rng = np.random.default_rng(2)
    starts = {int(consecutive_train_indices(40, 16, rng)[0]) for _ in range(500)}
    assert starts == set(range(25))
    np.testing.assert_array_equal(consecutive_test_indices(40, 16)[0], np.arange(12, 28))
    assert consecutive_test_indices(40, 16, num_clips=3).shape == (3, 16)


def test_sampler_objects_from_config():
    rng = np.random.default_rng(3)
    assert build_sampler("tsn", 8)(64, rng).shape == (8,)
    assert build_sampler("tsn", 8, train=False, num_clips=2)(64, rng).shape == (2, 8)
    assert build_sampler("dense", 8, train=False, stride=8, num_clips=10)(64, rng).shape == (10, 8)
    assert build_sampler("consecutive", 16, train=False)(64, rng).shape == (1, 16)
    with pytest.raises(ValueError, match="unknown sampler"):
        build_sampler("random")
    with pytest.raises(ValueError, match="0 frames"):
        tsn_train_indices(0, 8, rng)
