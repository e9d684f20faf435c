"""vidattn: efficient, attentive video action recognition.

Models of two papers: the W3 "what-where-when" video attention module (Perez-Rua et al., 2020) on TSM,
TAM and I3D backbones with its baselines (TSN, TSM, CBAM, non-local), and the UCF-101 3D-CNN with
sigmoid-gated attention (Shrestha et al., 2021).
"""

from vidattn.models.registry import create_model, list_models

__all__ = ["create_model", "list_models", "__version__"]
__version__ = "0.1.0"
