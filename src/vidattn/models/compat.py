"""Checkpoint compatibility: our weights files, and pretrained weights in other libraries' layouts.

- `save_weights` / `load_weights`: our format, a safetensors file whose metadata
  records how the model was built (`model.vidattn_config`, set by `create_model`), so the file alone
  rebuilds the model (`vidattn.models.build_from_weights`, in `registry.py`).
- `load_pretrained` (what `create_model(..., pretrained=path)` calls): reads our files and foreign
  `.pth` / `.pt` / `.pth.tar` files, detects the layout from the keys (`detect_format`), renames the keys
  to ours (`convert_state_dict`) and loads them, reporting what was loaded, skipped and missing.

Foreign layouts (docs/checkpoints.md lists the exact key patterns):
- "imagenet": a torchvision / timm ResNet (`conv1.weight`, `layer1.0.conv1.weight`, `fc.*`). Loads into
  the backbone; `fc` is dropped; 2D kernels are inflated for I3D models (`inflate_2d_to_3d`).
- "tsm_official": mit-han-lab/temporal-shift-module (`module.base_model.*`, `conv1.net`, `new_fc`, and
  the non-local variant's `block` / `nl.{theta,phi.0,g.0,W.0,W.1}`).
- "mmaction2": `backbone.*` with ConvModule names (`conv1.conv`, `conv1.bn`, `downsample.conv`), the
  TemporalShift wrapper `.net`, non-local `non_local_block.*`, classifier `cls_head.fc_cls`.

Foreign files are read with `torch.load(..., weights_only=True)`: a file whose unpickling would run or
import code is refused, never executed.
"""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
import threading
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor, nn

from vidattn.runs import BEST_WEIGHTS, LAST_WEIGHTS

logger = logging.getLogger(__name__)

FORMATS = ("vidattn", "imagenet", "tsm_official", "mmaction2")
# Containers that wrap a state dict in training checkpoints, tried in this order.
_CONTAINER_KEYS = ("state_dict", "model", "model_state", "model_state_dict", "module")
# Modules of ours inside a ResNet block that an ImageNet ResNet does not have (new when fine-tuning).
_NEW_IN_BLOCK = re.compile(r"\.(temporal|attn|post)\.")
_SHOW = 5  # how many keys an error message names


class CheckpointError(Exception):
    """A checkpoint that cannot be read, is refused, or does not fit the model (one-line message)."""


@dataclass
class LoadReport:
    """What `load_pretrained` did: the detected format and which model keys were loaded, skipped, missing.

    `skipped`: keys of the (converted) file not loaded, because their shape differs from the model's or
    the model has no such key. `missing`: keys of the model the file did not provide (they keep their
    fresh values). `num_batches_tracked` counters are left out of all three lists.
    """

    format: str
    loaded: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return (f"{self.format} checkpoint: {len(self.loaded)} tensors loaded, {len(self.skipped)} skipped, "
                f"{len(self.missing)} missing")


# --------------------------------------------------------------------------------------------------------
# Our format


def save_weights(model: nn.Module, path: str | Path) -> Path:
    """Write `model`'s state dict to a safetensors file at `path`, atomically.

    The metadata holds {"format": "vidattn", "vidattn_config": json of `model.vidattn_config`} so that
    `build_from_weights(path)` can rebuild the model. Tensors are saved as contiguous copies, so shared or
    non-contiguous tensors are fine. Returns the path written.
    """
    path = Path(path)
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}
    metadata = {"format": "vidattn"}
    config = getattr(model, "vidattn_config", None)
    if config is not None:
        try:
            metadata["vidattn_config"] = json.dumps(config, sort_keys=True)
        except (TypeError, ValueError) as e:
            logger.warning("%s: model config is not JSON-serialisable (%s); saved without it, so "
                           "build_from_weights cannot rebuild this model from the file", path, e)
    else:
        logger.warning("%s: model has no vidattn_config (not built by create_model); build_from_weights "
                       "cannot rebuild it from the file", path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata=metadata)
        chmod_like_open(tmp)  # mkstemp's 0600 would otherwise stay
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


_UMASK_LOCK = threading.Lock()


