"""The fast layer's worth: reference models vs `vidattn.models.fast.optimize`, side by side in one process.

Rows (fp32, no autograd, batch 1, interleaved rounds: model 1, model 2, ..., model 1, ...):
  - tsm_r50 and tsm_w3_r50 (AFR) on 8x224 clips, the UCF-101 paper's c3d_attention on 16x112;
  - "reference": the Predictor's preparation (eval, BatchNorm folded, channels-last) without `optimize`;
    "reference contiguous": the same without channels-last; "optimized": `Predictor(model)` itself;
  - ablations, to see what each fast module buys: "FastW3 only" (W3 fast, the blocks' residual add after
    it, not fused into its last multiply), "no fused conv+act" (FastC3D with the oneDNN conv+activation
    fusion off), and the 16 W3 modules of a TSM+W3-R50 forward timed alone (on each stage's map): reference,
    FastW3, FastW3 with eq. 4's multiply-adds or eq. 6's stacked-frame convs replaced by the nn modules.
A row reports the median ms per clip, a ratio the median of the per-round ratios (paired_ratio).
Printed: the table, each model's reference/optimized speed-up and W3/TSM overhead on each path.

    python benchmarks/fast.py [--threads 2] [--repeats 9] [--size 224] [--out fast.json]
"""

from __future__ import annotations

import argparse
import copy
import datetime
import json
import statistics
import subprocess
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor, nn

import vidattn.models.fast as fast
from models import interleaved, paired_ratio  # benchmarks/models.py, beside this script
from vidattn.inference import Predictor, fold_batchnorm, to_channels_last
from vidattn.models import create_model
from vidattn.models.attention import W3Attention
from vidattn.runtime import tune_cpu_allocator

# ResNet-50's four stages at 224 px: channels, size, W3 modules (blocks)
R50_STAGES = ((256, 56, 3), (512, 28, 4), (1024, 14, 6), (2048, 7, 3))


def cpu_model_name() -> str:
    """`lscpu`'s "Model name" line (the machine the docs quote)."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return next((line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name")),
                "unknown")


def run_meta(**settings: object) -> dict[str, object]:
    """The JSON header of a run: UTC date, `lscpu` model name, torch version, then `settings`."""
    return {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "cpu": cpu_model_name(), "torch": torch.__version__, **settings}


def reference_forward(model: nn.Module, x: Tensor, channels_last: bool = True) -> Callable[[], Tensor]:
    """The Predictor's preparation of `model` without the fast layer."""
    model = model.eval()
    fold_batchnorm(model)
    if channels_last:
        to_channels_last(model)

    def run() -> Tensor:
        with torch.inference_mode():
            return model(x)
    return run


def fast_w3_only(model: nn.Module, x: Tensor) -> Callable[[], Tensor]:
    """Ablation: W3 modules fast, blocks on the reference path (add after the attention, not inside it)."""
    run = reference_forward(model, x)
    for module in model.modules():
        if type(module) is W3Attention:
            module.__class__ = fast.FastW3
    return run


def _conv1d_module(v: Tensor, conv: nn.Conv1d) -> Tensor:
    return conv(v.transpose(1, 2)).transpose(1, 2)


def _conv3d_module(frames: Tensor, conv: nn.Conv3d, activation: str | None = None) -> Tensor:
    return fast.ACTIVATIONS[activation](conv(frames.transpose(1, 2))).transpose(1, 2)


def with_fast(name: str, replacement: Callable, fn: Callable[[], object]) -> Callable[[], object]:
    """Ablation: `fn` with the fast layer's helper `name` replaced for the call."""
    def run() -> object:
        kept = getattr(fast, name)
        setattr(fast, name, replacement)
        try:
            return fn()
        finally:
            setattr(fast, name, kept)
    return run


def bench_w3_modules(repeats: int, warmup: int) -> dict[str, list[float]]:
    """The 16 W3 modules of a TSM+W3-R50 forward on 8x224 (each stage's map, channels-last, times its
    blocks): reference W3, FastW3, and FastW3 with each of its own kernels replaced by the nn module."""
    stages = []
    for channels, size, blocks in R50_STAGES:
        torch.manual_seed(0)
        ref = to_channels_last(W3Attention(channels, 8).eval())
        x = torch.randn(8, channels, size, size).contiguous(memory_format=torch.channels_last)
        stages.append((ref, fast.optimize(copy.deepcopy(ref)), x, blocks))

    def network(fast_path: bool) -> Callable[[], None]:
        def run() -> None:
            with torch.inference_mode():
                for ref, opt, x, blocks in stages:
                    for _ in range(blocks):
                        (opt if fast_path else ref)(x)
        return run

    def with_residual(fused: bool) -> Callable[[], None]:
        """Each module on a fresh copy of its map (the block's own BN output) plus the identity's add."""
        def run() -> None:
            with torch.inference_mode():
                for _, opt, x, blocks in stages:
                    for _ in range(blocks):
                        out = x.clone()
                        if fused:
                            opt.forward_with_maps(out, residual=x, overwrite=True)
                        else:
                            opt(out).add_(x)
        return run
    return interleaved({
        "16 W3 modules reference": network(False),
        "16 W3 modules FastW3": network(True),
        "16 W3 modules FastW3, then += identity": with_residual(False),
        "16 W3 modules FastW3, identity fused": with_residual(True),
        "16 W3 modules FastW3, eq. 4 as nn.Conv1d": with_fast("_conv_over_time", _conv1d_module, network(True)),
        "16 W3 modules FastW3, eq. 6 as nn.Conv3d": with_fast("conv3d_on_frames", _conv3d_module, network(True)),
    }, repeats, warmup)


