"""Model registry: `register_model`, `create_model`, `list_models` (torchvision-style, duplicates refused),
and `build_from_weights`, which rebuilds a model from our weights file.

Every entry point is a function `fn(num_classes, num_segments, **options) -> nn.Module`. `create_model`
records how the model was built in `model.vidattn_config`, so a weights file can rebuild it, and loads
`pretrained` weights in any supported layout (see `vidattn.models.compat`).

Imports: this module uses `compat` (file formats), and `zoo` uses this module to register the models;
neither imports back. `import vidattn.models` imports `zoo` before anything can ask the registry, so
the registry is complete whenever it is used.
"""

from __future__ import annotations

import copy
import fnmatch
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vidattn.models.compat import CheckpointError, first_line, load_pretrained, load_state, load_weights

ModelFactory = Callable[..., nn.Module]
_MODELS: dict[str, ModelFactory] = {}


def register_model(fn: ModelFactory, name: str | None = None) -> ModelFactory:
    """Register `fn` under `name` (default: its function name); a second registration of a name is an error."""
    name = name or fn.__name__
    if name in _MODELS:
        raise ValueError(f"model {name!r} is registered twice")
    _MODELS[name] = fn
    return fn


def list_models(pattern: str = "*") -> list[str]:
    """Sorted names of the registered models matching a shell-style `pattern`."""
    return sorted(n for n in _MODELS if fnmatch.fnmatch(n, pattern))


def create_model(
    name: str,
    num_classes: int | Sequence[int] = 174,
    num_segments: int = 8,
    pretrained: str | Path | None = None,
    **options: Any,
) -> nn.Module:
    """Build model `name` for clips of `num_segments` frames.

    `num_classes` is an int, or a sequence of ints for a multi-head classifier (e.g. EPIC verb, noun).
    `pretrained` is a path to any supported checkpoint (ours, an ImageNet ResNet from torchvision/timm,
    the official TSM repository's, mmaction2's); its layout is detected from its keys. Pass
    `pretrained_strict=False` to load everything but mismatching tensors (e.g. a new classifier).
    """
    if name not in _MODELS:
        close = [n for n in _MODELS if name.split("_")[0] in n][:8]
        raise KeyError(f"unknown model {name!r}; known models include {close or list_models()[:8]}")
    strict = options.pop("pretrained_strict", True)
    classes: int | tuple[int, ...] = num_classes if isinstance(num_classes, int) else tuple(num_classes)
    model = _MODELS[name](num_classes=classes, num_segments=num_segments, **options)
    model.vidattn_config = {
        "name": name,
        "num_classes": list(classes) if isinstance(classes, tuple) else classes,
        "num_segments": num_segments,
        "options": copy.deepcopy(options),
    }
    if pretrained is not None:
        load_pretrained(model, pretrained, strict=strict)
    return model


def build_from_weights(path: str | Path) -> nn.Module:
    """Rebuild the model saved by `save_weights(model, path)` and load its weights (strictly).

    The model is returned in training mode, as `create_model` returns it; call `.eval()` for inference.
    """
    state, config = load_weights(path)
    if not config or "name" not in config:
        raise CheckpointError(f"{path}: has no vidattn model config (not written by save_weights); use "
                              "create_model(name, pretrained=path) instead")
    kwargs = {"num_classes": config.get("num_classes"), "num_segments": config.get("num_segments"),
              **(config.get("options") or {})}
    _check_planned_size(path, config["name"], kwargs, sum(t.numel() for t in state.values()))
    model = create_model(config["name"], **kwargs)
    load_state(model, state, str(path), strict=True)
    return model


def _check_planned_size(path: str | Path, name: str, kwargs: dict[str, Any], file_numel: int) -> None:
    """The metadata is untrusted input: build the model it describes on the meta device (no memory) and
    refuse it if it would hold far more values than the file carries (it could not load strictly anyway)."""
    try:
        with torch.device("meta"):
            planned = create_model(name, **kwargs)
        numel = sum(t.numel() for t in planned.state_dict().values())
    except Exception as e:  # noqa: BLE001 - any failure means the metadata does not describe a model we build
        raise CheckpointError(f"{path}: its vidattn_config metadata does not describe a buildable model "
                              f"({type(e).__name__}: {first_line(e)})") from None
    if numel > 2 * file_numel + 1_000_000:
        raise CheckpointError(f"{path}: its vidattn_config metadata asks for a {name} of {numel / 1e6:,.1f} M values "
                              f"({', '.join(f'{k}={v}' for k, v in kwargs.items())}) but the file holds "
                              f"{file_numel / 1e6:,.1f} M; refusing to build it (corrupt or edited metadata)")
