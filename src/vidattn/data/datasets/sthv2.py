"""Something-Something V2 (Goyal et al., 2017) in its published layout.

::

    root/something-something-v2-labels.json      {"Approaching something with your camera": "0", ...}
    root/something-something-v2-train.json       [{"id": "78687", "label": "holding potato next to vicks",
                                                   "template": "Holding [something] next to [something]",
                                                   "placeholders": ["potato", "vicks"]}, ...]
    root/something-something-v2-validation.json  same syntax
    root/something-something-v2-test.json        [{"id": "1420"}, ...]
    root/20bn-something-something-v2/78687.webm   VP9, height 240

The short names ``labels.json``, ``train.json``, ``validation.json``, ``test.json`` are accepted too. The
class is the ``template`` with ``[`` and ``]`` removed. Left/right flip pairs: 86<->87, 93<->94, 166<->167.
"""

from __future__ import annotations

import json
import os
from typing import Any

from vidattn.data.datasets.base import ClipDataset, VideoRecord
from vidattn.data.datasets.sthv1 import something_defaults
from vidattn.data.transforms import SSV2_FLIP_PAIRS

__all__ = ["SomethingSomethingV2"]

_SPLITS = {"train": "train", "val": "validation", "validation": "validation", "test": "test"}


def _load_json(root: str | os.PathLike, name: str) -> Any:
    for candidate in (f"something-something-v2-{name}.json", f"{name}.json"):
        path = os.path.join(root, candidate)
        if os.path.isfile(path):
            with open(path, encoding="utf-8") as f:
                try:
                    return json.load(f)
                except json.JSONDecodeError as e:
                    raise ValueError(f"{path}: invalid JSON ({e})") from None
    raise FileNotFoundError(f"{root}: neither something-something-v2-{name}.json nor {name}.json found")


class SomethingSomethingV2(ClipDataset):
    """Something-Something V2 split ``"train"``, ``"val"`` or ``"test"`` (test labels are -1)."""

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "train",
        *,
        video_dir: str | os.PathLike | None = None,
        **kw: Any,
    ) -> None:
        if split not in _SPLITS:
            raise ValueError(f"Something-Something V2 splits are train/val/test, got {split!r}")
        video_dir = video_dir or os.path.join(root, "20bn-something-something-v2")
        labels = {k: int(v) for k, v in _load_json(root, "labels").items()}
        classes = [""] * len(labels)
        for name, i in labels.items():
            classes[i] = name
        records = []
        for entry in _load_json(root, _SPLITS[split]):
            vid = str(entry["id"])
            if split == "test":
                label = -1
            else:
                name = entry["template"].replace("[", "").replace("]", "")
                if name not in labels:
                    raise ValueError(f"{split} entry {vid}: template {name!r} is not in the labels file")
                label = labels[name]
            records.append(VideoRecord(os.path.join(video_dir, f"{vid}.webm"), label, vid,
                                       meta={"placeholders": entry.get("placeholders", [])}))
        train = kw.setdefault("train", split == "train")
        something_defaults(kw, train, SSV2_FLIP_PAIRS)
        super().__init__(records, classes, **kw)
        self.split = split
