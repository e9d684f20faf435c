"""Online recognition speed: frames per second and per-frame latency of `vidattn.online.OnlineRecognizer`.

Rows: causal tsm_r50 and causal tsm_w3_r50 (AFR) at 224 px, one frame per step, on the default path (the
Predictor's: BatchNorm folded, channels-last, the fast layer), each precision asked for. Every round feeds
`--frames` frames to each runner in turn (model 1's frames, model 2's, ..., then the next round), so a
shared, noisy machine slows all rows alike. A step is timed as `StepResult.latency_ms` reports it: from a
decoded uint8 frame (resize, crop, normalise included) to the running video prediction. Reported: median
and p95 latency, frames per second (1000 / mean latency), and the ratio of the two models' medians.

    python benchmarks/online.py [--threads 2] [--frames 30] [--rounds 3] [--precision fp32 bf16]
        [--size 224] [--out online.json]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
from pathlib import Path

import numpy as np
import torch

from fast import cpu_model_name  # benchmarks/fast.py, beside this script
from vidattn.data.clips import InputSpec
from vidattn.inference import bf16_is_fast
from vidattn.models import create_model
from vidattn.online import OnlineRecognizer
from vidattn.runtime import tune_cpu_allocator

MODELS = {"tsm_r50 (causal)": "tsm_r50", "tsm_w3_r50 (causal, AFR)": "tsm_w3_r50"}
DTYPES = {"fp32": None, "bf16": torch.bfloat16}


def runner(name: str, precision: str, size: int) -> OnlineRecognizer:
    torch.manual_seed(0)
    model = create_model(name, 174, 8, causal=True)
    spec = InputSpec(8, "tsn", size=size, resize=size * 8 // 7)
    return OnlineRecognizer(model, spec, dtype=DTYPES[precision])


def measure(precisions: list[str], frames: int, rounds: int, size: int, warmup: int = 3) -> list[dict]:
    rng = np.random.default_rng(0)
    stream = rng.integers(0, 256, (frames, size * 8 // 7, size * 8 // 7 * 4 // 3, 3), dtype=np.uint8)  # 4:3 video
    rows = []
    for precision in precisions:
        runners = {row: runner(name, precision, size) for row, name in MODELS.items()}
        for r in runners.values():  # warm-up: first calls allocate and pick kernels
            for frame in stream[:warmup]:
                r.step(frame)
        latency: dict[str, list[float]] = {row: [] for row in runners}
        for _ in range(rounds):
            for row, r in runners.items():
                r.reset()
                latency[row] += [r.step(frame).latency_ms for frame in stream]
        for row, ms in latency.items():
            rows.append({"model": row, "precision": precision, "frames": len(ms),
                         "median_ms": statistics.median(ms), "p95_ms": float(np.percentile(ms, 95)),
                         "fps": 1000.0 / statistics.fmean(ms)})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--frames", type=int, default=30)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--precision", nargs="+", default=["fp32", "bf16"], choices=list(DTYPES))
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--out", type=Path, default=Path("online.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    tuned = tune_cpu_allocator()
    fast_bf16, why = bf16_is_fast(torch.device("cpu"))
    rows = measure(args.precision, args.frames, args.rounds, args.size)
    print(f"{'model':28s} {'precision':9s} {'median ms':>10s} {'p95 ms':>8s} {'fps':>6s}")
    for r in rows:
        print(f"{r['model']:28s} {r['precision']:9s} {r['median_ms']:10.1f} {r['p95_ms']:8.1f} {r['fps']:6.1f}")
    ratios = {}
    for precision in args.precision:
        by = {r["model"]: r for r in rows if r["precision"] == precision}
        w3, tsm = by["tsm_w3_r50 (causal, AFR)"], by["tsm_r50 (causal)"]
        ratios[precision] = w3["median_ms"] / tsm["median_ms"]
        print(f"{precision}: TSM+W3 / TSM median latency {ratios[precision]:.3f}")
    meta = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "cpu": cpu_model_name(), "threads": args.threads, "torch": torch.__version__,
            "bf16_native": fast_bf16, "bf16_why": why, "cpu_allocator_tuned": tuned,
            "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
            "python": platform.python_version(), "size": args.size}
    args.out.write_text(json.dumps({"meta": meta, "rows": rows, "w3_over_tsm": ratios}, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
