"""Top-k prediction of video files, class names, input specs per model family, annotated videos."""

import json

import av
import numpy as np
import pytest
import torch
from PIL import Image

from vidattn.data import generate_synth_actions
from vidattn.models import create_model
from vidattn.models.compat import save_weights
from vidattn.predict import (
    InputSpec,
    annotate_video,
    input_spec,
    predict_videos,
    resolve_class_names,
    write_predictions_json,
)

CLASSES = ["move_right", "move_left", "move_down", "move_up"]


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    generate_synth_actions(root / "data", num_classes=4, videos_per_class=1, num_frames=20, size=48,
                           workers=1, progress=False)
    model = create_model("tsm_r18", num_classes=4, num_segments=4)
    weights = save_weights(model, root / "run" / "model_best.safetensors")
    videos = [root / "data" / f"videos/{c}/{c}_000.avi" for c in CLASSES]
    return root, weights, videos


def test_predict_videos_topk_sorted_with_class_names(synth, tmp_path):
    root, weights, videos = synth
    preds = predict_videos(weights, videos, topk=3, class_names=root / "data" / "classes.txt", size=48)
    assert [p["video"] for p in preds] == [str(v) for v in videos]
    for p in preds:
        probs = [t["probability"] for t in p["topk"]]
        assert len(probs) == 3 and probs == sorted(probs, reverse=True)
        assert 0 < sum(probs) <= 1 + 1e-6
        assert all(t["label"] == CLASSES[t["index"]] for t in p["topk"])
        assert p["model"] == "tsm_r18" and p["frame_indices"] == [2, 7, 12, 17]  # TSN centres, 20 frames
    # topk larger than the classes: all of them, summing to 1.
    full = predict_videos(weights, videos[:1], topk=10, class_names=CLASSES, size=48)[0]["topk"]
    assert len(full) == 4 and sum(t["probability"] for t in full) == pytest.approx(1.0, abs=1e-5)
    path = write_predictions_json(preds, tmp_path / "out" / "preds.json")
    assert json.loads(path.read_text()) == preds


def test_predictions_match_the_model_on_the_same_clip(synth):
    root, weights, videos = synth
    model = create_model("tsm_r18", num_classes=4, num_segments=4).eval()
    pred = predict_videos(model, videos[:1], topk=4, spec=InputSpec(4, size=48, resize=48))[0]
    from vidattn.data import open_video
    from vidattn.data.transforms import build_test_transform

    with open_video(videos[0]) as r:
        clip, _ = build_test_transform(48, resize=48)(r.read([2, 7, 12, 17]))
    with torch.no_grad():
        probs = model(clip[None]).softmax(-1)[0]
    assert [t["index"] for t in pred["topk"]] == probs.argsort(descending=True).tolist()
    assert pred["topk"][0]["probability"] == pytest.approx(float(probs.max()), abs=1e-5)
    assert [t["label"] for t in pred["topk"]] == [str(t["index"]) for t in pred["topk"]]  # no names: indices


def test_class_names_from_metadata_run_dir_or_argument(synth, tmp_path):
    root, weights, _ = synth
    model = create_model("tsm_r18", num_classes=4, num_segments=4)
    assert resolve_class_names(model, ["a", "b", "c", "d"]) == [["a", "b", "c", "d"]]
    model.vidattn_config["classes"] = ["w", "x", "y", "z"]  # stored in the safetensors metadata
    with_meta = save_weights(model, tmp_path / "meta.safetensors")
    del model.vidattn_config["classes"]
    assert predict_videos(with_meta, synth[2][:1], topk=1, size=48)[0]["topk"][0]["label"] in ["w", "x", "y", "z"]
    (weights.parent / "classes.txt").write_text("\n".join(CLASSES) + "\n")  # an engine run directory
    try:
        assert resolve_class_names(model, None, weights) == [CLASSES]
        assert predict_videos(weights.parent, synth[2][:1], size=48)[0]["topk"][0]["label"] in CLASSES
    finally:
        (weights.parent / "classes.txt").unlink()
    ucf = tmp_path / "classInd.txt"
    ucf.write_text("1 ApplyEyeMakeup\n2 ApplyLipstick\n3 Archery\n4 BabyCrawling\n")
    assert resolve_class_names(model, ucf)[0][2] == "Archery"
    with pytest.raises(ValueError, match="3 class names for a classifier of 4"):
        resolve_class_names(model, ["a", "b", "c"])


