"""Top-k prediction of video files through the one inference path: `vidattn test` and `vidattn predict`
feed a model the same frames and get the same logits; class names, input specs from the run's recipe,
annotated videos."""

import json
import logging
from pathlib import Path

import av
import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from vidattn_test_media import level, pattern_video

from vidattn.config import config_from_dict, config_to_dict, load_config
from vidattn.data import InputSpec, generate_synth_actions
from vidattn.engine.builders import build_eval_loader
from vidattn.engine.distributed import DistInfo
from vidattn.engine.evaluate import run_evaluation
from vidattn.inference import load_predictor, resolve_class_names
from vidattn.models import create_model
from vidattn.models.compat import save_weights
from vidattn.predict import annotate_video, predict_videos, write_predictions_json

CLASSES = ["move_right", "move_left", "move_down", "move_up"]
SPEC = InputSpec(4, size=48, resize=48)  # the SynthActions frames as they are: 48 px, centre crop 48
ROOT = Path(__file__).resolve().parents[1]


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
    preds = predict_videos(weights, videos, topk=3, class_names=root / "data" / "classes.txt", spec=SPEC)
    assert [p["video"] for p in preds] == [str(v) for v in videos]
    for p in preds:
        probs = [t["probability"] for t in p["topk"]]
        assert len(probs) == 3 and probs == sorted(probs, reverse=True)
        assert 0 < sum(probs) <= 1 + 1e-6
        assert all(t["label"] == CLASSES[t["index"]] for t in p["topk"])
        assert p["model"] == "tsm_r18" and p["frame_indices"] == [[2, 7, 12, 17]]  # TSN centres, 20 frames
    # topk larger than the classes: all of them, summing to 1.
    full = predict_videos(weights, videos[:1], topk=10, class_names=CLASSES, spec=SPEC)[0]["topk"]
    assert len(full) == 4 and sum(t["probability"] for t in full) == pytest.approx(1.0, abs=1e-5)
    path = write_predictions_json(preds, tmp_path / "out" / "preds.json")
    assert json.loads(path.read_text()) == preds


def test_predictions_match_the_model_on_the_same_clip(synth):
    root, weights, videos = synth
    model = create_model("tsm_r18", num_classes=4, num_segments=4).eval()
    from vidattn.data import open_video
    from vidattn.data.transforms import build_test_transform

    with open_video(videos[0]) as r:
        clip, _ = build_test_transform(48, resize=48)(r.read([2, 7, 12, 17]))
    with torch.no_grad():
        probs = model(clip[None]).softmax(-1)[0]
    pred = predict_videos(model, videos[:1], topk=4, spec=SPEC, precision="fp32")[0]  # takes the model over
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
    assert predict_videos(with_meta, synth[2][:1], topk=1, spec=SPEC)[0]["topk"][0]["label"] in ["w", "x", "y", "z"]
    (weights.parent / "classes.txt").write_text("\n".join(CLASSES) + "\n")  # an engine run directory
    try:
        assert resolve_class_names(model, None, weights) == [CLASSES]
        assert predict_videos(weights.parent, synth[2][:1], spec=SPEC)[0]["topk"][0]["label"] in CLASSES
    finally:
        (weights.parent / "classes.txt").unlink()
    ucf = tmp_path / "classInd.txt"
    ucf.write_text("1 ApplyEyeMakeup\n2 ApplyLipstick\n3 Archery\n4 BabyCrawling\n")
    assert resolve_class_names(model, ucf)[0][2] == "Archery"
    with pytest.raises(ValueError, match="3 class names for a classifier of 4"):
        resolve_class_names(model, ["a", "b", "c"])


def test_input_spec_from_the_run_recipe_else_the_config_defaults(synth, tmp_path, caplog):
    run = tmp_path / "run"
    save_weights(create_model("tsm_r18", num_classes=4, num_segments=4), run / "model_best.safetensors")
    (run / "config.yaml").write_text("data:\n  num_segments: 4\n  scale_size: 64\n  crop_size: 56\n"
                                     "train:\n  device: cuda\n")  # a CUDA run read on any machine
    spec = load_predictor(run, "cpu").spec
    assert (spec.sampling, spec.num_frames, spec.size, spec.resize, spec.views) == ("tsn", 4, 56, 64, 1)
    views = load_predictor(run, "cpu", overrides=["eval.clips=2", "eval.crops=3"]).spec
    assert (views.clips, views.crops, views.views) == (2, 3, 6)
    # A bare weights file: the typed config's defaults (TSN, 256 -> 224), said once when a video is loaded.
    (run / "config.yaml").unlink()
    bare = load_predictor(run / "model_best.safetensors", "cpu")
    assert (bare.spec.sampling, bare.spec.num_frames, bare.spec.size, bare.spec.resize) == ("tsn", 4, 224, 256)
    with caplog.at_level(logging.WARNING):
        assert bare.load(synth[2][0]).clip.shape == (3, 4, 224, 224)
    assert "config defaults" in caplog.text
    # The UCF-101 paper's C3D recipe: the centre 16 consecutive frames, 128x171 then 112.
    c3d = load_config(ROOT / "configs" / "c3d_attention_ucf101.yaml")
    pred = predict_videos(create_model("c3d_attention", num_classes=101, num_segments=16), synth[2][:1], topk=2,
                          config=c3d)[0]
    assert pred["frame_indices"] == [list(range(2, 18))] and len(pred["topk"]) == 2


