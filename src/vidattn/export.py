"""Export a model to ONNX, TorchScript or a `torch.export` ExportedProgram, verified against PyTorch.

The exported model takes what the models take, a float32 clip batch `(B, 3, T, H, W)` (RGB, normalised as the
sidecar says), and returns the video-level logits `(B, K)`, one output per classifier head. Beside the file,
`FILE.json` holds what a deployer needs to build that input and read the output: the model, the input shape
(batch fixed or dynamic), frame sampling, resize, crop, mean/std, class names, and the verification.

How each format is made (docs/deploy.md):
- the model is copied, put in eval mode, fp32 (no autocast), BatchNorm folded into the convs
  (`inference.fold_batchnorm`, exact in eval mode);
- "exported-program" and "onnx": `torch.export.export` (a dynamic batch dimension on request), saved with
  `torch.export.save`, or translated by PyTorch's torch.export-based ONNX exporter (`onnxscript`). ONNX has no
  adaptive average pooling of any output size (AFR's eq. 7 pools masks to the last stage's size), so for ONNX
  the model is traced with it as two 2D adaptive poolings, which PyTorch decomposes into plain pooling/gathers
  (one trace: a decomposition pass of its own cost 20-45% of a W3 model's export);
- "torchscript": `torch.jit.trace`.
What is exported is the reference model (`models.fast.reference` undoes the Predictor's fast layer on the
copy), traced with autograd on: no fast-layer shortcut (oneDNN's fused conv+activation, buffers overwritten
in place) reaches the graph; every runtime applies its own fusions.

After every export the written file is loaded and run (onnxruntime, `torch.jit.load`, `torch.export.load`) on
a random clip batch that is not the one it was traced with (another batch size when the batch is dynamic),
and its logits are compared with the PyTorch model's: beyond `tolerance` (max |difference| over the largest
|logit|, default 1e-4) the file is removed and `ExportError` says by how much.
"""

from __future__ import annotations

import copy
import importlib
import json
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode
from torch.torch_version import TorchVersion

from vidattn.data.clips import InputSpec
from vidattn.inference import ClassNames, default_spec, fold_batchnorm, resolve_class_names, resolve_model_input
from vidattn.models.fast import reference as reference_modules

logger = logging.getLogger(__name__)

FORMATS = {"onnx": ".onnx", "torchscript": ".pt", "exported-program": ".pt2"}
TOLERANCE = 1e-4
INPUT_NAME = "clips"
_ONNX_PACKAGES = ("onnx", "onnxscript", "onnxruntime")
_SAMPLING = {
    "tsn": "T segment centres (TSN test sampling: the video cut into T equal segments, the middle frame of each)",
    "dense": "the centre window of T frames `stride` apart (looping when the video is shorter)",
    "consecutive": "the centre window of T consecutive frames",
}


TORCH_FOR_ONNX = "2.6"  # the oldest torch whose ONNX export passes tests/test_export.py (2.4.1 does not)
MAX_DYNAMIC_BATCH = 2**20  # clips per call of a dynamic-batch ExportedProgram (ONNX files keep no bound)


class ExportError(RuntimeError):
    """An export that failed or whose exported logits differ from PyTorch's; the message is one line."""


@dataclass(frozen=True)
class ExportResult:
    """What `export_model` wrote and how close the exported model is to PyTorch."""

    path: Path
    sidecar: Path
    format: str
    input_shape: tuple[int | str, ...]  # "batch" at position 0 when the batch is dynamic
    max_abs_diff: float  # max |exported - PyTorch| over the logits of the check batch
    rel_diff: float  # max_abs_diff / max |PyTorch logit|
    runtime: str  # what ran the exported file


def export_weights(weights: str | os.PathLike, out: str | os.PathLike | None = None, fmt: str = "onnx", *,
                   frames: int | None = None, size: int | None = None, class_names: ClassNames = None,
                   **options: Any) -> ExportResult:
    """Export the model of a weights file or run directory (its best, else last, weights); `out` defaults
    to the weights' (or run folder's) name with the format's suffix, in the current folder. The input spec
    comes from the run's recipe when there is one (`inference.resolve_model_input`, as for the Predictor),
    `frames`/`size` override it. `options` go to `export_model`."""
    source = Path(weights)
    m = resolve_model_input(source, class_names=class_names)
    spec = m.spec
    if frames is not None:
        spec = replace(spec, num_frames=frames)
    if size is not None:
        spec = replace(spec, size=size)
    if out is None:
        _check_format(fmt)
        out = Path((source.name if source.is_dir() else source.stem) + FORMATS[fmt])
    return export_model(m.model, out, fmt, spec=spec, class_names=m.classes, weights=m.weights, **options)


