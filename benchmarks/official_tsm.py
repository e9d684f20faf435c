"""The official TSM code as a peer: its TSN class with temporal shift on torchvision's ResNet-50, beside our
tsm_r50 on the default path (the Predictor), timed in one process.

The peer (github.com/mit-han-lab/temporal-shift-module) is imported at run time from `--tsm-repo`, a
checkout outside this repository; nothing of it is part of vidattn. Its model, as its test_models.py
builds it: `TSN(classes, T, "RGB", base_model="resnet50", is_shift=True, shift_div=8,
shift_place="blockres")` (its `ops/models.py`, `ops/temporal_shift.py`, `ops/basic_ops.py`), no pretrained
weights, eval mode, `torch.no_grad()`, input `(B, T, 3, H, W)` as its loader gives. Rows (batch 1,
interleaved rounds, `interleaved` of benchmarks/models.py):
  - "official as shipped": fp32, contiguous memory;
  - "official + channels_last + bf16 autocast": the two lines a user adds,
    `net.to(memory_format=torch.channels_last)` and `with torch.autocast("cpu", dtype=torch.bfloat16):`;
  - "official + channels_last": the first line alone (fp32), the best two-line change where bf16 is emulated;
  - "ours default": `Predictor(create_model("tsm_r50", ...))`, every switch on auto;
  - "ours bf16": the same with precision="bf16" forced (with --bf16, like the peer's bf16 row).
bf16 rows run only with `--bf16` (on a CPU without native bf16 they take seconds per clip).
Before timing, the peer's weights are loaded into ours through vidattn's own reader of official TSM
checkpoints (`load_state`) and the fp32 logits compared: both rows compute the same network.

The peer imports torchvision for `torchvision.models.resnet50`. Where torchvision does not import (a wheel
whose compiled ops do not match this torch), `--torchvision-src DIR` names the `torchvision` folder of an
unpacked wheel or checkout: its pure-Python `models/resnet.py` (and the `transforms` it imports) load
without the compiled ops, which a ResNet does not use.

    python benchmarks/official_tsm.py --tsm-repo PATH [--torchvision-src DIR] [--threads 2] [--repeats 15]
        [--bf16] [--frames 8] [--size 224] [--out official_tsm.json]
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import datetime
import importlib
import io
import json
import os
import platform
import statistics
import subprocess
import sys
import types
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor, nn

from models import interleaved, matmul_ceiling, paired_ratio, write_result  # benchmarks/models.py, beside this script
from vidattn.analysis.flops import count_model
from vidattn.inference import Predictor, bf16_is_fast
from vidattn.models import create_model
from vidattn.models.compat import load_state
from vidattn.runtime import tune_cpu_allocator

PEER_FILES = ("ops/models.py", "ops/temporal_shift.py", "ops/basic_ops.py")
TARGETS = {  # issue 10: ours on the default path at least this many times faster than the peer row
    "official + channels_last + bf16 autocast / ours default": 1.3,
    "official as shipped / ours default": 3.0,
}


def check_peer(repo: Path | None) -> Path:
    """The peer checkout, or a one-line error naming what is missing."""
    if repo is None:
        raise SystemExit("official_tsm.py: --tsm-repo PATH is required (a checkout of "
                         "mit-han-lab/temporal-shift-module)")
    missing = [f for f in PEER_FILES if not (repo / f).is_file()]
    if missing:
        raise SystemExit(f"official_tsm.py: --tsm-repo {repo}: no {', '.join(missing)} (not a checkout of "
                         "mit-han-lab/temporal-shift-module)")
    return repo


def torchvision_from_source(src: Path) -> types.ModuleType:
    """A `torchvision` package holding only torchvision's own pure-Python ResNet (and the transforms it
    imports), read from `src`, without the package's compiled ops."""
    if not (src / "models" / "resnet.py").is_file():
        raise SystemExit(f"official_tsm.py: --torchvision-src {src}: no models/resnet.py (give the torchvision "
                         "folder of an unpacked wheel or checkout)")
    for name, path in (("torchvision", src), ("torchvision.models", src / "models")):
        package = types.ModuleType(name)
        package.__path__ = [str(path)]
        sys.modules[name] = package
    resnet = importlib.import_module("torchvision.models.resnet")
    tv = sys.modules["torchvision"]
    tv.models = sys.modules["torchvision.models"]  # type: ignore[attr-defined]
    tv.models.ResNet, tv.models.resnet50 = resnet.ResNet, resnet.resnet50  # type: ignore[attr-defined]
    return tv


