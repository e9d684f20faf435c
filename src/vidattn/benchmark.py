"""`vidattn benchmark`: the W3 paper's Tables 5-7 and the UCF-101 paper's Table 1 / Fig. 3, as experiments on
the what-where-when SynthActions benchmark (docs/benchmark.md), every row over several seeds.

Shared with the quickstart (`vidattn.quickstart`, a three-row version of the same): :class:`SynthBudget`
(the data, backbone and training budget every row shares), :func:`prepare` (generate the dataset, run the
appearance pretraining that stands in for ImageNet) and :func:`video_config` (one row's engine config).

Rows follow the papers: TSM, +CBAM, +NL, +W3 (Table 6); W3 without MFR, AFR, SA, TA (Table 5); CBAM with
and without MFR (Table 7); 3D-ConvNet with and without attention, from scratch, with per-epoch
train/val/test curves (UCF-101 paper, Table 1 and Fig. 3). Table 5's ablations other than "w/o MFR" are
trained without MFR and compared with "w/o MFR" (MFR for each would need its own teacher: twice the cost);
the report says so. Best weights are chosen on the validation split; the test split is only evaluated.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from vidattn.engine.pretrain import AppearancePretraining
from vidattn.experiments import Trial, aggregate, finished_results, fmt, plot_seed_curves, run_trials, table

__all__ = ["SynthBudget", "Row", "BENCHMARK_ROWS", "select_rows", "prepare", "video_config", "run_benchmark"]

logger = logging.getLogger(__name__)


#: The benchmark's dataset: 4 classes (two reversal pairs), 48 px, 16 frames; 150 videos per class
#: (90 train / 30 val / 30 test), objects of 12-16% of the frame, the motion in 50-75% of the clip, one
#: distractor (doing the reversed motion): with two, TSM reached anywhere between 28% and 92% validation top-1
#: after 5-6 epochs over five tuning runs (lr 1e-3 and 2e-3), a seed spread that would hide every effect.
BENCHMARK_SYNTH: dict[str, Any] = {"mode": "www", "num_classes": 4, "videos_per_class": 150, "size": 48,
                                   "num_frames": 16, "www_radius": [0.12, 0.16], "www_distractors": 1,
                                   "www_window": [0.5, 0.75]}


@dataclass
class SynthBudget:
    """What every row of an experiment shares: data, backbone, frames, optimiser, epochs, seeds."""

    seeds: Sequence[int] = (0, 1, 2)
    #: SynthActions generator settings (`vidattn.data.synthetic.SynthConfig`); the dataset itself is
    #: generated once (seed `data_seed`), the seeds vary initialisation and data order.
    synth: Mapping[str, Any] = field(default_factory=lambda: dict(BENCHMARK_SYNTH))
    data_seed: int = 0
    depth: int = 18
    base_width: int = 16
    stem: str = "small_s2"
    num_segments: int = 8
    epochs: int = 5
    batch_size: int = 8
    optimizer: str = "adamw"
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup_epochs: float = 0.5
    #: Start the 2D/I3D models from the appearance pretraining (the paper's ImageNet start).
    pretrained: bool = True
    pretrain: AppearancePretraining = field(default_factory=AppearancePretraining)
    #: C3D rows (the UCF-101 paper: from scratch, T consecutive frames)
    c3d_frames: int = 16
    c3d_epochs: int | None = None
    workers: int | None = None
    progress: bool = True


def prepare(out: Path, b: SynthBudget) -> tuple[Path, Path | None, dict[str, Any]]:
    """Generate the dataset under `out/data` and run the pretraining into `out/pretrained/` (both reused
    when present with the same settings); returns (data root, pretrained weights or None, their report)."""
    from vidattn.data import generate_synth_actions
    from vidattn.engine.pretrain import pretrain_appearance

    data_root = generate_synth_actions(out / "data", workers=b.workers, progress=b.progress, seed=b.data_seed,
                                       **dict(b.synth))
    if not b.pretrained:
        return data_root, None, {}
    settings = replace(b.pretrain, depth=b.depth, base_width=b.base_width, stem=b.stem,
                       size=int(b.synth.get("size", 32)), radius=tuple(b.synth.get("www_radius", (0.10, 0.14))))
    weights = out / "pretrained" / f"appearance_r{b.depth}_w{b.base_width}_{b.stem}.pth"
    report = pretrain_appearance(weights, settings, progress=b.progress)
    return data_root, weights, report


def video_config(model: str, b: SynthBudget, data_root: Path, pretrained: Path | None,
                 options: Mapping[str, Any] | None = None, *, num_classes: int, resnet: bool = True,
                 **data: Any) -> dict[str, Any]:
    """One row's engine config (as a dict for `Trial.config`) on the prepared dataset; `resnet`: add the
    budget's ResNet options (width, stem; not for C3D)."""
    size = int(b.synth.get("size", 32))
    model_options = {"base_width": b.base_width, "stem": b.stem} if resnet else {}
    model_options.update({"dropout": 0.0, **dict(options or {})})
    return {
        # pretrained_strict=False: a fresh classifier (the pretraining's fc has 48 appearance classes)
        "model": {"name": model, "pretrained": None if pretrained is None else str(pretrained),
                  "pretrained_strict": pretrained is None, "options": model_options},
        "data": {"dataset": "synth_actions", "root": str(data_root), "num_classes": num_classes,
                 "num_segments": b.num_segments, "sampling": "tsn", "scale_size": size, "crop_size": size,
                 "train_crop": "random", "flip": False, "batch_size": b.batch_size, "num_workers": 0,
                 "val_split": "val", "test_split": "test", **data},
        # AdamW with one lr for every parameter (TSM's SGD multipliers, head x5/x10 and biases x2, are off; the
        # tuning runs that had them learned more slowly, on a harder dataset: not an isolated measurement)
        "optim": {"name": b.optimizer, "lr": b.lr, "weight_decay": b.weight_decay, "schedule": "cosine",
                  "warmup_epochs": b.warmup_epochs, "bias_lr_mult": 1.0, "head_weight_lr_mult": 1.0,
                  "head_bias_lr_mult": 1.0},
        "train": {"epochs": b.epochs, "grad_clip": 20},
    }