def export_model(model: nn.Module, out: str | os.PathLike, fmt: str = "onnx", *, spec: InputSpec | None = None,
                 batch: int = 1, dynamic_batch: bool = False, opset: int | None = None,
                 tolerance: float = TOLERANCE, class_names: ClassNames = None,
                 weights: str | os.PathLike | None = None) -> ExportResult:
    """Write `model` as `fmt` ("onnx", "torchscript", "exported-program") to `out` and its sidecar to
    `out` + ".json", then verify the written file against `model` (module docstring).

    `spec`: the input the model expects (default: the config defaults for the model's frames); the input is
    `(batch, 3, spec.num_frames, spec.size, spec.size)`, its batch dimension dynamic with `dynamic_batch`.
    `opset`: the ONNX opset (default: the exporter's). `model` itself is left as it was.
    """
    _check_format(fmt)
    if batch < 1:
        raise ValueError(f"batch must be >= 1, not {batch}")
    if fmt == "onnx":
        require_torch_for_onnx()
        require_onnx()
    elif opset is not None:
        raise ValueError(f"--opset applies to ONNX only, not to {fmt}")
    out = Path(out)
    spec = spec or default_spec(int(getattr(model, "num_segments", None) or 8))
    names = resolve_class_names(model, class_names, weights)
    shape = (batch, 3, spec.num_frames, spec.size, spec.size)
    # torch.export specialises a dimension of size 1: a dynamic batch is traced with 2 clips, checked with 3
    traced_batch = max(batch, 2) if dynamic_batch else batch
    example = _random((traced_batch, *shape[1:]), seed=0)
    check = _random((traced_batch + 1 if dynamic_batch else batch, *shape[1:]), seed=1)
    reference_model = reference_modules(copy.deepcopy(model)).to("cpu", torch.float32).eval()
    reference = _outputs(_run_eager(reference_model, check))
    fold_batchnorm(reference_model)  # now the model to export (exact in eval mode)
    out.parent.mkdir(parents=True, exist_ok=True)
    step = "export failed:"
    try:
        opset_used = _EXPORTERS[fmt](reference_model, example, out, dynamic_batch, opset, len(reference))
        step = "file written but failed to run:"
        run, runtime = load_exported(out, fmt)
        abs_diff, rel_diff = _difference(reference, run(check), out)
        if not rel_diff <= tolerance:  # also catches NaN
            raise ExportError(f"{out}: the {fmt} model's logits differ from PyTorch's by up to {abs_diff:.3g} "
                              f"({rel_diff:.2g} of the largest logit, tolerance {tolerance:g}) on a random "
                              f"{tuple(check.shape)} clip batch ({runtime}); removed {out.name}")
    except ExportError:
        _remove(out)
        raise
    except Exception as e:  # noqa: BLE001 - the exporters raise anything; the user gets one line
        _remove(out)
        raise ExportError(f"{_model_name(model)}: {fmt} {step} {_root_cause(e)}") from e
    input_shape: tuple[int | str, ...] = ("batch", *shape[1:]) if dynamic_batch else shape
    result = ExportResult(out, out.with_name(out.name + ".json"), fmt, input_shape, abs_diff, rel_diff, runtime)
    _write_sidecar(result, model, spec, names, tolerance, tuple(check.shape), opset_used)
    logger.info("exported %s to %s, max |logit difference| %.2e (%s)", _model_name(model), out, abs_diff, runtime)
    return result


def require_torch_for_onnx(version: str = str(torch.__version__)) -> None:
    """Raise a one-line `ExportError` when torch `version` predates the torch.export-based ONNX exporter this
    module drives (`torch.onnx.export(ExportedProgram, dynamo=True, external_data=...)`: torch >= 2.6)."""
    if TorchVersion(version) < TORCH_FOR_ONNX:
        raise ExportError(f"ONNX export needs torch >= {TORCH_FOR_ONNX} (its torch.export-based exporter), this is "
                          f"torch {version}; the exported-program and torchscript formats work with it")


def require_onnx(packages: Sequence[str] = _ONNX_PACKAGES) -> None:
    """Raise a one-line `ExportError` naming the extra to install when one of `packages` is missing."""
    missing = []
    for package in packages:
        try:
            importlib.import_module(package)
        except ImportError:
            missing.append(package)
    if missing:
        raise ExportError(f"ONNX export needs {', '.join(missing)}: pip install 'vidattn[onnx]' "
                          f"(onnx, onnxscript, onnxruntime)")


