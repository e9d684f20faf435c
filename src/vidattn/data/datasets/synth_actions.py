"""Reader for SynthActions as written by :func:`vidattn.data.synthetic.generate_synth_actions`."""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

from vidattn.data.datasets.list_dataset import ListDataset
from vidattn.data.transforms import build_test_transform, build_train_transform, flip_label_map

__all__ = ["SynthActions"]


class SynthActions(ListDataset):
    """SynthActions split (``"train"``, ``"val"``, ``"test"``) under ``root``.

    Extra attributes: ``reversal_pairs`` (class pairs that differ only by time direction, for
    :func:`vidattn.data.synthetic.reversal_pair_accuracy`), ``config`` (generator parameters), ``mode``
    (``"classic"`` or ``"www"``) and :meth:`boxes` (per-frame actor boxes); www datasets also have
    :meth:`windows` (when the actor moves) and :meth:`video_info` (appearances of actor and distractors).
    Flipped training clips swap right/left and clockwise/counter-clockwise labels unless
    ``flip_label_map`` is given.
    """

    def __init__(self, root: str | os.PathLike, split: str = "train", **kw: Any) -> None:
        meta_file = os.path.join(root, "synth_actions.json")
        if not os.path.isfile(meta_file):
            raise FileNotFoundError(f"{meta_file}: not found; generate the dataset with "
                                    "vidattn.data.generate_synth_actions(root)")
        with open(meta_file, encoding="utf-8") as f:
            meta = json.load(f)
        kw.setdefault("flip_label_map", flip_label_map([tuple(p) for p in meta["flip_pairs"]]))
        size = kw.pop("size", meta["config"]["size"])
        train = kw.setdefault("train", split == "train")
        if "transform" not in kw:  # frames are already small: crop/scale them directly, no resize first
            kw["transform"] = (build_train_transform(size, resize="none") if train
                               else build_test_transform(size, resize=(size, size)))
        kw.setdefault("classes", list(meta["classes"]))
        super().__init__(root, split, mode="video", **kw)
        self.config = meta["config"]
        self.mode = meta.get("mode", "classic")
        self.reversal_pairs = [tuple(p) for p in meta["reversal_pairs"]]
        self._json: dict[str, dict[str, Any]] = {}

    def _ground_truth(self, name: str) -> dict[str, Any]:
        if name not in self._json:
            path = os.path.join(self.root, name)
            if not os.path.isfile(path) and name != "boxes.json":
                raise FileNotFoundError(f"{path}: not found; {self.root} is a {self.mode!r}-mode SynthActions "
                                        "dataset, only mode='www' has windows and appearances")
            with open(path, encoding="utf-8") as f:
                self._json[name] = json.load(f)
        return self._json[name]

    def boxes(self, video_id: str) -> np.ndarray:
        """Actor boxes of one video, ``float32 (T, 5)``: x0, y0, x1, y1 (pixels) and opacity."""
        return np.asarray(self._ground_truth("boxes.json")[video_id], dtype=np.float32)

    def windows(self, video_id: str) -> np.ndarray:
        """www mode: ``int64 [start, end)``, the frames in which the actor moves (still outside)."""
        return np.asarray(self._ground_truth("windows.json")[video_id], dtype=np.int64)

    def video_info(self, video_id: str) -> dict[str, Any]:
        """www mode: ``{"actor", "distractors", "distractor_motions", "distractor_windows"}`` of one video
        (appearance indices into ``vidattn.data.synthetic.APPEARANCES``, class names, ``[start, end)``)."""
        return dict(self._ground_truth("videos.json")[video_id])
