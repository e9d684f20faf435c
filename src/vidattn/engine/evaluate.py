"""Evaluation: views (clips x crops), score averaging, metrics, prediction files, MACs per view.

A test sample may carry V = clips x crops views, shape (V, 3, T, H, W), taken by the recipe's
`InputSpec` (`vidattn.data.clips`); every batch runs through a `vidattn.inference.Predictor` (the path
`vidattn predict` runs too) and the video score is the mean over views of the softmax scores (default)
or of the logits (`Prediction.scores`). The papers' default is 1 clip, centre crop; SSv2 uses 2 clips,
full resolution (crop at the 256 short side); EPIC uses ten-crop. MACs are reported per single view
(1 clip x 1 crop) and times the number of views, as the papers' tables do.

Distributed evaluation shards the dataset without padding and gathers every prediction once, so one
and N processes report identical metrics.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm import tqdm

from vidattn.config import Config
from vidattn.data.clips import InputSpec
from vidattn.engine import metrics as M
from vidattn.engine.builders import build_eval_loader, build_model_from_weights, class_names
from vidattn.engine.checkpoint import CONFIG_FILE, atomic_write_text
from vidattn.engine.distributed import (
    DistInfo,
    all_reduce_sum,
    barrier,
    cleanup_distributed,
    gather_predictions,
    init_distributed,
)
from vidattn.engine.submission import write_epic_submission, write_something_predictions
from vidattn.inference import Predictor, resolve_source
from vidattn.models.compute import count_macs

__all__ = [
    "EvalResult",
    "predict",
    "metrics_from_records",
    "evaluate",
    "run_evaluation",
    "macs_per_view",
    "autocast_context",
]

logger = logging.getLogger(__name__)


@dataclass
class EvalResult:
    """What :func:`run_evaluation` produced: metrics and the files written."""

    metrics: dict[str, float]
    output_dir: Path | None
    files: dict[str, Path] = field(default_factory=dict)
    num_samples: int = 0
    #: per video: ``index``, ``video_id``, ``label``, ``scores`` (per head, (K,)), ``logits`` (per head, the
    #: mean over views), ``loss``
    records: list[dict[str, Any]] = field(default_factory=list)


def autocast_context(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """bf16 autocast on CPU/CUDA, fp16 on CUDA only, nothing for fp32."""
    if precision == "fp32":
        return contextlib.nullcontext()
    if precision == "fp16" and device.type != "cuda":
        raise ValueError("train.precision=fp16 needs CUDA; use bf16 on CPU")
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def _labels_of(batch: dict[str, Any], scores: list[Tensor] | None = None) -> Tensor | None:
    label = batch.get("label")
    if label is None:
        return None
    label = torch.as_tensor(label)
    if label.is_floating_point() and scores is not None:
        # multi-hot (mmaction2 multi_class): the predicted class if it is one of the sample's, else its
        # first class, so top-1 counts a hit on any of them (top-5 and the confusion matrix use that class)
        top = scores[0].argmax(dim=1).cpu()
        hit = label.gather(1, top[:, None])[:, 0] > 0
        return torch.where(hit, top, label.argmax(dim=1)).view(-1, 1).long()
    return label.view(label.shape[0], -1).long()  # (B, heads)


def predict(
    predictor: Predictor,
    loader: Iterable[dict[str, Any]],
    *,
    average: str = "softmax",
    progress: bool = False,
    desc: str = "eval",
) -> tuple[list[dict[str, Any]], int]:
    """This process's per-sample records (``Predictor.run`` on every batch of views) and the number of
    skipped (unreadable) samples."""
    records: list[dict[str, Any]] = []
    skipped = skipped_batches = 0
    total = len(loader) if hasattr(loader, "__len__") else None
    for batch in tqdm(loader, desc=desc, total=total, disable=not progress, leave=False, dynamic_ncols=True):
        skipped += int(batch.get("num_skipped", 0))
        if batch.get("clip") is None or len(batch["clip"]) == 0:  # every sample unreadable (on_error=skip)
            skipped_batches += 1
            continue
        out = predictor.run(batch["clip"])
        scores, logits = out.scores(average), out.mean_logits()
        labels = _labels_of(batch, scores)
        n = len(batch["clip"])
        losses = torch.full((n,), math.nan)
        if labels is not None:
            losses = sum(
                F.cross_entropy(z, labels[:, h].clamp(min=0).to(z.device), reduction="none").cpu()
                for h, z in enumerate(logits)
            )
        for i in range(n):
            label = None if labels is None else labels[i].tolist()
            if label is not None and any(x < 0 for x in label):
                label = None  # unlabelled test sample
            loss = float(losses[i]) if label is not None else math.nan
            records.append(
                {
                    "index": int(batch["index"][i]),
                    "video_id": str(batch["video_id"][i]),
                    "label": label,
                    "scores": [s[i].cpu() for s in scores],
                    "logits": [z[i].cpu() for z in logits],
                    "loss": loss,
                }
            )
    if skipped_batches:
        logger.warning("%s: %d batches skipped whole (every sample unreadable)", desc, skipped_batches)
    return records, skipped


def metrics_from_records(records: list[dict[str, Any]], average: str = "softmax") -> tuple[dict[str, float], list[Any]]:
    """Top-1/5, mean class accuracy (and EPIC verb/noun/action) of the labelled records + loss."""
    labelled = [r for r in records if r["label"] is not None]
    out: dict[str, float] = {"num_samples": float(len(records)), "num_labelled": float(len(labelled))}
    if not labelled:
        return out, []
    num_heads = len(labelled[0]["scores"])
    scores = [torch.stack([r["scores"][h] for r in labelled]) for h in range(num_heads)]
    labels = torch.tensor([r["label"] for r in labelled], dtype=torch.long)
    out["loss"] = float(sum(r["loss"] for r in labelled) / len(labelled))
    if num_heads == 1:
        m, cm = M.classification_metrics(scores[0], labels[:, 0])
        out.update(m)
        return out, [cm]
    probs = scores if average == "softmax" else [s.softmax(dim=1) for s in scores]
    m, cms = M.multihead_metrics(scores, labels, probs)
    out.update(m)
    return out, cms


def evaluate(
    predictor: Predictor,
    loader: Iterable[dict[str, Any]],
    *,
    average: str = "softmax",
    progress: bool = False,
    desc: str = "eval",
) -> tuple[dict[str, float], list[dict[str, Any]], list[Any]]:
    """Predict on this process's shard, gather all shards, compute metrics (identical on every rank)."""
    local, skipped = predict(predictor, loader, average=average, progress=progress, desc=desc)
    records = gather_predictions(local)
    num_skipped = int(all_reduce_sum([float(skipped)])[0])
    metrics, cms = metrics_from_records(records, average)
    metrics["num_skipped"] = float(num_skipped)
    if num_skipped:
        logger.warning("%s: %d unreadable samples skipped (not counted in the metrics)", desc, num_skipped)
    return metrics, records, cms