@dataclass(frozen=True)
class Row:
    """One benchmark row: a registered model with options, an optional MFR teacher row, the tables it is
    in with the paper's number there (Something-Something V1 top-1, or UCF-101 top-1)."""

    key: str
    label: str
    model: str
    options: Mapping[str, Any] = field(default_factory=dict)
    teacher: str | None = None
    attention: bool = False
    c3d: bool = False
    paper: Mapping[str, float] = field(default_factory=dict)
    #: In the default run; the others (the init measurement, the causal models) run when named with `--rows`.
    default: bool = True
    #: Measure test top-1 against the number of frames seen (`vidattn.experiments.early_recognition`).
    early: bool = False


_W3 = "tsm_w3_r18"
#: In run order: the C3D rows take the longest (300-500 s a trial against 140-250 s), so they go first and the
#: short trials fill both cores at the end instead of one C3D trial running alone.
BENCHMARK_ROWS: tuple[Row, ...] = (
    Row("c3d", "3D-ConvNet", "c3d", c3d=True, paper={"ucf_table1": 52.8}),
    Row("c3d_attention", "3D-ConvNet + Attention", "c3d_attention", c3d=True, paper={"ucf_table1": 82.5}),
    Row("tsm", "TSM", "tsm_r18", paper={"table6": 47.2, "table7": 47.2}, early=True),
    Row("tsm_cbam", "TSM + CBAM", "tsm_cbam_r18", attention=True, paper={"table6": 49.1, "table7": 49.1}),
    Row("tsm_nl", "TSM + NL", "tsm_nl_r18", paper={"table6": 49.8}),
    Row("tsm_w3_mfr", "TSM + W3 (full: AFR + MFR)", _W3, teacher="tsm_w3", attention=True,
        paper={"table5": 52.6, "table6": 52.6, "table7": 52.6}),
    Row("tsm_w3", "TSM + W3 w/o MFR", _W3, attention=True, paper={"table5": 50.3, "table7": 50.2}),
    Row("w3_no_afr", "TSM + W3 w/o AFR (and w/o MFR)", _W3, {"afr": False}, attention=True,
        paper={"table5": 50.1}),
    Row("w3_no_sa", "TSM + W3 w/o SA (and w/o MFR, AFR)", _W3, {"attention_options": {"spatial": False}},
        attention=True, paper={"table5": 49.8}),
    Row("w3_no_ta", "TSM + W3 w/o TA (and w/o MFR)", _W3, {"attention_options": {"temporal": False}},
        attention=True, paper={"table5": 47.2}),
    Row("tsm_cbam_mfr", "TSM + CBAM w/ MFR", "tsm_cbam_r18", teacher="tsm_cbam", attention=True,
        paper={"table7": 50.5}),
    Row("w3_paper_init", "TSM + W3 w/o MFR, PyTorch-default init (masks start ~0.5)", _W3,
        {"attention_options": {"mask_init_bias": None}}, attention=True, paper={}, default=False),
    Row("cbam_paper_init", "TSM + CBAM, PyTorch-default init (masks start ~0.5)", "tsm_cbam_r18",
        {"attention_options": {"mask_init_bias": None}}, attention=True, paper={}, default=False),
    Row("tsm_causal", "TSM, causal (online shift from the past only)", "tsm_r18", {"causal": True}, paper={},
        default=False, early=True),
    Row("tsm_w3_causal", "TSM + W3, causal (AFR, w/o MFR)", _W3, {"causal": True}, attention=True, paper={},
        default=False, early=True),
)

