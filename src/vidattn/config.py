"""Typed run configuration loaded from YAML recipes (``configs/*.yaml``).

The dataclasses below are the schema of an OmegaConf structured config: OmegaConf checks every key and type
and merges the layers (``omegaconf.OmegaConf.update``); this module adds the ranges the types cannot express
(:func:`check_values`) and hands out plain dataclasses (``OmegaConf.to_object``). A recipe is a YAML mapping
whose keys mirror the dataclasses (read with ``yaml.safe_load``: no tag executes anything). ``base:
other.yaml`` (relative to the recipe) merges the recipe onto another one, key by key; one level only, so a
variant is a small delta on a full recipe and nothing is hidden two files away. Command-line overrides are
``section.key=value`` strings whose value is parsed as YAML (``optim.lr=0.01``, ``optim.milestones=[20,40]``,
``distill.teacher=null``). String values may use OmegaConf interpolations (``${data.root}/x``,
``${oc.env:HOME}``); a literal ``${`` is written ``\\${``.

Every problem is a :class:`ConfigError`: one line naming the file (the base, the recipe or the override
that set the key) and the key.
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException

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
    """A recipe or an override is invalid: ``"{where}: {problem}"``, ``key`` the dotted key when there is one."""

    def __init__(self, where: str, problem: str | None = None, key: str | None = None) -> None:
        super().__init__(where if problem is None else f"{where}: {problem}")
        self.problem, self.key = problem, key


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
    #: Train the fast modules of `vidattn.models.fast.optimize` (same parameters, sums and gradients as the
    #: reference modules; 1.05x a step for TSM+W3, 1.13x for C3D+attention, docs/performance.md).
    fast: bool = False
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
# layers (base file, recipe, overrides) -> OmegaConf schema -> dataclasses, then the ranges

#: ``(where, mapping, merge)``: a file or an override, the keys it sets (dotted keys allowed: ``{"optim.lr": 0.1}``),
#: and whether a mapping value merges into the mapping there (files: ``base:`` + recipe) or replaces it
#: (overrides: ``model.options={channels: 8}`` drops the recipe's other options). Sections always merge.
Layer = tuple[str, dict[str, Any], bool]


def _omegaconf_error(where: str, err: OmegaConfBaseException) -> ConfigError:
    """One line from an OmegaConf exception: the key is its ``full_key``, the problem its message's first line
    (OmegaConf appends its context, full_key and object_type, on further lines)."""
    key = err.full_key or None
    if isinstance(err, (ConfigKeyError, ConfigAttributeError)) and dataclasses.is_dataclass(err.object_type):
        names = sorted(f.name for f in dataclasses.fields(err.object_type))
        close = difflib.get_close_matches(str(err.key), names, n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        return ConfigError(where, f"unknown key '{key}' ({hint}valid keys here: {', '.join(names)})", key)
    problem = (str(err).splitlines() or [type(err).__name__])[0]
    return ConfigError(where, f"key '{key}': {problem}" if key else problem, key)


def _sets(raw: dict[str, Any], key: str) -> bool:
    """Whether a layer's mapping sets ``key`` (``a.b``, ``a.b[1]``) or a value holding it."""
    for k, v in raw.items():
        k = str(k)
        if key == k or key.startswith(k + "["):
            return True
        if key.startswith(k + ".") and isinstance(v, dict) and _sets(v, key[len(k) + 1 :]):
            return True
    return False


def _source(layers: list[Layer], key: str | None, fallback: str) -> str:
    """The last layer that set ``key``: where a problem found after merging comes from."""
    return next((where for where, raw, _ in reversed(layers) if key is not None and _sets(raw, key)), fallback)


def _set(cfg: DictConfig, key: str, value: Any, where: str, merge: bool) -> None:
    """Set ``value`` in ``cfg`` at ``key`` (``OmegaConf.update``), a section's mapping key by key: a merge
    that fails inside a whole section (``data: {mean: {a: 1}}``) reports only the section's key."""
    node = OmegaConf.select(cfg, key, throw_on_resolution_failure=False)
    if isinstance(value, dict) and OmegaConf.is_dict(node) and dataclasses.is_dataclass(OmegaConf.get_type(node)):
        for sub, v in value.items():
            _set(cfg, f"{key}.{sub}", v, where, merge)
        return
    try:
        OmegaConf.update(cfg, key, value, merge=merge)
    except OmegaConfBaseException as err:
        expected = "a list" if OmegaConf.is_list(node) else "a mapping" if OmegaConf.is_dict(node) else None
        given = "a list" if isinstance(value, list) else "a mapping" if isinstance(value, dict) else None
        if expected is not None and expected != given:  # OmegaConf's text names its node classes instead
            raise ConfigError(where, f"key '{key}' expects {expected}, got {value!r}", key) from None
        raise _omegaconf_error(where, err) from None


def _apply(layers: list[Layer], fallback: str) -> Config:
    """Merge the layers in order onto the schema (OmegaConf checks keys and types, an error names its layer),
    then build the dataclasses (``${...}`` interpolations resolved) and check the ranges."""
    cfg = OmegaConf.structured(Config)
    for where, raw, merge in layers:
        for key, value in raw.items():
            _set(cfg, str(key), value, where, merge)
    try:
        config = OmegaConf.to_object(cfg)
        check_values(config, fallback)
    except OmegaConfBaseException as err:  # an interpolation that does not resolve, a missing (???) value
        raise _omegaconf_error(_source(layers, err.full_key, fallback), err) from None
    except ConfigError as err:
        if err.key is None:
            raise
        raise ConfigError(_source(layers, err.key, fallback), err.problem, err.key) from None
    assert isinstance(config, Config)
    return config


