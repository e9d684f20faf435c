"""Latency of exported models beside PyTorch's paths, in one process: per model, `vidattn export`'s file on its
runtime (onnxruntime fp32; with --formats also the ExportedProgram and TorchScript files) against PyTorch eager
fp32 (`model.eval()` under no_grad, contiguous), the Predictor in fp32 (BN folded, channels-last) and the
Predictor's default path (bf16 autocast where the CPU has native bf16). All rows of a model are timed
interleaved (`models.interleaved`: round r of every row ran at nearly the same time); a row reports the median
ms per call, a ratio the median of the per-round ratios (`models.paired_ratio`). Weights are random (latency
does not depend on them); the exports are verified against PyTorch as `vidattn export` verifies them. Like
benchmarks/models.py, the process opts in to the tuned glibc allocator.

    python benchmarks/export_latency.py [--models tsm_r50 tsm_w3_r50] [--frames 8] [--size 224] [--batch 1]
        [--threads N] [--repeats 10] [--warmup 2] [--formats onnx exported-program torchscript]
        [--options '{"base_width": 8}'] [--out export_latency.json]
"""

from __future__ import annotations

import argparse
import copy
import datetime
import json
import os
import platform
import statistics
import tempfile
from pathlib import Path

import onnxruntime
import torch

from models import interleaved, paired_ratio
from vidattn.export import FORMATS, export_model, load_exported
from vidattn.inference import Predictor, bf16_is_fast, default_spec
from vidattn.models import create_model
from vidattn.runtime import tune_cpu_allocator


def bench_model(name: str, options: dict, frames: int, size: int, batch: int, formats: list[str], repeats: int,
                warmup: int, workdir: Path) -> tuple[list[dict], list[dict]]:
    """Rows (ms per call of each path) and ratios (each exported file against each PyTorch path)."""
    model = create_model(name, 174, frames, **options).eval()
    spec = default_spec(frames, [f"data.crop_size={size}"])  # the Predictor's input for a bare model
    clips = torch.randn(batch, 3, frames, size, size)
    fp32, default = Predictor(copy.deepcopy(model), precision="fp32"), Predictor(copy.deepcopy(model))
    paths = {"pytorch eager fp32": lambda: _no_grad(model, clips),
             "predictor fp32": lambda: fp32.logits(clips),
             f"predictor default ({default.plan.precision})": lambda: default.logits(clips)}
    exported = {}
    for fmt in formats:
        result = export_model(model, workdir / f"{name}{FORMATS[fmt]}", fmt, spec=spec, batch=batch)
        run, runtime = load_exported(result.path)
        exported[f"{fmt} ({runtime})"] = run
        print(f"{name}: {fmt} exported, max |logit difference| {result.max_abs_diff:.1e} "
              f"({result.rel_diff:.1e} of the largest logit)")
    paths.update({key: (lambda run=run: run(clips)) for key, run in exported.items()})
    times = interleaved(paths, repeats, warmup)
    rows = [{"model": name, "path": key, "frames": frames, "size": size, "batch": batch,
             "ms": 1e3 * statistics.median(t), "round_ms": [1e3 * x for x in t]} for key, t in times.items()]
    ratios = [{"model": name, "ratio": f"{a} / {b}", "value": paired_ratio(times[a], times[b])}
              for a in exported for b in paths if b not in exported]
    return rows, ratios


def _no_grad(model: torch.nn.Module, clips: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(clips)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", nargs="+", default=["tsm_r50", "tsm_w3_r50"])
    ap.add_argument("--options", default="{}", help="create_model options as JSON, for every model")
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--formats", nargs="+", default=["onnx"], choices=list(FORMATS))
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--out", type=Path, default=Path("export_latency.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    allocator_tuned = tune_cpu_allocator()
    fast, why = bf16_is_fast(torch.device("cpu"))
    meta = {"date": datetime.datetime.now().isoformat(timespec="seconds"), "machine": platform.machine(),
            "processor": platform.processor(), "cpus": os.cpu_count(), "threads": args.threads,
            "torch": torch.__version__, "onnxruntime": onnxruntime.__version__, "bf16_native": fast,
            "bf16_evidence": why, "cpu_allocator_tuned": allocator_tuned}
    print(json.dumps(meta, indent=1))
    rows, ratios = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            r, q = bench_model(name, json.loads(args.options), args.frames, args.size, args.batch, args.formats,
                               args.repeats, args.warmup, Path(tmp))
            rows += r
            ratios += q
    print(f"\n{'model':12} {'path':42} {'ms/call':>9}   ({args.frames}x{args.size}, batch {args.batch}, "
          f"{args.threads} threads)")
    for r in rows:
        print(f"{r['model']:12} {r['path']:42} {r['ms']:9.1f}")
    for q in ratios:
        print(f"{q['model']}: {q['ratio']} = {q['value']:.3f}")
    args.out.write_text(json.dumps({"meta": meta, "rows": rows, "ratios": ratios}, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
