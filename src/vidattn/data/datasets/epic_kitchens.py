"""EPIC-Kitchens-55 (Damen et al., 2018) and EPIC-Kitchens-100 (Damen et al., 2022) action segments.

Labels are (verb, noun) pairs, returned as ``LongTensor([verb_class, noun_class])``; the action is the
pair. Unlabelled test segments return ``[-1, -1]`` and keep their uid (``uid`` / ``narration_id``) as
``video_id`` for the challenge submission JSON.

EPIC-55 annotation files (in ``root`` or ``root/annotations``): ``EPIC_train_action_labels.csv`` (uid,
video_id, narration, start_timestamp, stop_timestamp, start_frame, stop_frame, participant_id, verb,
verb_class, noun, noun_class, all_nouns, all_noun_classes), ``EPIC_test_s1_timestamps.csv`` (seen kitchens)
and ``EPIC_test_s2_timestamps.csv`` (unseen), optional ``EPIC_verb_classes.csv`` / ``EPIC_noun_classes.csv``.
Frames ``frames_rgb_flow/rgb/{train,test}/P01/P01_01/frame_0000000001.jpg``; videos
``videos/{train,test}/P01/P01_01.MP4``.

EPIC-100: ``EPIC_100_train.csv``, ``EPIC_100_validation.csv`` (narration_id, participant_id, video_id,
narration_timestamp, start_timestamp, stop_timestamp, start_frame, stop_frame, narration, verb, verb_class,
noun, noun_class, all_nouns, all_noun_classes), ``EPIC_100_test_timestamps.csv``, optional
``EPIC_100_verb_classes.csv`` / ``EPIC_100_noun_classes.csv``. Frames ``P01/rgb_frames/P01_01/
frame_0000000001.jpg``; videos ``P01/videos/P01_01.MP4``.

``start_frame``/``stop_frame`` are 1-based inclusive frame numbers of the frame folders; with
``source="video"`` the timestamps (``HH:mm:ss.SS``) are converted with the video's fps instead.
"""

from __future__ import annotations

import csv
import os
from typing import Any

from vidattn.data.datasets.base import ClipDataset, VideoRecord

__all__ = ["EpicKitchens55", "EpicKitchens100", "parse_timestamp"]


def parse_timestamp(text: str) -> float:
    """``"00:01:02.50"`` -> 62.5 seconds."""
    h, m, s = text.strip().split(":")
    return int(h) * 3600 + int(m) * 60 + float(s)


def _read_csv(path: str) -> list[dict[str, str]]:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: annotation file not found")
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def _class_names(path: str, default: int, rows: list[dict[str, str]], column: str) -> list[str]:
    """Class names from a classes CSV (id, key, ...) or, failing that, from the labelled rows."""
    if os.path.isfile(path):
        table = _read_csv(path)
        names = {int(r[list(r)[0]]): r[list(r)[1]] for r in table}
        return [names.get(i, f"{column}_{i}") for i in range(max(len(names), default))]
    names = {int(r[f"{column}_class"]): r[column] for r in rows if r.get(f"{column}_class")}
    return [names.get(i, f"{column}_{i}") for i in range(max(default, max(names, default=-1) + 1))]


class _Epic(ClipDataset):
    SPLIT_FILES: dict[str, str] = {}
    UID = "uid"
    NUM = (0, 0)
    CLASS_FILES = ("", "")
    FRAMES = VIDEO = ""

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "train",
        *,
        source: str = "frames",
        annotation_dir: str | os.PathLike | None = None,
        frames_layout: str | None = None,
        video_layout: str | None = None,
        **kw: Any,
    ) -> None:
        if split not in self.SPLIT_FILES:
            raise ValueError(f"{type(self).__name__} splits are {sorted(self.SPLIT_FILES)}, got {split!r}")
        if source not in ("frames", "video"):
            raise ValueError(f"source must be 'frames' or 'video', got {source!r}")
        ann = annotation_dir or (os.path.join(root, "annotations")
                                 if os.path.isdir(os.path.join(root, "annotations")) else root)
        rows = _read_csv(os.path.join(ann, self.SPLIT_FILES[split]))
        layout = (frames_layout or self.FRAMES) if source == "frames" else (video_layout or self.VIDEO)
        subset = "test" if split.startswith("test") else "train"
        records = []
        for lineno, row in enumerate(rows, 2):
            try:
                path = os.path.join(root, layout.format(participant=row["participant_id"],
                                                        video_id=row["video_id"], subset=subset))
                labelled = bool(row.get("verb_class"))
                label = (int(row["verb_class"]), int(row["noun_class"])) if labelled else (-1, -1)
                start, stop = int(row["start_frame"]), int(row["stop_frame"])
                rec = VideoRecord(path, label, row[self.UID], meta={
                    "video": row["video_id"], "source": f"{os.path.join(ann, self.SPLIT_FILES[split])}:{lineno}"})
                if source == "frames":
                    rec.start, rec.stop = start - 1, stop
                else:
                    rec.start_sec = parse_timestamp(row["start_timestamp"])
                    rec.stop_sec = parse_timestamp(row["stop_timestamp"])
            except (KeyError, ValueError) as e:
                where = os.path.join(ann, self.SPLIT_FILES[split])
                raise ValueError(f"{where}:{lineno}: bad row ({type(e).__name__}: {e})") from None
            records.append(rec)
        classes = {
            "verb": _class_names(os.path.join(ann, self.CLASS_FILES[0]), self.NUM[0], rows, "verb"),
            "noun": _class_names(os.path.join(ann, self.CLASS_FILES[1]), self.NUM[1], rows, "noun"),
        }
        kw.setdefault("train", split == "train")
        kw.setdefault("frame_template", "frame_{:010d}.jpg")
        super().__init__(records, classes, **kw)
        self.check_labels()
        self.split, self.source = split, source


class EpicKitchens55(_Epic):
    """EPIC-Kitchens-55: splits ``"train"``, ``"test_s1"`` (seen kitchens), ``"test_s2"`` (unseen);
    125 verbs, 331 nouns."""

    SPLIT_FILES = {"train": "EPIC_train_action_labels.csv", "test_s1": "EPIC_test_s1_timestamps.csv",
                   "test_s2": "EPIC_test_s2_timestamps.csv"}
    UID = "uid"
    NUM = (125, 331)
    CLASS_FILES = ("EPIC_verb_classes.csv", "EPIC_noun_classes.csv")
    FRAMES = os.path.join("frames_rgb_flow", "rgb", "{subset}", "{participant}", "{video_id}")
    VIDEO = os.path.join("videos", "{subset}", "{participant}", "{video_id}.MP4")


class EpicKitchens100(_Epic):
    """EPIC-Kitchens-100: splits ``"train"``, ``"val"``, ``"test"``; 97 verbs, 300 nouns."""

    SPLIT_FILES = {"train": "EPIC_100_train.csv", "val": "EPIC_100_validation.csv",
                   "test": "EPIC_100_test_timestamps.csv"}
    UID = "narration_id"
    NUM = (97, 300)
    CLASS_FILES = ("EPIC_100_verb_classes.csv", "EPIC_100_noun_classes.csv")
    FRAMES = os.path.join("{participant}", "rgb_frames", "{video_id}")
    VIDEO = os.path.join("{participant}", "videos", "{video_id}.MP4")
