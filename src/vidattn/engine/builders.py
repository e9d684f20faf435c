"""Config -> model, datasets and DataLoaders (the glue between ``vidattn.config`` and the library).

Determinism: training samples depend only on ``(seed, epoch, index)`` (the dataset's own seeded RNG,
``set_epoch`` each epoch), the shuffle order on ``(seed, epoch)`` (``DistributedSampler``, also for one
process), and worker seeds on a loader generator re-seeded each epoch, so a resumed run sees exactly
the batches of an uninterrupted one, whatever the number of workers.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from vidattn.config import Config
from vidattn.data import build_dataset as data_build_dataset
from vidattn.data import collate_clips
from vidattn.data.clips import InputSpec
from vidattn.data.sampling import build_sampler
from vidattn.data.transforms import build_train_transform
from vidattn.engine.distributed import DistInfo, ShardSampler
from vidattn.models import CheckpointError, build_from_weights, create_model

__all__ = [
    "build_model",
    "build_model_from_weights",
    "build_dataset",
    "build_train_loader",
    "build_eval_loader",
    "reseed_loader",
    "class_names",
]

logger = logging.getLogger(__name__)


def build_model(cfg: Config) -> nn.Module:
    """``create_model`` from ``cfg.model`` with the dataset's classes and segments."""
    if cfg.model.pretrained is not None and not Path(cfg.model.pretrained).is_file():
        raise FileNotFoundError(
            f"model.pretrained: {cfg.model.pretrained} not found; put the ImageNet weights there (see "
            "docs/training.md) or train from scratch with model.pretrained=null"
        )
    options = dict(cfg.model.options)
    # model.pretrained_strict, or the older model.options.pretrained_strict: False from either wins
    strict = bool(cfg.model.pretrained_strict) and bool(options.pop("pretrained_strict", True))
    return create_model(
        cfg.model.name,
        num_classes=cfg.data.num_classes,
        num_segments=cfg.data.num_segments,
        pretrained=cfg.model.pretrained,
        pretrained_strict=strict,
        **options,
    )


def build_model_from_weights(path: str | Path, cfg: Config | None = None) -> nn.Module:
    """Rebuild a model from our safetensors (its embedded config), else from ``cfg`` + the weights."""
    try:
        return build_from_weights(path)
    except CheckpointError as err:
        if cfg is None:
            raise
        logger.info("%s has no usable vidattn_config (%s); building %s from the config", path, err, cfg.model.name)
    return create_model(
        cfg.model.name,
        num_classes=cfg.data.num_classes,
        num_segments=cfg.data.num_segments,
        pretrained=str(path),
        **cfg.model.options,
    )


def _resize(cfg: Config) -> int | tuple[int, int]:
    return tuple(cfg.data.resize) if cfg.data.resize else cfg.data.scale_size  # type: ignore[return-value]


def build_dataset(cfg: Config, split: str, *, train: bool, views: bool = False) -> Dataset:
    """The dataset of ``split`` with the recipe's sampling and transforms.

    ``train``: random sampling + augmentation. ``views``: the ``cfg.eval`` test views (clips x crops,
    full resolution); otherwise validation uses 1 clip, centre crop (the papers' default).
    """
    d = cfg.data
    if train:
        sampler = build_sampler(d.sampling, d.num_segments, train=True, stride=d.stride)
        transform = build_train_transform(
            d.crop_size, crop=d.train_crop, resize=_resize(cfg), flip=d.flip, mean=d.mean, std=d.std
        )
    else:  # the recipe's test input, as vidattn predict / load_predictor take it (vidattn.data.clips)
        spec = InputSpec.from_config(cfg, views=views)
        sampler, transform = spec.sampler(), spec.transform()
    dataset = data_build_dataset(
        d.dataset,
        d.root,
        split,
        train=train,
        sampler=sampler,
        transform=transform,
        on_error=d.on_error,
        seed=cfg.seed,
        **d.options,
    )
    if hasattr(dataset, "check_labels"):  # the model's classifier size, not only the annotation's classes
        dataset.check_labels(d.num_classes, "data.num_classes")
    return dataset


def build_train_loader(
    cfg: Config, info: DistInfo, worker_init_fn: Callable[[int], None] | None = None
) -> tuple[DataLoader, DistributedSampler]:
    """Shuffled, sharded training loader (``DistributedSampler`` with one or N replicas)."""
    dataset = build_dataset(cfg, cfg.data.train_split, train=True)
    if len(dataset) == 0:
        raise ValueError(f"data.train_split '{cfg.data.train_split}' of {cfg.data.root} is empty")
    sampler = DistributedSampler(
        dataset, num_replicas=info.world_size, rank=info.rank, shuffle=True, seed=cfg.seed, drop_last=False
    )
    per_rank = len(sampler)
    loader = DataLoader(
        dataset,
        batch_size=cfg.data.batch_size,
        sampler=sampler,
        num_workers=cfg.data.num_workers,
        collate_fn=collate_clips,
        pin_memory=info.device.type == "cuda",
        # a last batch of one clip breaks BatchNorm statistics; keep it only if it is all we have
        drop_last=per_rank > cfg.data.batch_size,
        worker_init_fn=worker_init_fn,
        generator=torch.Generator().manual_seed(cfg.seed),
        # not persistent: each epoch's workers get that epoch's dataset (`set_epoch`) and seeds (determinism)
        persistent_workers=False,
        prefetch_factor=cfg.data.prefetch_factor if cfg.data.num_workers > 0 else None,
    )
    return loader, sampler


def reseed_loader(loader: DataLoader, seed: int, epoch: int, rank: int) -> None:
    """Make epoch ``epoch``'s worker seeds and samples a function of (seed, epoch, rank) only."""
    if loader.generator is not None:
        loader.generator.manual_seed(seed * 1_000_003 + epoch * 1009 + rank)
    if hasattr(loader.dataset, "set_epoch"):
        loader.dataset.set_epoch(epoch)


def build_eval_loader(cfg: Config, split: str, info: DistInfo, views: bool = False) -> tuple[DataLoader, Dataset]:
    """Ordered loader over this rank's shard ``rank::world`` (no padding, so no duplicates)."""
    dataset = build_dataset(cfg, split, train=False, views=views)
    batch = cfg.eval.batch_size or cfg.data.batch_size
    if views:
        batch = max(1, batch // max(1, cfg.eval.clips * cfg.eval.crops))
    loader = DataLoader(
        dataset,
        batch_size=batch,
        sampler=ShardSampler(len(dataset), info.rank, info.world_size),
        num_workers=cfg.data.num_workers,
        collate_fn=collate_clips,
        pin_memory=info.device.type == "cuda",
        generator=torch.Generator().manual_seed(cfg.seed),  # never draw from the global RNG
        prefetch_factor=cfg.data.prefetch_factor if cfg.data.num_workers > 0 else None,
    )
    return loader, dataset


def class_names(dataset: Dataset) -> list[list[str]] | None:
    """Class names per head (EPIC: verbs, nouns) if the dataset knows them."""
    classes = getattr(dataset, "classes", None)
    if classes is None:
        return None
    if isinstance(classes, dict):
        return [list(v) for v in classes.values()]
    return [list(classes)]