def peer_commit(repo: Path) -> str | None:
    try:
        return subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def build_peer(repo: Path, classes: int, frames: int) -> nn.Module:
    """The peer's TSM-R50 (its TSN class with shift), as its test_models.py builds it, without weights."""
    sys.path.insert(0, str(repo))
    from ops.models import TSN  # the peer's code, from --tsm-repo

    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():  # it prints its configuration
        warnings.simplefilter("ignore", UserWarning)  # torchvision: `pretrained` passed positionally
        net = TSN(classes, frames, "RGB", base_model="resnet50", is_shift=True, shift_div=8,
                  shift_place="blockres", pretrain="none", print_spec=False)
    net.eval()  # its train() override returns None
    return net


def peer_forward(net: nn.Module, x: Tensor, bf16: bool) -> Callable[[], Tensor]:
    """The peer's inference call (its eval_video: `torch.no_grad()`), optionally under bf16 autocast."""
    def run() -> Tensor:
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            return net(x)
    return run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tsm-repo", type=Path, help="checkout of mit-han-lab/temporal-shift-module")
    ap.add_argument("--torchvision-src", type=Path, help="torchvision's Python sources, if it does not import")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--classes", type=int, default=174)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--bf16", action="store_true", help="also time the bf16 rows")
    ap.add_argument("--out", type=Path, default=Path("official_tsm.json"))
    args = ap.parse_args()
    repo = check_peer(args.tsm_repo)
    if args.torchvision_src is not None:
        torchvision_from_source(args.torchvision_src)
    torch.set_num_threads(args.threads)
    allocator_tuned = tune_cpu_allocator()  # the whole process, peer included (as benchmarks/models.py)
    native, why = bf16_is_fast(torch.device("cpu"))
    ceilings = {p: matmul_ceiling(p) for p in ("fp32", "bf16")}

    torch.manual_seed(0)
    peer = build_peer(repo, args.classes, args.frames)
    ours = create_model("tsm_r50", num_classes=args.classes, num_segments=args.frames)
    load_state(ours, peer.state_dict(), "official TSN", strict=True)
    ours_bf16 = copy.deepcopy(ours)
    clip = torch.randn(1, 3, args.frames, args.size, args.size)
    peer_clip = clip.transpose(1, 2).contiguous()  # (B, T, 3, H, W): the peer's loader layout
    reference = peer_forward(peer, peer_clip, bf16=False)()
    predictor = Predictor(ours, device="cpu")
    mine = predictor.logits(clip)
    scale = float(reference.abs().max())
    torch.testing.assert_close(mine, reference, rtol=1e-3, atol=1e-3 * scale)

    peer_cl = copy.deepcopy(peer).to(memory_format=torch.channels_last)  # the first of the two lines
    fns: dict[str, Callable[[], object]] = {
        "official as shipped": peer_forward(peer, peer_clip, bf16=False),
        "official + channels_last": peer_forward(peer_cl, peer_clip, bf16=False),
        "ours default": lambda: predictor.logits(clip),
    }
    if args.bf16:
        fns["official + channels_last + bf16 autocast"] = peer_forward(peer_cl, peer_clip, bf16=True)
        predictor_bf16 = Predictor(ours_bf16, device="cpu", precision="bf16")
        fns["ours bf16"] = lambda: predictor_bf16.logits(clip)
    meta = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "machine": platform.machine(), "processor": platform.processor(), "torch": torch.__version__,
            "threads": args.threads, "frames": args.frames, "size": args.size, "batch": 1,
            "repeats": args.repeats, "bf16_native": native, "bf16_evidence": why,
            "default_path": predictor.describe(), "matmul_ceiling_gflops": ceilings,
            "cpu_allocator_tuned": allocator_tuned, "peer_commit": peer_commit(repo),
            "torchvision_src": None if args.torchvision_src is None else str(args.torchvision_src),
            "max_abs_logit_diff_vs_peer": float((mine - reference).abs().max()), "max_abs_logit": scale,
            "loadavg_before": os.getloadavg()}
    print(json.dumps(meta, indent=1))
    secs = interleaved(fns, args.repeats, args.warmup)
    macs = count_model("tsm_r50", args.frames, args.size, num_classes=args.classes).macs
    rows = [{"name": k, "ms": 1e3 * statistics.median(v), "gflops": 2 * macs / statistics.median(v) / 1e9,
             "round_ms": [1e3 * t for t in v]} for k, v in secs.items()]
    print(f"{'row':44} {'ms/clip':>9} {'GFLOP/s':>8}")
    for r in rows:
        print(f"{r['name']:44} {r['ms']:>9.1f} {r['gflops']:>8.1f}")
    ratios = [{"ratio": f"{a} / {b}", "value": paired_ratio(secs[a], secs[b]), "target": TARGETS.get(f"{a} / {b}"),
               "goal": ">="} for a in secs if a.startswith("official") for b in secs if b.startswith("ours")]
    write_result(args.out, meta, rows, ratios)


if __name__ == "__main__":
    main()
