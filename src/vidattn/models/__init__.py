"""Model zoo. Importing this package imports every model module, so the registry is always complete."""

from vidattn.models import zoo as _zoo  # noqa: F401  (registers every model)
from vidattn.models.registry import create_model, list_models, register_model

__all__ = ["create_model", "list_models", "register_model"]