def chmod_like_open(path: str | os.PathLike) -> None:
    """Give a ``mkstemp`` file (0600) the mode ``open()`` would have given it: 0666 minus the umask."""
    with _UMASK_LOCK:  # reading the umask means setting it; keep other threads of ours out meanwhile
        umask = os.umask(0o022)
        os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


def weights_problem(path: str | Path) -> str | None:
    """Why the weights file at ``path`` cannot be read back (``None``: it reads): a missing, empty, torn or
    corrupt file, metadata that is not JSON, no tensors."""
    try:
        load_weights(path)
    except CheckpointError as err:
        return str(err)
    return None


def find_weights(run_or_file: str | Path, prefer: str = "best") -> Path:
    """Weights file of a run directory (``model_best`` then ``model_last``), or the file itself.

    A run's preferred file that does not read back (torn, corrupt) is passed over for the other one with
    a one-line warning naming it; if neither reads, a ``CheckpointError`` names both."""
    p = Path(run_or_file)
    if p.is_file():
        return p
    if not p.is_dir():
        raise FileNotFoundError(f"{p}: no such run directory or weights file")
    order = [BEST_WEIGHTS, LAST_WEIGHTS] if prefer == "best" else [LAST_WEIGHTS, BEST_WEIGHTS]
    present = [p / name for name in order if (p / name).is_file()]
    if not present:
        raise FileNotFoundError(f"{p}: run directory has neither {BEST_WEIGHTS} nor {LAST_WEIGHTS}")
    problems = []
    for path in present:
        problem = weights_problem(path)
        if problem is None:
            if problems:
                logger.warning("%s; using %s instead", problems[0], path.name)
            return path
        problems.append(problem)
    raise CheckpointError(f"{p}: no readable weights: {'; '.join(problems)}")


def load_weights(path: str | Path) -> tuple[dict[str, Tensor], dict[str, Any] | None]:
    """Read a checkpoint: `(state_dict, config)`; `config` is our model config, or None for foreign files.

    Ours are safetensors files; foreign `.pth` / `.pt` / `.pth.tar` files are read with
    `torch.load(weights_only=True)`, so a file that would need code to unpickle is refused. Training
    containers (`state_dict`, `model`, `model_state`, `module`) and DataParallel's `module.` prefixes are
    unwrapped. Any problem is a one-line `CheckpointError` naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: empty checkpoint file")
    if _is_safetensors(path):
        state, config = _read_safetensors(path)
    else:
        state, config = _unwrap(_torch_load(path), path), None
    return _strip_prefix(state, "module."), config


def _is_safetensors(path: Path) -> bool:
    """safetensors files start with an 8-byte little-endian header length and a JSON header `{`."""
    with open(path, "rb") as f:
        head = f.read(9)
    if len(head) < 9 or head[8:9] != b"{":
        return False
    return int.from_bytes(head[:8], "little") <= path.stat().st_size - 8


def _read_safetensors(path: Path) -> tuple[dict[str, Tensor], dict[str, Any] | None]:
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            state = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # safetensors raises its own error types for truncated or corrupt files
        raise CheckpointError(f"{path}: corrupt or truncated safetensors file ({first_line(e)})") from None
    config = None
    if "vidattn_config" in meta:
        try:
            config = json.loads(meta["vidattn_config"])
        except ValueError as e:
            raise CheckpointError(f"{path}: unreadable vidattn_config metadata ({e})") from None
    if not state:
        raise CheckpointError(f"{path}: checkpoint holds no tensors")
    return state, config


def _torch_load(path: Path) -> Any:
    import pickle

    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*pickle protocol.*")
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise CheckpointError(f"{path}: refuses to unpickle code ({_unsafe_detail(path, e)}); only plain "
                              "tensor checkpoints are loaded (see docs/checkpoints.md)") from None
    except Exception as e:  # EOFError, RuntimeError (zip), KeyError (bad magic) ... for broken files
        raise CheckpointError(f"{path}: not a readable checkpoint, corrupt or truncated "
                              f"({type(e).__name__}: {first_line(e)})") from None


def _unsafe_detail(path: Path, error: Exception) -> str:
    """Name the globals a refused file would import, without unpickling it."""
    try:
        names = torch.serialization.get_unsafe_globals_in_checkpoint(path)
        if names:
            return ", ".join(names[:_SHOW])
    except Exception:  # legacy (non-zip) files: fall back to the unpickler's message
        pass
    found = re.findall(r"GLOBAL ([\w.]+)", str(error))
    if found:
        return ", ".join(dict.fromkeys(found))
    match = re.search(r"WeightsUnpickler error: ([^\n]+)", str(error))
    return match.group(1).strip() if match else "unsupported pickle content"


def first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0][:200] if text else "no details"


def _unwrap(obj: Any, path: Path) -> dict[str, Tensor]:
    """Dig the tensor dict out of a training checkpoint's containers."""
    for _ in range(4):
        if not isinstance(obj, Mapping):
            break
        inner = next((obj[k] for k in _CONTAINER_KEYS if isinstance(obj.get(k), Mapping)), None)
        if inner is None:
            break
        obj = inner
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path}: holds a {type(obj).__name__}, not a state dict")
    state = {str(k): v for k, v in obj.items() if isinstance(v, Tensor)}
    if not state:
        raise CheckpointError(f"{path}: checkpoint holds no tensors (top-level keys: {list(obj)[:_SHOW]})")
    return state


