"""Where / when / what attention metrics against SynthActions' ground truth, their driver and figures."""

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from vidattn.analysis.attention_stats import (
    attention_in_box,
    channel_mask_variation,
    frame_weights,
    frames_in_window,
    plot_attention_metrics,
    plot_temporal_profile,
    read_windows,
    synth_attention_in_box,
    synth_attention_metrics,
    temporal_attention_in_window,
)
from vidattn.data import generate_synth_actions
from vidattn.models import create_model
from vidattn.models.compat import save_weights

T = 8
WINDOW = (2, 6)  # frames 2..5 of every 8-frame video


def test_where_known_answers():
    maps = np.zeros((3, 8, 8))
    boxes = np.tile([2.0, 2.0, 6.0, 6.0], (3, 1))  # 16 of 64 pixels
    maps[:, 2:6, 2:6] = 1.0
    assert attention_in_box(maps, boxes)["ratio"] == pytest.approx(1 / 0.25)
    assert attention_in_box(np.full((3, 8, 8), 0.9), boxes)["ratio"] == pytest.approx(1.0)


def test_when_known_answers():
    inside = frames_in_window(np.array([0, 2, 3, 5, 6, 8, 9, 11]), (3, 9))
    assert inside.tolist() == [False, False, True, True, True, True, False, False]  # start <= i < end
    w = np.where(inside, 2.0, 1.0)
    r = temporal_attention_in_window(w, inside)
    assert r["ratio"] == pytest.approx(2.0)
    assert r["inside_fraction"] == pytest.approx(0.5)
    assert r["mass_inside"] == pytest.approx(8 / 12) and r["mass_outside"] == pytest.approx(4 / 12)
    assert r["num_frames"] == 8
    assert temporal_attention_in_window(torch.full((8,), 0.95), inside)["ratio"] == pytest.approx(1.0)
    # Sigmoid-like band: 0.96 inside, 0.94 outside is a raw ratio near 1, but all the mass above the minimum.
    band = np.where(inside, 0.96, 0.94)
    assert temporal_attention_in_window(band, inside)["ratio"] == pytest.approx(0.96 / 0.94)
    floored = temporal_attention_in_window(band, inside, subtract_min=True)
    assert floored["mass_inside"] == pytest.approx(1.0) and floored["ratio"] == math.inf
    # (V, T): rows are clips, each floored at its own minimum, then pooled.
    two = temporal_attention_in_window(np.stack([band, band + 0.5]), np.stack([inside, inside]), subtract_min=True)
    assert two["mass_inside"] == pytest.approx(1.0) and two["num_frames"] == 16
    assert math.isnan(temporal_attention_in_window(w, np.ones(8, bool))["ratio"])  # nothing outside
    with pytest.raises(ValueError, match="must both be"):
        temporal_attention_in_window(w, inside[:4])


def test_frame_weights_reduce_and_follow_time():
    spatial = torch.zeros(4, 2, 2)
    spatial[1, 0, 0] = 1.0  # one hot pixel in frame 1
    assert frame_weights({"b": spatial}, 4).tolist() == pytest.approx([0, 0.25, 0, 0])
    assert frame_weights({"b": spatial}, 4, "max").tolist() == pytest.approx([0, 1, 0, 0])
    channel = torch.tensor([[1.0, 3.0], [0.0, 0.0], [2.0, 2.0], [1.0, 1.0]])  # (T, C)
    both = frame_weights({"a": channel, "b": torch.zeros(4, 2)}, 4)
    assert both.tolist() == pytest.approx([1.0, 0.0, 1.0, 0.5])  # mean over channels, then over blocks
    # A 3D model's halved time: input frames read the masks at their own positions (as aggregate_maps).
    halved = frame_weights({"b": torch.stack([torch.zeros(3), torch.ones(3)])}, 4)
    assert halved.tolist() == pytest.approx([0.0, 0.25, 0.75, 1.0])


def test_what_known_answers():
    labels = np.array([0, 0, 1, 1, 2, 2])
    same = channel_mask_variation(np.tile([0.2, 0.9, 0.5], (6, 1)), labels)
    for key in ("std_across_samples", "between_class_std", "within_class_std"):
        assert same[key] == pytest.approx(0.0, abs=1e-12)
    assert math.isnan(same["class_separability"])
    rng = np.random.default_rng(0)
    class_means = rng.random((3, 16))
    by_class = class_means[labels] + 0.01 * rng.standard_normal((6, 16))
    r = channel_mask_variation(by_class, labels)
    assert r["class_separability"] > 10 and r["num_classes"] == 3 and r["num_channels"] == 16
    assert r["between_class_std"] == pytest.approx(class_means.std(axis=0).mean(), rel=0.05)
    pure = channel_mask_variation(class_means[labels], labels)
    assert pure["within_class_std"] == pytest.approx(0.0, abs=1e-12) and pure["class_separability"] == math.inf
    noise = channel_mask_variation(rng.random((400, 16)), np.arange(400) % 2)
    assert noise["class_separability"] < 0.2  # class means of noise barely differ
    # The same answers for an explicit two-value case: std over videos 0.5, class means 0 and 1.
    two = channel_mask_variation(np.array([[0.0], [0.0], [1.0], [1.0]]), [3, 3, 7, 7])
    assert (two["std_across_samples"], two["between_class_std"], two["within_class_std"]) == (0.5, 0.5, 0.0)
    with pytest.raises(ValueError, match="must be"):
        channel_mask_variation(np.zeros((4, 2)), [0, 1])


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    """Classic SynthActions (2 classes x 3 videos of 8 frames, 32 px; 4 of them in train) with a
    hand-written windows.json, and tiny untrained W3 / CBAM checkpoints of 8 segments."""
    root = tmp_path_factory.mktemp("synth_www")
    data = generate_synth_actions(root / "data", num_classes=2, videos_per_class=3, size=32, num_frames=T,
                                  workers=1, progress=False)
    ids = json.loads((data / "boxes.json").read_text())
    (data / "windows.json").write_text(json.dumps({vid: list(WINDOW) for vid in ids}))
    weights = {}
    for name in ("tsm_w3_r18", "tsm_cbam_r18"):
        model = create_model(name, num_classes=4, num_segments=T, base_width=8, stem="small")
        weights[name] = save_weights(model, root / f"{name}.safetensors")
    return data, weights


