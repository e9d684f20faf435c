"""vidattn: efficient, attentive video action recognition.

Models of two papers: the W3 "what-where-when" video attention module (Perez-Rua et al., 2020) on TSM,
TAM and I3D backbones with its baselines (TSN, TSM, CBAM, non-local), and the UCF-101 3D-CNN with
sigmoid-gated attention (Shrestha et al., 2021).

`vidattn.create_model` / `vidattn.list_models` import the models on first use, so that importing a
lower layer (`vidattn.data`, `vidattn.runtime`, `vidattn.config`) or the CLI never imports them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from vidattn.models.registry import create_model, list_models

__all__ = ["create_model", "list_models", "__version__"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name in ("create_model", "list_models"):
        from vidattn.models import registry

        return getattr(registry, name)
    raise AttributeError(f"module 'vidattn' has no attribute {name!r}")
