"""Attention modules that plug into a residual block's `attn` slot (W3, CBAM) or after a block (non-local)."""

from vidattn.models.attention.cbam import CBAM
from vidattn.models.attention.non_local import NonLocalBlock
from vidattn.models.attention.w3 import W3Attention

__all__ = ["CBAM", "NonLocalBlock", "W3Attention"]
