"""Datasets in their published on-disk formats, one file each, and a name -> class registry."""

from __future__ import annotations

import os
from typing import Any

from vidattn.data.datasets.base import ClipDataset, VideoRecord
from vidattn.data.datasets.egogesture import EgoGesture
from vidattn.data.datasets.epic_kitchens import EpicKitchens55, EpicKitchens100
from vidattn.data.datasets.kinetics import Kinetics
from vidattn.data.datasets.list_dataset import ListDataset
from vidattn.data.datasets.sthv1 import SomethingSomethingV1
from vidattn.data.datasets.sthv2 import SomethingSomethingV2
from vidattn.data.datasets.synth_actions import SynthActions
from vidattn.data.datasets.ucf101 import UCF101

__all__ = [
    "ClipDataset",
    "VideoRecord",
    "UCF101",
    "SomethingSomethingV1",
    "SomethingSomethingV2",
    "EgoGesture",
    "EpicKitchens55",
    "EpicKitchens100",
    "Kinetics",
    "ListDataset",
    "SynthActions",
    "DATASETS",
    "build_dataset",
]

DATASETS: dict[str, type[ClipDataset]] = {
    "ucf101": UCF101,
    "sthv1": SomethingSomethingV1,
    "sthv2": SomethingSomethingV2,
    "egogesture": EgoGesture,
    "epic55": EpicKitchens55,
    "epic100": EpicKitchens100,
    # one reader for every release: they differ in their CSVs' classes, not in the format
    "kinetics": Kinetics,
    "kinetics400": Kinetics,
    "kinetics600": Kinetics,
    "kinetics700": Kinetics,
    "list": ListDataset,
    "synth_actions": SynthActions,
}


def build_dataset(name: str, root: str | os.PathLike, split: str = "train", **kw: Any) -> ClipDataset:
    """Dataset by config name: ``build_dataset("sthv1", "/data/sthv1", "val", num_frames=8)``.

    Names: ``ucf101``, ``sthv1``, ``sthv2``, ``egogesture``, ``epic55``, ``epic100``, ``kinetics``
    (``kinetics400``, ``kinetics600``, ``kinetics700``), ``list``, ``synth_actions``.
    ``kw`` go to the dataset class (and on to :class:`ClipDataset`).
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {sorted(DATASETS)}")
    return DATASETS[name](root, split, **kw)
