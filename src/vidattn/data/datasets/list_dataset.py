"""mmaction2-compatible list files.

- Videos: one ``path label`` per line (``path`` relative to ``data_prefix``), e.g.
  ``some/video.mp4 3``.
- Frames: one ``dir num_frames label`` per line, frames ``img_{:05d}.jpg`` from 1 by default.

Several labels on a line (mmaction2's multi-label lists) are returned as a label tuple.
"""

from __future__ import annotations

import os
from typing import Any

from vidattn.data.datasets.base import ClipDataset, VideoRecord, read_lines

__all__ = ["ListDataset", "parse_list_file"]


def parse_list_file(
    list_file: str | os.PathLike, data_prefix: str | os.PathLike, mode: str
) -> list[VideoRecord]:
    """Records of an mmaction2 list file; a malformed line is a one-line error naming file and line."""
    if mode not in ("video", "frames"):
        raise ValueError(f"mode must be 'video' or 'frames', got {mode!r}")
    records = []
    need = 2 if mode == "video" else 3
    for lineno, line in enumerate(read_lines(list_file, "list file"), 1):
        parts = line.split()
        try:
            if len(parts) < need:
                raise ValueError(f"expected {need} fields")
            numbers = [int(p) for p in parts[1:]]
        except ValueError as e:
            raise ValueError(f"{list_file}:{lineno}: cannot parse {line!r} ({e})") from None
        rel = parts[0]
        num_frames = numbers.pop(0) if mode == "frames" else None
        label: int | tuple[int, ...] = numbers[0] if len(numbers) == 1 else tuple(numbers)
        video_id = os.path.splitext(rel)[0] if mode == "video" else rel
        records.append(VideoRecord(os.path.join(data_prefix, rel), label, video_id, num_frames=num_frames,
                                   meta={"source": f"{list_file}:{lineno}"}))
    return records


class ListDataset(ClipDataset):
    """Dataset from an mmaction2 list file.

    Args:
        root: data prefix the paths are relative to.
        split: picks ``{root}/{split}.txt`` when ``list_file`` is not given; ``"train"`` means training
            sampling/augmentation.
        list_file: explicit list file.
        mode: ``"video"`` (``path label``) or ``"frames"`` (``dir num_frames label``).
        classes: class names; default ``["0", "1", ...]`` up to the largest label.
        **kw: :class:`ClipDataset` options (sampler, transform, on_error, ...).
    """

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "train",
        *,
        list_file: str | os.PathLike | None = None,
        mode: str = "video",
        classes: list[str] | None = None,
        frame_template: str = "img_{:05d}.jpg",
        **kw: Any,
    ) -> None:
        list_file = list_file or os.path.join(root, f"{split}.txt")
        records = parse_list_file(list_file, root, mode)
        if classes is None:
            top = max((max(r.label) if isinstance(r.label, tuple) else r.label for r in records), default=-1)
            classes = [str(i) for i in range(top + 1)]
        kw.setdefault("train", split == "train")
        super().__init__(records, classes, frame_template=frame_template, **kw)
        self.split = split
        self.root = str(root)
