"""Model throughput: clips/s, ms/clip and achieved GFLOP/s against the measured matmul ceiling.

Every group (frames T, batch B, precision, eager/compiled) times its models interleaved in one process
(model 1, model 2, ..., model 1, ...), `--repeats` rounds after `--warmup` rounds; a row reports the median,
a ratio between rows the median of the per-round ratios, so it is fair on a shared, noisy machine.
Inference goes through `vidattn.inference.Predictor` with the precision forced, channels-last on (the
default path). The benchmark opts its process in to the tuned glibc allocator (`vidattn.runtime`) before it
measures anything; `VIDATTN_CPU_ALLOCATOR=system` measures glibc's defaults instead. Rows:
  - tsn_r50 (= ResNet-50 over the T frames + average: the "plain ResNet-50" row, same MACs), tsm_r50,
    tsm_w3_r50 (with AFR, the paper's model), tsm_w3_r50 without AFR, tsm_cbam_r50, tsm_nl_r50;
  - the UCF-101 paper's c3d_attention / c3d at 16x112x112: ours (Predictor, fp32 channels_last_3d) vs a naive
    fp32 contiguous functional implementation of the same layers;
  - a training step (forward, cross-entropy, backward, SGD) of tsm_w3_r50: fp32 eager contiguous vs fp32
    channels-last vs bf16 autocast channels-last.
GFLOP/s = 2 * MACs / time, MACs per view from `vidattn.analysis.flops.count_model` (x3 for a training step).
The ceiling is the best GFLOP/s of a square matmul in the same precision, measured at the start (bf16 always:
issue 10's floor target puts tsm_r50 on the default path against the bf16 matmul floor, MACs at that rate).
Targets printed beside the ratios are issue 10's; the load average before and after goes into the JSON.
The official TSM code as a peer: benchmarks/official_tsm.py.

    python benchmarks/models.py --threads 1 --frames 8 --batch 1 --precision fp32 bf16 [--modes eager compiled]
        [--size 224] [--repeats 5] [--no-ucf] [--no-train] [--train-size 112] [--out models.json]
The full grid (T 8/16, B 1/8, fp32/bf16, eager/compiled) takes hours on a 2-core CPU; pick a subset.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vidattn.analysis.flops import count_model
from vidattn.inference import Predictor, bf16_is_fast, to_channels_last
from vidattn.models import create_model
from vidattn.runtime import tune_cpu_allocator

MODELS = {  # row name -> (registry name, options)
    "tsn_r50 (plain R50)": ("tsn_r50", {}),
    "tsm_r50": ("tsm_r50", {}),
    "tsm_w3_r50 (AFR)": ("tsm_w3_r50", {}),
    "tsm_w3_r50 (no AFR)": ("tsm_w3_r50", {"afr": False}),
    "tsm_cbam_r50": ("tsm_cbam_r50", {}),
    "tsm_nl_r50": ("tsm_nl_r50", {}),
    # beyond the rows (select with --models): W3 on TAM and on a 3D network
    "tam_r50": ("tam_r50", {}),
    "tam_w3_r50": ("tam_w3_r50", {}),
    "i3d_r50": ("i3d_r50", {}),
    "i3d_w3_r50": ("i3d_w3_r50", {}),
}
DEFAULT_ROWS = list(MODELS)[:6]
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def interleaved(fns: dict[str, Callable[[], object]], repeats: int, warmup: int) -> dict[str, list[float]]:
    """Seconds per call of each function in each of `repeats` rounds, timed round-robin after `warmup`
    rounds (so round r of every function ran at nearly the same time: see `paired_ratio`)."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - start)
    return times


def paired_ratio(a: list[float], b: list[float]) -> float:
    """Median over rounds of a[r] / b[r]: a shared machine's slow spells hit both rows of a round alike."""
    return statistics.median(x / y for x, y in zip(a, b))


