"""Something-Something V1 (Goyal et al., 2017) in its published layout.

::

    root/something-something-v1-labels.csv        one class name per line (index = line, 174 classes)
    root/something-something-v1-train.csv          "100218;Something falling like a feather or paper"
    root/something-something-v1-validation.csv     same syntax
    root/something-something-v1-test.csv           "100001" (ids only)
    root/20bn-something-something-v1/100218/00001.jpg ...   frames %05d.jpg from 1

TSM's recipe trains without flips, so the default training transform does not flip; if flips are enabled,
the left/right classes (V1: 2<->4, 30<->41, 52<->66) swap labels.
"""

from __future__ import annotations

import os
from typing import Any

from vidattn.data.datasets.base import ClipDataset, VideoRecord, read_lines
from vidattn.data.transforms import (
    SSV1_FLIP_PAIRS,
    build_test_transform,
    build_train_transform,
    flip_label_map,
)

__all__ = ["SomethingSomethingV1"]

_SPLITS = {"train": "train", "val": "validation", "validation": "validation", "test": "test"}


def something_defaults(kw: dict[str, Any], train: bool, pairs: tuple[tuple[int, int], ...]) -> None:
    """TSM's Something-Something defaults: no flips (labels would be remapped if enabled)."""
    kw.setdefault("flip_label_map", flip_label_map(pairs))
    size = kw.get("size", 224)
    default = build_train_transform(size, flip=False) if train else build_test_transform(size)
    kw.setdefault("transform", default)


class SomethingSomethingV1(ClipDataset):
    """Something-Something V1 split ``"train"``, ``"val"`` or ``"test"`` (test labels are -1)."""

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "train",
        *,
        frames_dir: str | os.PathLike | None = None,
        **kw: Any,
    ) -> None:
        if split not in _SPLITS:
            raise ValueError(f"Something-Something V1 splits are train/val/test, got {split!r}")
        frames_dir = frames_dir or os.path.join(root, "20bn-something-something-v1")
        labels_file = os.path.join(root, "something-something-v1-labels.csv")
        classes = read_lines(labels_file, "class list")
        index = {c: i for i, c in enumerate(classes)}
        split_file = os.path.join(root, f"something-something-v1-{_SPLITS[split]}.csv")
        records = []
        for lineno, line in enumerate(read_lines(split_file, f"{split} list"), 1):
            vid, _, name = line.partition(";")
            if split == "test":
                label = -1
            elif name not in index:
                raise ValueError(f"{split_file}:{lineno}: label {name!r} is not in {labels_file}")
            else:
                label = index[name]
            records.append(VideoRecord(os.path.join(frames_dir, vid), label, vid))
        train = kw.setdefault("train", split == "train")
        something_defaults(kw, train, SSV1_FLIP_PAIRS)
        kw.setdefault("frame_template", "{:05d}.jpg")
        super().__init__(records, classes, **kw)
        self.split = split