TABLES: dict[str, tuple[str, Sequence[str]]] = {
    "table6": ("W3 Table 6: comparing attention models (paper: SSv1 top-1, ResNet-50, 16 frames)",
               ("tsm", "tsm_cbam", "tsm_nl", "tsm_w3_mfr")),
    "table5": ("W3 Table 5: model component analysis (paper: SSv1 top-1)",
               ("tsm_w3_mfr", "tsm_w3", "w3_no_afr", "w3_no_sa", "w3_no_ta")),
    "table7": ("W3 Table 7: impact of MFR (paper: SSv1 top-1)",
               ("tsm", "tsm_cbam", "tsm_cbam_mfr", "tsm_w3", "tsm_w3_mfr")),
    "init": ("Mask initialisation (not in the papers): open masks (bias 3, our default) vs PyTorch's default",
             ("tsm_w3", "w3_paper_init", "tsm_cbam", "cbam_paper_init")),
    "ucf_table1": ("UCF-101 paper Table 1: 3D-ConvNet vs 3D-ConvNet + Attention (paper: UCF-101 top-1, "
                   "from scratch)", ("c3d", "c3d_attention")),
}

#: The report's comparisons (row a over row b), each stated only when both rows ran.
FINDINGS = (("tsm_w3_mfr", "tsm", "TSM+W3 (AFR+MFR) over TSM"), ("tsm_w3", "tsm", "TSM+W3 w/o MFR over TSM"),
            ("tsm_w3_mfr", "tsm_w3", "MFR on W3"), ("tsm_cbam_mfr", "tsm_cbam", "MFR on CBAM"),
            ("tsm_w3", "tsm_cbam", "W3 over CBAM (both w/o MFR)"),
            ("c3d_attention", "c3d", "3D-ConvNet + Attention over 3D-ConvNet"),
            ("tsm_causal", "tsm", "causal TSM over offline TSM (whole clip)"),
            ("tsm_w3_causal", "tsm_causal", "causal TSM+W3 over causal TSM (whole clip)"))

METRICS = ("test_top1", "reversal_pair_accuracy", "best_val_top1", "train_seconds",
           "attention.where.ratio", "attention.where.ratio_above_min",
           "attention.when.spatial.ratio", "attention.when.spatial.ratio_above_min",
           "attention.when.channel.ratio", "attention.when.channel.ratio_above_min",
           "attention.what.class_separability")


def row_trials(rows: Sequence[Row], b: SynthBudget, data_root: Path, pretrained: Path | None) -> list[Trial]:
    meta = json.loads((data_root / "synth_actions.json").read_text())
    trials = []
    for row in rows:
        if row.c3d:  # the UCF-101 paper: from scratch, consecutive frames, train/val/test every epoch
            cfg = video_config(row.model, b, data_root, None, {"pool_output": [4, 4, 4], **row.options},
                               num_classes=len(meta["classes"]), resnet=False, sampling="consecutive",
                               num_segments=b.c3d_frames)
            cfg["train"].update(epochs=b.c3d_epochs or b.epochs, eval_test_each_epoch=True)
        else:
            cfg = video_config(row.model, b, data_root, pretrained, row.options, num_classes=len(meta["classes"]))
        for seed in b.seeds:
            trials.append(Trial(row.key, seed, cfg, teacher=row.teacher, attention=row.attention,
                                reversal_pairs=meta["reversal_pairs"], early_recognition=row.early))
    return trials


