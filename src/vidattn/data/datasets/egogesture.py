"""EgoGesture (Zhang et al., 2018) RGB frames with the official subject split.

::

    root/images/Subject03/Scene1/Color/rgb1/000001.jpg ...       frames %06d.jpg from 1
    root/labels-final-revised1/subject03/Scene1/Group1.csv       rows "class,start,end"

Each CSV row is one gesture segment of the frame folder ``rgbZ`` matching ``GroupZ.csv``: class 1-83
(returned 0-based), start/end 1-based inclusive frame numbers.
"""

from __future__ import annotations

import os
import re
from typing import Any

from vidattn.data.datasets.base import ClipDataset, VideoRecord, read_lines

__all__ = ["EgoGesture", "EGOGESTURE_SUBJECTS"]

EGOGESTURE_SUBJECTS = {
    "train": [3, 4, 5, 6, 8, 10, 15, 16, 17, 20, 21, 22, 23, 25, 26, 27, 30, 32, 36, 38, 39, 40, 42, 43, 44,
              45, 46, 48, 49, 50],
    "val": [1, 7, 12, 13, 24, 29, 33, 34, 35, 37],
    "test": [2, 9, 11, 14, 18, 19, 28, 31, 41, 47],
}
NUM_CLASSES = 83


class EgoGesture(ClipDataset):
    """EgoGesture split ``"train"``, ``"val"`` or ``"test"`` (by subject); subjects absent on disk are
    skipped (a warning-free partial copy is allowed), an unreadable CSV row is an error."""

    def __init__(self, root: str | os.PathLike, split: str = "train", **kw: Any) -> None:
        if split not in EGOGESTURE_SUBJECTS:
            raise ValueError(f"EgoGesture splits are train/val/test, got {split!r}")
        label_root = os.path.join(root, "labels-final-revised1")
        if not os.path.isdir(label_root):
            raise FileNotFoundError(f"{label_root}: EgoGesture label folder not found")
        records = []
        for subject in EGOGESTURE_SUBJECTS[split]:
            label_dir = os.path.join(label_root, f"subject{subject:02d}")
            if not os.path.isdir(label_dir):
                continue
            for scene in sorted(os.listdir(label_dir)):
                for csv_name in sorted(os.listdir(os.path.join(label_dir, scene))):
                    m = re.fullmatch(r"Group(\d+)\.csv", csv_name)
                    if not m:
                        continue
                    csv_path = os.path.join(label_dir, scene, csv_name)
                    folder = f"Subject{subject:02d}/{scene}/rgb{m.group(1)}"
                    frames = os.path.join(root, "images", f"Subject{subject:02d}", scene, "Color",
                                          f"rgb{m.group(1)}")
                    records += _segments(csv_path, frames, folder)
        kw.setdefault("train", split == "train")
        kw.setdefault("frame_template", "{:06d}.jpg")
        kw.setdefault("classes", [str(i) for i in range(1, NUM_CLASSES + 1)])
        classes = kw.pop("classes")
        super().__init__(records, classes, **kw)
        self.split = split


def _segments(csv_path: str, frames: str, prefix: str) -> list[VideoRecord]:
    out = []
    for lineno, line in enumerate(read_lines(csv_path, "label CSV"), 1):
        fields = [f.strip() for f in line.split(",")]
        if lineno == 1 and not fields[0].isdigit():
            continue  # header
        try:
            cls, start, end = (int(f) for f in fields[:3])
        except ValueError:
            raise ValueError(f"{csv_path}:{lineno}: expected 'class,start,end', got {line!r}") from None
        if not (1 <= cls <= NUM_CLASSES and 1 <= start <= end):
            raise ValueError(f"{csv_path}:{lineno}: invalid segment {line!r}")
        out.append(VideoRecord(frames, cls - 1, f"{prefix}/{start}-{end}", start=start - 1, stop=end))
    return out
