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
from vidattn.data.synthetic import (
    APPEARANCES,
    NUM_APPEARANCES,
    SYNTH_CLASSES,
    WWW_CLASSES,
    SynthConfig,
    _write_avi,
    appearance_index,
    render_appearance_image,
    render_video,
    render_www_video,
)

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


# ---------------------------------------------------------------- encoder quality (both modes)


def _luma_psnr(reference: np.ndarray, path) -> np.ndarray:
    """Per-frame PSNR (dB) of the decoded luma plane against the luma of the rendered frames."""
    import av

    def luma(rgb):
        return av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p").to_ndarray()

    with av.open(str(path)) as c:
        decoded = [f.to_ndarray()[: reference.shape[1]] for f in c.decode(video=0)]
    assert len(decoded) == len(reference)
    h = reference.shape[1]
    mse = [np.mean((luma(r)[:h].astype(float) - d) ** 2) for r, d in zip(reference, decoded)]
    return 10 * np.log10(255.0**2 / np.maximum(mse, 1e-9))


@pytest.mark.parametrize("mode", ["classic", "www"])
def test_encoder_quality_is_constant_along_the_clip(mode, tmp_path):
    # Before the fixed quantiser, rate control let the luma PSNR fall from 47 to 30 dB along the clip.
    cfg = SynthConfig(mode=mode, num_frames=16, size=64)
    frames, _ = render_video(0, cfg, np.random.default_rng(1))
    _write_avi(tmp_path / "a.avi", frames, cfg.fps, cfg.qscale)
    psnr = _luma_psnr(frames, tmp_path / "a.avi")
    assert psnr.mean() >= 38 and psnr.min() >= 36, psnr
    assert abs(psnr[0] - psnr[-1]) < 3 and psnr.max() - psnr.min() < 4, psnr


# ---------------------------------------------------------------- what-where-when mode

WWW = dict(mode="www", num_classes=4, videos_per_class=3, num_frames=16, size=48)


@pytest.fixture(scope="module")
def www_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth_www")
    generate_synth_actions(root, workers=2, progress=False, **WWW)
    return root


def test_www_files_and_ground_truth_formats(www_root, synth_root):
    meta = json.loads((www_root / "synth_actions.json").read_text())
    assert meta["mode"] == "www" and meta["classes"] == WWW_CLASSES[:4]
    assert meta["reversal_pairs"] == [[0, 1], [2, 3]] and meta["flip_pairs"] == [[0, 1]]
    assert meta["actor_appearance"] == SynthConfig().actor_appearance == appearance_index("square", "red", "checker")
    assert len(meta["appearances"]) == NUM_APPEARANCES == 48 and tuple(meta["appearances"][5]) == APPEARANCES[5]
    boxes = json.loads((www_root / "boxes.json").read_text())
    windows = json.loads((www_root / "windows.json").read_text())
    videos = json.loads((www_root / "videos.json").read_text())
    assert len(boxes) == 12 and boxes.keys() == windows.keys() == videos.keys()
    for vid, (start, end) in windows.items():
        assert 0 <= start < end <= 16 and round(0.4 * 16) <= end - start <= round(0.6 * 16)
        info = videos[vid]
        kind = WWW_CLASSES.index(vid.split("/")[1])
        assert info["actor"] == meta["actor_appearance"] and meta["actor_appearance"] not in info["distractors"]
        assert len(info["distractors"]) == len(info["distractor_motions"]) == len(info["distractor_windows"]) == 2
        assert info["distractor_motions"][0] == WWW_CLASSES[kind ^ 1]  # the confusable motion is on screen
        assert all(0 <= x <= 48 for b in boxes[vid] for x in b[:4])
    ds = SynthActions(www_root, "val")
    assert ds.num_classes == 4 and ds.flip_label_map == {0: 1, 1: 0}
    vid = ds.records[0].video_id
    np.testing.assert_array_equal(ds.windows(vid), windows[vid])
    assert ds.windows(vid).dtype == np.int64 and ds.boxes(vid).shape == (16, 5)
    assert ds.video_info(vid)["actor"] == meta["actor_appearance"]
    with pytest.raises(FileNotFoundError, match="classic"):
        SynthActions(synth_root, "val").windows("videos/move_right/move_right_000")