def select_rows(keys: Sequence[str] | None = None) -> list[Row]:
    """The benchmark rows named by `keys`, in that order (default: every row with `Row.default`); an
    unknown key or an MFR row without its teacher row is a one-line error before anything runs."""
    by_key = {r.key: r for r in BENCHMARK_ROWS}
    if keys is None:
        return [r for r in BENCHMARK_ROWS if r.default]
    unknown = [k for k in keys if k not in by_key]
    if unknown:
        raise ValueError(f"--rows: unknown row(s) {unknown}; choose from {list(by_key)}")
    rows = [by_key[k] for k in keys]
    teachers = sorted({r.teacher for r in rows if r.teacher and r.teacher not in keys})
    if teachers:
        raise ValueError(f"--rows: MFR rows need their teacher rows too: add {teachers}")
    return rows


def run_benchmark(out_dir: str | Path = "vidattn-benchmark", budget: SynthBudget | None = None,
                  rows: Sequence[Row] | None = None, report_only: bool = False) -> dict[str, Any]:
    """Run (or continue) the benchmark, trials in the order of `rows` (default :func:`select_rows`);
    writes `report.md`, `results.json` and plots into `out_dir`. `report_only`: train nothing, report the
    trials finished so far."""
    b = budget or SynthBudget()
    rows = select_rows() if rows is None else rows
    start = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    data_root, weights, pre = prepare(out, b)
    trials = row_trials(rows, b, data_root, weights)
    if report_only:
        results = finished_results(trials, out)
        if not results:
            raise FileNotFoundError(f"{out}: no finished trial to report")
    else:
        results = run_trials(trials, out, workers=b.workers, progress=b.progress, desc="benchmark")
    stats = aggregate(results, (*METRICS, *early_metrics(b.num_segments)))
    labels = {r.key: r.label for r in rows}
    figures = {}
    c3d_keys = {r.key for r in rows if r.c3d}
    video_rows = {k: v for k, v in results.items() if v["key"] not in c3d_keys}
    if video_rows:
        figures["curves"] = str(plot_seed_curves(video_rows, out / "curves.png", labels,
                                                 title="W3 tables: validation accuracy and training loss"))
    c3d_rows = {k: v for k, v in results.items() if v["key"] in c3d_keys}
    if c3d_rows:
        figures["c3d_curves"] = str(plot_seed_curves(
            c3d_rows, out / "c3d_curves.png", labels, columns=(
                ("train_top1", "train top-1 (%)"), ("val_top1", "val top-1 (%)"), ("test_top1", "test top-1 (%)"),
                ("train_loss", "train loss"), ("val_loss", "val loss"), ("test_loss", "test loss")),
            title="UCF-101 paper Fig. 3 analogue: per-epoch train / val / test"))
    figures.update(attention_figures(out, results, stats, rows, b.seeds[0]))
    early_rows = [r for r in rows if r.early and f"early_recognition.{b.num_segments}" in stats.get(r.key, {})]
    if early_rows:
        figures["early_recognition"] = str(plot_early_recognition(stats, early_rows, b.num_segments,
                                                                  out / "early_recognition.png"))
    wall = round(time.perf_counter() - start, 1)
    if report_only and (out / "results.json").is_file():  # the run's wall time, not the report's
        wall = json.loads((out / "results.json").read_text()).get("wall_seconds", wall)
    summary = {"settings": _budget_dict(b), "pretraining": pre, "stats": stats, "figures": figures,
               "wall_seconds": wall,
               "dataset": json.loads((data_root / "synth_actions.json").read_text())}
    (out / "results.json").write_text(json.dumps({**summary, "trials": results}, indent=1))
    (out / "report.md").write_text(benchmark_report(summary, rows))
    return summary


def early_metrics(frames: int) -> tuple[str, ...]:
    """The result paths of test top-1 after 1..`frames` frames seen."""
    return tuple(f"early_recognition.{k}" for k in range(1, frames + 1))


def early_table(stats: Mapping[str, Mapping[str, Any]], rows: Sequence[Row], frames: int) -> list[str]:
    """Test top-1 against the frames seen (of the clip's `frames`), mean +- std over seeds, per early row."""
    body = [(r.label, [fmt(stats[r.key].get(m)) for m in early_metrics(frames)])
            for r in rows if r.early and r.key in stats and early_metrics(frames)[-1] in stats[r.key]]
    return table(body, ("model", *(f"{k}/{frames}" for k in range(1, frames + 1)))) if body else []


