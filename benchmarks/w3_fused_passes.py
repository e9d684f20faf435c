"""Would a hand-written kernel pay for W3? FastW3's memory-bound passes vs fused C++ passes, in one process.

The candidate for issue 10's TSM+W3 / TSM target (docs/performance.md, "Where W3's time goes"): W3's cost on a
CPU is full passes over each block's output map, not FLOPs. This script times, on the 16 channels-last maps of a
TSM+W3-R50 8x224 forward (fp32, no autograd), the passes `FastW3` makes in eager PyTorch (eq. 3's mean and max
over H, W; eq. 2's channel multiply in place; eq. 5's mean and max over C; the spatial gate fused with the
residual add) against three fused loops compiled here with `torch.utils.cpp_extension.load_inline` (one read
for both eq. 3 descriptors; one read for eq. 5's two poolings of M^c * F without writing F^c; one pass for
F * M^c * M^s + identity), plus a plain `sum()` of each map (one read: the memory floor of a pass).
Each round first copies every map into a work buffer (the passes overwrite it); that copy is timed alone
and subtracted round by round. The masks are random: only the passes are timed, not the small MLPs and
convs between them. Outputs are checked against the eager ones.

A measurement, not part of vidattn (docs/performance.md says why it was not built in): it needs a C++
compiler with OpenMP and ninja (in the dev extra; `pip install ninja`). Exits with one line if the fused
loops' outputs differ from the eager ones by more than 1e-5.

    python benchmarks/w3_fused_passes.py [--threads 2] [--repeats 15] [--out w3_fused_passes.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch
from torch import Tensor

from fast import R50_STAGES, run_meta  # benchmarks/fast.py, beside this script
from models import interleaved, paired_ratio  # benchmarks/models.py
from vidattn.models.fast import apply_mask, channel_pooled, frame_descriptors
from vidattn.runtime import tune_cpu_allocator

KERNELS = r"""
#include <torch/extension.h>
#include <cfloat>
// x: a channels-last (P, C, H, W) map, i.e. (P, H*W, C) in memory. Returns (2, P, C): mean, max over H*W.
torch::Tensor descriptors(torch::Tensor x) {
  const int64_t P = x.size(0), C = x.size(1), HW = x.size(2) * x.size(3);
  auto out = torch::empty({2, P, C}, x.options());
  const float* xp = x.data_ptr<float>();
  float* op = out.data_ptr<float>();
  #pragma omp parallel for
  for (int64_t p = 0; p < P; ++p) {
    float* s = op + p * C;
    float* m = op + (P + p) * C;
    for (int64_t c = 0; c < C; ++c) { s[c] = 0.f; m[c] = -FLT_MAX; }
    for (int64_t i = 0; i < HW; ++i) {
      const float* r = xp + (p * HW + i) * C;
      #pragma omp simd
      for (int64_t c = 0; c < C; ++c) { s[c] += r[c]; m[c] = r[c] > m[c] ? r[c] : m[c]; }
    }
    for (int64_t c = 0; c < C; ++c) s[c] /= HW;
  }
  return out;
}
// Mean and max over C of x * mask (mask (P, C)), without writing the product. Returns (P, H, W, 2).
torch::Tensor channel_pool(torch::Tensor x, torch::Tensor mask) {
  const int64_t P = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3), HW = H * W;
  auto out = torch::empty({P, H, W, 2}, x.options());
  const float* xp = x.data_ptr<float>();
  const float* mp = mask.data_ptr<float>();
  float* op = out.data_ptr<float>();
  #pragma omp parallel for collapse(2)
  for (int64_t p = 0; p < P; ++p)
    for (int64_t i = 0; i < HW; ++i) {
      const float* r = xp + (p * HW + i) * C;
      const float* mk = mp + p * C;
      float s = 0.f, m = -FLT_MAX;
      #pragma omp simd reduction(+:s) reduction(max:m)
      for (int64_t c = 0; c < C; ++c) { const float v = r[c] * mk[c]; s += v; m = v > m ? v : m; }
      op[(p * HW + i) * 2] = s / C;
      op[(p * HW + i) * 2 + 1] = m;
    }
  return out;
}
// x <- x * cmask[p, c] * smask[p, i] + res, in place (cmask (P, C), smask (P, H*W), res like x).
torch::Tensor gate_add_(torch::Tensor x, torch::Tensor cmask, torch::Tensor smask, torch::Tensor res) {
  const int64_t P = x.size(0), C = x.size(1), HW = x.size(2) * x.size(3);
  float* xp = x.data_ptr<float>();
  const float* cp = cmask.data_ptr<float>();
  const float* sp = smask.data_ptr<float>();
  const float* rp = res.data_ptr<float>();
  #pragma omp parallel for collapse(2)
  for (int64_t p = 0; p < P; ++p)
    for (int64_t i = 0; i < HW; ++i) {
      float* r = xp + (p * HW + i) * C;
      const float* q = rp + (p * HW + i) * C;
      const float* mk = cp + p * C;
      const float g = sp[p * HW + i];
      #pragma omp simd
      for (int64_t c = 0; c < C; ++c) r[c] = r[c] * (mk[c] * g) + q[c];
    }
  return x;
}
"""


def eager_passes(x: Tensor, m_c: Tensor, m_s: Tensor, identity: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """FastW3's passes through its own helpers (overwrite mode, as in a fused residual block): eq. 3
    descriptors, eq. 2 multiply, eq. 5 poolings, gate + residual add."""
    d = frame_descriptors(x, (2, 3))
    f_c = apply_mask(x, m_c[:, :, None, None], overwrite=True)
    pooled = channel_pooled(f_c)
    return apply_mask(f_c, m_s, identity, overwrite=True), d, pooled


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--out", type=Path, default=Path("w3_fused_passes.json"))
    args = ap.parse_args()
    from torch.utils.cpp_extension import is_ninja_available, load_inline
    if not is_ninja_available():
        sys.exit("w3_fused_passes.py: needs ninja to compile its kernels (pip install ninja)")
    torch.set_num_threads(args.threads)
    tune_cpu_allocator()
    kernels = load_inline("vidattn_w3_fused_passes", cpp_sources=KERNELS,
                          functions=["descriptors", "channel_pool", "gate_add_"],
                          extra_cflags=["-O3", "-fopenmp"], extra_ldflags=["-fopenmp"])

    def fused_passes(x: Tensor, m_c: Tensor, m_s: Tensor, identity: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        d = kernels.descriptors(x).flatten(0, 1)
        pooled = kernels.channel_pool(x, m_c)
        return kernels.gate_add_(x, m_c, m_s, identity), d, pooled

    torch.manual_seed(0)
    cl = torch.channels_last
    maps = [torch.randn(args.frames, c, s, s).contiguous(memory_format=cl)
            for c, s, blocks in R50_STAGES for _ in range(blocks)]
    identities = [torch.randn_like(m) for m in maps]
    channel_masks = [torch.rand(args.frames, m.shape[1]) for m in maps]
    spatial_masks = [torch.rand(args.frames, 1, *m.shape[2:]).contiguous(memory_format=cl) for m in maps]
    inputs = list(zip(maps, channel_masks, spatial_masks, identities))
    worst = 0.0
    with torch.inference_mode():  # the paths timed below (the eager masks multiply in place only here)
        for x, m_c, m_s, identity in inputs:
            want = eager_passes(x.clone(memory_format=cl), m_c, m_s, identity)
            got = fused_passes(x.clone(memory_format=cl), m_c, m_s, identity)
            worst = max(worst, *((a - b).abs().max().item() for a, b in zip(want, got)))
    if worst > 1e-5:
        sys.exit(f"w3_fused_passes.py: the fused passes differ from FastW3's by {worst:.3g} (> 1e-5)")

    work = [torch.empty_like(x) for x in maps]  # the passes overwrite their map: each round copies it back

    def over_maps(passes):
        def run() -> None:
            with torch.inference_mode():
                for w, (x, m_c, m_s, identity) in zip(work, inputs):
                    passes(w.copy_(x), m_c, m_s, identity)
        return run

    secs = interleaved({"eager passes (FastW3) + copy": over_maps(eager_passes),
                        "fused C++ passes + copy": over_maps(fused_passes),
                        "copy of each map": over_maps(lambda w, *_: w),
                        "sum() of each map + copy": over_maps(lambda w, *_: w.sum())}, args.repeats, args.warmup)
    meta = run_meta(threads=args.threads, frames=args.frames, repeats=args.repeats, max_abs_difference=worst)
    print(json.dumps(meta))
    rows = [{"name": k, "ms": 1e3 * statistics.median(v)} for k, v in secs.items()]
    copy = secs["copy of each map"]
    for r in rows:  # each round's copy subtracted from the same round's row
        r["ms_without_copy"] = 1e3 * statistics.median(a - b for a, b in zip(secs[r["name"]], copy))
    print(f"{'the 16 W3 maps of TSM+W3-R50':32} {'ms':>8} {'without the copy':>17}")
    for r in rows:
        print(f"{r['name']:32} {r['ms']:>8.1f} {r['ms_without_copy']:>17.1f}")
    ratio = paired_ratio(secs["eager passes (FastW3) + copy"], secs["fused C++ passes + copy"])
    print(f"eager / fused (with the copy): {ratio:.3f}")
    args.out.write_text(json.dumps({"meta": meta, "rows": rows, "eager_over_fused": ratio}, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
