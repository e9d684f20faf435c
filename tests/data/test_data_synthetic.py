"""SynthActions: generation is deterministic, complete, and its reversal pairs really are reversals."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from vidattn.data import (
    SynthActions,
    collate_clips,
    generate_synth_actions,
    open_video,
    reversal_pair_accuracy,
)
from vidattn.data.synthetic import SYNTH_CLASSES, SynthConfig, render_video

SMALL = dict(videos_per_class=5, num_frames=12, size=48, num_classes=16)


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    generate_synth_actions(root, workers=2, progress=False, **SMALL)
    return root


def test_layout_splits_and_boxes(synth_root):
    meta = json.loads((synth_root / "synth_actions.json").read_text())
    assert meta["classes"] == SYNTH_CLASSES
    assert meta["reversal_pairs"][0] == [0, 1]
    lines = {p: (synth_root / f"{p}.txt").read_text().split("\n")[:-1] for p in ("train", "val", "test")}
    assert [len(v) for v in lines.values()] == [16 * 3, 16 * 1, 16 * 1]
    paths = [ln.split()[0] for v in lines.values() for ln in v]
    assert len(set(paths)) == 80  # the three splits are disjoint and cover every video
    boxes = json.loads((synth_root / "boxes.json").read_text())
    assert len(boxes) == 80 and all(len(b) == 12 for b in boxes.values())
    with open_video(synth_root / paths[0]) as r:
        assert (r.num_frames, r.height, r.width) == (12, 48, 48)


def test_generation_is_deterministic_and_worker_independent(synth_root, tmp_path):
    generate_synth_actions(tmp_path, workers=1, progress=False, **SMALL)
    assert (tmp_path / "boxes.json").read_text() == (synth_root / "boxes.json").read_text()
    assert (tmp_path / "train.txt").read_text() == (synth_root / "train.txt").read_text()
    # Reusing an existing dataset with the same config is a no-op; another config is refused.
    generate_synth_actions(tmp_path, workers=1, progress=False, **SMALL)
    with pytest.raises(FileExistsError, match="another config"):
        generate_synth_actions(tmp_path, workers=1, progress=False, **{**SMALL, "seed": 1})


def test_reversed_class_is_the_forward_video_played_backwards():
    cfg = SynthConfig(**SMALL)
    for forward in range(0, 16, 2):
        a, box_a = render_video(forward, cfg, np.random.default_rng(7))
        b, box_b = render_video(forward + 1, cfg, np.random.default_rng(7))
        np.testing.assert_array_equal(a[::-1], b)
        np.testing.assert_array_equal(box_a[::-1], box_b)


def test_actor_box_follows_the_motion():
    cfg = SynthConfig(**SMALL)
    _, right = render_video(0, cfg, np.random.default_rng(3))
    _, left = render_video(1, cfg, np.random.default_rng(4))
    centre = lambda b: (b[:, 0] + b[:, 2]) / 2  # noqa: E731
    assert centre(right)[-1] - centre(right)[0] > 0.25 * 48
    assert centre(left)[0] - centre(left)[-1] > 0.25 * 48
    _, grow = render_video(4, cfg, np.random.default_rng(5))
    area = (grow[:, 2] - grow[:, 0]) * (grow[:, 3] - grow[:, 1])
    assert area[-1] > 2 * area[0]


def test_dataset_through_dataloader_workers(synth_root):
    ds = SynthActions(synth_root, "train", num_frames=8, seed=0)
    assert ds.num_classes == 16 and ds.reversal_pairs[3] == (6, 7)
    assert ds.flip_label_map[0] == 1 and ds.flip_label_map[7] == 6 and 2 not in ds.flip_label_map
    loader = DataLoader(ds, batch_size=8, num_workers=2, collate_fn=collate_clips)
    batch = next(iter(loader))
    assert batch["clip"].shape == (8, 3, 8, 48, 48) and batch["clip"].dtype == torch.float32
    assert batch["num_skipped"] == 0
    box = ds.boxes(batch["video_id"][0])
    assert box.shape == (12, 5)


def test_reversal_pair_accuracy():
    logits = np.array([[2.0, 1.0, 5.0], [2.0, 1.0, 0.0], [0.0, 3.0, 9.0]])
    assert reversal_pair_accuracy(logits, [0, 1, 1], [(0, 1)]) == pytest.approx(2 / 3)


def test_scenes_without_distractors():
    rng = np.random.default_rng(0)
    frames, boxes = render_video(0, SynthConfig(num_frames=6, size=32, max_distractors=0), rng)
    assert frames.shape == (6, 32, 32, 3) and len(boxes) == 6