def _strip_prefix(state: Mapping[str, Tensor], prefix: str) -> dict[str, Tensor]:
    return {k[len(prefix):] if k.startswith(prefix) else k: v for k, v in state.items()}


# --------------------------------------------------------------------------------------------------------
# Layout detection and conversion


def detect_format(state_dict: Mapping[str, Tensor]) -> str:
    """Which layout a state dict (with `module.` prefixes already stripped) is in; one of `FORMATS`."""
    keys = [k[len("module."):] if k.startswith("module.") else k for k in state_dict]
    if any(k.startswith("cls_head.") for k in keys) or "backbone.conv1.conv.weight" in keys:
        return "mmaction2"
    if any(k.startswith(("base_model.", "new_fc.")) for k in keys):
        return "tsm_official"
    if any(k.startswith(("backbone.", "head.", "afr.")) for k in keys) or "gate.weight" in keys:
        return "vidattn"
    if "conv1.weight" in keys and "layer1.0.conv1.weight" in keys:
        return "imagenet"
    raise CheckpointError(f"unrecognised checkpoint layout (first keys: {keys[:_SHOW]}); supported: "
                          f"{', '.join(FORMATS)}")


def inflate_2d_to_3d(weight2d: Tensor, kt: int) -> Tensor:
    """I3D inflation of a 2D kernel (O, I, H, W) to (O, I, kt, H, W): repeated along time, divided by kt,
    so a clip of identical frames gives the 2D response (away from the temporal padding)."""
    if weight2d.dim() != 4:
        raise ValueError(f"expected a 2D conv weight (O, I, H, W), got shape {tuple(weight2d.shape)}")
    return weight2d.unsqueeze(2).repeat(1, 1, kt, 1, 1) / kt


_Rule = tuple[re.Pattern[str], str]


def _rules(*pairs: tuple[str, str]) -> list[_Rule]:
    return [(re.compile(p), r) for p, r in pairs]


