"""Model zoo. Importing this package imports every model module, so the registry is always complete."""

from vidattn.models import zoo as _zoo  # noqa: F401  (registers every model)
from vidattn.models.compat import CheckpointError, LoadReport, load_pretrained, load_weights, save_weights
from vidattn.models.recognizer import VideoModel, VideoOutput, VideoRecognizer
from vidattn.models.registry import build_from_weights, create_model, list_models, register_model

__all__ = [
    "CheckpointError",
    "LoadReport",
    "VideoModel",
    "VideoOutput",
    "VideoRecognizer",
    "build_from_weights",
    "create_model",
    "list_models",
    "load_pretrained",
    "load_weights",
    "register_model",
    "save_weights",
]