def load_exported(path: str | os.PathLike, fmt: str | None = None, threads: int | None = None
                  ) -> tuple[Callable[[Tensor], list[Tensor]], str]:
    """A function running an exported file on a clip batch (logits, one tensor per head, fp32, CPU), and the
    runtime's name. `fmt` defaults to the one of `path`'s suffix; onnxruntime gets `threads` intra-op threads
    (default: PyTorch's). A TorchScript file runs its graph: load only files you trust."""
    path = Path(path)
    fmt = fmt or next((f for f, suffix in FORMATS.items() if path.suffix == suffix), None)
    _check_format(fmt)
    if fmt == "onnx":
        require_onnx(["onnxruntime"])
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name

        def run_onnx(clips: Tensor) -> list[Tensor]:
            feed = {name: clips.detach().to("cpu", torch.float32).contiguous().numpy()}
            return [torch.from_numpy(o) for o in session.run(None, feed)]

        return run_onnx, f"onnxruntime {ort.__version__}"
    if fmt == "torchscript":
        module = torch.jit.load(str(path), map_location="cpu").eval()
        return (lambda clips: _outputs(_run_eager(module, clips))), f"torch.jit {torch.__version__}"
    program = torch.export.load(str(path)).module()
    return (lambda clips: _outputs(_run_eager(program, clips))), f"torch.export {torch.__version__}"


def _check_format(fmt: str | None) -> None:
    if fmt not in FORMATS:
        raise ValueError(f"export format must be one of {', '.join(FORMATS)}, not {fmt!r}")


def _random(shape: tuple[int, ...], seed: int) -> Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


def _run_eager(module: Callable[[Tensor], Any], clips: Tensor) -> Any:
    with torch.no_grad():
        return module(clips)


def _outputs(out: Any) -> list[Tensor]:
    """Logits as a list of fp32 tensors, one per head."""
    items = list(out) if isinstance(out, (tuple, list)) else [out]
    return [t.float() for t in items]


def _difference(reference: Sequence[Tensor], got: Sequence[Tensor], out: Path) -> tuple[float, float]:
    """(max |got - reference|, that over max |reference|) over every head."""
    shapes, got_shapes = [tuple(t.shape) for t in reference], [tuple(t.shape) for t in got]
    if shapes != got_shapes:
        raise ExportError(f"{out}: the exported model returns logits of shape {got_shapes}, PyTorch {shapes}")
    abs_diff = max((g - r).abs().max().item() for g, r in zip(got, reference))
    scale = max(r.abs().max().item() for r in reference)
    return abs_diff, abs_diff / max(scale, torch.finfo(torch.float32).tiny)


def _remove(path: Path) -> None:
    path.unlink(missing_ok=True)


def _model_name(model: nn.Module) -> str:
    config = getattr(model, "vidattn_config", None)
    return str(config["name"]) if isinstance(config, dict) and "name" in config else type(model).__name__


def _root_cause(e: BaseException) -> str:
    """The innermost cause's first line: the exporters wrap the failing op in pages of advice."""
    while e.__cause__ is not None:
        e = e.__cause__
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    return f"{type(e).__name__}: {lines[0] if lines else ''}".rstrip(": ")


def _torch_export(model: nn.Module, example: Tensor, dynamic_batch: bool) -> torch.export.ExportedProgram:
    # bounded: without a maximum, torch < 2.9 fails on guards such as "batch != 2**63 - 1" from the clip reshapes
    dynamic = ({0: torch.export.Dim("batch", max=MAX_DYNAMIC_BATCH)},) if dynamic_batch else None
    with torch.enable_grad():  # the autograd path (module docstring)
        return torch.export.export(model, (example,), dynamic_shapes=dynamic)


def _export_program(model: nn.Module, example: Tensor, out: Path, dynamic_batch: bool, opset: int | None,
                    heads: int) -> None:
    torch.export.save(_torch_export(model, example, dynamic_batch), str(out))


def _export_torchscript(model: nn.Module, example: Tensor, out: Path, dynamic_batch: bool, opset: int | None,
                        heads: int) -> None:
    with torch.enable_grad():
        traced = torch.jit.trace(model, (example,), check_trace=False)
    torch.jit.save(traced, str(out))


