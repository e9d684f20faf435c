"""Model registry: `register_model`, `create_model`, `list_models` (torchvision-style, duplicates refused).

Every entry point is a function `fn(num_classes, num_segments, **options) -> nn.Module`. `create_model`
records how the model was built in `model.vidattn_config`, so a weights file can rebuild it, and loads
`pretrained` weights in any supported layout (see `vidattn.models.compat`).
"""

from __future__ import annotations

import copy
import fnmatch
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from torch import nn

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
    _ensure_zoo()
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
    _ensure_zoo()
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
        from vidattn.models.compat import load_pretrained

        load_pretrained(model, pretrained, strict=strict)
    return model


def _ensure_zoo() -> None:
    import vidattn.models.zoo  # noqa: F401  (registers every model on first import)
