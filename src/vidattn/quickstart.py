"""The quickstart (`vidattn quickstart`, the README's main job): TSN vs TSM vs TSM+W3 on the what-where-when
SynthActions benchmark, each over three seeds, in about ten minutes on two CPU cores.

It generates the benchmark (docs/benchmark.md: an actor known by its appearance among distractors doing
the same motions, inside a random time window, classes in time-reversal pairs), runs the appearance
pretraining that stands in for ImageNet, fine-tunes the three models from it with the same budget
(`vidattn.benchmark.SynthBudget`) for every seed, and writes `vidattn-quickstart/`: `report.md` (mean ±
std over seeds of test top-1 and reversal-pair accuracy, W3's attention against the ground truth),
`results.json`, `curves.png` (validation accuracy and training loss, mean ± std band), W3 attention figures
and top-5 predictions of one W3 run on test videos. Rerunning continues an interrupted quickstart.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vidattn.benchmark import (
    BENCHMARK_SYNTH,
    METRICS,
    Row,
    SynthBudget,
    attention_figures,
    attention_table,
    budget_lines,
    difference_line,
    prepare,
    row_trials,
)
from vidattn.experiments import aggregate, fmt, plot_seed_curves, run_trials, table

logger = logging.getLogger(__name__)

QUICKSTART_ROWS: tuple[Row, ...] = (
    Row("tsn", "TSN (no temporal modelling)", "tsn_r18"),
    Row("tsm", "TSM (temporal shift)", "tsm_r18"),
    Row("tsm_w3", "TSM + W3 (with AFR, w/o MFR)", "tsm_w3_r18", attention=True),
)


def quickstart_budget() -> SynthBudget:
    """The benchmark's dataset and recipe at the quickstart's size: 120 videos per class, 4 epochs (5 took
    712 s on a 2-core Zen 3; the 10-minute budget of the README's main job)."""
    return SynthBudget(synth={**BENCHMARK_SYNTH, "videos_per_class": 120}, epochs=4)


@dataclass
class QuickstartSettings:
    out_dir: str = "vidattn-quickstart"
    budget: SynthBudget = field(default_factory=quickstart_budget)
    #: test videos shown with W3 attention figures and top-5 predictions (first reversal pairs' classes)
    num_examples: int = 4


def run_quickstart(settings: QuickstartSettings | None = None) -> dict[str, Any]:
    """Run (or continue) the quickstart; returns (and writes) `results.json`'s summary."""
    s = settings or QuickstartSettings()
    b = s.budget
    start = time.perf_counter()
    out = Path(s.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    data_root, weights, pre = prepare(out, b)
    # slowest rows first, so that the last trials, which run with cores idle beside them, are short ones
    results = run_trials(row_trials(QUICKSTART_ROWS[::-1], b, data_root, weights), out, workers=b.workers,
                         progress=b.progress, desc="quickstart")
    stats = aggregate(results, METRICS)
    stats = {r.key: stats[r.key] for r in QUICKSTART_ROWS if r.key in stats}  # the rows' order
    labels = {r.key: r.label for r in QUICKSTART_ROWS}
    curves = plot_seed_curves(results, out / "curves.png", labels, title="SynthActions (what-where-when)")
    w3_run = out / "runs" / f"tsm_w3-seed{b.seeds[0]}"
    examples = _attention_examples(out, data_root, w3_run, s.num_examples) if w3_run.is_dir() else {}
    meta = json.loads((data_root / "synth_actions.json").read_text())
    metric_figures = {k: Path(v).name for k, v in
                      attention_figures(out, results, stats, QUICKSTART_ROWS, b.seeds[0]).items()}
    summary = {"settings": _settings_dict(s), "pretraining": pre, "stats": stats,
               "dataset": {**meta["config"], "classes": meta["classes"]},
               "figures": {"curves": curves.name, **metric_figures, **examples.get("figures", {})},
               "predictions": examples.get("predictions", []),
               "wall_seconds": round(time.perf_counter() - start, 1)}
    (out / "results.json").write_text(json.dumps({**summary, "trials": results}, indent=1))
    (out / "report.md").write_text(_report(summary))
    return summary


def _settings_dict(s: QuickstartSettings) -> dict[str, Any]:
    from vidattn.benchmark import _budget_dict

    return {"out_dir": s.out_dir, "num_examples": s.num_examples, **_budget_dict(s.budget)}


def _attention_examples(out: Path, data_root: Path, run_dir: Path, num_examples: int) -> dict[str, Any]:
    """Fig. 3-style W3 figures and top-5 predictions of one W3 run on test videos of the first pairs."""
    from vidattn.analysis.visualize import visualize_video
    from vidattn.engine.checkpoint import find_weights
    from vidattn.predict import predict_videos

    weights = find_weights(run_dir)
    classes = (data_root / "classes.txt").read_text().split()
    test = [line.split() for line in (data_root / "test.txt").read_text().splitlines() if line.strip()]
    meta = json.loads((data_root / "synth_actions.json").read_text())
    wanted = [c for pair in meta["reversal_pairs"][: max(1, num_examples // 2)] for c in pair]
    examples = [next(row for row in test if int(row[1]) == c) for c in wanted]
    figures = {}
    for rel, _ in examples:
        written = visualize_video(data_root / rel, weights, out / "attention" / Path(rel).stem)
        figures[Path(rel).stem] = str(Path(written["png"]).relative_to(out))
    preds = predict_videos(weights, [data_root / rel for rel, _ in examples], topk=5, class_names=classes)
    predictions = [{"video": rel, "true": classes[int(label)], "labels": [t["label"] for t in p["topk"]],
                    "probabilities": [round(t["probability"], 4) for t in p["topk"]]}
                   for (rel, label), p in zip(examples, preds)]
    (out / "predictions.json").write_text(json.dumps(predictions, indent=2))
    return {"figures": figures, "predictions": predictions}


def _report(summary: dict[str, Any]) -> str:
    stats, s = summary["stats"], summary["settings"]
    classes = summary["dataset"].get("classes") or []
    lines = [
        "# vidattn quickstart: what-where-when SynthActions",
        "",
        "The actor (always the same appearance) performs one of the classes' motions inside a random time "
        "window while distractors of other appearances perform the same kinds of motions, one of them the "
        "confusable reversed motion; classes come in time-reversal pairs, so a model that ignores frame order "
        f"(TSN) cannot beat 50% within a pair. Classes: {', '.join(classes)}.",
        "",
        f"Every number: mean ± sample std over seeds {s['seeds']}; best weights chosen on validation, the "
        "test split only evaluated.",
        "",
    ]
    body = [(r.label, [fmt(stats.get(r.key, {}).get("test_top1")),
                       fmt(stats.get(r.key, {}).get("reversal_pair_accuracy")),
                       fmt(stats.get(r.key, {}).get("best_val_top1")),
                       fmt(stats.get(r.key, {}).get("train_seconds"), 0),
                       str(stats.get(r.key, {}).get("test_top1", {}).get("n", 0))])
            for r in QUICKSTART_ROWS if r.key in stats]
    lines += table(body, ("model", "test top-1 (%)", "reversal-pair acc. (%)", "best val top-1 (%)",
                          "train time (s)", "seeds")) + ["", "## Findings", "",
                                                          difference_line(stats, "tsm", "tsn", "TSM over TSN"),
                                                          difference_line(stats, "tsm_w3", "tsm", "TSM+W3 over TSM"),
                                                          difference_line(stats, "tsm", "tsn",
                                                                          "TSM over TSN, reversal pairs",
                                                                          "reversal_pair_accuracy"),
                                                          "", "## Where and when W3 looks (test split)", ""]
    lines += attention_table(stats, QUICKSTART_ROWS)
    lines += ["", "where: share of W3's last-stage spatial mask inside the actor's box over the box's share of the "
              "frame (1 = no preference). when: mean mask inside the action window over outside (1 = no "
              "preference). what: between-class over within-class spread of the per-video channel mask.", "",
              "![curves](curves.png)", ""]
    for fig in summary["figures"].values():
        if fig != "curves.png":
            lines += [f"![{Path(fig).stem}]({fig})", ""]
    if summary.get("predictions"):
        lines += ["## Predictions of TSM+W3 (seed 0) on test videos", "", "| video | true | top-5 (probability) |",
                  "| --- | --- | --- |"]
        for p in summary["predictions"]:
            top = ", ".join(f"{c} ({q:.2f})" for c, q in zip(p["labels"], p["probabilities"]))
            lines.append(f"| {p['video']} | {p['true']} | {top} |")
        lines.append("")
    return "\n".join(lines + budget_lines(summary))