def matmul_ceiling(precision: str, repeats: int = 7) -> float:
    """Best GFLOP/s of a square matmul in `precision`, sized so one product takes at least ~50 ms."""
    dtype = DTYPES[precision]
    n = 256
    while True:
        a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
        start = time.perf_counter()
        a @ b
        if time.perf_counter() - start > 0.05 or n >= 4096:
            break
        n *= 2
    a @ b
    best = float("inf")
    for _ in range(repeats):  # the best run: a ceiling, not a typical figure
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9


def _row(name: str, group: dict, times: list[float], macs: float, ceiling: float) -> dict:
    sec = statistics.median(times)
    gflops = 2 * macs * group["batch"] / sec / 1e9
    return {"name": name, **group, "ms_per_clip": 1e3 * sec / group["batch"], "clips_per_s": group["batch"] / sec,
            "gmacs_per_clip": macs / 1e9, "gflops": gflops, "ceiling_gflops": ceiling,
            "fraction_of_ceiling": gflops / ceiling, "round_ms": [1e3 * t / group["batch"] for t in times]}


def bench_recognizers(names: list[str], frames: int, batch: int, precision: str, mode: str, size: int,
                      repeats: int, warmup: int, ceiling: float) -> list[dict]:
    x = torch.randn(batch, 3, frames, size, size)
    fns, macs = {}, {}
    for row in names:
        reg, options = MODELS[row]
        torch.manual_seed(0)
        model = create_model(reg, num_classes=174, num_segments=frames, **options)
        pred = Predictor(model, device="cpu", precision=precision, channels_last=True, compile=mode == "compiled")
        fns[row] = lambda p=pred: p.logits(x)
        macs[row] = count_model(reg, frames, size, **options).macs
    secs = interleaved(fns, repeats, warmup)
    group = {"frames": frames, "batch": batch, "size": size, "precision": precision, "mode": mode}
    return [_row(row, group, secs[row], macs[row], ceiling) for row in names]


def naive_c3d(model: nn.Module, x: Tensor) -> Tensor:
    """The UCF-101 paper's layers in plain fp32 contiguous functional calls (the baseline to beat)."""
    f = F.relu(F.conv3d(x, model.conv.weight, model.conv.bias, padding=model.conv.padding))
    if model.gate is not None:
        f = f * torch.sigmoid(F.conv3d(f, model.gate.weight, model.gate.bias))
    h = F.adaptive_avg_pool3d(f, model.pool.output_size).flatten(1)
    for layer in model.fc:
        if isinstance(layer, nn.Linear):
            h = F.relu(F.linear(h, layer.weight, layer.bias))
    return F.linear(h, model.head.fc.weight, model.head.fc.bias)


def bench_ucf(batch: int, repeats: int, warmup: int, ceiling: float, modes: list[str]) -> list[dict]:
    x = torch.randn(batch, 3, 16, 112, 112)
    rows = []
    for reg in ("c3d_attention", "c3d"):
        torch.manual_seed(0)
        naive_model = create_model(reg, num_classes=101, num_segments=16).eval()
        fns: dict[str, Callable[[], object]] = {}
        fns[f"{reg} naive fp32 contiguous"] = lambda m=naive_model: _no_grad(naive_c3d, m, x)
        for mode in modes:
            torch.manual_seed(0)
            pred = Predictor(create_model(reg, num_classes=101, num_segments=16), device="cpu",
                             compile=mode == "compiled")
            torch.testing.assert_close(pred.logits(x), _no_grad(naive_c3d, naive_model, x), rtol=1e-3, atol=1e-3)
            fns[f"{reg} predictor {pred.plan.precision} {mode}"] = lambda p=pred: p.logits(x)
        secs = interleaved(fns, repeats, warmup)
        macs = count_model(reg, 16, 112, num_classes=101).macs
        group = {"frames": 16, "batch": batch, "size": 112, "precision": "fp32"}
        for name, sec in secs.items():
            rows.append(_row(name, {**group, "mode": "compiled" if "compiled" in name else "eager"}, sec, macs,
                             ceiling))
    return rows