_BLOCK = r"(layer\d+\.\d+)"
_TSM_OFFICIAL = _rules(
    (r"^base_model\.fc\.", "head.fc."),  # the dropout=0 variant keeps torchvision's fc as classifier
    (r"^new_fc\.", "head.fc."),
    (r"^base_model\.", "backbone."),
    (_BLOCK + r"\.block\.", r"\1."),  # non-local wrapper around the block
    (_BLOCK + r"\.net\.", r"\1."),  # 'block' shift place: TemporalShift wraps the whole block
    (_BLOCK + r"\.conv1\.net\.", r"\1.conv1."),  # 'blockres': TemporalShift wraps conv1
    (_BLOCK + r"\.nl\.theta\.", r"\1.post.theta."),
    (_BLOCK + r"\.nl\.(phi|g)\.(?:0\.)?", r"\1.post.\2."),
    (_BLOCK + r"\.nl\.W\.0\.", r"\1.post.out_conv."),
    (_BLOCK + r"\.nl\.W\.1\.", r"\1.post.out_bn."),
)
_MMACTION2 = _rules(
    (r"^cls_head\.fc_cls\.", "head.fc."),
    (r"^backbone\.conv1\.conv\.", "backbone.conv1."),
    (r"^backbone\.conv1\.bn\.", "backbone.bn1."),
    (_BLOCK + r"\.block\.", r"\1."),  # NL3DWrapper
    (_BLOCK + r"\.net\.", r"\1."),  # 'block' shift place
    (_BLOCK + r"\.conv(\d)\.conv\.(?:net\.)?", r"\1.conv\2."),  # ConvModule (+ TemporalShift's .net)
    (_BLOCK + r"\.conv(\d)\.bn\.", r"\1.bn\2."),
    (_BLOCK + r"\.downsample\.conv\.", r"\1.downsample.0."),
    (_BLOCK + r"\.downsample\.bn\.", r"\1.downsample.1."),
    (_BLOCK + r"\.non_local_block\.(theta|phi|g)\.(?:0\.)?conv\.", r"\1.post.\2."),
    (_BLOCK + r"\.non_local_block\.conv_out\.conv\.", r"\1.post.out_conv."),
    (_BLOCK + r"\.non_local_block\.conv_out\.bn\.", r"\1.post.out_bn."),
)


def _rename(state: Mapping[str, Tensor], rules: list[_Rule]) -> dict[str, Tensor]:
    out = {}
    for key, value in state.items():
        for pattern, repl in rules:
            key = pattern.sub(repl, key)
        out[key] = value
    return out


def convert_state_dict(state_dict: Mapping[str, Tensor], model: nn.Module, fmt: str | None = None
                       ) -> dict[str, Tensor]:
    """Rename a state dict in any supported layout (`fmt`, detected when None) to `model`'s keys.

    ImageNet ResNets go into `backbone.` without their `fc`, 2D kernels inflated where the model's are 3D.
    mmaction2's non-local output conv has no bias (it is followed by BN); a zero bias is supplied.
    Keys that match nothing in the model are kept (they are reported as skipped when loading).
    """
    state = _strip_prefix(state_dict, "module.")
    fmt = fmt or detect_format(state)
    target = model.state_dict()
    if fmt == "vidattn":
        return dict(state)
    if fmt == "tsm_official":
        return _rename(state, _TSM_OFFICIAL)
    if fmt == "mmaction2":
        out = _rename(state, _MMACTION2)
        nl_convs = [k for k in out if k.endswith(".post.out_conv.weight")]
        for key in nl_convs:
            bias = key[: -len("weight")] + "bias"
            if bias in target and bias not in out:
                out[bias] = torch.zeros_like(target[bias])
        if nl_convs:
            logger.warning("mmaction2 non-local weights: their pairwise function (mode, use_scale) is in the "
                           "config, not the file; ours is embedded Gaussian without scaling, so only "
                           "mode='embedded_gaussian', use_scale=False checkpoints compute the same "
                           "(mmaction2's TSM-NL default is mode='dot_product')")
        return out
    if fmt == "imagenet":
        if "backbone.conv1.weight" not in target:
            raise CheckpointError(f"an ImageNet ResNet checkpoint needs a ResNet backbone; "
                                  f"{type(model).__name__} has none")
        out = {}
        for key, value in state.items():
            if key.startswith("fc."):
                continue
            new = "backbone." + key
            ref = target.get(new)
            if ref is not None and value.dim() == 4 and ref.dim() == 5:
                value = inflate_2d_to_3d(value, ref.shape[2])
            out[new] = value
        return out
    raise CheckpointError(f"unknown checkpoint format {fmt!r}; supported: {', '.join(FORMATS)}")


# --------------------------------------------------------------------------------------------------------
# Loading into a model


