"""The data side: decode (``video``) -> sample (``sampling``) -> transform (``transforms``) -> dataset.

Importing this package never imports the models.
"""

from vidattn.data.clips import Clips, InputSpec, load_clips
from vidattn.data.collate import collate_clips
from vidattn.data.datasets import (
    DATASETS,
    UCF101,
    ClipDataset,
    EgoGesture,
    EpicKitchens55,
    EpicKitchens100,
    Kinetics,
    ListDataset,
    SomethingSomethingV1,
    SomethingSomethingV2,
    SynthActions,
    VideoRecord,
    build_dataset,
)
from vidattn.data.sampling import ClipSampler, build_sampler
from vidattn.data.synthetic import SynthConfig, generate_synth_actions, reversal_pair_accuracy
from vidattn.data.transforms import ClipTransform, build_test_transform, build_train_transform, flip_label_map
from vidattn.data.video import VideoError, VideoReader, open_video

__all__ = [
    "InputSpec",
    "Clips",
    "load_clips",
    "open_video",
    "VideoError",
    "VideoReader",
    "ClipSampler",
    "build_sampler",
    "ClipTransform",
    "build_train_transform",
    "build_test_transform",
    "flip_label_map",
    "ClipDataset",
    "VideoRecord",
    "ListDataset",
    "UCF101",
    "SomethingSomethingV1",
    "SomethingSomethingV2",
    "EgoGesture",
    "EpicKitchens55",
    "EpicKitchens100",
    "Kinetics",
    "SynthActions",
    "DATASETS",
    "build_dataset",
    "collate_clips",
    "SynthConfig",
    "generate_synth_actions",
    "reversal_pair_accuracy",
]