def plot_early_recognition(stats: Mapping[str, Mapping[str, Any]], rows: Sequence[Row], frames: int,
                           path: Path) -> Path:
    """`early_recognition.png`: test top-1 against frames seen, mean over seeds with a +-1 std band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    k = list(range(1, frames + 1))
    for r in rows:
        entries = [stats[r.key][m] for m in early_metrics(frames)]
        mean = [e["mean"] for e in entries]
        std = [e["std"] for e in entries]
        line = ax.plot(k, mean, marker="o", ms=3, label=f"{r.label} (n={entries[-1]['n']})")[0]
        ax.fill_between(k, [m - s for m, s in zip(mean, std)], [m + s for m, s in zip(mean, std)],
                        color=line.get_color(), alpha=0.2)
    ax.set(xlabel=f"frames seen (of the clip's {frames}, in time order)", ylabel="test top-1 (%)",
           title="Early recognition: accuracy from the first frames")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _budget_dict(b: SynthBudget) -> dict[str, Any]:
    d = asdict(b)
    d["seeds"] = list(b.seeds)
    d["synth"] = dict(b.synth)
    return d


def attention_figures(out: Path, results: Mapping[str, Mapping[str, Any]], stats: Mapping[str, Mapping[str, Any]],
                      rows: Sequence[Row], seed: int) -> dict[str, str]:
    """`attention_metrics.png` (where / when / what bars of every attention row, means over seeds) and
    `temporal_profile.png` (the mean spatial and channel mask level against the position in the action
    window, test videos, the `seed` run of each attention row, from its `attention_per_video`)."""
    from vidattn.analysis.attention_stats import plot_attention_metrics, plot_temporal_profile

    keys = [r.key for r in rows if r.attention and r.key in stats]
    if not keys:
        return {}
    labels = {r.key: r.label for r in rows}

    def mean(key: str, metric: str) -> float | None:
        entry = stats[key].get(metric)
        return None if entry is None else entry["mean"]

    def ratios(k: str, prefix: str) -> dict[str, float | None]:
        return {"ratio": mean(k, f"{prefix}.ratio"), "ratio_above_min": mean(k, f"{prefix}.ratio_above_min")}

    means = {labels[k]: {"where": ratios(k, "attention.where"),
                         "when": {src: ratios(k, f"attention.when.{src}") for src in ("channel", "spatial")},
                         "what": {"class_separability": mean(k, "attention.what.class_separability")}}
             for k in keys}
    figures = {"attention_metrics": str(plot_attention_metrics(means, out / "attention_metrics.png"))}
    series, windows, indices = {}, None, None
    for k in keys:
        per_video = results.get(f"{k}-seed{seed}", {}).get("attention_per_video")
        if not per_video:
            continue
        windows = [v["window"] for v in per_video]
        indices = [v["frame_indices"] for v in per_video]
        for source in ("spatial", "channel"):
            if source in per_video[0]["frame_weights"]:
                series[f"{labels[k]}: {source}"] = [v["frame_weights"][source] for v in per_video]
    if series and windows and all(w is not None for w in windows):
        figures["temporal_profile"] = str(plot_temporal_profile(
            series, windows, out / "temporal_profile.png", frame_indices=indices, subtract_min=True,
            title=f"mask level above each clip's minimum vs position in the action window (seed {seed})"))
    return figures


def attention_table(stats: Mapping[str, Mapping[str, Any]], rows: Sequence[Row]) -> list[str]:
    """Where / when / what against the ground truth, mean +- std over seeds (docs/benchmark.md): each ratio
    of the raw masks and of the masks above each clip's minimum (sigmoid masks keep a high floor)."""
    def cell(key: str, metric: str) -> str:
        s = stats.get(key, {})
        return f"{fmt(s.get(metric), 2)} / {fmt(s.get(metric + '_above_min'), 2)}"

    body = [(r.label, [cell(r.key, "attention.where.ratio"), cell(r.key, "attention.when.spatial.ratio"),
                       cell(r.key, "attention.when.channel.ratio"),
                       fmt(stats.get(r.key, {}).get("attention.what.class_separability"), 2)])
            for r in rows if r.attention and r.key in stats]
    return table(body, ("model", "where: mass in box / box area (raw / above min)",
                        "when: spatial mask in / out of window (raw / above min)",
                        "when: channel mask in / out (raw / above min)", "what: channel-mask class separability"))


