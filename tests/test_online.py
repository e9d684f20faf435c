"""Online recognition (`vidattn.online`): a causal model fed frame by frame gives the offline causal model's
per-frame logits and consensus, on the Predictor's fast path and the reference one, for streams longer and
shorter than its clips; the caches reset between streams; a causal recipe trains and streams from its run."""

import copy
from pathlib import Path

import numpy as np
import pytest
import torch

from vidattn.config import load_config
from vidattn.data import InputSpec, generate_synth_actions
from vidattn.data.video import write_video
from vidattn.engine.train import run_training
from vidattn.inference import Predictor, load_predictor
from vidattn.models import create_model
from vidattn.online import OnlineRecognizer

TOL = {"rtol": 1e-5, "atol": 1e-5}
SPEC = InputSpec(4, size=16, resize=16)  # the runner's geometry; the tests below feed it float frames
RECIPE = Path(__file__).resolve().parents[1] / "configs" / "synth_actions.yaml"


def causal_model(name, num_segments=4, num_classes=5):
    """A small causal model with non-trivial numbers: masks away from their open init, BatchNorm statistics
    and affine terms drawn at random (so folding them matters), a classifier giving logits of order 1."""
    options = {"base_width": 8, "stem": "small", "causal": True}
    if "w3" in name:
        options["attention_options"] = {"mask_init_bias": None}
    model = create_model(name, num_classes=num_classes, num_segments=num_segments, **options)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.1)
        for fc in model.head.modules():
            if isinstance(fc, torch.nn.Linear):
                fc.weight.normal_(0, 0.3)
    return model.eval()


def offline(model, clip, return_all=False):
    """The offline causal model on a whole clip (B, 3, L, H, W): frame logits (B, L, K) per head (a tuple)."""
    twin = model.with_num_segments(clip.shape[2])
    with torch.no_grad():
        out = twin.forward_features(clip, keep_maps=return_all)
        logits = twin.frame_logits(out.features)
    return (logits if isinstance(logits, tuple) else (logits,)), out.attention


def stream(runner, clip, keep_maps=False):
    return [runner.step(clip[0, :, t], keep_maps=keep_maps) for t in range(clip.shape[2])]


@pytest.mark.parametrize(("name", "fast"), [("tsm_r18", True), ("tsm_w3_r18", True), ("tsm_cbam_r18", True),
                                            ("tsm_w3_r18", False)])
def test_online_frames_equal_the_offline_causal_model_and_the_running_consensus(name, fast):
    """Per frame: the logits and the last block's spatial mask of the offline causal model on the clip (fp32,
    1e-5); after t frames: the offline model's consensus (mean of frame logits, softmax) over frames 0..t."""
    model = causal_model(name)
    clip = torch.randn(1, 3, 4, 16, 16)
    (expected,), maps = offline(model, clip, return_all=True)
    runner = OnlineRecognizer(copy.deepcopy(model), SPEC, fast=fast)
    assert any(type(m).__name__.startswith("Fast") for m in runner.predictor.model.modules()) == fast
    results = stream(runner, clip, keep_maps=True)
    assert [r.index for r in results] == [0, 1, 2, 3] and runner.frames_seen == 4
    torch.testing.assert_close(torch.stack([r.frame_logits for r in results]), expected[0], **TOL)
    assert expected.abs().max() > 0.1  # logits of order 1: the tolerance means something
    for t, r in enumerate(results):
        with torch.no_grad():
            consensus = model.with_num_segments(t + 1)(clip[:, :, :t + 1]).softmax(dim=-1)[0]
        torch.testing.assert_close(r.video_probs, consensus, **TOL)
        spatial = [m["spatial"] for m in maps.values() if "spatial" in m]
        if name == "tsm_r18":
            assert r.spatial_mask is None and not spatial
        else:
            torch.testing.assert_close(r.spatial_mask, spatial[-1][0, t], **TOL)
        assert r.latency_ms > 0


