"""Classifier heads: global average pooling, dropout, one linear layer per label space.

A head maps per-frame (2D recognizers) or per-clip (3D) features to logits; several label spaces
(e.g. EPIC-Kitchens verb and noun) share one feature. The linear layers start as in TSM's `new_fc`:
weights N(0, 0.001), biases 0.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn


class ClassifierHead(nn.Module):
    """Dropout then a linear classifier per label space; `num_classes` an int or a sequence of ints."""

    def __init__(self, in_features: int, num_classes: int | Sequence[int], dropout: float = 0.5,
                 init_std: float = 0.001) -> None:
        super().__init__()
        self.multi = not isinstance(num_classes, int)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        sizes = list(num_classes) if self.multi else [num_classes]  # type: ignore[arg-type]
        layers = [nn.Linear(in_features, k) for k in sizes]
        for layer in layers:
            nn.init.normal_(layer.weight, 0.0, init_std)
            nn.init.zeros_(layer.bias)
        self.fc: nn.Module = nn.ModuleList(layers) if self.multi else layers[0]

    def forward(self, pooled: Tensor) -> Tensor | tuple[Tensor, ...]:
        x = self.dropout(pooled)
        if self.multi:
            return tuple(layer(x) for layer in self.fc)  # type: ignore[union-attr]
        return self.fc(x)
