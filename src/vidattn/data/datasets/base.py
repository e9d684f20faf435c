"""The map-style clip dataset every published format reduces to: records -> reader -> sampler -> transform.

A dataset file (``ucf101.py``, ``something_something.py``, ...) only parses its annotation files into
:class:`VideoRecord` s; loading, sampling, augmentation, label flipping and the ``on_error`` policy live here.

``__getitem__`` returns ``{"clip", "label", "index", "video_id"}``:
``clip`` float ``(3, T, H, W)`` or ``(V, 3, T, H, W)`` for several test views (clips x crops, clip-major);
``label`` an ``int`` or a ``LongTensor (heads,)`` (EPIC verb, noun; -1 when unlabelled).
With ``on_error="skip"`` a sample whose file cannot be read returns ``None`` (logged as a warning with
the file and cause); :func:`vidattn.data.collate_clips` drops it and counts it in ``num_skipped``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from vidattn.data.clips import read_clips
from vidattn.data.sampling import build_sampler
from vidattn.data.transforms import build_test_transform, build_train_transform
from vidattn.data.video import VideoError, open_video

log = logging.getLogger(__name__)

__all__ = ["VideoRecord", "ClipDataset", "read_lines"]

Label = int | tuple[int, ...]


@dataclass
class VideoRecord:
    """One sample: a file or frame folder, its label and the frame range to sample from.

    ``start``/``stop`` are 0-based reader indices (``stop`` exclusive, None = to the end). For videos whose
    segments are given in seconds (EPIC in video mode), ``start_sec``/``stop_sec`` are converted with the
    reader's ``fps`` instead.
    """

    path: str
    label: Label
    video_id: str
    start: int = 0
    stop: int | None = None
    start_sec: float | None = None
    stop_sec: float | None = None
    num_frames: int | None = None
    meta: dict[str, Any] = field(default_factory=dict)


def read_lines(path: str | os.PathLike, what: str) -> list[str]:
    """Non-empty stripped lines of an annotation file; a missing file is a one-line error."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: {what} not found")
    with open(path, encoding="utf-8") as f:
        return [line.strip() for line in f if line.strip()]