def test_www_generation_is_deterministic_and_worker_independent(www_root, tmp_path):
    generate_synth_actions(tmp_path, workers=1, progress=False, **WWW)
    for name in ("boxes.json", "windows.json", "videos.json", "synth_actions.json", "train.txt"):
        assert (tmp_path / name).read_text() == (www_root / name).read_text(), name
    videos = sorted(p.relative_to(www_root) for p in www_root.rglob("*.avi"))
    assert len(videos) == 12
    assert all((tmp_path / p).read_bytes() == (www_root / p).read_bytes() for p in videos)


def test_www_ground_truth_matches_the_pixels():
    cfg = SynthConfig(**{**WWW, "num_classes": 8})
    for kind in range(8):
        video = render_www_video(kind, cfg, np.random.default_rng([5, kind]))
        empty = render_www_video(kind, cfg, np.random.default_rng([5, kind]), paint_actor=False)
        np.testing.assert_array_equal(video.boxes, empty.boxes)
        mask = (video.frames != empty.frames).any(-1)  # the actor's pixels (drawn last, never occluded)
        start, end = video.window
        for i in range(16):
            ys, xs = np.nonzero(mask[i])
            np.testing.assert_allclose([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], video.boxes[i, :4],
                                       atol=1)
            inside = video.frames[i][mask[i]]  # red checker: red and dark-red pixels only
            assert (inside[:, 0] > inside[:, 1] + 40).mean() > 0.95, WWW_CLASSES[kind]
        for i in range(15):
            moving = start <= i and i + 1 < end
            assert moving == (not np.array_equal(mask[i], mask[i + 1])), (WWW_CLASSES[kind], i, video.window)
            assert moving or np.array_equal(video.boxes[i], video.boxes[i + 1])
            if not moving:  # a still actor is pixel-identical (only the background jitters)
                np.testing.assert_array_equal(video.frames[i][mask[i]], video.frames[i + 1][mask[i]])
        centre = (video.boxes[:, :2] + video.boxes[:, 2:4]) / 2
        area = np.prod(video.boxes[:, 2:4] - video.boxes[:, :2], axis=1)
        if kind < 4:  # move right, left, down, up: by more than a quarter of the frame
            axis, sign = kind // 2, 1 - 2 * (kind % 2)
            assert sign * (centre[-1, axis] - centre[0, axis]) > 0.25 * 48, WWW_CLASSES[kind]
        elif kind < 6:  # grow, shrink: the box area at least doubles / halves
            assert (area[-1] / area[0]) ** (1 - 2 * (kind % 2)) > 2, WWW_CLASSES[kind]


def test_www_reversed_class_is_the_forward_video_played_backwards():
    cfg = SynthConfig(**{**WWW, "num_classes": 8})
    for forward in range(0, 8, 2):
        a = render_www_video(forward, cfg, np.random.default_rng(11))
        b = render_www_video(forward + 1, cfg, np.random.default_rng(11))
        np.testing.assert_array_equal(a.frames[::-1], b.frames)
        np.testing.assert_array_equal(a.boxes[::-1], b.boxes)
        assert b.window.tolist() == [16 - a.window[1], 16 - a.window[0]]
        assert b.distractor_windows == [[16 - e, 16 - s] for s, e in a.distractor_windows]
        assert b.distractor_motions[0] == WWW_CLASSES[forward] and a.distractor_motions[0] == WWW_CLASSES[forward + 1]
        assert a.distractors == b.distractors and cfg.actor_appearance not in a.distractors


def test_render_appearance_image():
    images = [render_appearance_image(a, 48, np.random.default_rng(0)) for a in range(NUM_APPEARANCES)]
    assert all(im.shape == (48, 48, 3) and im.dtype == np.uint8 for im in images)
    # Same background and position (same seed): only the object's appearance differs.
    assert len({im.tobytes() for im in images}) == NUM_APPEARANCES
    np.testing.assert_array_equal(images[7], render_appearance_image(7, 48, np.random.default_rng(0)))
    assert not np.array_equal(images[7], render_appearance_image(7, 48, np.random.default_rng(1)))
    with pytest.raises(ValueError):
        render_appearance_image(NUM_APPEARANCES, 48, np.random.default_rng(0))
