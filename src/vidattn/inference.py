"""The one inference path: a `Predictor` runs a model on the fastest correct path for its device, on the
clips of its `InputSpec` (`vidattn.data.clips`), and returns fp32 logits per classifier head, always a tuple.
`vidattn test`, evaluation during training, `vidattn predict`, `vidattn visualize`, the attention statistics
and the Python API (`load_predictor`) all run through it; the spec of a run comes from its `config.yaml`
(`resolve_source`, the one reader), so they sample the same frames and crop the same pixels.

The path has four switches, each "auto" or forced (and `fold_bn`, on by default: BatchNorm folded into
the convs):
- device: CUDA when available, else CPU.
- precision: bf16 autocast where bf16 is faster than fp32 (CUDA with bf16 support; CPUs with AMX-bf16 or
  AVX512-bf16 and oneDNN bf16 kernels), fp32 elsewhere. On CPUs without bf16 instructions PyTorch emulates
  bf16 and it is several times *slower* than fp32. fp16 autocast only when asked (CUDA).
  3D-conv models (the UCF-101 paper's C3D, I3D) stay in fp32 on CPU: with 3 input channels and cheap
  layers their bf16 pooling/conversions cost more than the convolutions save.
- memory format: channels-last (`channels_last_3d` for 3D convs) for every 2D/3D conv weight, so oneDNN/cuDNN
  pick their NHWC kernels.
- the fast layer: `vidattn.models.fast.optimize` swaps W3, CBAM, their blocks and C3D for fast equivalents
  (same parameters, parity-tested against the reference modules), always.
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
import json
import logging
import os
import platform
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from torch import Tensor, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from vidattn.config import Config, DataConfig, apply_overrides, config_from_dict, config_to_dict, load_config
from vidattn.data.clips import Clips, InputSpec, load_clips
from vidattn.models import build_from_weights
from vidattn.models.compat import find_weights
from vidattn.models.fast import optimize
from vidattn.runs import CHECKPOINT, CONFIG_FILE, LAST_WEIGHTS
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


# ----------------------------------------------------------------------------------------------------------
# where a model's input and class names come from


@dataclass(frozen=True)
class Source:
    """A weights file and the recipe that says how its model sees a video.

    ``config``: the recipe given, else the ``config.yaml`` of the run directory holding the weights (with the
    overrides applied), else ``None`` (a bare weights file); ``origin`` names which."""

    weights: Path
    config: Config | None
    run_dir: Path | None
    origin: str | None


def resolve_source(source: str | os.PathLike, config: Config | None = None,
                   overrides: Sequence[str] = ()) -> Source:
    """The weights and recipe of a run directory (its best, else last, readable weights), a weights file
    (in a run directory or not) or a run's ``checkpoint.pt`` (its last weights). The one reader of a run's
    input spec: ``vidattn test``, ``predict``, ``visualize`` and ``load_predictor`` all call it.

    ``overrides`` (``eval.clips=2``, ``data.crop_size=256``) apply on top of the recipe."""
    p = Path(source)
    run_dir = p if p.is_dir() else (p.parent if (p.parent / CONFIG_FILE).is_file() else None)
    if p.name == CHECKPOINT and run_dir is not None:  # the training state: its weights
        p = run_dir / LAST_WEIGHTS
    weights = find_weights(p)
    if config is not None:
        return Source(weights, _overridden(config, overrides), run_dir, "the recipe given")
    if run_dir is not None and (run_dir / CONFIG_FILE).is_file():
        # overrides before validation: a CUDA run's config is read on a CPU machine with train.device=cpu
        return Source(weights, load_config(run_dir / CONFIG_FILE, list(overrides)), run_dir,
                      str(run_dir / CONFIG_FILE))
    return Source(weights, None, run_dir, None)


def _overridden(config: Config, overrides: Sequence[str]) -> Config:
    return config_from_dict(apply_overrides(config_to_dict(config), list(overrides)), "overrides") \
        if overrides else config


def default_spec(num_segments: int, overrides: Sequence[str] = ()) -> InputSpec:
    """The input of a model without a recipe: the typed config's defaults (TSN test sampling of
    ``num_segments`` frames, short side 256, centre crop 224, ImageNet mean/std, 1 view) plus ``overrides``."""
    return InputSpec.from_config(_overridden(Config(data=DataConfig(num_segments=num_segments)), overrides))


def _model_config(model: nn.Module) -> dict[str, Any]:
    config = getattr(model, "vidattn_config", None)
    return config if isinstance(config, dict) else {}


def _weights_metadata(weights: str | os.PathLike | None) -> dict[str, Any]:
    """``vidattn_config`` of a safetensors file, read from its header only (the model rebuilt from it by
    ``create_model`` keeps name/classes/segments/options, not extra keys such as ``classes``)."""
    if weights is None or Path(weights).suffix != ".safetensors" or not Path(weights).is_file():
        return {}
    with safe_open(str(weights), framework="pt") as f:
        meta = f.metadata() or {}
    try:
        config = json.loads(meta.get("vidattn_config", "{}"))
    except json.JSONDecodeError:
        return {}
    return config if isinstance(config, dict) else {}


def _head_sizes(model: nn.Module) -> list[int]:
    head = getattr(model, "head", None)
    fcs = [m for m in (head.modules() if head is not None else []) if isinstance(m, nn.Linear)]
    return [fc.out_features for fc in fcs] or [0]


def _read_class_file(path: Path) -> list[str]:
    with open(path, encoding="utf-8") as f:
        names = [line.strip() for line in f if line.strip()]
    # UCF-101's classInd.txt ("1 ApplyEyeMakeup") as well as one name per line.
    if names and all(len(n.split()) == 2 and n.split()[0].isdigit() for n in names):
        names = [n.split()[1] for n in names]
    return names


ClassNames = Sequence[str] | Sequence[Sequence[str]] | str | os.PathLike | None


def resolve_class_names(model: nn.Module, class_names: ClassNames = None,
                        weights: str | os.PathLike | None = None) -> list[list[str]]:
    """Class names per classifier head (one list for single-head models).

    Order: ``class_names`` (a list, a list per head, or a ``classes.txt`` path), the weights' metadata
    (``classes`` / ``class_names`` in ``vidattn_config`` or its ``options``), ``classes.txt`` beside the
    weights, then the label indices as strings. A list whose length differs from the classifier's is an error.
    """
    config = {**_weights_metadata(weights), **_model_config(model)}
    sizes = config.get("num_classes", _head_sizes(model))
    sizes = [int(sizes)] if isinstance(sizes, int) else [int(s) for s in sizes]
    names: Any = class_names
    source = "class_names"
    if isinstance(names, (str, os.PathLike)):
        source = str(names)
        names = _read_class_file(Path(names))
    if names is None:
        for where in (config, config.get("options") or {}):
            names = names or where.get("classes") or where.get("class_names")
        source = f"{weights}: vidattn_config metadata"
    if names is None and weights is not None and (Path(weights).parent / "classes.txt").is_file():
        source = str(Path(weights).parent / "classes.txt")
        names = _read_class_file(Path(weights).parent / "classes.txt")
    if names is None:
        return [[str(i) for i in range(k)] for k in sizes]
    per_head = [list(names)] if names and isinstance(names[0], str) else [list(n) for n in names]
    if [len(n) for n in per_head] != sizes:
        raise ValueError(f"{source}: {len(per_head[0]) if len(per_head) == 1 else [len(n) for n in per_head]} "
                         f"class names for a classifier of {sizes if len(sizes) > 1 else sizes[0]} classes; "
                         "give one name per class (--classes FILE)")
    return per_head


# ----------------------------------------------------------------------------------------------------------
# the Predictor


@dataclass
class Prediction:
    """What one `Predictor.run` returns. ``logits``: fp32, one tensor per classifier head (a tuple also for
    single-head models), ``(B, V, K)`` for B videos of V views. ``attention`` (with ``return_all``): per block
    its masks, fp32, one row per view: ``(B*V, ...)`` (``VideoOutput.attention``)."""

    logits: tuple[Tensor, ...]
    attention: dict[str, dict[str, Tensor]] = field(default_factory=dict)

    def mean_logits(self) -> tuple[Tensor, ...]:
        """Per head, the logits averaged over the views: ``(B, K)``."""
        return tuple(z.mean(dim=1) for z in self.logits)

    def scores(self, average: str = "softmax") -> tuple[Tensor, ...]:
        """Per head, the video score ``(B, K)``: the mean over views of the softmax (``"softmax"``, the
        papers' default) or of the logits (``"logits"``)."""
        if average not in ("softmax", "logits"):
            raise ValueError(f"average must be 'softmax' or 'logits', got {average!r}")
        return tuple(z.softmax(dim=-1).mean(dim=1) if average == "softmax" else z.mean(dim=1) for z in self.logits)


class Predictor:
    """Runs `model` on clips on the path of `plan_inference`: one clip `(3, T, H, W)`, a batch
    `(B, 3, T, H, W)` or a batch of views `(B, V, 3, T, H, W)` (what a test loader and `load` give).

    The Predictor takes `model` over: eval mode, moved to the device, channels-last, BatchNorm folded into
    the convs (`fold_batchnorm`, switch `fold_bn`); pass a copy to keep training the original.
    `spec` (the `InputSpec` that `load` samples videos with) and `classes` (names per head) come from
    `load_predictor`. Example: `Predictor(create_model("tsm_w3_r50", 174, 8)).predict(clips)` -> (B, K).
    """

    def __init__(self, model: nn.Module, device: str | torch.device = "auto", precision: str = "auto",
                 channels_last: bool | str = "auto", compile: bool = False, fold_bn: bool = True, *,
                 spec: InputSpec | None = None, classes: list[list[str]] | None = None,
                 spec_origin: str | None = None) -> None:
        plan = plan_inference(model, device, precision, channels_last, compile)
        model = model.eval().to(plan.device)
        done = []  # what preparing the model did, beside the plan's choices
        if fold_bn:
            done.append(f"batchnorm: {fold_batchnorm(model)} layers folded into their convs")
        if plan.device.type == "cpu":
            done.append("allocator: " + ("glibc malloc keeps large freed blocks (vidattn.runtime)"
                                         if apply_requested_cpu_settings() else
                                         "system default (opt in: VIDATTN_CPU_ALLOCATOR=tuned)"))
        if spec is not None:
            done.append(f"input: {spec.sampling} {spec.num_frames} frames, resize {spec.resize}, crop {spec.size}, "
                        f"{spec.clips} clips x {spec.crops} crops ({spec_origin or 'given'})")
        self.plan = dataclasses.replace(plan, reasons=(*plan.reasons, *done))
        if self.plan.channels_last:
            to_channels_last(model)
        optimize(model)  # fast modules in place of the reference ones (vidattn.models.fast)
        self.model = model
        self.spec = spec
        self.spec_origin = spec_origin
        self.classes = classes
        self._warned_defaults = False
        self._forward: nn.Module = model
        if self.plan.compile:
            # Freezing constant-folds BN into convs and pre-packs weights; it applies under no_grad/inference.
            self._forward = torch.compile(model, options={"freezing": True})  # type: ignore[assignment]
        logger.debug("inference path: %s", self.plan.describe())

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

    def run(self, clips: Tensor, return_all: bool = False) -> Prediction:
        """One forward pass of every view; fp32 logits per head (and every block's masks with
        ``return_all``). The one place a model's output (a tensor, a tuple of heads, or a `VideoOutput`)
        becomes a `Prediction`."""
        if clips.dim() == 4:
            clips = clips.unsqueeze(0)
        if clips.dim() == 5:
            clips = clips.unsqueeze(1)
        if clips.dim() != 6:
            raise ValueError(f"expected clips (3, T, H, W), (B, 3, T, H, W) or (B, V, 3, T, H, W), got shape "
                             f"{tuple(clips.shape)}")
        b, v = clips.shape[:2]
        x = clips.flatten(0, 1).to(self.plan.device, non_blocking=True)
        with torch.inference_mode(), self.autocast():
            out = self._forward(x, return_all=True) if return_all else self._forward(x)
        logits = out.logits if return_all else out
        heads = logits if isinstance(logits, tuple) else (logits,)
        # copies made outside inference mode are ordinary tensors (autograd-, pickle- and in-place-safe)
        maps = {block: {k: m.float().clone() for k, m in masks.items()} for block, masks in out.attention.items()} \
            if return_all else {}
        return Prediction(tuple(z.float().reshape(b, v, -1).clone() for z in heads), maps)

    def _single_head(self, prediction: Prediction) -> Prediction:
        if len(prediction.logits) != 1:
            raise ValueError(f"the model has {len(prediction.logits)} classifier heads; use Predictor.run")
        return prediction

    def logits(self, clips: Tensor) -> Tensor:
        """fp32 logits (B, K) of a single-head model, averaged over views."""
        return self._single_head(self.run(clips)).mean_logits()[0]

    def predict(self, clips: Tensor) -> Tensor:
        """Class probabilities (B, K) of a single-head model: the softmax averaged over views, fp32."""
        return self._single_head(self.run(clips)).scores("softmax")[0]

    __call__ = predict

    def load(self, video: str | os.PathLike, *, frame_template: str | None = None, start_index: int = 1,
             views: bool = True) -> Clips:
        """The clips of a video file or frame folder as `spec` takes them (`vidattn.data.clips.load_clips`,
        the sampler and transform of the test loaders); ``views=False``: one clip, centre crop."""
        if self.spec is None:
            raise ValueError("this Predictor has no input spec; build it with load_predictor or spec=InputSpec(...)")
        if self.spec_origin == "defaults" and not self._warned_defaults:
            self._warned_defaults = True
            logger.warning("no recipe for this model: clips are taken with the config defaults (%s); pass the "
                           "recipe (--config RECIPE.yaml) for the input it was trained on", self.spec)
        spec = self.spec if views else self.spec.single_view()
        return load_clips(video, spec, frame_template=frame_template, start_index=start_index)


@dataclass
class ModelInput:
    """A model with the input it expects and its class names: what `load_predictor` and `vidattn export`
    start from. ``origin``: where the spec came from ("given", the recipe's file, "defaults")."""

    model: nn.Module
    spec: InputSpec
    origin: str | None
    classes: list[list[str]]
    weights: Path | None


def resolve_model_input(weights: nn.Module | str | os.PathLike, *, spec: InputSpec | None = None,
                        config: Config | None = None, overrides: Sequence[str] = (),
                        class_names: ClassNames = None) -> ModelInput:
    """The model of a run directory (its best, else last, weights), a safetensors file written by
    `vidattn.models.save_weights`, or a model, with its input spec and class names.

    The spec: ``spec`` if given, else the recipe (``config``, else the run's ``config.yaml``:
    `resolve_source`) with ``overrides`` (``eval.clips=2``...), else the config defaults (`default_spec`).
    """
    if isinstance(weights, nn.Module):
        model, source = weights, None
        recipe, origin = (_overridden(config, overrides), "the recipe given") if config is not None else (None, None)
    else:
        source = resolve_source(weights, config, ["train.device=auto", "train.precision=fp32", *overrides])
        model = build_from_weights(source.weights)
        recipe, origin = source.config, source.origin
    if spec is not None:
        origin = "given"
    elif recipe is not None:
        spec = InputSpec.from_config(recipe)
    else:
        t = int(_model_config(model).get("num_segments") or getattr(model, "num_segments", 8))
        spec, origin = default_spec(t, overrides), "defaults"
    path = source.weights if source else None
    return ModelInput(model, spec, origin, resolve_class_names(model, class_names, path), path)


def load_predictor(weights: nn.Module | str | os.PathLike, device: str | torch.device = "auto",
                   precision: str = "auto", channels_last: bool | str = "auto", compile: bool = False,
                   fold_bn: bool = True, *, spec: InputSpec | None = None, config: Config | None = None,
                   overrides: Sequence[str] = (), class_names: ClassNames = None) -> Predictor:
    """A `Predictor` for `resolve_model_input`'s model, input spec and class names. The run's training
    device and precision do not matter here (``device`` / ``precision`` choose)."""
    m = resolve_model_input(weights, spec=spec, config=config, overrides=overrides, class_names=class_names)
    return Predictor(m.model, device, precision, channels_last, compile, fold_bn, spec=m.spec, classes=m.classes,
                     spec_origin=m.origin)
