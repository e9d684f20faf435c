"""How a model sees a video at test time (:class:`InputSpec`), and the one function that turns a video into
those clips (:func:`read_clips`, used by the datasets' test loaders and by :func:`load_clips`).

An ``InputSpec`` is derived from the typed config (:meth:`InputSpec.from_config`: ``data.num_segments``,
``sampling``, ``stride``, ``crop_size``, ``scale_size``/``resize``, ``mean``/``std``; ``eval.clips``,
``crops``, ``full_res``) and nowhere else: ``vidattn test`` (the dataset's sampler and transform),
evaluation during training, ``vidattn predict``, ``vidattn visualize`` and ``vidattn.inference.load_predictor``
all take it from the run's ``config.yaml`` (``vidattn.inference.resolve_source``), so they sample the same
frames and crop the same pixels of a video.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from vidattn.config import Config
from vidattn.data.sampling import ClipSampler, build_sampler
from vidattn.data.transforms import IMAGENET_MEAN, IMAGENET_STD, ClipTransform, build_test_transform
from vidattn.data.video import open_video

__all__ = ["InputSpec", "Clips", "read_clips", "load_clips", "split_clips"]


@dataclass(frozen=True)
class InputSpec:
    """The test input of a model: which frames (``sampling``: ``"tsn"`` segment centres, ``"dense"``
    ``num_frames`` frames ``stride`` apart, ``"consecutive"``), the geometry (short side or ``(h, w)``
    ``resize``, then ``size`` crops) and normalisation, and the views: ``clips`` x ``crops`` (1, 3 or 10
    crops; ``full_res`` crops at the resized short side, TSM's full-resolution test)."""

    num_frames: int = 8
    sampling: str = "tsn"
    stride: int = 8
    size: int = 224
    resize: int | tuple[int, int] | str = 256
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    clips: int = 1
    crops: int = 1
    full_res: bool = False

    @classmethod
    def from_config(cls, cfg: Config, views: bool = True) -> InputSpec:
        """The spec of a recipe: its ``data`` section and, with ``views``, its ``eval`` views (else 1 clip,
        centre crop: what validation during training uses)."""
        d, e = cfg.data, cfg.eval
        return cls(num_frames=d.num_segments, sampling=d.sampling, stride=d.stride, size=d.crop_size,
                   resize=tuple(d.resize) if d.resize else d.scale_size,  # type: ignore[arg-type]
                   mean=tuple(d.mean), std=tuple(d.std),  # type: ignore[arg-type]
                   clips=e.clips if views else 1, crops=e.crops if views else 1, full_res=e.full_res and views)

    @property
    def views(self) -> int:
        """Views per video: clips x crops."""
        return self.clips * self.crops

    @property
    def view_size(self) -> int:
        """The side of one view: the resized short side with ``full_res``, else ``size``."""
        return int(self.resize) if self.full_res and isinstance(self.resize, int) else self.size

    def single_view(self) -> InputSpec:
        """The same frames and geometry, one clip, centre crop."""
        return replace(self, clips=1, crops=1, full_res=False)

    def sampler(self) -> ClipSampler:
        """The deterministic test sampler: ``(clips, num_frames)`` indices per video."""
        return build_sampler(self.sampling, self.num_frames, train=False, stride=self.stride, num_clips=self.clips)

    def transform(self) -> ClipTransform:
        """The test transform: resize, ``crops`` crops, normalise."""
        return build_test_transform(self.size, resize=self.resize, crops=self.crops, full_res=self.full_res,
                                    mean=self.mean, std=self.std)


@dataclass
class Clips:
    """The clips of one video: ``clip`` float ``(3, T, H, W)`` for one view, else ``(V, 3, T, H, W)``
    (clip-major: the crops of clip 0, then of clip 1, ...); ``frames`` uint8 ``(N*T, H0, W0, 3)`` as read;
    ``indices`` the frame indices in the video, ``(T,)`` for a training sampler, ``(N, T)`` for a test one."""

    clip: torch.Tensor
    frames: np.ndarray
    indices: np.ndarray
    flipped: bool = False


def split_clips(clip: torch.Tensor, num_clips: int) -> torch.Tensor:
    """``(V, 3, N*T, H, W)`` -> ``(N*V, 3, T, H, W)`` (clip-major); a single view stays ``(3, T, H, W)``."""
    if clip.ndim == 4:
        clip = clip.unsqueeze(0)
    v, c, nt, h, w = clip.shape
    t = nt // num_clips
    clip = clip.reshape(v, c, num_clips, t, h, w).permute(2, 0, 1, 3, 4, 5).reshape(num_clips * v, c, t, h, w)
    return clip[0] if clip.shape[0] == 1 else clip


def read_clips(reader: Any, sampler: Any, transform: Any, rng: np.random.Generator,  # noqa: ANN401
               start: int = 0, stop: int | None = None) -> Clips:
    """Sample frames ``[start, stop)`` of an open reader with ``sampler(num_frames, rng)``, read them, and
    ``transform(frames, rng)`` them; several test clips are split into views."""
    stop = reader.num_frames if stop is None else stop
    indices = np.asarray(sampler(stop - start, rng)) + start
    frames = reader.read(indices.reshape(-1))
    clip, flipped = transform(frames, rng)
    if indices.ndim == 2:
        clip = split_clips(clip, indices.shape[0])
    return Clips(clip, frames, indices, flipped)


def load_clips(path: str | os.PathLike, spec: InputSpec, *, frame_template: str | None = None,
               start_index: int = 1) -> Clips:
    """The test clips of a video file or frame folder (``spec``'s sampler and transform, as a test dataset
    builds them). Raises :class:`vidattn.data.VideoError` for unreadable files.

    A frame folder's files are named by ``frame_template`` (``str.format`` or printf style: mmaction2's
    ``img_{:05d}.jpg`` / ``img_%05d.jpg``; default ``{:05d}.jpg``) from ``start_index``."""
    kw: dict[str, Any] = {"start_index": start_index, **({"frame_template": frame_template} if frame_template else {})}
    with open_video(path, **kw) as reader:
        return read_clips(reader, spec.sampler(), spec.transform(), np.random.default_rng(0))
