"""The multiply that applies an attention mask, shared by the `attn`-slot modules (W3, CBAM).

Every full-size pass over a feature map costs about as much as the attention's own arithmetic, so the slot
protocol lets a residual block hand its identity branch to the attention module: the last mask multiply
and the residual add then run as one `addcmul` pass. Without autograd, a map the caller owns is overwritten
instead of allocating a new one.
"""

from __future__ import annotations

import torch
from torch import Tensor


def apply_mask(x: Tensor, mask: Tensor, residual: Tensor | None = None, overwrite: bool = False) -> Tensor:
    """`x * mask` (+ `residual`), in one pass; written into `x` when `overwrite` and autograd is off.

    `mask` broadcasts against `x`. With autograd on, `x` is never modified (it is saved for backward).
    """
    if overwrite and not torch.is_grad_enabled():
        return x.mul_(mask) if residual is None else torch.addcmul(residual, x, mask, out=x)
    return x * mask if residual is None else torch.addcmul(residual, x, mask)
