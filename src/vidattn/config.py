"""Typed run configuration loaded from YAML recipes (``configs/*.yaml``).

A recipe is a YAML mapping whose keys mirror the dataclasses below. ``base: other.yaml`` (relative to
the recipe) merges the recipe onto another one, key by key; one level only, so a variant is a small
delta on a full recipe and nothing is hidden two files away. Command-line overrides are
``section.key=value`` strings whose value is parsed as YAML (``optim.lr=0.01``,
``optim.milestones=[20,40]``, ``distill.teacher=null``).

Every problem is a :class:`ConfigError` with one line naming the file and the key.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union

import yaml

__all__ = [
    "ConfigError",
    "ModelConfig",
    "DataConfig",
    "OptimConfig",
    "TrainConfig",
    "EvalConfig",
    "DistillConfig",
    "TargetConfig",
    "Config",
    "load_config",
    "config_from_dict",
    "config_to_dict",
    "apply_overrides",
    "check_values",
]


class ConfigError(ValueError):
    """A recipe or an override is invalid; the message names the file and the key."""


@dataclass
class ModelConfig:
    """Arguments of ``vidattn.create_model``."""

    name: str = "tsm_r18"
    #: ``None`` (random init), ``"imagenet"`` or a weights file; fine-tuning enables the head lr multipliers.
    pretrained: str | None = None
    #: ``False``: load every tensor of ``pretrained`` that fits and leave the rest fresh (fine-tuning to a new
    #: class count: the file's classifier is skipped); ``True``: a tensor that does not fit is an error.
    pretrained_strict: bool = True
    #: Extra constructor options (dropout, reduction ratio, ...), passed through unchanged.
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class DataConfig:
    """Dataset, sampling and transforms (built by ``vidattn.engine.builders``)."""

    dataset: str = "synth_actions"
    root: str = "data/synth_actions"
    #: An int, or a list for multi-head datasets (EPIC-Kitchens: [verbs, nouns]).
    num_classes: int | list[int] = 10
    num_segments: int = 8
    #: ``tsn`` (one frame per segment), ``dense`` (I3D/TSM-dense: T frames every ``stride`` frames),
    #: ``consecutive`` (C3D, the UCF-101 paper: T consecutive frames at a random start).
    sampling: Literal["tsn", "dense", "consecutive"] = "tsn"
    stride: int = 8
    train_split: str = "train"
    val_split: str | None = "val"
    test_split: str | None = None
    #: Training: short side resized to ``scale_size`` (or exactly ``resize`` = [H, W]) then cropped.
    scale_size: int = 256
    resize: list[int] | None = None
    crop_size: int = 224
    #: ``multiscale`` (TSM's corner/scale jitter) or ``random`` (plain random crop, C3D).
    train_crop: Literal["multiscale", "random"] = "multiscale"
    flip: bool = True
    mean: list[float] = field(default_factory=lambda: [0.485, 0.456, 0.406])
    std: list[float] = field(default_factory=lambda: [0.229, 0.224, 0.225])
    batch_size: int = 8
    num_workers: int = 4
    #: Batches each loader worker prepares ahead (PyTorch's ``prefetch_factor``; with workers only).
    prefetch_factor: int = 2
    #: ``skip``: a corrupt video is dropped from its batch and counted; ``raise``: stop the run.
    on_error: Literal["skip", "raise"] = "skip"
    #: Extra keyword arguments for the dataset class (annotation file names, frame templates, ...).
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class OptimConfig:
    """Optimizer, parameter groups and learning-rate schedule (TSM recipe defaults)."""

    name: Literal["sgd", "adam", "adamw"] = "sgd"
    #: Learning rate for ``lr_batch_size`` clips; scaled linearly with the global batch size.
    lr: float = 0.01
    lr_batch_size: int | None = None
    momentum: float = 0.9
    nesterov: bool = False
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    weight_decay: float = 5e-4
    #: TSM parameter groups: no weight decay on BN parameters and biases, biases at 2x lr.
    no_decay_bn_bias: bool = True
    bias_lr_mult: float = 2.0
    #: Freshly initialised classifier (``head.``) when fine-tuning from pretrained weights.
    head_weight_lr_mult: float = 5.0
    head_bias_lr_mult: float = 10.0
    schedule: Literal["constant", "step", "multistep", "cosine"] = "multistep"
    #: Epochs at which the lr is multiplied by ``gamma`` (multistep) / period in epochs (step).
    milestones: list[int] = field(default_factory=lambda: [20, 40])
    step_size: int = 30
    gamma: float = 0.1
    warmup_epochs: float = 0.0
    warmup_start_factor: float = 0.01
    min_lr: float = 0.0


@dataclass
class TrainConfig:
    """The loop: length, numerics, regularisation, where to write."""

    epochs: int = 50
    grad_clip: float | None = 20.0
    label_smoothing: float = 0.0
    partial_bn: bool = False
    #: ``bf16`` autocasts on CPU and CUDA; ``fp16`` needs CUDA (uses a GradScaler).
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    channels_last: bool = False
    accumulate_steps: int = 1
    eval_every: int = 1
    #: Also evaluate the test split every ``eval_every`` epochs (the UCF-101 paper's Figure 3 rows).
    eval_test_each_epoch: bool = False
    #: Metric used to keep ``model_best.safetensors``.
    best_metric: str = "top1"
    output_dir: str = "runs"
    #: Run directory name; default ``{recipe name}-{timestamp}``.
    run_name: str | None = None
    device: Literal["auto", "cpu", "cuda"] = "auto"
    #: CPU intra-op threads of this process (``torch.set_num_threads``); ``None`` keeps torch's default.
    #: On a busy or small machine 1 thread per process avoids OpenMP oversubscription.
    num_threads: int | None = None
    log_every: int = 20
    progress: bool = True
    #: Stop after this many optimizer steps per epoch (smoke tests, profiling); ``None`` = full epoch.
    max_steps_per_epoch: int | None = None


@dataclass
class EvalConfig:
    """Test-time views (clips x crops) and score averaging."""

    clips: int = 1
    #: 1 = centre crop, 3 = three crops along the long side, 10 = five crops + flips.
    crops: Literal[1, 3, 10] = 1
    #: Full resolution: crop at ``scale_size`` (256) instead of ``crop_size``.
    full_res: bool = False
    average: Literal["softmax", "logits"] = "softmax"
    batch_size: int | None = None
    #: Write confusion matrix CSV + PNG (skipped above this many classes for the PNG).
    confusion_png_max_classes: int = 200


@dataclass
class DistillConfig:
    """MFR (W3 paper Sec. 3.4, eq. 9): stage-2 feature mimicking of a frozen stage-1 teacher."""

    #: Stage-1 run directory or weights file; ``None`` = ordinary training.
    teacher: str | None = None
    #: lambda in L = CE + lambda * L_fm.
    weight: float = 1.0


@dataclass
class TargetConfig:
    """The published number a recipe reproduces (documentation, checked by nothing)."""

    metric: str = "top1"
    value: float | None = None
    source: str = ""


@dataclass
class Config:
    name: str = "run"
    seed: int = 0
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    target: TargetConfig = field(default_factory=TargetConfig)


# ----------------------------------------------------------------------------------------------------------
# dict -> dataclass with type checks


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _convert(value: Any, tp: Any, key: str, where: str) -> Any:
    """Check ``value`` against annotation ``tp`` and return it (ints are accepted for floats)."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(value, arg, key, where)
            except ConfigError as err:
                errors.append(err)
        raise ConfigError(f"{where}: key '{key}' expects {_type_name(tp)}, got {value!r}")
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{where}: key '{key}' must be one of {list(args)}, got {value!r}")
        return value
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: key '{key}' must be a mapping, got {value!r}")
        return _build(tp, value, key, where)
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: key '{key}' expects a list, got {value!r}")
        return [_convert(v, args[0], f"{key}[{i}]", where) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: key '{key}' expects a mapping, got {value!r}")
        return dict(value)
    if tp is float:
        if isinstance(value, str):
            # PyYAML (YAML 1.1) reads ``1e-4`` as a string; accept it where a number is expected
            try:
                return float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: key '{key}' expects a number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: key '{key}' expects an integer, got {value!r}")
        return value
    if tp in (str, bool):
        if not isinstance(value, tp):
            raise ConfigError(f"{where}: key '{key}' expects {tp.__name__}, got {value!r}")
        return value
    raise ConfigError(f"{where}: key '{key}' has unsupported type {_type_name(tp)}")  # pragma: no cover


def _build(cls: type, raw: dict[str, Any], prefix: str, where: str) -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in raw.items():
        full = f"{prefix}.{key}" if prefix else str(key)
        if key not in names:
            raise ConfigError(f"{where}: unknown key '{full}' (valid keys here: {', '.join(sorted(names))})")
        kwargs[key] = _convert(value, hints[key], full, where)
    return cls(**kwargs)


def config_from_dict(raw: dict[str, Any], where: str = "<dict>") -> Config:
    """Validate a plain mapping (e.g. a resolved ``config.yaml``) into a :class:`Config`."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: a config must be a YAML mapping, got {type(raw).__name__}")
    config = _build(Config, raw, "", where)
    check_values(config, where)
    return config


def _at_least(where: str, key: str, value: Any, low: float, what: str = "") -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < low:
        raise ConfigError(f"{where}: key '{key}' must be {what or f'>= {low}'}, got {value!r}")


def check_values(cfg: Config, where: str = "<config>") -> None:
    """Ranges the types cannot express, checked before anything is built (one line naming the key)."""
    d, t = cfg.data, cfg.train
    classes = d.num_classes if isinstance(d.num_classes, list) else [d.num_classes]
    if not classes:
        raise ConfigError(f"{where}: key 'data.num_classes' must not be an empty list")
    for i, n in enumerate(classes):
        _at_least(where, "data.num_classes" + (f"[{i}]" if isinstance(d.num_classes, list) else ""), n, 1)
    for key in ("num_segments", "crop_size", "scale_size", "batch_size", "stride"):
        _at_least(where, f"data.{key}", getattr(d, key), 1)
    _at_least(where, "data.num_workers", d.num_workers, 0)
    _at_least(where, "data.prefetch_factor", d.prefetch_factor, 1)
    if d.resize is not None:
        if len(d.resize) != 2:
            raise ConfigError(f"{where}: key 'data.resize' must be [height, width], got {d.resize!r}")
        for i, v in enumerate(d.resize):
            _at_least(where, f"data.resize[{i}]", v, 1)
    for key in ("base_width", "channels"):
        if key in cfg.model.options:
            value = cfg.model.options[key]
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(f"{where}: key 'model.options.{key}' expects a positive integer, got {value!r}")
            _at_least(where, f"model.options.{key}", value, 1)
    _at_least(where, "train.epochs", t.epochs, 1)
    _at_least(where, "train.accumulate_steps", t.accumulate_steps, 1)
    _at_least(where, "train.grad_clip", t.grad_clip, 0, ">= 0 (0 or null: no clipping)")
    _at_least(where, "train.max_steps_per_epoch", t.max_steps_per_epoch, 1, ">= 1 (null: the whole epoch)")
    _at_least(where, "train.eval_every", t.eval_every, 1)
    _at_least(where, "train.log_every", t.log_every, 1)
    _at_least(where, "train.num_threads", t.num_threads, 1, ">= 1 (null: torch's default)")
    _at_least(where, "train.label_smoothing", t.label_smoothing, 0)
    if t.label_smoothing >= 1:
        raise ConfigError(f"{where}: key 'train.label_smoothing' must be < 1, got {t.label_smoothing!r}")
    _at_least(where, "eval.clips", cfg.eval.clips, 1)
    _at_least(where, "eval.batch_size", cfg.eval.batch_size, 1)
    _at_least(where, "optim.lr", cfg.optim.lr, 0)
    if t.device == "cuda" or t.precision == "fp16":
        import torch

        if not torch.cuda.is_available():
            key, value = ("train.device", "cuda") if t.device == "cuda" else ("train.precision", "fp16")
            raise ConfigError(f"{where}: key '{key}' is {value} but CUDA is not available on this machine; "
                              f"use train.device=auto or cpu" + (" (and bf16)" if key == "train.precision" else ""))


def config_to_dict(config: Config) -> dict[str, Any]:
    """Plain, YAML/JSON-serialisable mapping of a config (round-trips through :func:`config_from_dict`)."""
    return dataclasses.asdict(config)


# ----------------------------------------------------------------------------------------------------------
# YAML files, ``base:`` and overrides


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError(f"{path}: cannot read config ({err.strerror})") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}:{line} invalid YAML ({getattr(err, 'problem', err)})") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a config must be a YAML mapping, got {type(raw).__name__}")
    return raw


def _merge(base: dict[str, Any], child: dict[str, Any]) -> dict[str, Any]:
    """Child keys replace base keys; nested mappings merge (``options`` dicts too)."""
    out = dict(base)
    for key, value in child.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _origins(raw: dict[str, Any], where: str, prefix: str = "") -> dict[str, str]:
    out = {}
    for key, value in raw.items():
        full = f"{prefix}.{key}" if prefix else str(key)
        out[full] = where
        if isinstance(value, dict):
            out.update(_origins(value, where, full))
    return out


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``a.b=value`` strings (value parsed with ``yaml.safe_load``) to a raw mapping."""
    raw = dict(raw)
    for item in overrides:
        key, sep, text = item.partition("=")
        key = key.strip().lstrip("-")
        if not sep or not key:
            raise ConfigError(f"override '{item}': expected key.sub=value")
        try:
            value = yaml.safe_load(text) if text.strip() else ""
        except yaml.YAMLError:
            value = text
        node = raw
        parts = key.split(".")
        for part in parts[:-1]:
            child = node.get(part)
            child = dict(child) if isinstance(child, dict) else {}
            node[part] = child
            node = child
        node[parts[-1]] = value
    return raw


def _located_error(err: ConfigError, origins: dict[str, str], fallback: str) -> ConfigError:
    """Re-point an error at the file (base or child) or override that set the offending key."""
    msg = str(err)
    if not msg.startswith(fallback + ":"):
        return err
    key = msg.split("'")[1] if "'" in msg else ""
    parts = key.split("[")[0].split(".")
    for n in range(len(parts), 0, -1):
        source = origins.get(".".join(parts[:n]))
        if source is not None:
            return ConfigError(source + msg[len(fallback) :])
    return err


def load_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Load a recipe, merge it onto its ``base:`` (one level), apply overrides, validate types."""
    path = Path(path)
    raw = _read_yaml(path)
    base_ref = raw.pop("base", None)
    origins: dict[str, str] = {}
    if base_ref is not None:
        if not isinstance(base_ref, str):
            raise ConfigError(f"{path}: key 'base' must be a file name, got {base_ref!r}")
        base_path = (path.parent / base_ref).resolve()
        base_raw = _read_yaml(base_path)
        if "base" in base_raw:
            raise ConfigError(f"{base_path}: a base recipe may not have its own 'base' (one level only)")
        origins = _origins(base_raw, str(base_path))
        base_raw.pop("name", None)  # the variant is named after its own file
        raw = _merge(base_raw, raw)
    origins.update(_origins(raw if base_ref is None else _read_yaml(path), str(path)))
    raw.setdefault("name", path.stem)
    for item in overrides:
        origins[item.partition("=")[0].strip().lstrip("-")] = f"override '{item}'"
    raw = apply_overrides(raw, list(overrides))
    where = str(path)
    try:
        return config_from_dict(raw, where)
    except ConfigError as err:
        raise _located_error(err, origins, where) from None