def test_a_stream_longer_than_the_clip_length_equals_the_offline_model_on_the_whole_stream():
    """A model trained on 4-frame clips streams 10 frames: the offline causal model on the 10-frame clip."""
    model = causal_model("tsm_w3_r18")
    clip = torch.randn(1, 3, 10, 16, 16)
    (expected,), _ = offline(model, clip)
    results = stream(OnlineRecognizer(copy.deepcopy(model), SPEC), clip)
    torch.testing.assert_close(torch.stack([r.frame_logits for r in results]), expected[0], **TOL)
    torch.testing.assert_close(results[-1].video_probs, expected[0].mean(dim=0).softmax(dim=-1), **TOL)


@pytest.mark.parametrize("length", [1, 2])
def test_a_stream_shorter_than_the_temporal_kernel_and_every_head(length):
    """1-2 frames, fewer than W3's temporal kernel (3): the caches start as the offline zero padding. A
    two-head model: `frame_logits` is the first head's, `heads` / `video_heads` carry both."""
    model = causal_model("tsm_w3_r18", num_classes=(5, 3))
    clip = torch.randn(1, 3, length, 16, 16)
    expected, _ = offline(model, clip)
    results = stream(OnlineRecognizer(copy.deepcopy(model), SPEC), clip)
    for t, r in enumerate(results):
        assert len(r.heads) == len(r.video_heads) == 2 and r.frame_logits is r.heads[0]
        for head, z in enumerate(expected):
            torch.testing.assert_close(r.heads[head], z[0, t], **TOL)
            torch.testing.assert_close(r.video_heads[head], z[0, :t + 1].mean(dim=0).softmax(dim=-1), **TOL)
    assert results[-1].video_probs is results[-1].video_heads[0]


def test_reset_starts_a_new_stream():
    """Two streams in a row with `reset` between give what two fresh runners give; without it, the second
    stream starts from the first one's last frames (the caches carry over)."""
    model = causal_model("tsm_w3_r18")
    a, b = torch.randn(1, 3, 3, 16, 16), torch.randn(1, 3, 3, 16, 16)
    runner = OnlineRecognizer(copy.deepcopy(model), SPEC)
    first = stream(runner, a)
    runner.reset()
    assert runner.frames_seen == 0
    second = stream(runner, b)
    for got, clip in ((first, a), (second, b)):
        fresh = stream(OnlineRecognizer(copy.deepcopy(model), SPEC), clip)
        assert [r.index for r in got] == [0, 1, 2]
        for x, y in zip(got, fresh):
            torch.testing.assert_close(x.frame_logits, y.frame_logits, rtol=0, atol=0)
            torch.testing.assert_close(x.video_probs, y.video_probs, rtol=0, atol=0)
    carried = stream(runner, b)  # no reset: frame 0 sees the end of the previous stream
    assert carried[0].index == 3 and (carried[0].frame_logits - second[0].frame_logits).abs().max() > 1e-4


def test_non_causal_and_3d_models_are_refused_in_one_line():
    with pytest.raises(ValueError, match=r"tsm_r18 is not causal \(backbone\.layer1\.0\.temporal and 7 more"):
        OnlineRecognizer(create_model("tsm_r18", num_classes=3, num_segments=4, base_width=8))
    with pytest.raises(ValueError, match=r"tsn_w3_r18 is not causal \(backbone\.layer1\.0\.attn and 7 more"):
        OnlineRecognizer(create_model("tsn_w3_r18", num_classes=3, num_segments=4, base_width=8))
    with pytest.raises(ValueError, match="i3d_r18 is not a 2D recognizer"):
        OnlineRecognizer(create_model("i3d_r18", num_classes=3, num_segments=4, base_width=8))
    runner = OnlineRecognizer(causal_model("tsm_r18"), SPEC)
    with pytest.raises(ValueError, match=r"expected one RGB uint8 frame \(H, W, 3\), got uint8 \(2, 8, 8, 3\)"):
        runner.step(np.zeros((2, 8, 8, 3), np.uint8))
    with pytest.raises(ValueError, match="float"):
        runner.step(torch.zeros(3, 16, 16, dtype=torch.int64))


