"""Experiments as software: a set of trials (model x seed), run in parallel, resumable, aggregated over seeds.

A :class:`Trial` is one training run of the engine (`vidattn.engine.train.run_training`) plus its test
evaluation and, for attention models, the attention metrics against the dataset's ground truth
(`vidattn.analysis.attention_stats.synth_attention_metrics`). :func:`run_trials` runs each trial in its own
process (`python -m vidattn.experiments TRIAL.json`, one CPU thread each, several at once), in dependency
order (an MFR student waits for its stage-1 teacher), shows a progress bar, and writes per trial
`runs/<name>/`: the engine's run directory plus `trial.json` (the spec), `log.txt` and, last, `result.json`.
Running the same experiment again skips trials with a `result.json` and resumes interrupted ones from
their last epoch (bit-exact, the engine's resume). :func:`aggregate` turns results into mean and standard
deviation (sample std, ddof=1) over seeds, per row.
"""

from __future__ import annotations

import json
import logging
import math
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["Trial", "run_trials", "finished_results", "aggregate", "mean_std", "plot_seed_curves", "TrialError"]

logger = logging.getLogger(__name__)

RESULT_FILE = "result.json"
SPEC_FILE = "trial.json"
LOG_FILE = "log.txt"


class TrialError(RuntimeError):
    """A trial's process failed; the message names its log file."""


@dataclass(frozen=True)
class Trial:
    """One training run of row `key` with seed `seed`.

    `config`: the engine's config as a dict (`vidattn.config.config_from_dict`); the runner sets `seed`,
    `name`, `train.output_dir`, `train.run_name`, `train.num_threads` and `train.progress`. `teacher`: the
    row whose trial of the same seed is this one's MFR stage-1 teacher (its best weights). `attention`:
    measure the attention metrics on the test split. `reversal_pairs`: class pairs for the reversal-pair
    accuracy. `early_recognition`: test top-1 against the number of frames seen (:func:`early_recognition`).
    """

    key: str
    seed: int
    config: Mapping[str, Any]
    teacher: str | None = None
    attention: bool = False
    reversal_pairs: Sequence[Sequence[int]] = field(default_factory=list)
    early_recognition: bool = False

    @property
    def name(self) -> str:
        return f"{self.key}-seed{self.seed}"

    @property
    def teacher_name(self) -> str | None:
        """The name of this trial's MFR teacher trial (same seed), or None."""
        return None if self.teacher is None else f"{self.teacher}-seed{self.seed}"


# ------------------------------------------------------------------------------------------------ running


def _spec(trial: Trial, runs: Path, threads: int) -> dict[str, Any]:
    cfg = json.loads(json.dumps(trial.config))  # a deep copy of plain data
    cfg["name"], cfg["seed"] = trial.key, trial.seed
    cfg.setdefault("train", {}).update(output_dir=str(runs), run_name=trial.name, num_threads=threads,
                                       progress=False)
    if trial.teacher_name is not None:
        cfg.setdefault("distill", {})["teacher"] = str(runs / trial.teacher_name)
    return {"trial": {**asdict(trial), "config": None}, "config": cfg}


