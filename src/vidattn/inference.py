"""Fast inference: a `Predictor` that runs a model on the fastest correct path for its device.

The path has four switches, each "auto" or forced (and `fold_bn`, on by default: BatchNorm folded into
the convs):
- device: CUDA when available, else CPU.
- precision: bf16 autocast where bf16 is faster than fp32 (CUDA with bf16 support; CPUs with AMX-bf16 or
  AVX512-bf16 and oneDNN bf16 kernels), fp32 elsewhere. On CPUs without bf16 instructions PyTorch emulates
  bf16 and it is several times *slower* than fp32. fp16 autocast only when asked (CUDA).
  3D-conv models (the UCF-101 paper's C3D, I3D) stay in fp32 on CPU: with 3 input channels and cheap
  layers their bf16 pooling/conversions cost more than the convolutions save.
- memory format: channels-last (`channels_last_3d` for 3D convs) for every 2D/3D conv weight, so oneDNN/cuDNN
  pick their NHWC kernels; the recognizer then folds clips into channels-last frames directly.
- compile: `torch.compile` with inductor freezing (constant-folded BN, weights pre-packed), off by default
  (the first call compiles for tens of seconds).
On CPU the Predictor tunes glibc's allocator only if the process opted in (`VIDATTN_CPU_ALLOCATOR=tuned`,
`vidattn --tune-allocator`; `vidattn.runtime`).
`describe()` says what was picked and why. Same top-1 in every precision; bf16 logits are within a few 1e-2
of fp32 (tests/test_inference.py measures it).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import platform
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from vidattn.models import build_from_weights
from vidattn.models.compat import find_weights
from vidattn.models.fast import optimize
from vidattn.runtime import apply_requested_cpu_settings

logger = logging.getLogger(__name__)

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class InferencePlan:
    """The path a `Predictor` runs: device, precision, memory format, compile, and why each was chosen."""

    device: torch.device
    precision: str
    channels_last: bool
    compile: bool
    reasons: tuple[str, ...] = field(default=())

    def describe(self) -> str:
        head = (f"device={self.device} precision={self.precision} channels_last={self.channels_last} "
                f"compile={self.compile}")
        return "\n".join([head, *(f"  - {r}" for r in self.reasons)])


def cpu_flags() -> set[str]:
    """The CPU feature flags of /proc/cpuinfo (empty where that file does not exist)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def bf16_is_fast(device: torch.device) -> tuple[bool, str]:
    """Whether bf16 matmuls/convs run on native hardware on `device`, and the evidence."""
    if device.type == "cuda":
        major, minor = torch.cuda.get_device_capability(device)
        ok = major >= 8 and torch.cuda.is_bf16_supported()
        return ok, f"CUDA compute capability {major}.{minor} ({'has' if ok else 'no'} bf16 tensor cores)"
    if device.type != "cpu":
        return False, f"no bf16 rule for device type {device.type!r}"
    native = sorted(cpu_flags() & {"amx_bf16", "avx512_bf16"})
    onednn = torch.backends.mkldnn.is_available() and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    if native and onednn:
        return True, f"CPU has {'/'.join(native)} and oneDNN bf16 kernels"
    cpu = platform.processor() or "this CPU"
    return False, (f"{cpu} lacks AMX-bf16/AVX512-bf16 (oneDNN bf16 supported: {onednn}); "
                   "bf16 would be emulated and slower than fp32")


def _conv_dims(model: nn.Module) -> set[int]:
    return {m.weight.dim() - 2 for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Conv3d))}


def _is_3d_model(model: nn.Module) -> bool:
    return getattr(model, "per_frame", False) is False