def test_input_spec_per_model_family_and_run_config(synth, tmp_path):
    c3d = create_model("c3d_attention", num_classes=4, num_segments=16)
    spec = input_spec(c3d)
    assert (spec.sampling, spec.num_frames, spec.size, spec.resize) == ("consecutive", 16, 112, (128, 171))
    assert spec.indices(20).tolist() == list(range(2, 18))  # the centre 16 consecutive frames
    i3d = input_spec(create_model("i3d_r18", num_classes=4, num_segments=8))
    assert (i3d.sampling, i3d.stride) == ("dense", 8)
    assert i3d.indices(100).tolist() == list(range(18, 82, 8))
    tsm = input_spec(create_model("tsm_r18", num_classes=4, num_segments=8))
    assert (tsm.sampling, tsm.size, tsm.resize) == ("tsn", 224, "auto")
    run = tmp_path / "run"
    weights = save_weights(create_model("tsm_r18", num_classes=4, num_segments=8), run / "model_best.safetensors")
    (run / "config.yaml").write_text("data:\n  sampling: tsn\n  scale_size: 64\n  crop_size: 56\n")
    from_run = input_spec(create_model("tsm_r18", num_classes=4, num_segments=8), weights)
    assert (from_run.size, from_run.resize) == (56, 64)
    assert input_spec(create_model("tsm_r18", num_classes=4, num_segments=8), weights, size=96).size == 96
    # The C3D clip end to end: 16 consecutive frames at 112 px.
    pred = predict_videos(c3d, synth[2][:1], topk=2)[0]
    assert pred["frame_indices"] == list(range(2, 18)) and len(pred["topk"]) == 2


def test_unreadable_video_raises_or_is_reported(synth, tmp_path):
    _, weights, videos = synth
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video")
    from vidattn.data import VideoError

    with pytest.raises(VideoError, match="bad.mp4"):
        predict_videos(weights, [bad], size=48)
    preds = predict_videos(weights, [bad, videos[0]], size=48, on_error="skip")
    assert "error" in preds[0] and "topk" not in preds[0] and "topk" in preds[1]
    with pytest.raises(ValueError, match="no 'topk'"):
        annotate_video(bad, preds[0], tmp_path / "x.mp4")


@pytest.mark.parametrize("ext", ["mp4", "gif"])
def test_annotate_video_overlays_top5_on_every_frame(synth, tmp_path, ext):
    _, weights, videos = synth
    pred = predict_videos(weights, videos[:1], size=48, class_names=CLASSES)[0]
    out = annotate_video(videos[0], pred, tmp_path / f"annotated.{ext}")
    if ext == "mp4":
        with av.open(str(out)) as c:
            frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    else:
        gif = Image.open(out)
        frames = [np.asarray(gif.seek(i) or gif.convert("RGB")) for i in range(gif.n_frames)]
    assert len(frames) == 20
    assert frames[0].shape == (256, 256, 3)  # 48 px upscaled to a readable 256
    plain = np.asarray(Image.open(out).convert("RGB")) if ext == "gif" else frames[0]
    # The text box darkens the top-left corner; the bottom-right corner is the upscaled frame.
    assert plain[6:30, 6:100].mean() < plain[-60:, -60:].mean()
    with av.open(str(videos[0])) as c:
        src = c.decode(video=0).__next__().to_ndarray(format="rgb24")
    big = np.asarray(Image.fromarray(src).resize((256, 256), Image.BILINEAR)).astype(int)
    assert np.abs(big[-60:, -60:] - frames[0][-60:, -60:].astype(int)).mean() < 12
