"""Attention maps, their aggregation per input frame, the Fig. 3 grid, the GIF, and attention-in-box."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from vidattn.analysis.attention_stats import (
    attention_in_box,
    box_masks,
    synth_attention_in_box,
    transform_box_masks,
)
from vidattn.analysis.visualize import (
    aggregate_maps,
    attention_maps,
    plot_attention_grid,
    select_blocks,
    visualize_video,
)
from vidattn.data import InputSpec, generate_synth_actions
from vidattn.inference import Predictor
from vidattn.models import create_model
from vidattn.models.compat import save_weights

T = 8


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    """A tiny SynthActions set (6 classes, incl. grow/shrink whose boxes change size) and two untrained
    checkpoints (W3, CBAM) of 8 segments."""
    root = tmp_path_factory.mktemp("synth")
    generate_synth_actions(root / "data", num_classes=6, videos_per_class=2, num_frames=12, size=64,
                           workers=1, progress=False)
    weights = {}
    for name in ("tsm_w3_r18", "tsm_cbam_r18"):
        weights[name] = save_weights(create_model(name, num_classes=6, num_segments=T), root / f"{name}.safetensors")
    return root / "data", weights


def test_visualize_video_writes_fig3_grid_and_gif(synth, tmp_path):
    root, weights = synth
    video = root / "videos/move_right/move_right_000.avi"
    out = visualize_video(video, weights["tsm_w3_r18"], tmp_path / "vis", weights["tsm_cbam_r18"], num_frames=5,
                          spec=InputSpec(T, size=64, resize=64), class_names=root / "classes.txt")
    assert set(out) == {"png", "gif", "json"} and all(p.is_file() for p in out.values())
    summary = json.loads(out["json"].read_text())
    assert list(summary["models"]) == ["W3", "CBAM"]
    assert summary["frame_indices"] == [0, 2, 3, 5, 6, 8, 9, 11]  # TSN test centres of 12 frames, 8 segments
    assert summary["models"]["W3"]["blocks"] == ["layer4.0", "layer4.1"]
    assert summary["models"]["W3"]["topk"][0]["label"] in ("move_right", "move_left", "move_down", "move_up",
                                                           "grow", "shrink")
    png = Image.open(out["png"])
    # 3 rows (RGB, W3, CBAM) x 5 columns of 160 px cells plus the fixed margins.
    assert png.size == (round((0.55 + 5 * 1.6 + 0.75) * 100), round((0.6 + 3 * 1.6 + 0.1) * 100))
    gif = Image.open(out["gif"])
    assert gif.n_frames == T
    assert gif.size == (3 * 160, 160 + 22)  # RGB | W3 | CBAM panels, 64 px frames upscaled to 160, label strip
    frames = [np.asarray(gif.seek(i) or gif.convert("RGB")) for i in range(gif.n_frames)]
    assert np.abs(frames[0].astype(int) - frames[-1].astype(int)).mean() > 1  # the frames differ


def test_grid_rows_follow_models(tmp_path):
    frames = np.random.default_rng(0).integers(0, 255, (7, 40, 56, 3), dtype=np.uint8)
    ramp = np.linspace(0, 1, 7 * 40 * 56, dtype=np.float32).reshape(7, 40, 56)
    one = plot_attention_grid(frames, {"W3": ramp}, tmp_path / "a.png", num_frames=5, title="one")
    two = plot_attention_grid(frames, {"W3": ramp, "CBAM": 1 - ramp}, tmp_path / "b.png", frame_labels=range(10, 17))
    assert one.rows == ["RGB", "W3"] and two.rows == ["RGB", "W3", "CBAM"]
    assert one.columns == [0, 2, 3, 5, 6] and two.columns == [10, 12, 13, 15, 16]
    a, b = Image.open(one.path), Image.open(two.path)
    assert a.size == one.size and b.size == two.size
    assert b.size[1] - a.size[1] == one.cell_px and a.size[0] == b.size[0]
    assert two.value_ranges["W3"] == pytest.approx((0.0, 1.0))
    with pytest.raises(ValueError, match="expected"):
        plot_attention_grid(frames, {"W3": ramp[:, :20]}, tmp_path / "c.png")


def test_attention_maps_of_a_2d_model_every_block_in_eval():
    model = create_model("tsm_w3_r18", num_classes=3, num_segments=4).train()
    maps = attention_maps(Predictor(model, device="cpu", precision="fp32"), torch.randn(3, 4, 64, 64))
    assert list(maps) == [f"layer{s}.{i}" for s in range(1, 5) for i in range(2)]
    assert maps["layer1.0"].shape == (4, 16, 16) and maps["layer4.1"].shape == (4, 2, 2)
    assert all(0 <= float(m.min()) and float(m.max()) <= 1 for m in maps.values())
    assert not model.training  # the Predictor took it over
    frame_maps = aggregate_maps(maps, 4, (64, 64), stages=2)
    assert frame_maps.shape == (4, 64, 64)
    assert select_blocks(list(maps), 2) == ["layer3.0", "layer3.1", "layer4.0", "layer4.1"]
    with pytest.raises(ValueError, match="has no spatial attention"):
        attention_maps(Predictor(create_model("tsm_r18", num_classes=3, num_segments=4), device="cpu"),
                       torch.randn(3, 4, 64, 64))


def test_aggregate_maps_places_input_frames_in_time_and_averages_blocks():
    # A 3D model that halved time: masks at T'=2 for an input of 4 frames; mask 0 is all 0, mask 1 all 1.
    halved = torch.stack([torch.zeros(3, 3), torch.ones(3, 3)])
    maps = {"layer3.0": torch.full((2, 6, 6), 0.2), "layer4.0": halved, "layer4.1": halved}
    agg = aggregate_maps(maps, num_frames=4, size=(12, 12))  # last stage only
    assert agg.shape == (4, 12, 12)
    # Input frame i sits at (i + 0.5) / 2 - 0.5 on the mask axis: -0.25 (edge), 0.25, 0.75, 1.25 (edge).
    assert agg.mean(dim=(1, 2)).tolist() == pytest.approx([0.0, 0.25, 0.75, 1.0])
    both = aggregate_maps(maps, num_frames=4, size=(12, 12), stages=["layer3", "layer4.0"])
    assert both.mean(dim=(1, 2)).tolist() == pytest.approx([0.1, 0.225, 0.475, 0.6])
    # A real I3D-W3: T' < T inside, one map per input frame outside.
    model = create_model("i3d_w3_r18", num_classes=2, num_segments=8)
    maps = attention_maps(Predictor(model, device="cpu", precision="fp32"), torch.randn(3, 8, 32, 32))
    assert maps["layer4.1"].shape[0] == 4
    assert aggregate_maps(maps, 8, (32, 32)).shape == (8, 32, 32)


def test_attention_in_box_known_answers():
    maps = np.zeros((2, 10, 20))
    boxes = np.array([[2, 3, 7, 8], [10, 0, 20, 10]], dtype=float)  # 5x5 of 200 px, then the right half
    maps[0, 3:8, 2:7] = 1.0
    maps[1, :, 10:] = np.random.default_rng(0).random((10, 10)) + 0.1
    inside = attention_in_box(maps, boxes)
    assert inside["mass_in_box"] == pytest.approx(1.0)
    assert inside["box_area_fraction"] == pytest.approx((25 / 200 + 0.5) / 2)
    assert inside["ratio"] == pytest.approx(1 / inside["box_area_fraction"])
    uniform = attention_in_box(np.full((2, 10, 20), 0.7), np.c_[boxes, np.ones(2)])  # opacity column ignored
    assert uniform["mass_in_box"] == pytest.approx(uniform["box_area_fraction"])
    assert uniform["ratio"] == pytest.approx(1.0)
    # A box covering half of a pixel column counts half of it.
    half = box_masks(np.array([[0.0, 0.0, 1.5, 10.0]]), 10, 20)
    assert half.sum() == pytest.approx(15.0) and half[0, 0, 1] == pytest.approx(0.5)
    # Sigmoid-like floor: the raw share is pulled to the area; above the minimum it is all in the box.
    floored = 0.5 + 0.5 * maps[:1]
    assert attention_in_box(floored, boxes[:1])["mass_in_box"] < 0.3
    assert attention_in_box(floored, boxes[:1], subtract_min=True)["mass_in_box"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="boxes must be"):
        attention_in_box(maps, boxes[:1])


def test_boxes_follow_the_clip_resize_and_crop():
    # 96x96 frames, short side -> 64, centre crop 56: the bottom-right quadrant [48, 96) becomes [28, 56)
    # of the crop (scale 2/3, minus the 4 px crop offset), a quarter of it.
    spec = InputSpec(1, size=56, resize=64)
    mask = transform_box_masks(spec, np.array([[48.0, 48.0, 96.0, 96.0]]), 96, 96)[0]
    assert mask.shape == (56, 56)
    assert mask.mean() == pytest.approx(0.25, abs=0.01)
    assert mask[:26, :].max() < 0.02 and mask[30:, 30:].min() > 0.98


def test_synth_attention_in_box_over_a_split(synth):
    root, weights = synth
    stats = synth_attention_in_box(weights["tsm_w3_r18"], root, "train")
    assert stats["num_videos"] == 6 and stats["num_frames"] == 6 * T  # one video per class, all visible
    assert stats["blocks"] == ["layer4.0", "layer4.1"] and stats["input_size"] == 64
    assert 0 < stats["mass_in_box"] < 1 and 0 < stats["mass_in_box_above_min"] < 1
    # SynthActions geometry is a plain resize of the whole frame, so the box share is the boxes' own.
    boxes = json.loads((root / "boxes.json").read_text())
    from vidattn.data import SynthActions

    ds = SynthActions(root, "train")
    idx = np.array([0, 2, 3, 5, 6, 8, 9, 11])
    shares = [(b[2] - b[0]) * (b[3] - b[1]) / 64**2 for r in ds.records
              for b in np.asarray(boxes[r.video_id])[idx] if b[4] >= 0.5]
    assert stats["box_area_fraction"] == pytest.approx(np.mean(shares), rel=0.02)
