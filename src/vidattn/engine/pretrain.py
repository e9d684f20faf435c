"""Appearance pretraining: the CPU stand-in for the ImageNet weights the W3 paper fine-tunes from.

The W3 paper (Sec. 4) starts every video model from an ImageNet ResNet; training a video model from
scratch on a CPU is a different regime (the attention masks have no object features to attend to). This
stage trains the same 2D ResNet on single frames of the SynthActions renderer, classifying each frame's
object appearance (shape x colour x texture, `vidattn.data.synthetic.APPEARANCES`), and writes the
backbone in torchvision's ImageNet layout (`conv1.weight`, `layer1.0.conv1.weight`, ..., `fc.*`). So the
file loads through `model.pretrained` exactly like an ImageNet checkpoint (`vidattn.models.compat`):
into every 2D recognizer's backbone, inflated into I3D's, with the classifier dropped.

Deterministic from `seed` (images from `numpy` generators seeded by `(seed, index)`, torch seeded).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vidattn.engine.checkpoint import atomic_write_text

__all__ = ["AppearancePretraining", "pretrain_appearance", "render_appearance_set"]

logger = logging.getLogger(__name__)

#: ImageNet statistics, the video pipeline's default normalisation (`DataConfig.mean/std`).
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class AppearancePretraining:
    """The stage's settings; `depth`, `base_width` and `stem` must match the video models it feeds."""

    depth: int = 18
    base_width: int = 16
    stem: str = "small"
    #: Frame side in pixels: the video models' crop size, objects drawn as SynthActions draws them.
    size: int = 32
    images_per_appearance: int = 40
    steps: int = 200
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 1e-4
    seed: int = 0
    held_out_per_appearance: int = 8
    #: object radius range as a fraction of `size` (the dataset's `www_radius`)
    radius: tuple[float, float] = (0.10, 0.14)


def render_appearance_set(count_per_appearance: int, size: int, seed: int, offset: int = 0,
                          radius: tuple[float, float] = (0.10, 0.14)) -> tuple[Tensor, Tensor]:
    """`count_per_appearance` images of every appearance, uint8 `(N, 3, size, size)`, and their labels;
    image `i` of appearance `a` is drawn by the generator seeded `(seed, a, offset + i)`."""
    from vidattn.data.synthetic import NUM_APPEARANCES, render_appearance_image

    images, labels = [], []
    for a in range(NUM_APPEARANCES):
        for i in range(count_per_appearance):
            rng = np.random.default_rng([seed, a, offset + i])
            images.append(render_appearance_image(a, size, rng, tuple(radius)))
            labels.append(a)
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous(), torch.tensor(labels)


class _ImageClassifier(nn.Module):
    """A ResNet2d with torchvision's global pooling and `fc`, so its state dict is an ImageNet ResNet's."""

    def __init__(self, s: AppearancePretraining, num_classes: int) -> None:
        super().__init__()
        from vidattn.models.resnet import ResNet2d

        self.backbone = ResNet2d(s.depth, stem=s.stem, base_width=s.base_width)
        self.fc = nn.Linear(self.backbone.num_features, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.backbone.forward_features(x).features.mean(dim=(2, 3)))

    def imagenet_state_dict(self) -> dict[str, Tensor]:
        state = {k: v.detach().clone() for k, v in self.backbone.state_dict().items()}
        state.update({f"fc.{k}": v.detach().clone() for k, v in self.fc.state_dict().items()})
        return state


def _normalise(images: Tensor) -> Tensor:
    mean = torch.tensor(MEAN).view(1, 3, 1, 1) * 255
    std = torch.tensor(STD).view(1, 3, 1, 1) * 255
    return (images.float() - mean) / std


@torch.no_grad()
def _accuracy(model: nn.Module, images: Tensor, labels: Tensor, batch: int = 256) -> float:
    model.eval()
    hits = 0
    for i in range(0, len(images), batch):
        hits += int((model(_normalise(images[i:i + batch])).argmax(1) == labels[i:i + batch]).sum())
    return 100.0 * hits / len(images)


def pretrain_appearance(path: str | Path, settings: AppearancePretraining | None = None, *,
                        progress: bool = True) -> dict[str, object]:
    """Train the appearance classifier and write its weights to `path` (an ImageNet-layout `.pth`) and a
    report beside it (`<path>.json`: settings, held-out accuracy, seconds). Reuses an existing file made
    with the same settings. Returns the report."""
    from tqdm.auto import tqdm

    from vidattn.data.synthetic import NUM_APPEARANCES

    s = settings or AppearancePretraining()
    path = Path(path)
    report_path = path.with_name(path.name + ".json")
    if path.is_file() and report_path.is_file():
        report = json.loads(report_path.read_text())
        if report.get("settings") == json.loads(json.dumps(asdict(s))):
            return report
    start = time.perf_counter()
    torch.manual_seed(s.seed)
    train_x, train_y = render_appearance_set(s.images_per_appearance, s.size, s.seed, radius=s.radius)
    test_x, test_y = render_appearance_set(s.held_out_per_appearance, s.size, s.seed, offset=10**6,
                                           radius=s.radius)
    model = _ImageClassifier(s, NUM_APPEARANCES)
    optimizer = torch.optim.AdamW(model.parameters(), lr=s.lr, weight_decay=s.weight_decay)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, s.lr, total_steps=s.steps, pct_start=0.15)
    order = torch.Generator().manual_seed(s.seed)
    perm, pos = torch.randperm(len(train_x), generator=order), 0
    model.train()
    for _ in tqdm(range(s.steps), desc="appearance pretraining", unit="step", disable=not progress):
        if pos + s.batch_size > len(perm):
            perm, pos = torch.randperm(len(train_x), generator=order), 0
        idx = perm[pos:pos + s.batch_size]
        pos += s.batch_size
        loss = F.cross_entropy(model(_normalise(train_x[idx])), train_y[idx])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
    report: dict[str, object] = {
        "settings": json.loads(json.dumps(asdict(s))),
        "num_appearances": NUM_APPEARANCES,
        "train_accuracy": round(_accuracy(model, train_x[:2000], train_y[:2000]), 2),
        "held_out_accuracy": round(_accuracy(model, test_x, test_y), 2),
        "seconds": round(time.perf_counter() - start, 1),
        "format": "imagenet (torchvision ResNet layout)",
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(model.imagenet_state_dict(), tmp)
    tmp.replace(path)
    atomic_write_text(report_path, json.dumps(report, indent=1))
    logger.info("appearance pretraining: %.1f%% held-out accuracy over %d appearances in %.0f s -> %s",
                report["held_out_accuracy"], NUM_APPEARANCES, report["seconds"], path)
    return report