def run_trials(trials: Sequence[Trial], out_dir: str | os.PathLike, *, workers: int | None = None,
               threads_per_trial: int = 1, progress: bool = True, desc: str = "trials"
               ) -> dict[str, dict[str, Any]]:
    """Run every trial not yet finished under `out_dir/runs`, `workers` at a time (default: one per CPU
    core / `threads_per_trial`); return each trial's result (`result.json`) by trial name.

    A failing trial stops the scheduling of new ones, lets the running ones finish, and raises
    :class:`TrialError` naming its log; rerunning continues where it stopped.
    """
    from tqdm.auto import tqdm

    runs = Path(out_dir) / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    names = {t.name for t in trials}
    for t in trials:
        if t.teacher_name is not None and t.teacher_name not in names:
            raise ValueError(f"trial {t.name}: its teacher {t.teacher_name} is not in the experiment")
    workers = workers or max(1, (os.cpu_count() or 1) // threads_per_trial)
    done = {t.name for t in trials if (runs / t.name / RESULT_FILE).is_file()}
    pending = [t for t in trials if t.name not in done]
    running: dict[str, tuple[subprocess.Popen, Any]] = {}
    failed: list[str] = []
    bar = tqdm(total=len(trials), initial=len(done), desc=desc, unit="run", disable=not progress)
    try:
        while pending or running:
            for name, (proc, log) in list(running.items()):
                if proc.poll() is None:
                    continue
                log.close()
                del running[name]
                if proc.returncode == 0 and (runs / name / RESULT_FILE).is_file():
                    done.add(name)
                    bar.update()
                    bar.set_postfix_str(name)
                else:
                    failed.append(name)
            ready = [t for t in pending if t.teacher_name is None or t.teacher_name in done]
            while ready and len(running) < workers and not failed:
                t = ready.pop(0)
                pending.remove(t)
                running[t.name] = _start(t, runs, threads_per_trial)
            if failed and not running:
                break
            if not running and pending and not ready:
                raise TrialError(f"trials {[t.name for t in pending]} wait for teachers that cannot finish")
            time.sleep(0.2)
    except BaseException:
        for proc, log in running.values():
            proc.terminate()
            proc.wait()
            log.close()
        raise
    finally:
        bar.close()
    if failed:
        log_file = runs / failed[0] / LOG_FILE
        last = _last_line(log_file)
        raise TrialError(f"trial {failed[0]} failed ({last}); see {log_file}; rerun to continue")
    return {t.name: json.loads((runs / t.name / RESULT_FILE).read_text()) for t in trials}


def finished_results(trials: Sequence[Trial], out_dir: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """The results of the trials that have finished under `out_dir/runs` (the others are left out)."""
    runs = Path(out_dir) / "runs"
    return {t.name: json.loads((runs / t.name / RESULT_FILE).read_text()) for t in trials
            if (runs / t.name / RESULT_FILE).is_file()}


def _start(trial: Trial, runs: Path, threads: int) -> tuple[subprocess.Popen, Any]:
    trial_dir = runs / trial.name
    trial_dir.mkdir(parents=True, exist_ok=True)
    spec = _spec(trial, runs, threads)
    spec_file = trial_dir / SPEC_FILE
    spec_file.write_text(json.dumps(spec, indent=1))
    log = open(trial_dir / LOG_FILE, "a", encoding="utf-8")  # noqa: SIM115 - closed when the process ends
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    proc = subprocess.Popen([sys.executable, "-m", "vidattn.experiments", str(spec_file)], stdout=log,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
    return proc, log


def _last_line(path: Path) -> str:
    try:
        lines = [ln.strip() for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return "no log"
    return lines[-1][:300] if lines else "empty log"


def run_trial_file(spec_file: str | os.PathLike) -> dict[str, Any]:
    """Run one trial from its `trial.json` (what the runner's processes do); writes `result.json`."""
    from vidattn.config import config_from_dict
    from vidattn.engine.checkpoint import CHECKPOINT, find_weights
    from vidattn.engine.train import resume_training, run_training

    spec = json.loads(Path(spec_file).read_text())
    t = spec["trial"]
    cfg = config_from_dict(spec["config"], where=str(spec_file))
    run_dir = Path(cfg.train.output_dir) / cfg.train.run_name
    start = time.perf_counter()
    run = resume_training(run_dir) if (run_dir / CHECKPOINT).is_file() else run_training(cfg)
    result: dict[str, Any] = {"key": t["key"], "seed": t["seed"], "model": cfg.model.name,
                              "train_seconds": round(time.perf_counter() - start, 1),
                              "best_val_top1": run.best.get("value"), "best_epoch": run.best.get("epoch")}
    weights = find_weights(run.run_dir)  # reads the file back once: test metrics and attention use it
    result.update(_test_metrics(weights, cfg, t.get("reversal_pairs") or []))
    if t.get("attention"):
        from vidattn.analysis.attention_stats import synth_attention_metrics

        attention = synth_attention_metrics(weights, cfg.data.root, split=cfg.data.test_split or "test",
                                            per_video=True)
        result["attention_per_video"] = [{k: v[k] for k in ("window", "frame_indices", "frame_weights")}
                                         for v in attention.pop("per_video")]
        result["attention"] = _plain(attention)
    if t.get("early_recognition"):
        result["early_recognition"] = early_recognition(weights, cfg)
    from vidattn.engine.run_log import read_metrics_csv

    result["history"] = read_metrics_csv(run.run_dir / "metrics.csv")
    from vidattn.engine.checkpoint import atomic_write_text

    atomic_write_text(run_dir / RESULT_FILE, json.dumps(_plain(result), indent=1))
    return result


def _test_metrics(weights: Path, cfg: Any, pairs: Sequence[Sequence[int]]) -> dict[str, Any]:  # noqa: ANN401
    """Test-split top-1/top-5 (percent) of a run's weights file and the reversal-pair accuracy."""
    import torch

    from vidattn.data.synthetic import reversal_pair_accuracy
    from vidattn.engine.builders import build_eval_loader, build_model_from_weights
    from vidattn.engine.distributed import DistInfo
    from vidattn.engine.evaluate import evaluate
    from vidattn.inference import Predictor

    device = torch.device("cpu")
    predictor = Predictor(build_model_from_weights(weights, cfg), device=device, precision=cfg.train.precision)
    loader, _ = build_eval_loader(cfg, cfg.data.test_split or "test", DistInfo(device=device))
    metrics, records, _ = evaluate(predictor, loader)
    out = {"test_top1": float(metrics["top1"]), "test_top5": float(metrics["top5"])}
    if pairs:
        scores = np.stack([r["scores"][0].float().numpy() for r in records])
        labels = np.array([r["label"][0] for r in records])
        out["reversal_pair_accuracy"] = 100.0 * reversal_pair_accuracy(scores, labels, [tuple(p) for p in pairs])
    return out


def early_recognition(weights: Path, cfg: Any) -> dict[str, float]:  # noqa: ANN401
    """Test-split top-1 (percent) after seeing the first k of each clip's T frames, k = 1..T (keys "1".."T").

    The model runs on the first k frames as a k-frame twin of itself (`VideoRecognizer.with_num_segments`,
    the same weights; TSN consensus over those k frames). For a causal model this is exactly its online
    prediction after k frames (`vidattn.online`: no frame sees a later one); an offline model sees a clip
    cut short (its shift meets zeros after frame k).
    2D recognizers only (their weights do not depend on the number of frames).
    """
    import torch

    from vidattn.engine.builders import build_eval_loader, build_model_from_weights
    from vidattn.engine.distributed import DistInfo
    from vidattn.inference import Predictor

    device = torch.device("cpu")
    model = build_model_from_weights(weights, cfg)
    frames = cfg.data.num_segments
    predictors = {k: Predictor(model.with_num_segments(k), device=device, precision=cfg.train.precision)
                  for k in range(1, frames + 1)}
    loader, _ = build_eval_loader(cfg, cfg.data.test_split or "test", DistInfo(device=device))
    correct, total = np.zeros(frames), 0
    for batch in loader:
        clips, labels = batch["clip"], batch["label"].reshape(len(batch["clip"]), -1)[:, 0]
        for k, predictor in predictors.items():
            correct[k - 1] += int((predictor.logits(clips[..., :k, :, :]).argmax(dim=1) == labels).sum())
        total += len(labels)
    return {str(k): 100.0 * float(c) / max(1, total) for k, c in enumerate(correct, start=1)}


def _plain(obj: Any) -> Any:  # noqa: ANN401 - JSON-able copy (numpy scalars, NaN -> None)
    if isinstance(obj, Mapping):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        return None if not math.isfinite(float(obj)) else float(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.ndarray):
        return _plain(obj.tolist())
    return obj


# ------------------------------------------------------------------------------------------------ aggregating


def mean_std(values: Iterable[float | None]) -> tuple[float, float, int]:
    """Mean, sample standard deviation (ddof=1; 0 for one value) and count of the finite values."""
    v = np.array([x for x in values if x is not None and math.isfinite(x)], dtype=np.float64)
    if not len(v):
        return math.nan, math.nan, 0
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0, len(v)


def _get(result: Mapping[str, Any], path: str) -> float | None:
    node: Any = result
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return None if node is None else float(node)


def aggregate(results: Mapping[str, Mapping[str, Any]], metrics: Sequence[str]
              ) -> dict[str, dict[str, dict[str, float]]]:
    """`{row key: {metric: {"mean", "std", "n", "values"}}}` over the seeds of each row; `metrics` are
    dotted paths into `result.json` (e.g. `test_top1`, `attention.where.ratio`)."""
    rows: dict[str, list[Mapping[str, Any]]] = {}
    for r in results.values():
        rows.setdefault(r["key"], []).append(r)
    out: dict[str, dict[str, dict[str, float]]] = {}
    for key, rs in rows.items():
        rs = sorted(rs, key=lambda r: r["seed"])
        out[key] = {}
        for m in metrics:
            values = [_get(r, m) for r in rs]
            mean, std, n = mean_std(values)
            if n:
                out[key][m] = {"mean": mean, "std": std, "n": n, "values": values}
    return out


def fmt(stat: Mapping[str, float] | None, digits: int = 1) -> str:
    """`mean +- std` of an :func:`aggregate` entry (`-` when absent)."""
    if not stat:
        return "-"
    return f"{stat['mean']:.{digits}f} ± {stat['std']:.{digits}f}"


def plot_seed_curves(results: Mapping[str, Mapping[str, Any]], path: str | os.PathLike,
                     labels: Mapping[str, str], columns: Sequence[tuple[str, str]] = (
                         ("val_top1", "validation top-1 (%)"), ("train_loss", "training loss")),
                     title: str = "") -> Path:
    """Per-epoch curves of every row, mean over seeds with a +-1 std band, one panel per column."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows: dict[str, list[list[dict[str, float]]]] = {}
    for r in results.values():
        rows.setdefault(r["key"], []).append(r.get("history") or [])
    fig, axes = plt.subplots(1, len(columns), figsize=(5 * len(columns), 3.8), squeeze=False)
    for key, histories in rows.items():
        n = min(len(h) for h in histories)
        if not n:
            continue
        epochs = np.array([h["epoch"] for h in histories[0][:n]])
        for ax, (column, _) in zip(axes[0], columns):
            v = np.array([[row.get(column, math.nan) for row in h[:n]] for h in histories], dtype=np.float64)
            if np.isnan(v).all():
                continue
            mean, std = np.nanmean(v, axis=0), np.nanstd(v, axis=0, ddof=1) if len(v) > 1 else 0 * v[0]
            line = ax.plot(epochs, mean, marker="o", ms=3, label=f"{labels.get(key, key)} (n={len(v)})")[0]
            ax.fill_between(epochs, mean - std, mean + std, color=line.get_color(), alpha=0.2)
    for ax, (_, ylabel) in zip(axes[0], columns):
        ax.set(xlabel="epoch", ylabel=ylabel)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def table(rows: Sequence[tuple[str, Sequence[str]]], header: Sequence[str]) -> list[str]:
    """A markdown table."""
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    lines += ["| " + " | ".join([label, *cells]) + " |" for label, cells in rows]
    return lines


def main(argv: Sequence[str] | None = None, run: Callable[[str], Any] = run_trial_file) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: python -m vidattn.experiments TRIAL.json", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    run(args[0])
    return 0


if __name__ == "__main__":
    sys.exit(main())