def config_from_dict(raw: dict[str, Any], where: str = "<dict>") -> Config:
    """Validate a plain mapping (e.g. a resolved ``config.yaml``) into a :class:`Config`."""
    if not isinstance(raw, dict):
        raise ConfigError(where, f"a config must be a YAML mapping, got {type(raw).__name__}")
    return _apply([(where, raw, True)], where)


def _at_least(where: str, key: str, value: float | None, low: float, what: str = "") -> None:
    if value is not None and value < low:
        raise ConfigError(where, f"key '{key}' must be {what or f'>= {low}'}, got {value!r}", key)


def check_values(cfg: Config, where: str = "<config>") -> None:
    """Ranges the types cannot express, checked before anything is built (one line naming the key)."""
    d, t = cfg.data, cfg.train
    classes = d.num_classes if isinstance(d.num_classes, list) else [d.num_classes]
    if not classes:
        raise ConfigError(where, "key 'data.num_classes' must not be an empty list", "data.num_classes")
    for i, n in enumerate(classes):
        _at_least(where, "data.num_classes" + (f"[{i}]" if isinstance(d.num_classes, list) else ""), n, 1)
    for key in ("num_segments", "crop_size", "scale_size", "batch_size", "stride"):
        _at_least(where, f"data.{key}", getattr(d, key), 1)
    _at_least(where, "data.num_workers", d.num_workers, 0)
    _at_least(where, "data.prefetch_factor", d.prefetch_factor, 1)
    if d.resize is not None:
        if len(d.resize) != 2:
            raise ConfigError(where, f"key 'data.resize' must be [height, width], got {d.resize!r}", "data.resize")
        for i, v in enumerate(d.resize):
            _at_least(where, f"data.resize[{i}]", v, 1)
    for key in ("base_width", "channels"):  # model.options is typed Any: these two size the model
        value = cfg.model.options.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise ConfigError(where, f"key 'model.options.{key}' expects a positive integer, got {value!r}",
                              f"model.options.{key}")
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
        raise ConfigError(where, f"key 'train.label_smoothing' must be < 1, got {t.label_smoothing!r}",
                          "train.label_smoothing")
    _at_least(where, "eval.clips", cfg.eval.clips, 1)
    _at_least(where, "eval.batch_size", cfg.eval.batch_size, 1)
    _at_least(where, "optim.lr", cfg.optim.lr, 0)
    if t.device == "cuda" or t.precision == "fp16":
        import torch

        if not torch.cuda.is_available():
            key, value = ("train.device", "cuda") if t.device == "cuda" else ("train.precision", "fp16")
            raise ConfigError(where, f"key '{key}' is {value} but CUDA is not available on this machine; use "
                              "train.device=auto or cpu" + (" (and bf16)" if key == "train.precision" else ""), key)


def _escaped(value: Any) -> Any:
    """``value`` with every ``${`` in its strings written ``\\${``: OmegaConf reads it back literally."""
    if isinstance(value, str):
        return value.replace("${", "\\${")
    if isinstance(value, dict):
        return {k: _escaped(v) for k, v in value.items()}
    return [_escaped(v) for v in value] if isinstance(value, list) else value


def config_to_dict(config: Config) -> dict[str, Any]:
    """Plain, YAML/JSON-serialisable mapping of a config (round-trips through :func:`config_from_dict`:
    interpolations are already resolved, so a ``${`` left in a string is literal and written ``\\${``)."""
    return _escaped(dataclasses.asdict(config))


# ----------------------------------------------------------------------------------------------------------
# YAML files, ``base:`` and overrides


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError(str(path), f"cannot read config ({err.strerror})") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = f"line {mark.line + 1} " if mark is not None else ""
        raise ConfigError(str(path), f"{line}invalid YAML ({getattr(err, 'problem', err)})") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(str(path), f"a config must be a YAML mapping, got {type(raw).__name__}")
    return raw


def _override_layers(overrides: list[str] | tuple[str, ...]) -> list[Layer]:
    """``a.b=value`` strings as layers ``("override 'a.b=value'", {"a.b": value}, False)``, the value parsed as
    YAML."""
    layers = []
    for item in overrides:
        key, sep, text = item.partition("=")
        key = key.strip().lstrip("-")
        if not sep or not key:
            raise ConfigError(f"override '{item}'", "expected key.sub=value")
        try:
            value = yaml.safe_load(text) if text.strip() else ""
        except yaml.YAMLError:
            value = text
        layers.append((f"override '{item}'", {key: value}, False))
    return layers


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """A config mapping with ``a.b=value`` overrides applied, validated (an error names the override)."""
    return config_to_dict(_apply([("<dict>", raw, True), *_override_layers(overrides)], "<dict>"))


def load_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Load a recipe, merge it onto its ``base:`` (one level), apply overrides, validate."""
    path = Path(path)
    raw = _read_yaml(path)
    layers: list[Layer] = []
    base_ref = raw.pop("base", None)
    if base_ref is not None:
        if not isinstance(base_ref, str):
            raise ConfigError(str(path), f"key 'base' must be a file name, got {base_ref!r}", "base")
        base_path = (path.parent / base_ref).resolve()
        base_raw = _read_yaml(base_path)
        if "base" in base_raw:
            raise ConfigError(str(base_path), "a base recipe may not have its own 'base' (one level only)")
        base_raw.pop("name", None)  # the variant is named after its own file
        layers.append((str(base_path), base_raw, True))
    layers.append((str(path), {"name": path.stem, **raw}, True))
    return _apply(layers + _override_layers(overrides), str(path))
