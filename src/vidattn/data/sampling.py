"""Frame sampling: which 0-based frame indices of a video make a clip.

Every function returns ``np.int64`` indices: shape ``(T,)`` for one clip, ``(N, T)`` for N test clips.
Randomness comes only from the ``numpy.random.Generator`` passed in.

Conventions (TSN/TSM, Wang et al. 2016 / Lin et al. 2019, official TSM code; the UCF-101 paper):
- TSN train: the video is cut into T equal segments of ``F // T`` frames; one random frame per segment.
- TSN test: segment centres ``int(tick/2 + tick*i)``, ``tick = F/T``; the second "twice" clip takes segment
  starts ``int(tick*i)``.
- Dense (3D models): ``T`` frames ``stride`` apart from a random start inside the video; at test the
  centre window, or ``N`` windows with evenly spaced starts (TSM: 10 windows, 64-frame span).
- Consecutive (UCF-101 3D-CNN paper): ``T`` consecutive frames from a random start (temporal jitter).

Short videos, always deterministic:
- TSN (``F < T``): frames are repeated in order: training takes ``floor(i*F/T)`` (the official code uses
  all zeros, which discards the order), testing keeps the centre formula (which repeats frames in order).
- Dense and consecutive (``F`` smaller than the window): the start is 0 and indices wrap around
  (``% F``), i.e. the video loops, as in TSM's and mmaction2's dense samplers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

__all__ = [
    "tsn_train_indices",
    "tsn_test_indices",
    "dense_train_indices",
    "dense_test_indices",
    "consecutive_train_indices",
    "consecutive_test_indices",
    "ClipSampler",
    "build_sampler",
]


def _check(num_frames: int, length: int) -> None:
    if num_frames <= 0:
        raise ValueError(f"cannot sample from a video with {num_frames} frames")
    if length <= 0:
        raise ValueError(f"clip length must be positive, got {length}")


def tsn_train_indices(num_frames: int, num_segments: int, rng: np.random.Generator) -> np.ndarray:
    """TSN training: one uniformly random frame in each of ``num_segments`` equal segments."""
    _check(num_frames, num_segments)
    duration = num_frames // num_segments
    if duration == 0:
        return (np.arange(num_segments) * num_frames) // num_segments
    return np.arange(num_segments) * duration + rng.integers(0, duration, size=num_segments)


def tsn_test_indices(num_frames: int, num_segments: int, num_clips: int = 1) -> np.ndarray:
    """TSN testing: segment centres; with ``num_clips=2`` the second clip is at segment starts (TSM
    "twice sample"). In general clip ``j`` sits at fraction ``(0.5 + j/num_clips) % 1`` of each segment.

    Returns ``(num_clips, num_segments)``.
    """
    _check(num_frames, num_segments)
    tick = num_frames / num_segments
    clips = []
    for j in range(num_clips):
        frac = (0.5 + j / num_clips) % 1.0
        clips.append((tick * frac + tick * np.arange(num_segments)).astype(np.int64))
    return np.minimum(np.stack(clips), num_frames - 1)


def dense_train_indices(
    num_frames: int, clip_len: int, stride: int, rng: np.random.Generator
) -> np.ndarray:
    """Dense sampling: ``clip_len`` frames ``stride`` apart from a random start; loops if too short.

    As in TSM the window spans ``clip_len * stride`` frames and the start is drawn from
    ``[0, F - span)`` (start 0 when ``F <= span``).
    """
    _check(num_frames, clip_len)
    room = num_frames - clip_len * stride
    start = int(rng.integers(0, room)) if room > 0 else 0
    return (start + np.arange(clip_len) * stride) % num_frames


def dense_test_indices(num_frames: int, clip_len: int, stride: int, num_clips: int = 10) -> np.ndarray:
    """Dense test: the centre window for ``num_clips=1``, else ``num_clips`` windows with starts evenly
    spaced in ``[0, F - clip_len*stride]`` (TSM: 10)."""
    _check(num_frames, clip_len)
    room = max(num_frames - clip_len * stride, 0)
    starts = np.array([room // 2]) if num_clips == 1 else np.linspace(0, room, num=num_clips).astype(np.int64)
    return (starts[:, None] + np.arange(clip_len)[None] * stride) % num_frames


def consecutive_train_indices(num_frames: int, clip_len: int, rng: np.random.Generator) -> np.ndarray:
    """UCF-101 paper: ``clip_len`` (16) consecutive frames, start uniform in ``[0, F - clip_len]``."""
    _check(num_frames, clip_len)
    start = int(rng.integers(0, num_frames - clip_len + 1)) if num_frames > clip_len else 0
    return (start + np.arange(clip_len)) % num_frames


def consecutive_test_indices(num_frames: int, clip_len: int, num_clips: int = 1) -> np.ndarray:
    """Consecutive clips for testing: the centre clip for ``num_clips=1``, else evenly spaced clips."""
    _check(num_frames, clip_len)
    if num_clips == 1:
        starts = np.array([max((num_frames - clip_len) // 2, 0)])
    else:
        starts = np.linspace(0, max(num_frames - clip_len, 0), num=num_clips).astype(np.int64)
    return (starts[:, None] + np.arange(clip_len)[None]) % num_frames


@dataclass(frozen=True)
class ClipSampler:
    """A sampling policy bound to its parameters: ``sampler(num_frames, rng)`` -> indices.

    ``kind`` is ``"tsn"``, ``"dense"`` or ``"consecutive"``; ``train`` picks the random training variant
    (one clip, shape ``(T,)``) or the deterministic test variant (shape ``(num_clips, T)``).
    """

    kind: str = "tsn"
    num_frames: int = 8
    train: bool = True
    stride: int = 8
    num_clips: int = 1

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise ValueError(f"unknown sampler kind {self.kind!r}; choose one of {sorted(_KINDS)}")

    def __call__(self, num_frames: int, rng: np.random.Generator) -> np.ndarray:
        return _KINDS[self.kind](self, num_frames, rng)


def _tsn(s: ClipSampler, f: int, rng: np.random.Generator) -> np.ndarray:
    if s.train:
        return tsn_train_indices(f, s.num_frames, rng)
    return tsn_test_indices(f, s.num_frames, s.num_clips)


def _dense(s: ClipSampler, f: int, rng: np.random.Generator) -> np.ndarray:
    if s.train:
        return dense_train_indices(f, s.num_frames, s.stride, rng)
    return dense_test_indices(f, s.num_frames, s.stride, s.num_clips)


def _consecutive(s: ClipSampler, f: int, rng: np.random.Generator) -> np.ndarray:
    if s.train:
        return consecutive_train_indices(f, s.num_frames, rng)
    return consecutive_test_indices(f, s.num_frames, s.num_clips)


_KINDS: dict[str, Callable[[ClipSampler, int, np.random.Generator], np.ndarray]] = {
    "tsn": _tsn,
    "dense": _dense,
    "consecutive": _consecutive,
}


def build_sampler(
    kind: str = "tsn", num_frames: int = 8, train: bool = True, stride: int = 8, num_clips: int = 1
) -> ClipSampler:
    """Sampler from config values, e.g. ``build_sampler("tsn", 8, train=False, num_clips=2)``.

    ``num_frames`` is the clip length T (segments for TSN). TSM's dense recipe is ``stride = 64 // T``
    with ``num_clips=10`` at test; the UCF-101 paper is ``("consecutive", 16)``.
    """
    return ClipSampler(kind=kind, num_frames=num_frames, train=train, stride=stride, num_clips=num_clips)
