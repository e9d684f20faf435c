"""`vidattn stream`: real videos encoded here, a frame folder, a local HTTP server, a real causal TSM+W3 model
(narrow, 32 px) run by `vidattn.online.OnlineRecognizer`; the queue policy under a model made slow by a
wrapper of this file; Ctrl-C on a real `vidattn stream` process."""

import functools
import http.server
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image
from vidattn_test_media import encode

from vidattn.analysis.visualize import denormalize
from vidattn.cli import main
from vidattn.data import open_video
from vidattn.models import create_model
from vidattn.models.compat import save_weights
from vidattn.online import OnlineRecognizer
from vidattn.predict import annotate_frames
from vidattn.stream import run_stream

ROOT = Path(__file__).resolve().parents[1]
CLASSES = ["wave", "clap", "jump", "sit"]


def moving_square(n: int, height: int = 48, width: int = 64, seed: int = 0) -> np.ndarray:
    """Textured frames with a bright square crossing them: content the model's masks respond to."""
    rng = np.random.default_rng(seed)
    frames = rng.integers(40, 90, (n, height, width, 3), dtype=np.uint8)
    for i in range(n):
        x = (i * 3) % (width - 12)
        frames[i, 14:26, x:x + 12] = (230, 210, 40)
    return frames


def make_run(root: Path, name: str) -> Path:
    """A run directory of a causal model: weights (random, BatchNorm statistics as after training), the recipe's
    input (resize 40, crop 32) and class names."""
    torch.manual_seed(0)
    model = create_model(name, num_classes=4, num_segments=4, base_width=8, causal=True)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
    save_weights(model, root / "model_best.safetensors")
    (root / "config.yaml").write_text("data:\n  num_segments: 4\n  scale_size: 40\n  crop_size: 32\n")
    (root / "classes.txt").write_text("\n".join(CLASSES) + "\n")
    return root


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    root = tmp_path_factory.mktemp("stream")
    return {"w3": make_run(root / "w3", "tsm_w3_r18"), "tsm": make_run(root / "tsm", "tsm_r18"),
            "video": encode(root / "clip", moving_square(24), fmt="mp4_h264"), "root": root}


@pytest.fixture(scope="module")
def w3(media):
    return OnlineRecognizer.from_weights(media["w3"])


def decoded(video: Path) -> np.ndarray:
    with open_video(video) as r:  # the random-access reader: another decoding path than the stream's
        return r.read(np.arange(r.num_frames))


def stream(recognizer, source, **kw):
    records = []
    summary = run_stream(recognizer, source, on_record=records.append, **kw)
    return records, summary


def timeless(records):
    """The records without their latencies (wall time)."""
    return [{k: v for k, v in r.items() if k != "latency_ms"} for r in records]


def test_each_record_is_the_recognizers_step_on_that_frame(media, w3):
    records, summary = stream(w3, media["video"], topk=4)
    frames = decoded(media["video"])
    w3.reset()
    steps = [w3.step(w3.preprocess(f)) for f in frames]
    assert [r["frame"] for r in records] == [r["step"] for r in records] == list(range(24))
    np.testing.assert_allclose([r["time"] for r in records], np.arange(24) / 25, atol=1e-6)
    for record, step in zip(records, steps):
        for key, probs in (("video_topk", step.video_probs), ("frame_topk", step.frame_logits.softmax(-1))):
            got = sorted(record[key], key=lambda t: t["index"])
            assert [t["label"] for t in got] == CLASSES
            np.testing.assert_allclose([t["probability"] for t in got], probs.tolist(), atol=2e-6)
            assert record[key][0]["probability"] == max(t["probability"] for t in got)
        assert record["dropped"] == 0 and record["latency_ms"] > 0
    assert (summary.decoded, summary.processed, summary.dropped, summary.ended, summary.error) == (24, 24, 0, "end",
                                                                                                   None)
    assert summary.final == records[-1]["video_topk"]
    # a second stream on the same recognizer starts from empty caches; max_frames counts source frames
    again, summary = stream(w3, media["video"], topk=4, max_frames=5)
    assert timeless(again) == timeless(records[:5])
    assert (summary.decoded, summary.processed, summary.ended) == (5, 5, "max_frames")


def test_a_frame_folder_and_a_url_give_what_the_file_gives(media, w3, tmp_path):
    records, _ = stream(w3, media["video"])
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, f in enumerate(decoded(media["video"])):
        Image.fromarray(f).save(folder / f"img_{i + 1:05d}.png")  # lossless: the file's decoded pixels
    from_folder, _ = stream(w3, folder, frame_template="img_{:05d}.png", fps=25)
    assert timeless(from_folder) == timeless(records)
    handler = functools.partial(_QuietHandler, directory=str(media["video"].parent))
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        url = f"http://127.0.0.1:{server.server_address[1]}/{media['video'].name}"
        # a URL is live: paced at the source's 25 fps, drop-oldest; a queue longer than the clip drops nothing
        start = time.monotonic()
        from_url, summary = stream(w3, url, queue_size=100)
        server.shutdown()
    assert time.monotonic() - start > 23 / 25 * 0.9
    assert timeless(from_url) == timeless(records)
    assert summary.source == url and summary.ended == "end"


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


class SlowModel:
    """A real recognizer whose every step takes ``seconds`` longer: a model slower than its source."""

    def __init__(self, recognizer, seconds):
        self.recognizer, self.seconds = recognizer, seconds
        self.spec, self.class_names = recognizer.spec, recognizer.class_names

    def preprocess(self, frame):
        return self.recognizer.preprocess(frame)

    def step(self, x, keep_maps=False):
        time.sleep(self.seconds)
        return self.recognizer.step(x, keep_maps)

    def reset(self):
        self.recognizer.reset()