def _grey_levels(clip, spec):
    """The grey level (0..255) each frame of a normalised view (3, T, H, W) of a pattern video shows, away
    from its red marker (vidattn_test_media.frame_pattern)."""
    mean, std = torch.tensor(spec.mean).view(3, 1), torch.tensor(spec.std).view(3, 1)
    return ((clip[:, :, -4:, -4:].mean(dim=(2, 3)) * std + mean) * 255)[1].numpy()  # green channel, (T,)


def test_vidattn_test_and_predict_feed_the_same_frames_and_agree(tmp_path):
    """An I3D model on a 120-frame video, dense sampling (4 frames, stride 8), with the run's 2 clips x 3
    crops and overridden to 1 x 1: `vidattn test` (run_evaluation and its test loader) and `vidattn predict`
    (predict_videos / load_predictor) take the same frames and pixels for each view and give the same
    logits; one clip is the centre window (44..68), not the video's start."""
    video = pattern_video(tmp_path / "data" / "v", n=120, height=48, width=64, fmt="mp4_h264")
    (tmp_path / "data" / "test.txt").write_text(f"{video.name} 1\n")
    cfg = config_from_dict({
        "name": "one_path", "model": {"name": "i3d_r18", "options": {"base_width": 8}},
        "data": {"dataset": "list", "root": str(tmp_path / "data"), "num_classes": 3, "num_segments": 4,
                 "sampling": "dense", "stride": 8, "scale_size": 40, "crop_size": 32, "batch_size": 2,
                 "num_workers": 0, "val_split": None, "test_split": "test", "options": {"num_classes": 3}},
        "train": {"device": "cpu", "progress": False},
        "eval": {"clips": 2, "crops": 3, "confusion_png_max_classes": 0}})
    run = tmp_path / "run"
    save_weights(create_model("i3d_r18", num_classes=3, num_segments=4, base_width=8), run / "model_best.safetensors")
    (run / "config.yaml").write_text(yaml.safe_dump(config_to_dict(cfg)))

    for clips, crops in ((2, 3), (1, 1)):
        overrides = [f"eval.clips={clips}", f"eval.crops={crops}"]
        predictor = load_predictor(run, "cpu", "fp32", overrides=overrides)
        fed = predictor.load(video)
        loader, _ = build_eval_loader(load_config(run / "config.yaml", overrides), "test",
                                      DistInfo(device=torch.device("cpu")), views=True)
        assert torch.equal(next(iter(loader))["clip"][0], fed.clip)  # the same pixels, view for view
        starts = [44] if clips == 1 else [0, 88]  # the centre window; two windows at both ends of the video
        assert fed.indices.tolist() == [[s + 8 * k for k in range(4)] for s in starts]
        per_view = fed.clip.reshape(-1, *fed.clip.shape[-4:])
        for v in range(clips * crops):  # the pixels show those frames of the encoded video
            np.testing.assert_allclose(_grey_levels(per_view[v], predictor.spec),  # frames differ by 7 levels
                                       [level(i) for i in fed.indices[v // crops]], atol=2)

        tested = run_evaluation(run, overrides=overrides, split="test", output_dir=tmp_path / "eval").records[0]
        logits = predictor.run(fed.clip.unsqueeze(0)).mean_logits()[0][0]
        torch.testing.assert_close(tested["logits"][0], logits, rtol=1e-5, atol=1e-6)
        predicted = predict_videos(run, [video], topk=3, overrides=overrides, precision="fp32")[0]
        assert predicted["frame_indices"] == fed.indices.tolist()
        probs = torch.zeros(3)
        for t in predicted["topk"]:
            probs[t["index"]] = t["probability"]
        torch.testing.assert_close(tested["scores"][0], probs, rtol=0, atol=2e-6)


def test_unreadable_video_raises_or_is_reported(synth, tmp_path):
    _, weights, videos = synth
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video")
    from vidattn.data import VideoError

    with pytest.raises(VideoError, match="bad.mp4"):
        predict_videos(weights, [bad], spec=SPEC)
    preds = predict_videos(weights, [bad, videos[0]], spec=SPEC, on_error="skip")
    assert "error" in preds[0] and "topk" not in preds[0] and "topk" in preds[1]
    with pytest.raises(ValueError, match="no 'topk'"):
        annotate_video(bad, preds[0], tmp_path / "x.mp4")


@pytest.mark.parametrize("ext", ["mp4", "gif"])
def test_annotate_video_overlays_top5_on_every_frame(synth, tmp_path, ext):
    _, weights, videos = synth
    pred = predict_videos(weights, videos[:1], spec=SPEC, class_names=CLASSES)[0]
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
