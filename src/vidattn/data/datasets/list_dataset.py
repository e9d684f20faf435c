"""mmaction2-compatible list files.

- Videos: one ``path label`` per line (``path`` relative to ``data_prefix``), e.g.
  ``some/video.mp4 3``.
- Frames: one ``dir num_frames label`` per line, frames ``img_{:05d}.jpg`` from 1 by default.
- Offset frame lists (mmaction2 ``with_offset=True``): ``dir offset total_frames label``; the clip is
  sampled from frames ``offset .. offset + total_frames - 1`` of the folder.
- Multi-label lists (mmaction2 ``multi_class=True``): ``path label1 label2 ...``; the label is a multi-hot
  float vector over the classes (trained with a binary cross-entropy).

Without ``multi_class``, several labels on a line are one label per head (e.g. verb, noun), so every line
needs the same number; a 4-column frame list read without ``with_offset`` logs a warning saying so.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from vidattn.data.datasets.base import ClipDataset, VideoRecord, read_lines

__all__ = ["ListDataset", "parse_list_file"]

logger = logging.getLogger(__name__)


def parse_list_file(
    list_file: str | os.PathLike, data_prefix: str | os.PathLike, mode: str, *, multi_class: bool = False,
    with_offset: bool = False,
) -> list[VideoRecord]:
    """Records of an mmaction2 list file; a malformed line is a one-line error naming file and line."""
    if mode not in ("video", "frames"):
        raise ValueError(f"mode must be 'video' or 'frames', got {mode!r}")
    if with_offset and mode != "frames":
        raise ValueError("with_offset applies to frame lists (mode: frames) only")
    records = []
    widths: list[int] = []  # field counts per line: one label per head, the same number on every line
    need = 2 if mode == "video" else (4 if with_offset else 3)
    for lineno, line in enumerate(read_lines(list_file, "list file"), 1):
        parts = line.split()
        where = f"{list_file}:{lineno}"
        try:
            if len(parts) < need:
                raise ValueError(f"expected {need} fields")
            numbers = [int(p) for p in parts[1:]]
        except ValueError as e:
            raise ValueError(f"{where}: cannot parse {line!r} ({e})") from None
        if not multi_class:
            if widths and len(parts) != widths[0]:
                raise ValueError(f"{where}: {len(parts) - need + 1} labels where line 1 has "
                                 f"{widths[0] - need + 1}; a multi-label list needs data.options.multi_class: true")
            if mode == "frames" and len(parts) == 4 and not with_offset and not widths:
                logger.warning("%s: 4 fields, read as 'dir num_frames label1 label2' (two heads); an offset "
                               "frame list (dir offset total label) needs data.options.with_offset: true", where)
            widths.append(len(parts))
        rel = parts[0]
        start, stop, num_frames = 0, None, None
        if mode == "frames":
            if with_offset:
                offset, total = numbers.pop(0), numbers.pop(0)
                start, stop, num_frames = offset, offset + total, offset + total
            else:
                num_frames = numbers.pop(0)
        label: int | tuple[int, ...] = tuple(numbers) if multi_class or len(numbers) > 1 else numbers[0]
        video_id = os.path.splitext(rel)[0] if mode == "video" else rel
        if with_offset:
            video_id = f"{rel}/{start}-{stop}"
        records.append(VideoRecord(os.path.join(data_prefix, rel), label, video_id, start=start, stop=stop,
                                   num_frames=num_frames, meta={"source": where}))
    return records


def _top_label(records: list[VideoRecord]) -> int:
    return max((max(r.label, default=-1) if isinstance(r.label, tuple) else r.label for r in records), default=-1)


class ListDataset(ClipDataset):
    """Dataset from an mmaction2 list file.

    Args:
        root: data prefix the paths are relative to.
        split: picks ``{root}/{split}.txt`` when ``list_file`` is not given; ``"train"`` means training
            sampling/augmentation.
        list_file: explicit list file.
        mode: ``"video"`` (``path label``) or ``"frames"`` (``dir num_frames label``).
        classes: class names; default ``["0", "1", ...]`` up to the largest label of every split list in
            ``root`` (``train.txt``, ``val.txt``, ``test.txt``), so all splits agree on the class count.
        num_classes: at least this many classes (e.g. ``data.num_classes``).
        multi_class: mmaction2's multi-label lists (several labels per line, a multi-hot target).
        with_offset: mmaction2's offset frame lists (``dir offset total_frames label``).
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
        num_classes: int | None = None,
        multi_class: bool = False,
        with_offset: bool = False,
        frame_template: str = "img_{:05d}.jpg",
        **kw: Any,
    ) -> None:
        list_file = list_file or os.path.join(root, f"{split}.txt")
        options = {"multi_class": multi_class, "with_offset": with_offset}
        records = parse_list_file(list_file, root, mode, **options)
        if classes is None:
            top = _top_label(records)
            for other in ("train", "val", "test"):  # the union of the splits: one class count for all
                path = os.path.join(root, f"{other}.txt")
                if os.path.isfile(path) and os.path.abspath(path) != os.path.abspath(list_file):
                    try:
                        top = max(top, _top_label(parse_list_file(path, root, mode, **options)))
                    except ValueError:
                        pass  # another format or a broken sibling: it reports itself when it is read
            classes = [str(i) for i in range(max(top + 1, num_classes or 0))]
        kw.setdefault("train", split == "train")
        self._multi_class = multi_class
        super().__init__(records, classes, frame_template=frame_template, **kw)
        self.split = split
        self.root = str(root)
