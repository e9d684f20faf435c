"""UCF-101 (Soomro et al., 2012) in its published layout, with two protocols.

Layout (the official ``UCF101.rar`` and ``UCF101TrainTestSplits-RecognitionTask.zip`` unpacked in
``root``)::

    root/UCF-101/ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi      XviD AVI, 320x240, 25 fps
    root/ucfTrainTestlist/classInd.txt       "1 ApplyEyeMakeup"  (1-based)
    root/ucfTrainTestlist/trainlist01.txt    "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1"
    root/ucfTrainTestlist/testlist01.txt     "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi"  (label = folder)

Protocols:
- ``"official"``: folds 1-3, splits ``train``/``test``.
- ``"paper"``: the 3D-CNN + attention paper's (Shrestha et al., 2021) group-disjoint
  ``train``/``val``/``test`` split of all videos in proportions 8460/2156/2701 (see :func:`paper_split`).
"""

from __future__ import annotations

import os
import re
from typing import Any

import numpy as np

from vidattn.data.datasets.base import ClipDataset, VideoRecord, read_lines
from vidattn.data.sampling import build_sampler
from vidattn.data.transforms import build_test_transform, build_train_transform

__all__ = ["UCF101", "paper_split", "PAPER_SPLIT_SIZES"]

PAPER_SPLIT_SIZES = {"train": 8460, "val": 2156, "test": 2701}
_GROUP = re.compile(r"_g(\d+)_c\d+")


def paper_split(videos: list[str], seed: int = 0) -> dict[str, list[str]]:
    """Group-disjoint train/val/test split of ``Class/v_Class_gXX_cYY.avi`` paths, deterministic in ``seed``.

    A group is (class, ``gXX``); no group is in two parts. Targets: ``floor(N * 2156/13317)`` for val and
    ``floor(N * 2701/13317)`` for test (exactly 2156 and 2701 for the 13,320 videos), train the rest
    (8,463 for the full set; the paper's 8460 + 2156 + 2701 = 13,317 leaves three videos unaccounted).
    Groups are shuffled within each class and visited round-robin over the classes, so every class is
    represented in each part; a group joins test (then val) while it fits the remaining target, which
    meets the targets exactly whenever the group sizes allow.
    """
    rng = np.random.default_rng(seed)
    groups: dict[tuple[str, str], list[str]] = {}
    for v in sorted(videos):
        m = _GROUP.search(v)
        if not m:
            raise ValueError(f"{v}: not a UCF-101 file name (expected v_<Class>_gXX_cYY.avi)")
        groups.setdefault((v.split("/")[0], m.group(1)), []).append(v)
    by_class: dict[str, list[tuple[str, str]]] = {}
    for key in groups:
        by_class.setdefault(key[0], []).append(key)
    classes = sorted(by_class)
    for c in classes:
        by_class[c] = [by_class[c][i] for i in rng.permutation(len(by_class[c]))]
    order = [by_class[c][r] for r in range(max(len(g) for g in by_class.values()))
             for c in [classes[i] for i in rng.permutation(len(classes))] if r < len(by_class[c])]
    total = sum(PAPER_SPLIT_SIZES.values())
    n = len(videos)
    chosen: dict[str, list[tuple[str, str]]] = {"test": [], "val": []}
    remaining = list(order)
    for part in ("test", "val"):
        target, count = n * PAPER_SPLIT_SIZES[part] // total, 0
        rest = []
        for key in remaining:
            if count + len(groups[key]) <= target:
                chosen[part].append(key)
                count += len(groups[key])
            else:
                rest.append(key)
        remaining = rest
        _close_gap(chosen[part], remaining, groups, target - count)
    parts = {part: sorted(v for key in keys for v in groups[key]) for part, keys in chosen.items()}
    parts["train"] = sorted(v for key in remaining for v in groups[key])
    return parts


def _close_gap(inside: list, outside: list, groups: dict, gap: int) -> None:
    """Swap one chosen group for a larger unchosen one to fill a gap smaller than any group."""
    if gap <= 0:
        return
    for i, a in enumerate(inside):
        for j, b in enumerate(outside):
            if len(groups[b]) - len(groups[a]) == gap:
                inside[i], outside[j] = b, a
                return


class UCF101(ClipDataset):
    """UCF-101 split.

    Args:
        root: folder holding ``UCF-101/`` and ``ucfTrainTestlist/`` (or the videos and lists directly).
        split: ``"train"`` or ``"test"`` (official); ``"train"``, ``"val"``, ``"test"`` (paper).
        fold: official split 1, 2 or 3.
        protocol: ``"official"`` or ``"paper"``.
        split_seed: seed of the paper split.
        **kw: :class:`ClipDataset` options. The default sampler/transform follow the paper protocol for
            ``protocol="paper"`` (16 consecutive frames, 128x171 resize, 112 random/centre crop).
    """

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "train",
        *,
        fold: int = 1,
        protocol: str = "official",
        split_seed: int = 0,
        video_dir: str | os.PathLike | None = None,
        annotation_dir: str | os.PathLike | None = None,
        **kw: Any,
    ) -> None:
        video_dir = video_dir or _first_dir(root, "UCF-101")
        ann = annotation_dir or _first_dir(root, "ucfTrainTestlist")
        classes = [line.split()[1] for line in read_lines(os.path.join(ann, "classInd.txt"), "classInd.txt")]
        index = {c: i for i, c in enumerate(classes)}
        if protocol == "official":
            if split not in ("train", "test") or fold not in (1, 2, 3):
                raise ValueError(f"official UCF-101 splits are train/test, folds 1-3; got {split!r}, {fold}")
            videos = self._list(ann, f"{split}list0{fold}.txt")
        elif protocol == "paper":
            if split not in PAPER_SPLIT_SIZES:
                raise ValueError(f"paper UCF-101 splits are train/val/test; got {split!r}")
            every = self._list(ann, "trainlist01.txt") + self._list(ann, "testlist01.txt")
            videos = paper_split(every, split_seed)[split]
            self._paper_defaults(kw, split == "train")
        else:
            raise ValueError(f"protocol must be 'official' or 'paper', got {protocol!r}")
        records = []
        for rel in videos:
            name = rel.split("/")[0]
            if name not in index:
                raise ValueError(f"{ann}: class folder {name!r} of {rel} is not in classInd.txt")
            records.append(VideoRecord(os.path.join(video_dir, rel), index[name], os.path.splitext(rel)[0]))
        kw.setdefault("train", split == "train")
        super().__init__(records, classes, **kw)
        self.split, self.fold, self.protocol = split, fold, protocol

    @staticmethod
    def _list(ann: str | os.PathLike, name: str) -> list[str]:
        return [line.split()[0] for line in read_lines(os.path.join(ann, name), name)]

    @staticmethod
    def _paper_defaults(kw: dict[str, Any], train: bool) -> None:
        kw.setdefault("sampler", build_sampler("consecutive", 16, train=train))
        kw.setdefault("transform", build_train_transform(112, crop="random", resize=(128, 171)) if train
                      else build_test_transform(112, resize=(128, 171)))


def _first_dir(root: str | os.PathLike, name: str) -> str:
    sub = os.path.join(root, name)
    return sub if os.path.isdir(sub) else str(root)