def macs_per_view(model: nn.Module, input_shape: tuple[int, ...]) -> float:
    """Multiply-accumulates of one view (1 clip x 1 crop) via ``vidattn.models.compute.count_macs``."""
    return float(count_macs(model, input_shape).macs)


# ----------------------------------------------------------------------------------------------------------
# the `vidattn test` entry point


def _views_name(cfg: Config) -> str:
    crops = {1: "centre", 3: "3crop", 10: "10crop"}[cfg.eval.crops]
    res = "fullres" if cfg.eval.full_res else f"{cfg.data.crop_size}"
    return f"{cfg.eval.clips}clip-{crops}-{res}"


def run_evaluation(
    source: str | Path,
    *,
    config: Config | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    split: str = "val",
    output_dir: str | Path | None = None,
) -> EvalResult:
    """Evaluate a run directory's best weights (or a weights file, or a run's ``checkpoint.pt``: its
    last weights) on ``split`` with ``config.eval`` views.

    ``overrides`` (``eval.clips=2``, ``eval.crops=10``, ``data.root=...``) apply on top of the run's
    ``config.yaml``. Writes ``metrics.json``, the confusion matrix (CSV + PNG) and, for unlabelled test
    sets, the challenge prediction files (EPIC ``seen.json``/``unseen.json``, Something-Something
    ``predictions.csv``) into ``output_dir`` (default ``RUN_DIR/eval-{split}-{views}``). Runs under
    torchrun too (sharded, gathered once).
    """
    source_ = resolve_source(source, config, overrides)
    weights, cfg, run_dir = source_.weights, source_.config, source_.run_dir
    if cfg is None:
        raise FileNotFoundError(f"{source}: no {CONFIG_FILE} beside the weights to say what data to evaluate "
                                "on; pass the recipe: vidattn test WEIGHTS --config RECIPE.yaml "
                                "(run_evaluation(..., config=load_config(RECIPE.yaml)))")
    info: DistInfo = init_distributed(cfg.train.device)
    try:
        spec = InputSpec.from_config(cfg)  # what build_eval_loader(views=True) samples; predict reads the same
        model = build_model_from_weights(weights, cfg)
        macs = macs_per_view(model, (1, 3, spec.num_frames, spec.view_size, spec.view_size)) if info.is_main else None
        predictor = Predictor(model, device=info.device, precision=cfg.train.precision, spec=spec,
                              spec_origin=source_.origin)
        loader, dataset = build_eval_loader(cfg, split, info, views=True)
        metrics, records, cms = evaluate(
            predictor,
            loader,
            average=cfg.eval.average,
            progress=cfg.train.progress and info.is_main,
            desc=f"test {split}",
        )
        metrics["views"] = float(spec.views)
        if macs is not None:
            metrics["gmacs_per_view"] = macs / 1e9
            metrics["gmacs_total"] = macs * spec.views / 1e9
        out_dir = None
        files: dict[str, Path] = {}
        if info.is_main:
            if output_dir is not None:
                out_dir = Path(output_dir)
            elif run_dir is not None:
                out_dir = run_dir / f"eval-{split}-{_views_name(cfg)}"
            if out_dir is not None:
                files = write_eval_outputs(out_dir, cfg, split, metrics, records, cms, class_names(dataset))
        _log_summary(cfg, split, metrics)
        barrier()  # every rank returns after rank 0 wrote the outputs
        return EvalResult(metrics=metrics, output_dir=out_dir, files=files, num_samples=len(records), records=records)
    finally:
        cleanup_distributed(info)