def difference_line(stats: Mapping[str, Mapping[str, Any]], a: str, b: str, label: str,
                    metric: str = "test_top1") -> str:
    """`label`: mean(a) - mean(b), and whether it exceeds the larger of the two seed spreads."""
    sa, sb = stats.get(a, {}).get(metric), stats.get(b, {}).get(metric)
    if not sa or not sb:
        return f"- {label}: not measured."
    diff, spread = sa["mean"] - sb["mean"], max(sa["std"], sb["std"])
    verdict = "larger than" if abs(diff) > spread else "within"
    return (f"- {label}: {diff:+.1f} points ({fmt(sa)} vs {fmt(sb)}, n = {sa['n']}/{sb['n']} seeds); the "
            f"difference is {verdict} the seed spread ({spread:.1f}).")


def benchmark_report(summary: Mapping[str, Any], rows: Sequence[Row]) -> str:
    stats, s = summary["stats"], summary["settings"]
    by_key = {r.key: r for r in rows}
    lines = ["# vidattn benchmark: what-where-when SynthActions", "",
             f"Every number is the mean ± sample std over seeds {s['seeds']} (n per row in the last column). "
             "Best weights are chosen on the validation split; the test split is never used for choices. "
             "The paper's number is on a real dataset with ResNet-50: compare directions, not values.", ""]
    opt_in = {r.key for r in BENCHMARK_ROWS if not r.default}
    for table_key, (title, keys) in TABLES.items():
        present = [k for k in keys if k in stats]
        if not present or any(k in opt_in and k not in by_key for k in keys):  # e.g. the init rows not run
            continue
        lines += [f"## {title}", ""]
        body = [(by_key[k].label, [fmt(stats[k].get("test_top1")), _per_seed(stats[k].get("test_top1")),
                                   fmt(stats[k].get("reversal_pair_accuracy")),
                                   fmt(stats[k].get("best_val_top1")), f"{by_key[k].paper.get(table_key, '-')}",
                                   str(stats[k].get("test_top1", {}).get("n", 0))])
                for k in present]
        lines += table(body, ("model", "test top-1 (%)", "per seed", "reversal-pair acc. (%)",
                              "best val top-1 (%)", "paper top-1 (%)", "seeds")) + [""]
    findings = [difference_line(stats, a, b, label) for a, b, label in FINDINGS if a in stats and b in stats]
    lines += ["## Findings", "", *(findings or ["- no two compared rows were run."]), ""]
    early = early_table(stats, rows, s["num_segments"])
    if early:
        lines += ["## Early recognition: test top-1 after the first k of the clip's frames", "",
                  "Offline TSM sees a clip cut short; a causal model's prediction after k frames is its online "
                  "prediction (`vidattn.online`, docs/online.md).", "", *early, ""]
    lines += ["## Attention against the ground truth (test split)", ""]
    lines += attention_table(stats, rows) + ["", "where: 1 = no preference for the actor's box, 2 = twice "
                                             "the box's share of the frame. when: 1 = the mask does not change "
                                             "inside the action window. what: between-class over "
                                             "within-class std of the per-video channel mask.", ""]
    for name, fig in summary.get("figures", {}).items():
        lines += [f"![{name}]({Path(fig).name})", ""]
    return "\n".join(lines + budget_lines(summary))


def _per_seed(entry: Mapping[str, Any] | None) -> str:
    """The values behind a mean ± std, in seed order: a failed seed shows as one low value."""
    return "-" if not entry else " / ".join(f"{v:.1f}" for v in entry["values"])


def budget_lines(summary: Mapping[str, Any]) -> list[str]:
    """The report's last lines: the pretraining's accuracy, the shared budget, the wall time."""
    s, pre = summary["settings"], summary.get("pretraining") or {}
    lines = []
    if pre:
        lines += [f"Appearance pretraining (the ImageNet stand-in): {pre['held_out_accuracy']}% held-out accuracy "
                  f"over {pre['num_appearances']} appearances in {pre['seconds']} s.", ""]
    return lines + [f"Budget: {s['synth']}; ResNet-{s['depth']} (width {s['base_width']}, {s['stem']} stem), "
                    f"{s['num_segments']} frames, {s['epochs']} epochs, {s['optimizer']} lr {s['lr']} (cosine), "
                    f"batch {s['batch_size']}, seeds {s['seeds']}. Wall time: {summary['wall_seconds']:.0f} s.", ""]