def _no_grad(fn: Callable, *args: object) -> object:
    with torch.inference_mode():
        return fn(*args)


def bench_train(frames: int, batch: int, size: int, repeats: int, warmup: int, ceilings: dict[str, float]
                ) -> list[dict]:
    x = torch.randn(batch, 3, frames, size, size)
    y = torch.randint(0, 174, (batch,))
    variants = {"fp32 eager contiguous": ("fp32", False), "fp32 channels_last": ("fp32", True),
                "bf16 autocast channels_last": ("bf16", True)}
    fns = {}
    for name, (precision, cl) in variants.items():
        torch.manual_seed(0)
        model = create_model("tsm_w3_r50", num_classes=174, num_segments=frames).train()
        if cl:
            to_channels_last(model)
        opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)

        def step(model: nn.Module = model, opt: torch.optim.Optimizer = opt, precision: str = precision) -> None:
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
                loss = F.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        fns[name] = step
    secs = interleaved(fns, repeats, warmup)
    macs = 3 * count_model("tsm_w3_r50", frames, size).macs  # forward + backward (2x)
    rows = []
    for name, (precision, _) in variants.items():
        group = {"frames": frames, "batch": batch, "size": size, "precision": precision, "mode": "train"}
        rows.append(_row(f"train step tsm_w3_r50 {name}", group, secs[name], macs, ceilings[precision]))
    return rows


def print_table(rows: list[dict]) -> None:
    print(f"{'row':44} {'T':>3} {'B':>3} {'size':>4} {'prec':>5} {'mode':>8} {'ms/clip':>9} {'clips/s':>8} "
          f"{'GFLOP/s':>8} {'%ceil':>6}")
    for r in rows:
        print(f"{r['name'][:44]:44} {r['frames']:>3} {r['batch']:>3} {r['size']:>4} {r['precision']:>5} "
              f"{r['mode']:>8} {r['ms_per_clip']:>9.1f} {r['clips_per_s']:>8.3f} {r['gflops']:>8.1f} "
              f"{100 * r['fraction_of_ceiling']:>5.1f}%")