def write_eval_outputs(
    out_dir: Path,
    cfg: Config,
    split: str,
    metrics: dict[str, float],
    records: list[dict[str, Any]],
    cms: list[Any],
    names: list[list[str]] | None,
) -> dict[str, Path]:
    """metrics.json, confusion_*.csv/png, and challenge files for unlabelled records."""
    out_dir.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}
    payload = {
        "split": split,
        "views": {
            "clips": cfg.eval.clips,
            "crops": cfg.eval.crops,
            "full_res": cfg.eval.full_res,
            "average": cfg.eval.average,
        },
        "macs_note": "MACs are multiply-accumulates of one view (1 clip x 1 crop)",
        "metrics": metrics,
    }
    files["metrics"] = atomic_write_text(out_dir / "metrics.json", json.dumps(payload, indent=2))
    head_labels = M.head_names(len(cms)) if len(cms) > 1 else [""]
    for h, cm in enumerate(cms):
        suffix = f"_{head_labels[h]}" if head_labels[h] else ""
        head_names_ = names[h] if names and h < len(names) else None
        M.save_confusion_csv(cm, out_dir / f"confusion{suffix}.csv", head_names_)
        files[f"confusion{suffix}_csv"] = out_dir / f"confusion{suffix}.csv"
        if cm.shape[0] <= cfg.eval.confusion_png_max_classes:
            M.save_confusion_png(cm, out_dir / f"confusion{suffix}.png", head_names_, title=f"{cfg.name} {split}")
            files[f"confusion{suffix}_png"] = out_dir / f"confusion{suffix}.png"
    unlabelled = [r for r in records if r["label"] is None]
    if unlabelled:
        ids = [r["video_id"] for r in unlabelled]
        if len(unlabelled[0]["scores"]) == 2:
            name = {"s1": "seen.json", "s2": "unseen.json"}.get(split.lower().split("_")[-1], f"{split}.json")
            files["submission"] = write_epic_submission(
                out_dir / name,
                ids,
                torch.stack([r["scores"][0] for r in unlabelled]),
                torch.stack([r["scores"][1] for r in unlabelled]),
            )
        else:
            files["submission"] = write_something_predictions(
                out_dir / "predictions.csv",
                ids,
                torch.stack([r["scores"][0] for r in unlabelled]),
                names[0] if names else None,
            )
    return files


def _log_summary(cfg: Config, split: str, metrics: dict[str, float]) -> None:
    keys = [k for k in ("top1", "top5", "mean_class_acc", "verb_top1", "noun_top1", "action_top1") if k in metrics]
    parts = [f"{k}={metrics[k]:.2f}" for k in keys]
    if "gmacs_per_view" in metrics:
        parts.append(f"GMACs={metrics['gmacs_per_view']:.2f}x{int(metrics['views'])} views")
    logger.info("%s on %s (%s): %s", cfg.name, split, _views_name(cfg), ", ".join(parts) or "no labels")
