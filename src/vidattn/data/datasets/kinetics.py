"""Kinetics-400/600/700 (Kay et al., 2017; Carreira et al., 2018, 2019) in the published layout.

Annotations: one CSV per split with a header row, as published::

    root/annotations/train.csv     label,youtube_id,time_start,time_end,split[,is_cc]
    root/annotations/validate.csv  "abseiling",0347ZoDXyP0,95,105,val,0
    root/annotations/test.csv      the same columns, or no ``label`` column (K600/K700 test: unlabelled)

(``root/train.csv`` ... beside the videos, and ``val.csv`` for ``validate.csv``, are accepted too.) Videos,
named ``{youtube_id}_{time_start:06d}_{time_end:06d}.mp4`` (any video suffix; a frame folder of that name
after ``vidattn extract-frames``), either flat or in one folder per class::

    root/train/0347ZoDXyP0_000095_000105.mp4           the CVDF tarballs
    root/train/abseiling/0347ZoDXyP0_000095_000105.mp4  the ActivityNet crawler / mmaction2 layout

The split folder is ``train``, ``val`` (or ``validate``, ``videos_val``) or ``test`` under ``root``, or
``video_dir``. The class folder's name is not read (crawlers spell labels differently); the label comes from
the CSV. Classes are the sorted unique labels of the train CSV, for every split, so their indices agree.
Listed videos that are not on disk (YouTube takedowns: every copy of Kinetics misses some) are skipped with
one warning counting them.
"""

from __future__ import annotations

import csv
import logging
import os
import re
from typing import Any

from vidattn.data.datasets.base import ClipDataset, VideoRecord

__all__ = ["Kinetics"]

log = logging.getLogger(__name__)

_CSV = {"train": ("train",), "val": ("validate", "val"), "test": ("test",)}
_FOLDERS = {"train": ("train", "videos_train"), "val": ("val", "validate", "videos_val"),
            "test": ("test", "videos_test")}
_CLIP_NAME = re.compile(r"^(.+)_(\d{6})_(\d{6})$")
_VIDEO_SUFFIXES = (".mp4", ".mkv", ".webm", ".avi", ".mov")
_REQUIRED = ("youtube_id", "time_start", "time_end")


def clip_name(youtube_id: str, time_start: float, time_end: float) -> str:
    """``{youtube_id}_{time_start:06d}_{time_end:06d}``, the published file name without its suffix."""
    return f"{youtube_id}_{int(float(time_start)):06d}_{int(float(time_end)):06d}"


def _find(candidates: list[str], what: str) -> str:
    for path in candidates:
        if os.path.exists(path):
            return path
    raise FileNotFoundError(f"{candidates[0]}: {what} not found (also looked for {', '.join(candidates[1:])})")


def _csv_path(root: str | os.PathLike, split: str, annotation_dir: str | os.PathLike | None) -> str:
    dirs = [str(annotation_dir)] if annotation_dir else [os.path.join(root, "annotations"), str(root)]
    return _find([os.path.join(d, f"{n}.csv") for d in dirs for n in _CSV[split]], f"Kinetics {split} annotations")


def read_csv(path: str) -> list[tuple[int, dict[str, str]]]:
    """(line number, row) of a Kinetics CSV; a header without the clip columns is a one-line error."""
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in _REQUIRED if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{path}: header {','.join(reader.fieldnames or [])!r} lacks {', '.join(missing)} "
                             "(expected label,youtube_id,time_start,time_end,split[,is_cc])")
        rows = []
        for row in reader:
            if any(row.get(c) in (None, "") for c in _REQUIRED):
                raise ValueError(f"{path}:{reader.line_num}: missing youtube_id, time_start or time_end")
            rows.append((reader.line_num, row))
        return rows


def index_videos(folder: str) -> dict[str, str]:
    """Clip name -> path of every video (or frame folder) in ``folder`` or one class folder below it."""
    found: dict[str, str] = {}

    def add(entry: os.DirEntry) -> bool:
        stem, suffix = os.path.splitext(entry.name)
        if entry.is_dir() and _CLIP_NAME.match(entry.name):
            found.setdefault(entry.name, entry.path)  # a frame folder
            return True
        if entry.is_file() and suffix.lower() in _VIDEO_SUFFIXES and _CLIP_NAME.match(stem):
            found.setdefault(stem, entry.path)
            return True
        return False

    with os.scandir(folder) as entries:
        for entry in entries:
            if not add(entry) and entry.is_dir():  # a class folder
                with os.scandir(entry.path) as inner:
                    for sub in inner:
                        add(sub)
    return found


class Kinetics(ClipDataset):
    """Kinetics-400/600/700 split ``"train"``, ``"val"`` or ``"test"`` (unlabelled rows: label -1).

    Args:
        root: the folder holding ``annotations/`` (or the CSVs) and the ``train``/``val``/``test`` folders.
        video_dir: the split's video folder instead of ``root/{train,val,test}``.
        annotation_dir: the folder of the CSVs instead of ``root/annotations`` or ``root``.
        **kw: :class:`ClipDataset` options (``frame_template`` for extracted frame folders, ...).
    """

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "train",
        *,
        video_dir: str | os.PathLike | None = None,
        annotation_dir: str | os.PathLike | None = None,
        **kw: Any,
    ) -> None:
        split = "val" if split == "validate" else split
        if split not in _CSV:
            raise ValueError(f"Kinetics splits are train/val/test, got {split!r}")
        train_csv = _csv_path(root, "train", annotation_dir)
        classes = sorted({row["label"] for _, row in read_csv(train_csv) if row.get("label")})
        if not classes:
            raise ValueError(f"{train_csv}: no labels (the train CSV names the classes)")
        index = {c: i for i, c in enumerate(classes)}
        path = train_csv if split == "train" else _csv_path(root, split, annotation_dir)
        folder = str(video_dir) if video_dir else _find([os.path.join(root, d) for d in _FOLDERS[split]],
                                                        f"Kinetics {split} video folder")
        on_disk = index_videos(folder)
        records, missing = [], []
        for line, row in read_csv(path):
            name = clip_name(row["youtube_id"], row["time_start"], row["time_end"])
            label_name = row.get("label") or ""
            if label_name and label_name not in index:
                raise ValueError(f"{path}:{line}: label {label_name!r} is not a class of {train_csv}")
            if name not in on_disk:
                missing.append(name)
                continue
            records.append(VideoRecord(on_disk[name], index[label_name] if label_name else -1, name,
                                       meta={"source": f"{path}:{line}"}))
        if missing:
            log.warning("Kinetics %s: %d of %d videos listed in %s are not in %s and are skipped (first: %s)",
                        split, len(missing), len(missing) + len(records), os.path.basename(path), folder, missing[0])
        kw.setdefault("train", split == "train")
        super().__init__(records, classes, **kw)
        self.split = split
        self.num_missing = len(missing)