def load_pretrained(model: nn.Module, path: str | Path, strict: bool = True) -> LoadReport:
    """Load the checkpoint at `path` (any supported layout) into `model`; return a `LoadReport`.

    `strict=True`: every tensor of the file must fit the model and the model must receive every tensor,
    else a `CheckpointError` names the offending keys (nothing is loaded). `strict=False`: mismatching
    tensors (e.g. a classifier for another number of classes) are skipped and everything else is loaded;
    skipped and missing keys are logged. ImageNet ResNets always leave the parts a ResNet lacks fresh
    (classifier, temporal/attention/non-local modules, AFR), but a missing backbone tensor is an error.
    """
    state, _ = load_weights(path)
    return load_state(model, state, str(path), strict)


def load_state(model: nn.Module, state: Mapping[str, Tensor], source: str, strict: bool) -> LoadReport:
    """Load a state dict read by `load_weights` (any supported layout) into `model`, as `load_pretrained`
    does; `source` names it in messages."""
    try:
        fmt = detect_format(state)
        converted = convert_state_dict(state, model, fmt)
    except CheckpointError as e:
        raise CheckpointError(f"{source}: {e}") from None
    target = model.state_dict()
    report = LoadReport(format=fmt)
    mismatched, unexpected, to_load = [], [], {}
    for key, value in converted.items():
        if _is_counter(key):
            if key in target and target[key].shape == value.shape:
                to_load[key] = value
            continue
        ref = target.get(key)
        if ref is None:
            unexpected.append(key)
        elif ref.shape != value.shape:
            mismatched.append(f"{key} {tuple(value.shape)} vs model {tuple(ref.shape)}")
        else:
            to_load[key] = value
            report.loaded.append(key)
    report.missing = [k for k in target if k not in converted and not _is_counter(k)]
    report.skipped = [m.split(" ")[0] for m in mismatched] + unexpected

    new_part = _new_part(fmt)
    required_missing = [k for k in report.missing if not new_part(k)]
    if fmt == "imagenet":
        # The backbone must load completely and exactly, whatever `strict` says.
        unfit = required_missing + [m for m in mismatched if not new_part(m.split(" ")[0])] + unexpected
        if unfit:
            raise CheckpointError(f"{source}: ImageNet checkpoint does not match the backbone of "
                                  f"{_model_name(model)}: {_few(unfit)} (a different ResNet depth?)")
    if strict and (mismatched or unexpected or required_missing):
        parts = []
        if mismatched:
            parts.append(f"shape mismatch: {_few(mismatched)}")
        if unexpected:
            parts.append(f"not in the model: {_few(unexpected)}")
        if required_missing:
            parts.append(f"missing from the file: {_few(required_missing)}")
        raise CheckpointError(f"{source} ({fmt}) does not fit {_model_name(model)}: {'; '.join(parts)}. "
                              "Pass pretrained_strict=False (recipe: model.pretrained_strict=false; "
                              "load_pretrained(..., strict=False)) to load "
                              "everything but these, e.g. to fine-tune with a new classifier")
    if not report.loaded:
        raise CheckpointError(f"{source} ({fmt}): no tensor of the file fits {_model_name(model)}")
    model.load_state_dict(to_load, strict=False)
    if report.skipped:
        logger.warning("%s: skipped %d tensors that do not fit the model: %s", source, len(report.skipped),
                       _few(mismatched + unexpected, 20))
    if report.missing:
        log = logger.info if not required_missing else logger.warning
        log("%s: %d model tensors not in the file keep their initial values: %s", source,
            len(report.missing), _few(report.missing, 20))
    logger.info("%s: %s", source, report)
    return report


def _new_part(fmt: str) -> Callable[[str], bool]:
    """Which model keys a checkpoint of `fmt` is not expected to provide."""
    if fmt == "imagenet":
        return lambda k: not k.startswith("backbone.") or bool(_NEW_IN_BLOCK.search(k))
    return lambda k: False


def _is_counter(key: str) -> bool:
    return key.endswith("num_batches_tracked")


def _few(items: list[str], n: int = _SHOW) -> str:
    shown = ", ".join(items[:n])
    return shown + (f" (+{len(items) - n} more)" if len(items) > n else "")


def _model_name(model: nn.Module) -> str:
    config = getattr(model, "vidattn_config", None)
    return config["name"] if isinstance(config, dict) and "name" in config else type(model).__name__