def build(name: str, frames: int, classes: int) -> nn.Module:
    torch.manual_seed(0)
    return create_model(name, num_classes=classes, num_segments=frames)


def bench_models(size: int, repeats: int, warmup: int) -> dict[str, list[float]]:
    clip8 = torch.randn(1, 3, 8, size, size)
    clip16 = torch.randn(1, 3, 16, 112, 112)
    fns: dict[str, Callable[[], object]] = {}
    for name in ("tsm_r50", "tsm_w3_r50"):
        model = build(name, 8, 174)
        fns[f"{name} reference"] = reference_forward(copy.deepcopy(model), clip8)
        fns[f"{name} optimized"] = (lambda p: lambda: p.logits(clip8))(Predictor(copy.deepcopy(model), "cpu", "fp32"))
    w3 = build("tsm_w3_r50", 8, 174)
    fns["tsm_w3_r50 reference contiguous"] = reference_forward(copy.deepcopy(w3), clip8, channels_last=False)
    fns["tsm_w3_r50 FastW3 only"] = fast_w3_only(copy.deepcopy(w3), clip8)
    c3d = build("c3d_attention", 16, 101)
    fns["c3d_attention reference"] = reference_forward(copy.deepcopy(c3d), clip16)
    fns["c3d_attention reference contiguous"] = reference_forward(copy.deepcopy(c3d), clip16, channels_last=False)
    predictor = Predictor(copy.deepcopy(c3d), "cpu", "fp32")
    fns["c3d_attention optimized"] = lambda: predictor.logits(clip16)
    fns["c3d_attention no fused conv+act"] = with_fast("_FUSED_CONV", None, fns["c3d_attention optimized"])
    outputs = {k: fn() for k, fn in fns.items()}  # same weights per model: every path must agree
    for k, out in outputs.items():
        base = outputs[k.split()[0] + " reference"]
        torch.testing.assert_close(out.float(), base.float(), rtol=1e-4, atol=1e-4)
    return interleaved(fns, repeats, warmup)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--out", type=Path, default=Path("fast.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    meta = run_meta(threads=args.threads, size=args.size, repeats=args.repeats,
                    cpu_allocator_tuned=tune_cpu_allocator())
    print(json.dumps(meta))
    secs = bench_models(args.size, args.repeats, args.warmup)
    secs.update(bench_w3_modules(args.repeats, args.warmup))
    rows = [{"name": k, "ms": 1e3 * statistics.median(v), "round_ms": [1e3 * t for t in v]} for k, v in secs.items()]
    print(f"{'row':40} {'ms/clip':>9}")
    for r in rows:
        print(f"{r['name']:40} {r['ms']:>9.1f}")
    pairs = [(f"{m} reference", f"{m} optimized") for m in ("tsm_r50", "tsm_w3_r50", "c3d_attention")]
    pairs += [("tsm_w3_r50 reference contiguous", "tsm_w3_r50 optimized"),
              ("tsm_w3_r50 FastW3 only", "tsm_w3_r50 optimized"),
              ("c3d_attention reference contiguous", "c3d_attention optimized"),
              ("c3d_attention no fused conv+act", "c3d_attention optimized"),
              ("tsm_w3_r50 reference", "tsm_r50 reference"), ("tsm_w3_r50 optimized", "tsm_r50 optimized"),
              ("16 W3 modules reference", "16 W3 modules FastW3"),
              ("16 W3 modules FastW3, then += identity", "16 W3 modules FastW3, identity fused"),
              ("16 W3 modules FastW3, eq. 4 as nn.Conv1d", "16 W3 modules FastW3"),
              ("16 W3 modules FastW3, eq. 6 as nn.Conv3d", "16 W3 modules FastW3")]
    ratios = [{"ratio": f"{a} / {b}", "value": paired_ratio(secs[a], secs[b])} for a, b in pairs]
    for r in ratios:
        print(f"{r['ratio']:72} {r['value']:.3f}")
    args.out.write_text(json.dumps({"meta": meta, "rows": rows, "ratios": ratios}, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