def ratios(rows: list[dict], default_precision: str, bf16_ceiling: float) -> list[dict]:
    """Issue 10's target ratios within each group, and TSM-R50 on the default path (the precision the
    Predictor picks on this machine) against the bf16 matmul floor: floor time / measured time =
    achieved GFLOP/s / bf16 matmul GFLOP/s (target >= 0.9)."""
    out = []
    groups: dict[tuple, dict[str, list[float]]] = {}
    for r in rows:
        groups.setdefault((r["frames"], r["batch"], r["size"], r["precision"], r["mode"]), {})[r["name"]] = \
            r["round_ms"]
    pairs = [("tsm_r50", "tsn_r50 (plain R50)", 1.03), ("tsm_w3_r50 (AFR)", "tsm_r50", 1.05),
             ("tsm_w3_r50 (no AFR)", "tsm_r50", None), ("tsm_cbam_r50", "tsm_r50", None),
             ("tsm_nl_r50", "tsm_r50", None), ("tam_w3_r50", "tam_r50", None), ("i3d_w3_r50", "i3d_r50", None)]
    for key, ms in groups.items():
        for a, b, target in pairs:
            if a in ms and b in ms:
                out.append({"group": key, "ratio": f"{a} / {b}", "value": paired_ratio(ms[a], ms[b]),
                            "target": target, "goal": "<="})
    for r in rows:
        if r["name"] == "tsm_r50" and r["precision"] == default_precision and r["mode"] == "eager":
            out.append({"group": (r["frames"], r["batch"], r["size"], r["precision"], r["mode"]),
                        "ratio": "tsm_r50 default path: bf16 matmul floor / time",
                        "value": r["gflops"] / bf16_ceiling, "target": 0.9, "goal": ">="})
    for key, ms in groups.items():
        eager = groups.get((*key[:4], "eager"), {})  # the naive rows are timed in the eager group
        for k, v in ms.items():  # "<model> predictor ..." against "<model> naive fp32 contiguous"
            naive = eager.get(f"{k.split()[0]} naive fp32 contiguous")
            if naive is not None and "predictor" in k:
                out.append({"group": key, "ratio": f"naive / {k}", "value": paired_ratio(naive, v),
                            "target": 2.0, "goal": ">="})
    train = {r["name"]: r["round_ms"] for r in rows if r["mode"] == "train"}
    base = train.get("train step tsm_w3_r50 fp32 eager contiguous")
    for k, v in train.items():
        if base and k != "train step tsm_w3_r50 fp32 eager contiguous":
            out.append({"group": "train", "ratio": f"fp32 eager / {k}", "value": paired_ratio(base, v),
                        "target": 1.8 if "bf16" in k else None, "goal": ">="})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--frames", type=int, nargs="+", default=[8, 16])
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--precision", nargs="+", default=["fp32", "bf16"], choices=list(DTYPES))
    ap.add_argument("--modes", nargs="+", default=["eager", "compiled"], choices=["eager", "compiled"])
    ap.add_argument("--models", nargs="+", default=DEFAULT_ROWS, choices=list(MODELS))
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--no-recognizers", action="store_true")
    ap.add_argument("--no-ucf", action="store_true")
    ap.add_argument("--ucf-batch", type=int, default=8)
    ap.add_argument("--no-train", action="store_true")
    ap.add_argument("--train-size", type=int, default=224)
    ap.add_argument("--train-batch", type=int, default=1)
    ap.add_argument("--out", type=Path, default=Path("models.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    allocator_tuned = tune_cpu_allocator()  # the benchmark opts in explicitly (skipped if =system is set)
    fast, why = bf16_is_fast(torch.device("cpu"))
    precisions = sorted(set(args.precision) | {"bf16"})  # the bf16 floor is a target whatever is timed
    ceilings = {p: matmul_ceiling(p) for p in precisions}
    meta = {"date": datetime.datetime.now().isoformat(timespec="seconds"), "machine": platform.machine(),
            "processor": platform.processor(), "torch": torch.__version__, "threads": args.threads,
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "bf16_native": fast, "bf16_evidence": why,
            "matmul_ceiling_gflops": ceilings, "cpu_allocator_tuned": allocator_tuned,
            "default_precision": "bf16" if fast else "fp32", "loadavg_before": os.getloadavg()}
    print(json.dumps(meta, indent=1))
    rows: list[dict] = []
    if not args.no_recognizers:
        for frames in args.frames:
            for batch in args.batch:
                for precision in args.precision:
                    for mode in args.modes:
                        new = bench_recognizers(args.models, frames, batch, precision, mode, args.size,
                                                args.repeats, args.warmup, ceilings[precision])
                        print_table(new)
                        rows += new
    if not args.no_ucf:
        new = bench_ucf(args.ucf_batch, args.repeats, args.warmup, ceilings["fp32"], args.modes)
        print_table(new)
        rows += new
    if not args.no_train:
        new = bench_train(8, args.train_batch, args.train_size, args.repeats, args.warmup, ceilings)
        print_table(new)
        rows += new
    print_table(rows)
    write_result(args.out, meta, rows, ratios(rows, meta["default_precision"], ceilings["bf16"]))


def write_result(out: Path, meta: dict, rows: list[dict], result_ratios: list[dict]) -> None:
    """Print each ratio with its target and the load average (before the run, now); write the JSON."""
    meta["loadavg_after"] = os.getloadavg()
    for r in result_ratios:
        target = "" if r["target"] is None else f"  (target {r['goal']} {r['target']})"
        group = f"{r['group']}: " if "group" in r else ""
        print(f"{group}{r['ratio']} = {r['value']:.3f}{target}")
    print(f"load average (1, 5, 15 min): before {meta['loadavg_before']}, after {meta['loadavg_after']}")
    out.write_text(json.dumps({"meta": meta, "rows": rows, "ratios": result_ratios}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