def _export_onnx(model: nn.Module, example: Tensor, out: Path, dynamic_batch: bool, opset: int | None,
                 heads: int) -> int:
    """ONNX through `torch.export` (PyTorch's default exporter since 2.9); returns the opset written."""
    import onnx

    with _SeparablePooling():  # one trace: no second decomposition pass for the pooling alone
        program = _torch_export(model, example, dynamic_batch)
    outputs = ["logits"] if heads == 1 else [f"logits_{i}" for i in range(heads)]
    # the exporter logs one warning per torchvision op it cannot register when torchvision is absent
    registration = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = registration.level
    registration.setLevel(logging.ERROR)
    try:
        torch.onnx.export(program, (example,), str(out), dynamo=True, opset_version=opset, external_data=False,
                          input_names=[INPUT_NAME], output_names=outputs, verbose=False)
    finally:
        registration.setLevel(level)
    proto = onnx.load(str(out), load_external_data=False)
    return next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))


_EXPORTERS: dict[str, Callable[..., int | None]] = {
    "onnx": _export_onnx,
    "torchscript": _export_torchscript,
    "exported-program": _export_program,
}


class _SeparablePooling(TorchFunctionMode):
    """While active, `F.adaptive_avg_pool3d` (also through `nn.AdaptiveAvgPool3d`) runs as
    `adaptive_avg_pool3d` below, so `torch.export` traces the two 2D poolings in its one trace."""

    def __torch_function__(self, func: Callable[..., Any], types: Sequence[type], args: Sequence[Any] = (),
                           kwargs: dict[str, Any] | None = None) -> Any:
        if func is F.adaptive_avg_pool3d:
            return adaptive_avg_pool3d(*args, **(kwargs or {}))
        return func(*args, **(kwargs or {}))


def adaptive_avg_pool3d(x: Tensor, output_size: int | Sequence[int | None]) -> Tensor:
    """`F.adaptive_avg_pool3d` as two 2D adaptive poolings, over (H, W) then over T: each output bin is the
    mean over a product of a time bin and a space bin, so pooling is separable (the same averages)."""
    t, h, w = x.shape[-3:]
    sizes = (output_size,) * 3 if isinstance(output_size, int) else output_size
    t_out, h_out, w_out = (n if o is None else o for o, n in zip(sizes, (t, h, w)))  # None: the input's size
    lead = x.shape[:-3]
    y = F.adaptive_avg_pool2d(x.reshape(-1, h, w), (h_out, w_out))  # (lead * T, h_out, w_out)
    y = F.adaptive_avg_pool2d(y.reshape(-1, t, h_out * w_out), (t_out, h_out * w_out))
    return y.reshape(*lead, t_out, h_out, w_out)


def _resize(spec: InputSpec) -> dict[str, Any]:
    if spec.resize == "auto":
        return {"short_side": round(spec.size * 256 / 224)}
    if isinstance(spec.resize, int):
        return {"short_side": spec.resize}
    if isinstance(spec.resize, (tuple, list)):
        return {"height": int(spec.resize[0]), "width": int(spec.resize[1])}
    return {"none": True}


def _write_sidecar(result: ExportResult, model: nn.Module, spec: InputSpec, names: list[list[str]],
                   tolerance: float, check_shape: tuple[int, ...], opset: int | None) -> None:
    config = getattr(model, "vidattn_config", None)
    outputs = ["logits"] if len(names) == 1 else [f"logits_{i}" for i in range(len(names))]
    batch = result.input_shape[0]
    sidecar = {
        "file": result.path.name,
        "format": result.format,
        "model": config if isinstance(config, dict) else {"name": type(model).__name__},
        "input": {
            "name": INPUT_NAME,
            "shape": list(result.input_shape),
            "dtype": "float32",
            "layout": "(batch, RGB channel, time, height, width)",
            "frames": spec.num_frames,
            "sampling": spec.sampling,
            "sampling_rule": _SAMPLING.get(spec.sampling, spec.sampling),
            "stride": spec.stride,
            "resize": _resize(spec),
            "crop": {"center": spec.size},
            "mean": list(spec.mean),
            "std": list(spec.std),
            "normalize": "per channel: (rgb / 255 - mean) / std",
        },
        "outputs": [{"name": o, "shape": [batch, len(n)], "meaning": "logits (softmax gives probabilities)",
                     "classes": n} for o, n in zip(outputs, names)],
        "verified": {"runtime": result.runtime, "input_shape": list(check_shape),
                     "max_abs_diff": result.max_abs_diff, "rel_diff": result.rel_diff, "tolerance": tolerance},
        "exported_with": {"torch": torch.__version__, **({"onnx_opset": opset} if opset is not None else {})},
    }
    result.sidecar.write_text(json.dumps(sidecar, indent=2) + "\n", encoding="utf-8")