class ClipDataset(Dataset):
    """Map-style dataset over :class:`VideoRecord` s.

    Args:
        records: the samples.
        classes: class names (EPIC: ``{"verb": [...], "noun": [...]}``).
        train: picks the default sampler/transform (random TSN + TSM multi-scale crop + flip vs. segment
            centres + centre crop) when ``sampler``/``transform`` are not given.
        sampler: ``sampler(num_frames, rng) -> indices`` (see :mod:`vidattn.data.sampling`).
        transform: ``transform(frames, rng) -> (clip, flipped)`` (see :mod:`vidattn.data.transforms`).
        num_frames, size: used only for the defaults (T segments, crop side).
        backend: video backend for files (``"pyav"``, ``"decord"``, ``"torchcodec"``).
        frame_template, start_index: frame-folder naming.
        flip_label_map: labels to swap when a clip is flipped (left/right classes).
        on_error: ``"raise"`` or ``"skip"`` (return None for unreadable samples).
        seed: None follows torch's RNG (so ``torch.manual_seed`` and the DataLoader's per-worker seeds
            decide); an int makes every sample depend only on ``(seed, epoch, index)``, whichever worker
            loads it (call :meth:`set_epoch` each epoch).
    """

    def __init__(
        self,
        records: list[VideoRecord],
        classes: list[str] | dict[str, list[str]],
        *,
        train: bool = False,
        sampler: Callable[[int, np.random.Generator], np.ndarray] | None = None,
        transform: Callable[..., tuple[torch.Tensor, bool]] | None = None,
        num_frames: int = 8,
        size: int = 224,
        backend: str = "pyav",
        frame_template: str = "{:05d}.jpg",
        start_index: int = 1,
        flip_label_map: dict[int, int] | None = None,
        on_error: str = "raise",
        seed: int | None = None,
        reader_kw: dict[str, Any] | None = None,
    ) -> None:
        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        self.records = records
        self.classes = classes
        self.train = train
        self.sampler = sampler or build_sampler("tsn", num_frames, train=train)
        self.transform = transform or (build_train_transform(size) if train else build_test_transform(size))
        self.backend = backend
        self.frame_template = frame_template
        self.start_index = start_index
        self.flip_label_map = dict(flip_label_map or {})
        self.on_error = on_error
        self.seed = seed
        self.epoch = 0
        self.reader_kw = dict(reader_kw or {})
        #: mmaction2's ``multi_class``: a record's label is the set of its classes (a multi-hot target)
        self.multi_class = bool(getattr(self, "_multi_class", False))
        if not isinstance(classes, dict):
            self.check_labels()

    def check_labels(self, num_classes: int | Sequence[int] | None = None, what: str = "") -> None:
        """Every label in ``[0, num_classes)`` (per head for multi-head datasets; -1 = unlabelled), else a
        one-line ``ValueError`` naming the annotation file and line (``record.meta["source"]``).

        ``num_classes`` defaults to the dataset's own class list; ``what`` names where the count comes from
        (``data.num_classes``)."""
        counts = self.num_classes if num_classes is None else num_classes
        counts = tuple(counts) if isinstance(counts, Sequence) else (counts,)
        for record in self.records:
            if self.multi_class:
                labels = list(record.label) if isinstance(record.label, Sequence) else [record.label]
                heads = [counts[0]] * len(labels)
            elif isinstance(record.label, Sequence):
                labels, heads = list(record.label), list(counts) if len(counts) > 1 else [counts[0]] * len(
                    record.label)
            else:
                labels, heads = [record.label], [counts[0]]
            for label, n in zip(labels, heads):
                if label != -1 and not 0 <= label < n:
                    where = record.meta.get("source") or record.path
                    count = f"{what}={n}" if what else f"{n} classes"
                    raise ValueError(f"{where}: label {label} is outside [0, {n}) ({count}); fix the annotation "
                                     "or raise data.num_classes")

    @property
    def num_classes(self) -> int | tuple[int, ...]:
        if isinstance(self.classes, dict):
            return tuple(len(v) for v in self.classes.values())
        return len(self.classes)

    def __len__(self) -> int:
        return len(self.records)

    def set_epoch(self, epoch: int) -> None:
        """With an int ``seed``, samples of epoch ``e`` depend on ``(seed, e, index)`` only."""
        self.epoch = epoch

    def _rng(self, index: int) -> np.random.Generator:
        if self.seed is None:
            return np.random.default_rng(int(torch.randint(0, 2**62, ()).item()))
        return np.random.default_rng([self.seed, self.epoch, index])

    def open(self, record: VideoRecord) -> Any:
        """Reader for a record (a video file or a frame folder)."""
        if os.path.isdir(record.path):
            return open_video(record.path, frame_template=self.frame_template, start_index=self.start_index,
                              num_frames=record.num_frames, **self.reader_kw)
        return open_video(record.path, backend=self.backend, **self.reader_kw)

    def __getitem__(self, index: int) -> dict[str, Any] | None:
        record = self.records[index]
        try:
            return self._load(index, record, self._rng(index))
        except VideoError as e:
            if self.on_error == "raise":
                raise
            log.warning("skipping sample %d (%s): %s", index, record.video_id, e)
            return None

    def _frame_range(self, record: VideoRecord, reader: Any) -> tuple[int, int]:
        start, stop = record.start, record.stop
        if record.start_sec is not None:
            start = int(round(record.start_sec * reader.fps))
        if record.stop_sec is not None:
            stop = int(round(record.stop_sec * reader.fps))
        stop = reader.num_frames if stop is None else min(stop, reader.num_frames)
        if start >= stop:
            raise VideoError(record.path, f"segment [{start}, {stop}) is empty; the video has "
                                          f"{reader.num_frames} frames")
        return start, stop

    def _load(self, index: int, record: VideoRecord, rng: np.random.Generator) -> dict[str, Any]:
        with self.open(record) as reader:
            clips = read_clips(reader, self.sampler, self.transform, rng, *self._frame_range(record, reader))
        return {"clip": clips.clip, "label": self._label(record.label, clips.flipped), "index": index,
                "video_id": record.video_id}

    def _label(self, label: Label, flipped: bool) -> int | torch.Tensor:
        if self.multi_class:  # multi-hot over the classes: every sample's target has the same length
            target = torch.zeros(len(self.classes), dtype=torch.float32)
            target[list(label) if isinstance(label, Sequence) else [label]] = 1.0
            return target
        if isinstance(label, Sequence):
            return torch.tensor(list(label), dtype=torch.long)
        return self.flip_label_map.get(label, label) if flipped else label

