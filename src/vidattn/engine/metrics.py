"""Classification metrics: top-k, mean class accuracy, confusion matrix, EPIC verb/noun/action.

All accuracies are percentages. EPIC-Kitchens action accuracy counts a segment correct when both the
verb and the noun are; action top-5 ranks the joint verb x noun score (product of the two softmax
distributions), the convention of the EPIC-Kitchens action-recognition evaluation.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

__all__ = [
    "topk_accuracy",
    "mean_class_accuracy",
    "confusion_matrix",
    "classification_metrics",
    "action_topk_accuracy",
    "multihead_metrics",
    "head_names",
    "save_confusion_csv",
    "save_confusion_png",
]


def head_names(num_heads: int) -> list[str]:
    """``verb``/``noun`` for two heads (EPIC-Kitchens), ``head0``... otherwise."""
    return ["verb", "noun"] if num_heads == 2 else [f"head{i}" for i in range(num_heads)]


def topk_accuracy(scores: torch.Tensor, labels: torch.Tensor, ks: Sequence[int] = (1, 5)) -> dict[int, float]:
    """Percentage of rows whose label is among the ``k`` highest scores (k capped at the class count)."""
    if len(labels) == 0:
        return {k: float("nan") for k in ks}
    kmax = min(max(ks), scores.shape[1])
    top = scores.topk(kmax, dim=1).indices
    hit = top == labels.view(-1, 1)
    return {k: 100.0 * hit[:, : min(k, kmax)].any(dim=1).double().mean().item() for k in ks}


def confusion_matrix(preds: torch.Tensor, labels: torch.Tensor, num_classes: int) -> np.ndarray:
    """``cm[true, predicted]`` counts."""
    flat = labels.long() * num_classes + preds.long()
    return torch.bincount(flat, minlength=num_classes * num_classes).view(num_classes, num_classes).numpy()


def mean_class_accuracy(cm: np.ndarray) -> float:
    """Mean over the classes present in the labels of their recall (percent)."""
    support = cm.sum(axis=1)
    present = support > 0
    if not present.any():
        return float("nan")
    return float(100.0 * (np.diag(cm)[present] / support[present]).mean())


def classification_metrics(scores: torch.Tensor, labels: torch.Tensor) -> tuple[dict[str, float], np.ndarray]:
    """top1, top5, mean_class_acc and the confusion matrix of one head."""
    acc = topk_accuracy(scores, labels, (1, 5))
    cm = confusion_matrix(scores.argmax(dim=1), labels, scores.shape[1])
    return {"top1": acc[1], "top5": acc[5], "mean_class_acc": mean_class_accuracy(cm)}, cm


def action_topk_accuracy(
    probs: Sequence[torch.Tensor], labels: torch.Tensor, ks: Sequence[int] = (1, 5), chunk: int = 256
) -> dict[int, float]:
    """Accuracy of the joint label (all heads right), ranking the product of the heads' probabilities.

    ``probs``: one (N, K_h) probability tensor per head; ``labels``: (N, H).
    """
    n = labels.shape[0]
    if n == 0:
        return {k: float("nan") for k in ks}
    sizes = [p.shape[1] for p in probs]
    # flat index of the true joint class in the row-major product space
    flat_label = torch.zeros(n, dtype=torch.long)
    for h, size in enumerate(sizes):
        flat_label = flat_label * size + labels[:, h].long()
    kmax = min(max(ks), int(np.prod(sizes)))
    hits = []
    for start in range(0, n, chunk):
        joint = probs[0][start : start + chunk].float()
        for p in probs[1:]:
            joint = (joint.unsqueeze(-1) * p[start : start + chunk].float().unsqueeze(1)).flatten(1)
        hits.append(joint.topk(kmax, dim=1).indices == flat_label[start : start + chunk].view(-1, 1))
    hit = torch.cat(hits)
    return {k: 100.0 * hit[:, : min(k, kmax)].any(dim=1).double().mean().item() for k in ks}


def multihead_metrics(
    scores: Sequence[torch.Tensor], labels: torch.Tensor, probs: Sequence[torch.Tensor] | None = None
) -> tuple[dict[str, float], list[np.ndarray]]:
    """Per-head top1/top5/mean_class_acc (``verb_top1``...), plus ``action_top1/5``.

    The headline ``top1``/``top5`` of a multi-head model are the action accuracies.
    ``probs`` (defaults to the softmax of ``scores``) rank the joint action classes.
    """
    names = head_names(len(scores))
    out: dict[str, float] = {}
    cms = []
    for h, (name, s) in enumerate(zip(names, scores)):
        m, cm = classification_metrics(s, labels[:, h])
        out.update({f"{name}_{k}": v for k, v in m.items()})
        cms.append(cm)
    if probs is None:
        probs = [s.float().softmax(dim=1) for s in scores]
    action = action_topk_accuracy(probs, labels, (1, 5))
    out["action_top1"], out["action_top5"] = action[1], action[5]
    out["top1"], out["top5"] = action[1], action[5]
    return out, cms


def save_confusion_csv(cm: np.ndarray, path: str | Path, class_names: Sequence[str] | None = None) -> None:
    """Rows = true class, columns = predicted class, with a header of class names."""
    names = list(class_names) if class_names is not None else [str(i) for i in range(cm.shape[0])]
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["true\\pred", *names])
        for name, row in zip(names, cm):
            writer.writerow([name, *row.tolist()])


def save_confusion_png(
    cm: np.ndarray, path: str | Path, class_names: Sequence[str] | None = None, title: str = ""
) -> None:
    """Row-normalised confusion matrix image (class names on the axes when there are few classes)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = cm.shape[0]
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    size = min(4 + 0.25 * k, 20)
    fig, ax = plt.subplots(figsize=(size, size))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(im, ax=ax, fraction=0.046)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title or "confusion matrix (row-normalised)")
    if class_names is not None and k <= 40:
        ax.set_xticks(range(k), list(class_names), rotation=90, fontsize=7)
        ax.set_yticks(range(k), list(class_names), fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