def test_uint8_frames_are_preprocessed_as_the_predictors_clips(tmp_path):
    """The frames of an encoded video, one at a time: the Predictor's clip of that video, pixel for pixel
    (its spec's resize 40 x 53 -> centre crop 32, non-ImageNet mean/std), and stepping the uint8 frame equals
    stepping its preprocessed tensor."""
    rng = np.random.default_rng(0)
    video = write_video(rng.integers(0, 256, (6, 48, 64, 3), dtype=np.uint8), tmp_path / "v.avi")
    spec = InputSpec(4, size=32, resize=40, mean=(0.4, 0.5, 0.6), std=(0.2, 0.25, 0.3))
    model = causal_model("tsm_cbam_r18")
    clips = Predictor(copy.deepcopy(model), device="cpu", precision="fp32", spec=spec).load(video, views=False)
    runner = OnlineRecognizer(copy.deepcopy(model), spec)
    assert clips.frames.shape == (4, 48, 64, 3) and clips.clip.shape == (3, 4, 32, 32)
    for t, frame in enumerate(clips.frames):
        torch.testing.assert_close(runner.preprocess(frame), clips.clip[:, t], rtol=0, atol=0)
    by_frame = [runner.step(frame).frame_logits for frame in clips.frames]
    runner.reset()
    by_tensor = [runner.step(clips.clip[:, t]).frame_logits for t in range(4)]
    torch.testing.assert_close(torch.stack(by_frame), torch.stack(by_tensor), rtol=0, atol=0)


def test_bf16_autocast_runs_close_to_fp32():
    model = causal_model("tsm_w3_r18")
    clip = torch.randn(1, 3, 3, 16, 16)
    fp32 = stream(OnlineRecognizer(copy.deepcopy(model), SPEC), clip)
    bf16 = stream(OnlineRecognizer(copy.deepcopy(model), SPEC, dtype=torch.bfloat16), clip)
    for a, b in zip(fp32, bf16):
        assert b.frame_logits.dtype == torch.float32
        torch.testing.assert_close(b.frame_logits, a.frame_logits, rtol=0.05, atol=0.05)
    with pytest.raises(ValueError, match="dtype must be one of"):
        OnlineRecognizer(copy.deepcopy(model), SPEC, dtype=torch.int8)


def test_a_causal_recipe_trains_through_the_engine_and_streams_from_its_run(tmp_path):
    """`model.options: {causal: true}` trains with the engine; `OnlineRecognizer.from_weights(run_dir)` takes
    the run's spec and class names, and fed a test video's sampled frames ends on the Predictor's prediction."""
    data = generate_synth_actions(tmp_path / "data", num_classes=4, videos_per_class=2, num_frames=8, size=32,
                                  split=(0.5, 0.25, 0.25), workers=1, progress=False)
    overrides = {
        "data.root": str(data), "data.num_classes": 4, "data.num_segments": 4, "data.scale_size": 32,
        "data.crop_size": 32, "data.batch_size": 4, "data.num_workers": 0, "data.test_split": "null",
        "model.name": "tsm_w3_r18", "model.options": "{base_width: 8, stem: small, causal: true}",
        "optim.name": "adam", "optim.lr": 1e-3, "optim.schedule": "constant", "optim.warmup_epochs": 0,
        "train.epochs": 1, "train.output_dir": str(tmp_path / "runs"), "train.run_name": "run",
        "train.progress": False, "train.num_threads": 1,
    }
    result = run_training(load_config(RECIPE, [f"{k}={v}" for k, v in overrides.items()]))
    runner = OnlineRecognizer.from_weights(result.run_dir)
    predictor = load_predictor(result.run_dir, device="cpu", precision="fp32")
    assert runner.spec == predictor.spec and runner.spec.size == 32
    assert runner.class_names == predictor.classes[0] and len(runner.class_names) == 4
    video = sorted((Path(data) / "videos").rglob("*.avi"))[0]
    clips = predictor.load(video, views=False)
    results = [runner.step(frame) for frame in clips.frames]
    torch.testing.assert_close(results[-1].video_probs, predictor.predict(clips.clip)[0], **TOL)
