"""The quickstart (`vidattn quickstart`, the README's main job): see temporal attention matter on a CPU.

It generates SynthActions (time-reversal class pairs with distractors, docs/data.md), trains TSN, TSM and
TSM+W3 with the same small backbone, frames and budget, evaluates them on the test split, and writes a
report folder: `report.md` (accuracy table), `results.json`, `curves.png` (validation accuracy and loss
per epoch of the three models), W3 attention figures, predictions on a few test videos, and how much of
W3's spatial attention falls inside the actor's box versus the box's share of the frame.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

logger = logging.getLogger(__name__)

#: report key -> (registered model, label in the report)
QUICKSTART_MODELS: dict[str, tuple[str, str]] = {
    "tsn": ("tsn_r18", "TSN (no temporal modelling)"),
    "tsm": ("tsm_r18", "TSM (temporal shift)"),
    "tsm_w3": ("tsm_w3_r18", "TSM + W3 attention (with AFR)"),
}


@dataclass
class QuickstartSettings:
    """The budget shared by every model (same data, backbone, frames, epochs, optimiser, seed)."""

    out_dir: str = "vidattn-quickstart"
    seed: int = 0
    epochs: int = 7
    num_segments: int = 8
    base_width: int = 16
    stem: str = "small"
    scale_size: int = 36
    crop_size: int = 32
    #: "random" (a random crop of the whole-scene resize) or TSM's "multiscale" (can crop the actor out)
    train_crop: str = "random"
    #: horizontal flips (with SynthActions' left/right label swap); off: at this tiny budget they slow learning
    flip: bool = False
    dropout: float = 0.0
    batch_size: int = 8
    optimizer: str = "adamw"
    lr: float = 1e-3
    weight_decay: float = 1e-4
    num_workers: int = 2
    #: SynthConfig overrides. The CPU budget (10 minutes on 2 cores, from scratch) fits the two motion
    #: reversal pairs (move right/left, down/up) at 40x40; the full 16 classes need GPU-scale training.
    synth: dict[str, Any] = field(default_factory=lambda: {"num_classes": 4, "videos_per_class": 120, "size": 40})
    models: Sequence[str] = tuple(QUICKSTART_MODELS)
    num_threads: int | None = None
    progress: bool = True
    #: test videos shown with attention figures and top-5 predictions (pairs of reversal classes)
    num_examples: int = 4


def _config(key: str, s: QuickstartSettings, data_root: Path, runs: Path) -> Any:  # noqa: ANN401 - a Config
    from vidattn.config import config_from_dict

    name, _ = QUICKSTART_MODELS[key]
    return config_from_dict({
        "name": key,
        "seed": s.seed,
        "model": {"name": name, "options": {"base_width": s.base_width, "stem": s.stem, "dropout": s.dropout}},
        "data": {
            "dataset": "synth_actions", "root": str(data_root), "num_classes": _num_classes(data_root),
            "num_segments": s.num_segments, "sampling": "tsn", "scale_size": s.scale_size,
            "crop_size": s.crop_size, "train_crop": s.train_crop, "flip": s.flip, "batch_size": s.batch_size,
            "num_workers": s.num_workers, "val_split": "val", "test_split": "test",
        },
        "optim": {"name": s.optimizer, "lr": s.lr, "momentum": 0.9, "weight_decay": s.weight_decay,
                  "schedule": "cosine", "warmup_epochs": 1},
        "train": {"epochs": s.epochs, "grad_clip": 20, "output_dir": str(runs),
                  "progress": s.progress, "num_threads": s.num_threads},
    }, where=f"quickstart:{key}")


def _num_classes(data_root: Path) -> int:
    return int(json.loads((data_root / "synth_actions.json").read_text())["config"]["num_classes"])


def _evaluate_test(run_dir: Path, cfg: Any) -> tuple[dict[str, float], list[dict[str, Any]]]:  # noqa: ANN401
    """The engine's test-split metrics (top-1/5 in percent) and per-video records of a run's best weights."""
    from vidattn.engine.builders import build_eval_loader, build_model_from_weights
    from vidattn.engine.checkpoint import find_weights
    from vidattn.engine.distributed import DistInfo
    from vidattn.engine.evaluate import evaluate

    device = torch.device("cpu")
    model = build_model_from_weights(find_weights(run_dir), cfg).to(device)
    loader, _ = build_eval_loader(cfg, "test", DistInfo(device=device))
    metrics, records, _ = evaluate(model, loader, device)
    return metrics, records


def run_quickstart(settings: QuickstartSettings | None = None) -> dict[str, Any]:
    """Run the whole quickstart; returns (and writes) `results.json`'s content."""
    from vidattn.data import generate_synth_actions
    from vidattn.data.synthetic import reversal_pair_accuracy
    from vidattn.engine.train import run_training

    s = settings or QuickstartSettings()
    start = time.perf_counter()
    out = Path(s.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    data_root = generate_synth_actions(out / "data", workers=None, progress=s.progress, seed=s.seed, **s.synth)
    meta = json.loads((data_root / "synth_actions.json").read_text())
    pairs = [tuple(p) for p in meta["reversal_pairs"]]
    results: dict[str, Any] = {"models": {}, "settings": _settings_dict(s),
                               "dataset": {**meta["config"], "classes": meta["classes"]}}
    histories: dict[str, list[dict[str, float]]] = {}
    for key in s.models:
        cfg = _config(key, s, data_root, out / "runs")
        logger.info("training %s (%s) for %d epochs", key, cfg.model.name, s.epochs)
        t0 = time.perf_counter()
        run = run_training(cfg)
        train_seconds = time.perf_counter() - t0
        metrics, records = _evaluate_test(run.run_dir, cfg)
        scores = np.stack([r["scores"][0].float().numpy() for r in records])
        labels = np.array([r["label"][0] for r in records])
        results["models"][key] = {
            "model": cfg.model.name,
            "top1": round(metrics["top1"], 2),
            "top5": round(metrics["top5"], 2),
            "reversal_pair_accuracy": round(100 * reversal_pair_accuracy(scores, labels, pairs), 2),
            "best_val_top1": run.best.get("value"),
            "train_seconds": round(train_seconds, 1),
            "run_dir": str(run.run_dir),
        }
        histories[key] = _history(run.run_dir)
    results["figures"] = {"curves": str(_plot_curves(histories, out / "curves.png"))}
    results["attention"] = _attention_outputs(out, data_root, results, s)
    results["wall_seconds"] = round(time.perf_counter() - start, 1)
    (out / "results.json").write_text(json.dumps(results, indent=2))
    (out / "report.md").write_text(_report(results))
    return results


def _settings_dict(s: QuickstartSettings) -> dict[str, Any]:
    from dataclasses import asdict

    d = asdict(s)
    d["models"] = list(s.models)
    return d


def _history(run_dir: Path) -> list[dict[str, float]]:
    from vidattn.engine.run_log import read_metrics_csv

    return read_metrics_csv(run_dir / "metrics.csv")


def _plot_curves(histories: dict[str, list[dict[str, float]]], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for key, rows in histories.items():
        epochs = [r["epoch"] for r in rows]
        label = QUICKSTART_MODELS[key][1]
        axes[0].plot(epochs, [r.get("val_top1", np.nan) for r in rows], marker="o", label=label)
        axes[1].plot(epochs, [r.get("val_loss", np.nan) for r in rows], marker="o", label=label)
        axes[1].plot(epochs, [r.get("train_loss", np.nan) for r in rows], ls="--", alpha=0.5,
                     color=axes[1].lines[-1].get_color())
    axes[0].set(xlabel="epoch", ylabel="validation top-1 (%)", title="SynthActions validation accuracy")
    axes[1].set(xlabel="epoch", ylabel="loss", title="loss (solid: validation, dashed: training)")
    axes[0].legend(fontsize=8)
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _attention_outputs(out: Path, data_root: Path, results: dict[str, Any], s: QuickstartSettings
                       ) -> dict[str, Any]:
    """W3's attention: share inside the actor's box, Fig. 3-style figures and top-5 predictions."""
    if "tsm_w3" not in results["models"]:
        return {}
    from vidattn.analysis.attention_stats import synth_attention_in_box
    from vidattn.analysis.visualize import visualize_video
    from vidattn.engine.checkpoint import find_weights
    from vidattn.predict import predict_videos

    weights = find_weights(results["models"]["tsm_w3"]["run_dir"])
    in_box = synth_attention_in_box(weights, data_root, split="test")
    classes = (data_root / "classes.txt").read_text().split()
    test = [line.split() for line in (data_root / "test.txt").read_text().splitlines() if line.strip()]
    # one test video of each of the first reversal pairs' classes, e.g. moving left and moving right
    meta = json.loads((data_root / "synth_actions.json").read_text())
    wanted = [c for pair in meta["reversal_pairs"][: s.num_examples // 2] for c in pair]
    examples = [next(row for row in test if int(row[1]) == c) for c in wanted]
    figures = []
    for rel, _ in examples:
        written = visualize_video(data_root / rel, weights, out / "attention" / Path(rel).stem)
        figures.append(str(Path(written["png"]).relative_to(out)))
    preds = predict_videos(weights, [data_root / rel for rel, _ in examples], topk=5, class_names=classes)
    predictions = [{
        "video": rel,
        "true": classes[int(label)],
        "labels": [t["label"] for t in p["topk"]],
        "probabilities": [round(t["probability"], 4) for t in p["topk"]],
    } for (rel, label), p in zip(examples, preds)]
    (out / "predictions.json").write_text(json.dumps(predictions, indent=2))
    return {"in_box": in_box, "figures": figures, "predictions": predictions}


def _findings(results: dict[str, Any]) -> list[str]:
    """What the numbers say, in words (measured, never assumed)."""
    m = results["models"]
    lines = []
    if "tsn" in m and "tsm" in m:
        gap = m["tsm"]["reversal_pair_accuracy"] - m["tsn"]["reversal_pair_accuracy"]
        lines.append(f"- Temporal modelling: TSM tells a video from its time-reversed partner "
                     f"{m['tsm']['reversal_pair_accuracy']:.1f}% of the time, TSN "
                     f"{m['tsn']['reversal_pair_accuracy']:.1f}% ({gap:+.1f} points; TSN's ceiling is 50% by "
                     "construction).")
    if "tsm" in m and "tsm_w3" in m:
        diff = m["tsm_w3"]["top1"] - m["tsm"]["top1"]
        verdict = "adds to" if diff > 1 else "does not add to" if diff > -1 else "falls behind"
        lines.append(f"- Attention: at this budget TSM+W3 {verdict} TSM ({m['tsm_w3']['top1']:.1f}% vs "
                     f"{m['tsm']['top1']:.1f}% test top-1, {diff:+.1f} points). The W3 paper trains from ImageNet "
                     "weights with AFR and MFR for 50 epochs; here every model starts from scratch for a few "
                     "epochs (a plausible cause, not verified here: the sigmoid masks scale every residual "
                     "branch down at initialisation).")
    return lines


def _report(results: dict[str, Any]) -> str:
    classes = results["dataset"].get("classes") or []
    lines = [
        "# vidattn quickstart: SynthActions",
        "",
        "Every SynthActions class has a time-reversed partner, so a model that ignores frame order (TSN) "
        "cannot beat 50% at telling a video from its reversal partner"
        + (f". Classes in this run: {', '.join(classes)}." if classes else "."),
        "",
        *_findings(results),
        "",
        "| model | test top-1 (%) | reversal-pair acc. (%) | best val top-1 (%) | train time (s) |",
        "| --- | --- | --- | --- | --- |",
    ]
    for key, m in results["models"].items():
        best = m["best_val_top1"]
        lines.append(f"| {QUICKSTART_MODELS[key][1]} | {m['top1']:.1f} | {m['reversal_pair_accuracy']:.1f} | "
                     f"{'-' if best is None else f'{best:.1f}'} | {m['train_seconds']:.0f} |")
    s = results["settings"]
    lines += [
        "",
        f"Same budget for every model: ResNet-18 (base width {s['base_width']}, {s['stem']} stem), "
        f"{s['num_segments']} frames at {s['crop_size']}x{s['crop_size']}, {s['epochs']} epochs, {s['optimizer']} "
        f"lr {s['lr']} (cosine), batch {s['batch_size']}, seed {s['seed']}, trained from scratch.",
        "",
        "![curves](curves.png)",
        "",
    ]
    att = results.get("attention") or {}
    if att.get("in_box"):
        box = att["in_box"]
        lines += [
            "## Where W3 looks",
            "",
            f"{box['mass_in_box'] * 100:.1f}% of W3's spatial attention mass falls inside the actor's box, which "
            f"covers {box['box_area_fraction'] * 100:.1f}% of the frame (ratio {box['ratio']:.2f}; 1.0 = no "
            "preference).",
            "",
        ]
    for fig in att.get("figures", []):
        lines += [f"![attention]({fig})", ""]
    if att.get("predictions"):
        lines += ["## Predictions of TSM+W3 on test videos", "", "| video | true | top-5 (probability) |",
                  "| --- | --- | --- |"]
        for p in att["predictions"]:
            top = ", ".join(f"{c} ({q:.2f})" for c, q in zip(p["labels"], p["probabilities"]))
            lines.append(f"| {p['video']} | {p.get('true', '')} | {top} |")
        lines.append("")
    lines.append(f"Wall time: {results['wall_seconds']:.0f} s.")
    return "\n".join(lines) + "\n"