def plan_inference(model: nn.Module, device: str | torch.device = "auto", precision: str = "auto",
                   channels_last: bool | str = "auto", compile: bool = False) -> InferencePlan:
    """Choose the inference path for `model` (see the module docstring for the rules)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, not {precision!r}")
    reasons = []
    if device == "auto":
        dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        reasons.append(f"device: {dev.type} ({'CUDA available' if dev.type == 'cuda' else 'no CUDA device'})")
    else:
        dev = torch.device(device)
        reasons.append(f"device: {dev} (forced)")
    if precision == "auto":
        fast, why = bf16_is_fast(dev)
        if fast and dev.type == "cpu" and _is_3d_model(model):
            fast, why = False, f"{why}, but 3D-conv models run faster in fp32 channels_last_3d on CPU"
        precision = "bf16" if fast else "fp32"
        reasons.append(f"precision: {precision} ({why})")
    else:
        reasons.append(f"precision: {precision} (forced)")
        if precision == "fp16" and dev.type == "cpu":
            logger.warning("fp16 autocast on CPU is usually slower than fp32 and less accurate than bf16")
    if channels_last == "auto":
        channels_last = bool(_conv_dims(model))
        reasons.append(f"channels_last: {channels_last} (NHWC conv kernels in oneDNN/cuDNN)"
                       if channels_last else "channels_last: False (no convolutions)")
    else:
        channels_last = bool(channels_last)
        reasons.append(f"channels_last: {channels_last} (forced)")
    reasons.append("compile: torch.compile with inductor freezing" if compile else "compile: off (eager)")
    return InferencePlan(dev, precision, channels_last, compile, tuple(reasons))


def to_channels_last(model: nn.Module) -> nn.Module:
    """Put every 4D parameter in `channels_last` and every 5D one in `channels_last_3d`, in place.

    (`model.to(memory_format=...)` refuses models that mix Conv1d/Conv2d/Conv3d, as W3 does.)
    """
    formats = {4: torch.channels_last, 5: torch.channels_last_3d}
    for module in model.modules():
        for p in module.parameters(recurse=False):
            if p.dim() in formats:
                p.data = p.data.contiguous(memory_format=formats[p.dim()])
    return model


def fold_batchnorm(model: nn.Module) -> int:
    """Fold every BatchNorm that is applied straight to a conv's output into that conv, in place; returns how
    many. Exact in eval mode: W' = W * g / sqrt(var + eps), b' = (b - mean) * g / sqrt(var + eps) + beta
    (`torch.nn.utils.fusion.fuse_conv_bn_eval`), and the BatchNorm becomes an Identity: one full pass over
    every conv output less (~7% of a ResNet-50 forward on CPU). Pairs, as the models apply them: siblings
    `convK`/`bnK` and `X_conv`/`X_bn` (blocks, stems, CBAM, non-local), and a conv followed by a BatchNorm in an
    `nn.Sequential` (downsample branches). Pairs in training mode (e.g. partial BN) are left alone.
    """
    convs, norms = (nn.Conv2d, nn.Conv3d), (nn.BatchNorm2d, nn.BatchNorm3d)
    folded = 0
    for parent in list(model.modules()):
        children = dict(parent.named_children())
        if isinstance(parent, nn.Sequential):
            names = list(children)
            pairs = list(zip(names, names[1:]))
        else:
            pairs = [(name, name.replace("conv", "bn")) for name in children if "conv" in name]
        for conv_name, bn_name in pairs:
            conv, bn = children.get(conv_name), children.get(bn_name)
            if isinstance(conv, convs) and isinstance(bn, norms) and not (bn.training or conv.training) \
                    and bn.track_running_stats and bn.num_features == conv.out_channels:
                setattr(parent, conv_name, fuse_conv_bn_eval(conv, bn))
                setattr(parent, bn_name, nn.Identity())
                folded += 1
    return folded


class Predictor:
    """Runs `model` on clips `(B, 3, T, H, W)` (or one clip `(3, T, H, W)`) on the path of `plan_inference`.

    The Predictor takes `model` over: eval mode, moved to the device, channels-last, BatchNorm folded into
    the convs (`fold_batchnorm`, switch `fold_bn`); pass a copy to keep training the original.
    Example: `Predictor(create_model("tsm_w3_r50", 174, 8)).predict(clips)` -> probabilities (B, K).
    """

    def __init__(self, model: nn.Module, device: str | torch.device = "auto", precision: str = "auto",
                 channels_last: bool | str = "auto", compile: bool = False, fold_bn: bool = True) -> None:
        plan = plan_inference(model, device, precision, channels_last, compile)
        model = model.eval().to(plan.device)
        done = []  # what preparing the model did, beside the plan's choices
        if fold_bn:
            done.append(f"batchnorm: {fold_batchnorm(model)} layers folded into their convs")
        if plan.device.type == "cpu":
            done.append("allocator: " + ("glibc malloc keeps large freed blocks (vidattn.runtime)"
                                         if apply_requested_cpu_settings() else
                                         "system default (opt in: VIDATTN_CPU_ALLOCATOR=tuned)"))
        self.plan = dataclasses.replace(plan, reasons=(*plan.reasons, *done))
        if self.plan.channels_last:
            to_channels_last(model)
        optimize(model)  # fast modules in place of the reference ones (vidattn.models.fast)
        self.model = model
        self._forward: nn.Module = model
        if self.plan.compile:
            # Freezing constant-folds BN into convs and pre-packs weights; it applies under no_grad/inference.
            self._forward = torch.compile(model, options={"freezing": True})  # type: ignore[assignment]
        logger.info("inference path: %s", self.plan.describe())

    def describe(self) -> str:
        """Which path was picked and why."""
        return self.plan.describe()

    @contextlib.contextmanager
    def autocast(self) -> Iterator[None]:
        """The precision context of this predictor (a no-op for fp32)."""
        if self.plan.precision == "fp32":
            yield
            return
        with torch.autocast(self.plan.device.type, dtype=_DTYPES[self.plan.precision]):
            yield

    def logits(self, clips: Tensor) -> Tensor:
        """fp32 logits (B, K) for `clips`; multi-head models give the first head (use `.model` directly)."""
        if clips.dim() == 4:
            clips = clips.unsqueeze(0)
        clips = clips.to(self.plan.device, non_blocking=True)
        with torch.inference_mode(), self.autocast():
            out = self._forward(clips)
        if isinstance(out, tuple):
            out = out[0]
        return out.float()

    def predict(self, clips: Tensor) -> Tensor:
        """Class probabilities (B, K), softmax of the consensus logits, fp32."""
        return self.logits(clips).softmax(dim=-1)

    __call__ = predict


def load_predictor(weights: str | Path, device: str | torch.device = "auto", precision: str = "auto",
                   channels_last: bool | str = "auto", compile: bool = False, fold_bn: bool = True) -> Predictor:
    """A `Predictor` for a safetensors file written by `vidattn.models.save_weights`, or for a training run
    directory (its best, else last, weights)."""
    weights = find_weights(weights) if Path(weights).is_dir() else weights
    return Predictor(build_from_weights(weights), device, precision, channels_last, compile, fold_bn)