@pytest.mark.parametrize("name", ["tsm_w3_r18", "tsm_cbam_r18"])
def test_synth_attention_metrics_end_to_end(synth, name):
    root, weights = synth
    assert read_windows(root)["videos/move_right/move_right_000"] == WINDOW
    out = synth_attention_metrics(weights[name], root, "train", by_stage=True, per_video=True)
    assert out["num_videos"] == 4 and out["input_size"] == 32
    assert out["blocks"] == ["layer4.0", "layer4.1"]
    where = out["where"]
    assert 0 < where["mass_in_box"] < 1 and math.isfinite(where["ratio"]) and where["num_videos"] == 4
    # The where half is synth_attention_in_box's, from the same loop.
    assert where["ratio"] == pytest.approx(synth_attention_in_box(weights[name], root, "train")["ratio"])
    assert set(out["when"]) == {"channel", "spatial"}
    for source in ("channel", "spatial"):
        when = out["when"][source]
        assert when["num_frames"] == 4 * T and when["num_videos"] == 4
        assert when["inside_fraction"] == pytest.approx(0.5)  # frames 2..5 of 0..7
        assert when["mass_inside"] + when["mass_outside"] == pytest.approx(1.0)
        assert all(math.isfinite(when[k]) and when[k] > 0 for k in ("ratio", "mass_inside"))
    what = out["what"]
    assert what["num_videos"] == 4 and what["num_classes"] == 2
    assert what["num_channels"] == 2 * 64  # two layer4 blocks of 8 * 8 channels
    assert all(math.isfinite(what[k]) and what[k] >= 0 for k in ("std_across_samples", "between_class_std",
                                                                 "within_class_std"))
    assert list(out["by_stage"]) == ["layer1", "layer2", "layer3", "layer4"]
    assert out["by_stage"]["layer1"]["what"]["num_channels"] == 2 * 8
    assert out["by_stage"]["layer4"]["where"]["ratio"] == pytest.approx(where["ratio"])
    video = out["per_video"][0]
    assert video["window"] == list(WINDOW) and video["frame_indices"] == list(range(T))
    assert len(video["frame_weights"]["channel"]) == T
    json.dumps(out)  # JSON-ready


def test_synth_attention_metrics_without_windows_or_spatial_masks(synth, tmp_path):
    root, _ = synth
    bare = tmp_path / "bare"
    bare.mkdir()
    for f in ("synth_actions.json", "boxes.json", "train.txt", "classes.txt"):
        (bare / f).write_text((root / f).read_text())
    (bare / "videos").symlink_to(root / "videos")
    model = create_model("tsm_w3_r18", num_classes=4, num_segments=T, base_width=8, stem="small",
                         attention_options={"spatial": False})
    out = synth_attention_metrics(model, bare, "train", max_videos=2)
    assert "when" not in out and "where" not in out and out["num_videos"] == 2
    assert out["what"]["num_videos"] == 2
    with pytest.raises(ValueError, match="no spatial attention"):
        synth_attention_in_box(model, bare, "train")


def test_figures(tmp_path):
    w3 = {"where": {"ratio": 1.8, "ratio_above_min": 3.0},
          "when": {"channel": {"ratio": 1.1, "ratio_above_min": math.inf},
                   "spatial": {"ratio": 1.05, "ratio_above_min": 2.0}},
          "what": {"class_separability": 1.5}}
    cbam = {"where": {"ratio": 1.4, "ratio_above_min": 2.0}, "when": {"channel": {"ratio": 1.0}}}
    png = plot_attention_metrics({"W3": w3, "CBAM": cbam}, tmp_path / "metrics.png")
    assert png.is_file() and Image.open(png).size[0] > 400
    weights = np.array([[1, 1, 2, 2, 2, 2, 1, 1], [1, 2, 2, 1, 1, 1, 1, 1]], dtype=float)
    profile = plot_temporal_profile({"W3": weights, "CBAM": [np.ones(8), np.ones(8)]}, [(2, 6), (1, 3)],
                                    tmp_path / "profile.png", frame_indices=[range(8), range(8)])
    assert profile.is_file() and Image.open(profile).size == (600, 360)
    with pytest.raises(ValueError, match="windows"):
        plot_temporal_profile(weights, [(2, 6)], tmp_path / "bad.png")
