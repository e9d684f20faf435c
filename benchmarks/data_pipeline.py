"""Data-pipeline throughput: decode + sample + transform, clips/s, versus the TSM-R50 forward pass.

Encodes UCF-101-like test media (320x240, 25 fps, 96 frames) as MPEG-4/AVI, H.264/MP4, VP9/WebM and a JPEG
frame folder, then times a DataLoader (batch 8) over them for
  - "tsn8x224":  TSN training sampling, 8 segments, TSM multi-scale crop to 224, flip;
  - "dense16x112": dense sampling 16 frames stride 4, resize 128x171, random 112 crop, flip;
per backend (pyav, plus decord/torchcodec when installed) with 0, 1 and 2 workers. It then times
``vidattn.create_model("tsm_r50", num_classes=174, num_segments=8)`` forward passes on 8x224 clips and
reports the ratio loader/model (target >= 3). Prints a table and writes JSON.

    python benchmarks/data_pipeline.py [--clips 48] [--out data_pipeline.json]
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import av
import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader

from vidattn.data import ListDataset, build_sampler, build_train_transform, collate_clips

FORMATS = {  # name -> (suffix, codec, options)
    "avi_mpeg4": (".avi", "mpeg4", {"qscale": "3"}),
    "mp4_h264": (".mp4", "libx264" if "libx264" in av.codecs_available else "h264", {"crf": "23"}),
    "webm_vp9": (".webm", "libvpx-vp9", {"crf": "32", "b": "0", "deadline": "realtime", "cpu-used": "8"}),
}


def make_frames(n: int, h: int = 240, w: int = 320) -> np.ndarray:
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, size=(h // 8, w // 8, 3), dtype=np.uint8).repeat(8, 0).repeat(8, 1)
    frames = []
    for i in range(n):
        f = np.roll(base, shift=(i * 3, i * 5), axis=(0, 1)).copy()
        f[100:140, (i * 4) % (w - 40):(i * 4) % (w - 40) + 40] = 255
        frames.append(f)
    return np.stack(frames)


def write_media(root: Path, n: int) -> dict[str, Path]:
    frames = make_frames(n)
    out = {}
    for name, (suffix, codec, options) in FORMATS.items():
        path = root / f"{name}{suffix}"
        with av.open(str(path), "w") as c:
            s = c.add_stream(codec, rate=25, options=dict(options))
            s.width, s.height, s.pix_fmt = 320, 240, "yuv420p"
            s.codec_context.gop_size = 12  # a keyframe every 12 frames, typical of the real datasets
            for f in frames:
                for p in s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                    c.mux(p)
            for p in s.encode():
                c.mux(p)
        out[name] = path
    folder = root / "jpeg_frames"
    folder.mkdir()
    for i, f in enumerate(frames):
        Image.fromarray(f).save(folder / f"img_{i + 1:05d}.jpg", quality=90)
    out["jpeg"] = folder
    return out


PIPELINES = {
    "tsn8x224": lambda: (build_sampler("tsn", 8, train=True), build_train_transform(224)),
    "dense16x112": lambda: (build_sampler("dense", 16, train=True, stride=4),
                            build_train_transform(112, crop="random", resize=(128, 171))),
}


def time_loader(source: Path, n_frames: int, backend: str, pipeline: str, workers: int, clips: int) -> float:
    sampler, transform = PIPELINES[pipeline]()
    mode = "frames" if source.is_dir() else "video"
    line = f"{source.name} {n_frames} 0\n" if mode == "frames" else f"{source.name} 0\n"
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
        f.write(line * clips)
    try:
        ds = ListDataset(source.parent, list_file=f.name, mode=mode, sampler=sampler, transform=transform,
                         backend=backend, seed=0)
        loader = DataLoader(ds, batch_size=8, num_workers=workers, collate_fn=collate_clips)
        it = iter(loader)
        next(it)  # warm-up: worker start-up and first batch are not throughput
        start, done = time.perf_counter(), 0
        for batch in it:
            done += batch["clip"].shape[0]
        return done / (time.perf_counter() - start)
    finally:
        os.unlink(f.name)


def time_model(batch: int = 2, repeats: int = 3) -> float | None:
    try:
        from vidattn import create_model
    except ImportError as e:
        print(f"TSM-R50 forward not measured: vidattn.create_model unavailable ({e})")
        return None
    model = create_model("tsm_r50", num_classes=174, num_segments=8).eval()
    x = torch.randn(batch, 3, 8, 224, 224)
    with torch.inference_mode():
        model(x)
        start = time.perf_counter()
        for _ in range(repeats):
            model(x)
    return batch * repeats / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=int, default=48, help="clips per measurement (after one warm-up batch)")
    ap.add_argument("--frames", type=int, default=96, help="frames per test video")
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--out", default="data_pipeline.json")
    args = ap.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    backends = ["pyav"] + [b for b in ("decord", "torchcodec") if importlib.util.find_spec(b)]
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        media = write_media(Path(tmp), args.frames)
        print(f"{'pipeline':<12} {'source':<10} {'backend':<10} {'workers':>7} {'clips/s':>8}")
        for pipeline in PIPELINES:
            for name, path in media.items():
                for backend in (["frames"] if name == "jpeg" else backends):
                    for workers in args.workers:
                        rate = time_loader(path, args.frames, "pyav" if backend == "frames" else backend,
                                           pipeline, workers, args.clips)
                        results.append({"pipeline": pipeline, "source": name, "backend": backend,
                                        "workers": workers, "clips_per_s": round(rate, 2)})
                        print(f"{pipeline:<12} {name:<10} {backend:<10} {workers:>7} {rate:>8.1f}")
    model_rate = time_model()
    best = max(r["clips_per_s"] for r in results if r["pipeline"] == "tsn8x224")
    report = {
        "date": datetime.date.today().isoformat(),
        "machine": {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(),
                    "torch": torch.__version__, "pyav": av.__version__},
        "results": results,
        "tsm_r50_forward_clips_per_s": None if model_rate is None else round(model_rate, 3),
        "best_tsn8x224_loader_clips_per_s": best,
        "loader_over_model": None if model_rate is None else round(best / model_rate, 1),
    }
    if model_rate is not None:
        print(f"TSM-R50 8x224 forward: {model_rate:.2f} clips/s; best TSN 8x224 loader {best:.1f} clips/s "
              f"-> loader is {best / model_rate:.1f}x the model (target >= 3x)")
    Path(args.out).write_text(json.dumps(report, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