def test_a_slow_model_on_a_realtime_source_drops_the_oldest_frames_and_counts_them(media, w3, tmp_path):
    video = encode(tmp_path / "30", moving_square(30), fmt="mp4_h264")  # 1.2 s at 25 fps
    records, summary = stream(SlowModel(w3, 0.1), video, realtime=True, queue_size=2)
    frames = [r["frame"] for r in records]
    assert summary.dropped > 0 and summary.processed + summary.dropped == summary.decoded == 30
    assert len(records) == summary.processed and frames == sorted(set(frames))
    assert frames[-1] == 29  # the source's end is processed: the newest frames are kept
    dropped = [r["dropped"] for r in records]
    assert dropped == sorted(dropped) and dropped[-1] <= summary.dropped
    # every record counts the frames skipped before it, at most (queue 2) the frames decoded meanwhile
    assert all(f - i <= d for i, (f, d) in enumerate(zip(frames, dropped)))
    # the default for a file: the reader waits for the slow model, every frame is processed
    records, summary = stream(SlowModel(w3, 0.03), video, max_frames=8, queue_size=2)
    assert [r["frame"] for r in records] == list(range(8)) and summary.dropped == 0


def test_annotated_video_has_every_frame_and_the_w3_mask_overlaid(media, w3, tmp_path):
    frames = decoded(media["video"])
    diffs = {}
    for name in ("w3", "tsm"):
        recognizer = w3 if name == "w3" else OnlineRecognizer.from_weights(media["tsm"])
        out = tmp_path / f"{name}.mp4"
        records, _ = stream(recognizer, media["video"], video=out)
        with av.open(str(out)) as c:
            written = np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])
        assert len(written) == len(frames) == 24
        # the frame as the model saw it with the running label, no mask: what a model without attention shows
        plain = np.stack([annotate_frames(denormalize(recognizer.preprocess(f)[:, None], recognizer.spec),
                                          {"topk": r["video_topk"]}, k=1)[0] for f, r in zip(frames, records)])
        assert written.shape == plain.shape == (24, 256, 256, 3)
        diffs[name] = np.abs(written[:, 64:].astype(int) - plain[:, 64:]).mean()  # below the label box
    assert diffs["tsm"] < 4 < 20 < diffs["w3"], diffs  # H.264 noise only, vs the colour-mapped mask


def test_cli_json_lines_and_one_line_errors(media, tmp_path, capsys):
    out = tmp_path / "lines.jsonl"
    assert main(["stream", str(media["video"]), "--weights", str(media["w3"]), "--topk", "2",
                 "--out", str(out)]) == 0
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(lines) == 24 and [len(r["video_topk"]) for r in lines] == [2] * 24
    assert set(lines[0]) == {"frame", "time", "step", "video_topk", "frame_topk", "latency_ms", "dropped"}
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "source ended; frames: 24 processed, 0 dropped, 24 decoded" in err[0]
    assert f"final prediction: {lines[-1]['video_topk'][0]['label']}" in err[0]
    # a file that breaks off mid-stream (AVI: its header lists 60 frames): the error, then the summary
    whole = encode(tmp_path / "long", moving_square(60), fmt="avi_xvid").read_bytes()
    (tmp_path / "cut.avi").write_bytes(whole[: len(whole) * 6 // 10])
    assert main(["stream", str(tmp_path / "cut.avi"), "--weights", str(media["w3"])]) == 1
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    processed = len(captured.out.splitlines())
    assert 0 < processed < 60 and len(err) == 2
    assert err[0].startswith(f"vidattn: error: {tmp_path / 'cut.avi'}: truncated: the container lists 60 frames")
    assert f"source failed; frames: {processed} processed" in err[1]
    # a video the annotation cannot write: one line, before the stream starts
    assert main(["stream", str(media["video"]), "--weights", str(media["w3"]), "--video", str(tmp_path / "a.gif")]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [f"vidattn: error: {tmp_path / 'a.gif'}: unsupported video "
                                                           "extension '.gif'; use .mp4 or .avi"]
    # a missing file: one line, before any model is loaded
    assert main(["stream", str(tmp_path / "nope.mp4"), "--weights", str(tmp_path / "no-run")]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [f"vidattn: error: {tmp_path / 'nope.mp4'}: no such "
                                                           "file or folder"]


def test_ctrl_c_ends_a_realtime_stream_cleanly(media, tmp_path):
    video = encode(tmp_path / "long", moving_square(250), fmt="mp4_h264")  # 10 s at 25 fps
    lines, mp4 = tmp_path / "lines.jsonl", tmp_path / "annotated.mp4"
    proc = subprocess.Popen([sys.executable, "-m", "vidattn.cli", "stream", str(video), "--weights",
                             str(media["w3"]), "--realtime", "--out", str(lines), "--video", str(mp4)],
                            stderr=subprocess.PIPE, text=True, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.monotonic() + 60
    while (not lines.exists() or len(lines.read_text().splitlines()) < 5) and time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read()
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    summary = err.strip().splitlines()[-1]
    records = [json.loads(line) for line in lines.read_text().splitlines()]
    assert f"stopped; frames: {len(records)} processed" in summary and "final prediction:" in summary
    assert 5 <= len(records) < 250
    with av.open(str(mp4)) as c:
        assert sum(1 for _ in c.decode(video=0)) == len(records)
