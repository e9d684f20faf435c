"""The training loop shared by every model (TSM recipe; Adam for the UCF-101 paper's 3D-ConvNets).

``run_training(config)`` is what ``vidattn train CONFIG key=value`` calls: it builds the model, data
and optimizer from the config, trains for ``train.epochs`` epochs with a per-epoch validation, writes
checkpoints, metrics and curves into the run directory, and returns a :class:`RunResult`. The same call
runs under ``torchrun`` (DDP, rank-0 writes). ``resume_training(run_dir)`` continues a run bit-for-bit.

Per optimizer step: lr from the pure ``lr_at(step)`` schedule, forward under autocast, loss = CE
(summed over heads) [+ lambda * MFR feature loss], backward (DDP gradient sync only on the last
micro-batch of an accumulation window), gradient-norm clipping, step.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import random
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from vidattn.config import Config, config_to_dict, load_config
from vidattn.engine import builders
from vidattn.engine.checkpoint import (
    BEST_WEIGHTS,
    CHECKPOINT,
    CONFIG_FILE,
    LAST_WEIGHTS,
    atomic_write_text,
    capture_rng_state,
    export_weights,
    load_training_state,
    remove_orphan_temporaries,
    restore_rng_state,
    save_training_state,
    unwrap,
    weights_problem,
)
from vidattn.engine.distill import feature_mimic_loss, load_teacher, teacher_from_run_dir
from vidattn.engine.distributed import (
    DistInfo,
    all_gather,
    all_reduce_sum,
    barrier,
    broadcast_object,
    cleanup_distributed,
    init_distributed,
    sync_buffers,
)
from vidattn.engine.evaluate import autocast_context, evaluate
from vidattn.engine.optim import LRSchedule, build_optimizer, build_schedule, lr_at, set_lr
from vidattn.engine.run_log import MetricsLog, TBWriter, plot_curves, write_run_json
from vidattn.inference import Predictor, to_channels_last
from vidattn.runtime import apply_requested_cpu_settings

__all__ = [
    "RunResult",
    "NonFiniteLossError",
    "TrainingInterrupted",
    "StepSettings",
    "seed_everything",
    "apply_partial_bn",
    "classification_loss",
    "train_one_epoch",
    "run_training",
    "resume_training",
]

logger = logging.getLogger(__name__)


class NonFiniteLossError(RuntimeError):
    """The loss became NaN/inf; the run stopped and its last good checkpoint is intact."""


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C (SIGINT) during training: run.json says "interrupted"; the message says what was kept and
    the exact resume command."""


@dataclass
class RunResult:
    """What a training run produced."""

    run_dir: Path
    #: Metrics of the last epoch's validation (``val_*``), training (``train_*``), test (``test_*``).
    metrics: dict[str, float]
    #: Best validation value: ``{"metric": "top1", "value": ..., "epoch": ...}``.
    best: dict[str, Any] = field(default_factory=dict)
    epochs: int = 0


@dataclass(frozen=True)
class StepSettings:
    """The loop's knobs, resolved from ``TrainConfig``."""

    device: torch.device
    precision: str = "fp32"
    accumulate_steps: int = 1
    grad_clip: float | None = None
    label_smoothing: float = 0.0
    partial_bn: bool = False
    channels_last: bool = False
    distill_weight: float = 0.0
    max_steps: int | None = None
    progress: bool = True


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def seed_worker(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: NumPy and Python from the worker's torch seed (set by the loader)."""
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def apply_partial_bn(model: nn.Module) -> int:
    """Partial BN (TSN): every BatchNorm but the first keeps its statistics and affine parameters frozen.

    "First" is the stem's BatchNorm, the shallowest one in the module tree (registration order is not
    execution order in every backbone). Call after every ``model.train()``; returns the number frozen.
    """
    named = [(n, m) for n, m in unwrap(model).named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not named:
        return 0
    first = min(range(len(named)), key=lambda i: (named[i][0].count("."), i))
    for i, (_, m) in enumerate(named):
        if i == first:
            continue
        m.eval()
        for p in m.parameters(recurse=False):
            p.requires_grad_(False)
    return len(named) - 1


def _heads(logits: Tensor | tuple[Tensor, ...]) -> tuple[Tensor, ...]:
    return logits if isinstance(logits, tuple) else (logits,)


def classification_loss(logits: Tensor | tuple[Tensor, ...], labels: Tensor, label_smoothing: float = 0.0) -> Tensor:
    """Cross-entropy, summed over heads (EPIC verb + noun); ``labels`` is (B,) or (B, heads).

    Float ``labels`` (B, K) are multi-hot targets (mmaction2 ``multi_class`` lists): binary cross-entropy."""
    if labels.is_floating_point():
        return F.binary_cross_entropy_with_logits(_heads(logits)[0].float(), labels.float())
    labels = labels.view(labels.shape[0], -1)
    return sum(
        F.cross_entropy(z.float(), labels[:, h], label_smoothing=label_smoothing) for h, z in enumerate(_heads(logits))
    )


def _correct(logits: Tensor | tuple[Tensor, ...], labels: Tensor) -> int:
    """Samples whose top-1 is right on every head (multi-hot labels: top-1 is one of the sample's classes)."""
    if labels.is_floating_point():
        top = _heads(logits)[0].argmax(dim=1, keepdim=True)
        return int((labels.gather(1, top) > 0).sum())
    labels = labels.view(labels.shape[0], -1)
    ok = torch.ones(labels.shape[0], dtype=torch.bool, device=labels.device)
    for h, z in enumerate(_heads(logits)):
        ok &= z.argmax(dim=1) == labels[:, h]
    return int(ok.sum())


def train_one_epoch(
    model: nn.Module,
    loader: Any,  # noqa: ANN401 - any iterable of batches with len()
    optimizer: torch.optim.Optimizer,
    schedule: LRSchedule,
    step: int,
    settings: StepSettings,
    *,
    scaler: torch.amp.GradScaler | None = None,
    teacher: nn.Module | None = None,
    desc: str = "train",
) -> tuple[dict[str, float], int]:
    """One pass over ``loader``; returns (epoch stats summed over processes, optimizer step count)."""
    model.train()
    if settings.partial_bn:
        apply_partial_bn(model)
    acc = settings.accumulate_steps
    n_batches = len(loader)
    if settings.max_steps is not None:
        n_batches = min(n_batches, settings.max_steps * acc)
    params = [p for g in optimizer.param_groups for p in g["params"]]
    sums = {"loss": 0.0, "fm_loss": 0.0, "correct": 0.0, "seen": 0.0, "skipped": 0.0, "skipped_batches": 0.0}
    window_seen = 0  # clips of the current accumulation window (0: nothing to step on)
    total: Tensor | None = None
    t0 = time.perf_counter()
    bar = tqdm(total=n_batches, desc=desc, disable=not settings.progress, leave=False, dynamic_ncols=True)
    optimizer.zero_grad(set_to_none=True)
    for i, batch in enumerate(loader):
        if i >= n_batches:
            break
        sums["skipped"] += float(batch.get("num_skipped", 0))
        last_micro = (i + 1) % acc == 0 or i + 1 == n_batches
        if last_micro or i % acc == 0:
            set_lr(optimizer, lr_at(step, schedule))
        if batch.get("clip") is None:  # every sample of the batch was unreadable (on_error=skip)
            sums["skipped_batches"] += 1
            if hasattr(model, "no_sync"):
                # under DDP the other ranks' backward waits for this rank's gradients: no way to skip alone
                raise RuntimeError(
                    f"{desc}: a whole batch of this process was unreadable (data.on_error=skip) under DDP; "
                    "fix or remove the unreadable videos (see the warnings above) or use a larger data.batch_size"
                )
            if last_micro:
                step = _finish_window(optimizer, params, settings, scaler, step, window_seen, total)
                window_seen, total = 0, None
            bar.update(1)
            continue
        clips = batch["clip"].to(settings.device, non_blocking=True)
        labels = torch.as_tensor(batch["label"]).to(settings.device, non_blocking=True)
        if settings.channels_last and clips.dim() == 5:
            clips = clips.contiguous(memory_format=torch.channels_last_3d)
        # DDP: all-reduce gradients only on the micro-batch that ends an accumulation window
        sync = contextlib.nullcontext() if last_micro or not hasattr(model, "no_sync") else model.no_sync()
        with sync:
            with autocast_context(settings.device, settings.precision):
                if teacher is not None:
                    out = model(clips, return_all=True)
                    logits = out.logits
                    with torch.no_grad():
                        target = teacher(clips, return_all=True).features
                    fm = feature_mimic_loss(out.features, target)
                else:
                    logits, fm = model(clips), None
                loss = classification_loss(logits, labels, settings.label_smoothing)
                total = loss + settings.distill_weight * fm if fm is not None else loss
            (scaler.scale(total / acc) if scaler is not None else total / acc).backward()
        sums["loss"] += float(loss.detach()) * len(clips)
        sums["fm_loss"] += float(fm.detach()) * len(clips) if fm is not None else 0.0
        sums["correct"] += _correct(logits, labels)
        sums["seen"] += len(clips)
        window_seen += len(clips)
        if last_micro:
            step = _finish_window(optimizer, params, settings, scaler, step, window_seen, total)
            window_seen, total = 0, None
        elapsed = time.perf_counter() - t0
        bar.update(1)
        bar.set_postfix(
            loss=f"{sums['loss'] / max(sums['seen'], 1):.3f}",
            acc=f"{100 * sums['correct'] / max(sums['seen'], 1):.1f}",
            clips_s=f"{sums['seen'] / max(elapsed, 1e-9):.1f}",
            lr=f"{optimizer.param_groups[0]['lr'] / optimizer.param_groups[0].get('lr_mult', 1):.2e}",
        )
    bar.close()
    loss_sum, fm_sum, correct, seen, skipped, skipped_batches = all_reduce_sum(
        [sums["loss"], sums["fm_loss"], sums["correct"], sums["seen"], sums["skipped"], sums["skipped_batches"]]
    )
    if skipped_batches:
        logger.warning("%s: %d batches skipped whole (every clip unreadable)", desc, int(skipped_batches))
    stats = {
        "loss": loss_sum / max(seen, 1),
        "top1": 100.0 * correct / max(seen, 1),
        "num_skipped": skipped,
        "num_skipped_batches": skipped_batches,
        "clips_per_s": seen / max(time.perf_counter() - t0, 1e-9),
    }
    if teacher is not None:
        stats["fm_loss"] = fm_sum / max(seen, 1)
    return stats, step


def _finish_window(
    optimizer: torch.optim.Optimizer,
    params: list[Tensor],
    settings: StepSettings,
    scaler: torch.amp.GradScaler | None,
    step: int,
    window_seen: int,
    total: Tensor | None,
) -> int:
    """End of an accumulation window: NaN check, unscale, clip, step. A window whose every batch was
    unreadable has no gradients: its step is counted (the schedule stays aligned) but nothing changes."""
    if window_seen == 0 or total is None:
        optimizer.zero_grad(set_to_none=True)
        return step + 1
    # every rank must agree to stop, or the others would wait forever in the next all-reduce
    bad = all_reduce_sum([0.0 if math.isfinite(float(total.detach())) else 1.0])[0]
    if bad:
        hint = "lower optim.lr" + (" or use train.precision=fp32" if settings.precision != "fp32" else "")
        raise NonFiniteLossError(f"non-finite loss ({float(total.detach())}) at optimizer step {step}: "
                                 f"stopping; {hint}")
    if scaler is not None:
        scaler.unscale_(optimizer)
    if settings.grad_clip is not None and settings.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(params, settings.grad_clip)
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return step + 1


# ----------------------------------------------------------------------------------------------------------
# the whole run


def _make_run_dir(cfg: Config, info: DistInfo) -> Path:
    name = cfg.train.run_name or f"{cfg.name}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    run_dir = Path(cfg.train.output_dir) / broadcast_object(name)
    # every rank raises (rank 0 decides), so no rank waits for the others forever
    if broadcast_object((run_dir / CHECKPOINT).exists() if info.is_main else None):
        raise FileExistsError(
            f"{run_dir}: already holds a training checkpoint; resume it (--resume) or choose another train.run_name"
        )
    if info.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
    barrier()
    return run_dir


def _settings(cfg: Config, info: DistInfo, steps_cap: int | None) -> StepSettings:
    return StepSettings(
        device=info.device,
        precision=cfg.train.precision,
        accumulate_steps=max(1, cfg.train.accumulate_steps),
        grad_clip=cfg.train.grad_clip,
        label_smoothing=cfg.train.label_smoothing,
        partial_bn=cfg.train.partial_bn,
        channels_last=cfg.train.channels_last,
        distill_weight=cfg.distill.weight if cfg.distill.teacher else 0.0,
        max_steps=steps_cap,
        progress=cfg.train.progress and info.is_main,
    )


def run_training(config: Config, *, resume_from: str | Path | None = None) -> RunResult:
    """Train ``config`` from scratch, or continue the run in ``resume_from`` (a run directory).

    Writes into the run dir: config.yaml, checkpoint.pt (every epoch), model_last/best.safetensors,
    metrics.csv, curves.png, run.json, TensorBoard events (if installed). Raises
    :class:`NonFiniteLossError` if the loss diverges (the last good checkpoint stays).
    """
    cfg = config
    info = init_distributed(cfg.train.device)
    try:
        return _run(cfg, info, Path(resume_from) if resume_from is not None else None)
    finally:
        cleanup_distributed(info)


def resume_training(run_dir: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> RunResult:
    """Continue the run in ``run_dir`` from its last finished epoch with its own config.yaml.

    ``overrides`` may change e.g. ``train.epochs`` (train longer) or ``data.num_workers``.
    """
    run_dir = Path(run_dir)
    if not (run_dir / CHECKPOINT).is_file():
        raise FileNotFoundError(f"{run_dir}: no {CHECKPOINT} to resume from")
    return run_training(load_config(run_dir / CONFIG_FILE, overrides), resume_from=run_dir)


def _write_class_names(run_dir: Path, dataset: object) -> None:
    """`classes.txt` (one name per line; `classes_head{k}.txt` per head of a multi-head model) beside the
    weights, so `vidattn predict` / `visualize` can name the classes."""
    names = builders.class_names(dataset)  # type: ignore[arg-type]
    if not names:
        return
    files = ["classes.txt"] if len(names) == 1 else [f"classes_head{k}.txt" for k in range(len(names))]
    for file, head in zip(files, names):
        atomic_write_text(run_dir / file, "\n".join(head) + "\n")


def _run(cfg: Config, info: DistInfo, resume_dir: Path | None) -> RunResult:
    if cfg.train.num_threads:
        torch.set_num_threads(cfg.train.num_threads)
    seed_everything(cfg.seed + info.rank)
    if cfg.distill.teacher:
        cfg.distill.teacher = str(teacher_from_run_dir(cfg.distill.teacher).resolve())
    run_dir = resume_dir if resume_dir is not None else _make_run_dir(cfg, info)
    if info.is_main:
        remove_orphan_temporaries(run_dir)  # of a write killed mid-way (kill -9, power loss)

    model = builders.build_model(cfg)
    if cfg.train.partial_bn:
        logger.info("partial BN: %d BatchNorm layers frozen", apply_partial_bn(model))
    if cfg.train.channels_last:
        model = to_channels_last(model)  # per conv: nn.Module.to refuses models mixing 1D/2D/3D convs (W3)
    model.to(info.device)
    if info.device.type == "cpu":
        apply_requested_cpu_settings()  # only if the process opted in
    teacher = load_teacher(cfg.distill.teacher, info.device, model) if cfg.distill.teacher else None

    train_loader, train_sampler = builders.build_train_loader(cfg, info, seed_worker)
    if info.is_main:
        _write_class_names(run_dir, train_loader.dataset)
    val_loader = builders.build_eval_loader(cfg, cfg.data.val_split, info)[0] if cfg.data.val_split else None
    test_loader = None
    if cfg.data.test_split and cfg.train.eval_test_each_epoch:
        test_loader = builders.build_eval_loader(cfg, cfg.data.test_split, info)[0]

    acc = max(1, cfg.train.accumulate_steps)
    steps_per_epoch = math.ceil(len(train_loader) / acc)
    if cfg.train.max_steps_per_epoch is not None:
        steps_per_epoch = min(steps_per_epoch, cfg.train.max_steps_per_epoch)
    global_batch = cfg.data.batch_size * acc * info.world_size
    schedule = build_schedule(cfg.optim, steps_per_epoch, cfg.train.epochs, global_batch)
    optimizer = build_optimizer(model, cfg.optim, fine_tune=cfg.model.pretrained is not None)
    scaler = None
    if cfg.train.precision == "fp16":
        scaler = torch.amp.GradScaler(info.device.type, enabled=info.device.type == "cuda")

    start_epoch, step, best = 0, 0, {"metric": cfg.train.best_metric, "value": -math.inf, "epoch": 0}
    kept = _BestKept()  # rank 0: a CPU copy of the best weights, to repair a model_best that does not read back
    log = MetricsLog(run_dir / "metrics.csv")
    if resume_dir is not None:
        state = load_training_state(run_dir / CHECKPOINT)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if scaler is not None and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        start_epoch, step, best = state["epoch"], state["step"], state["best"] or best
        log = MetricsLog(run_dir / "metrics.csv", state.get("history", []))
        logger.info("resuming %s after epoch %d (step %d)", run_dir, start_epoch, step)
        if info.is_main:
            kept.best_state = _read_best(run_dir, best)

    train_model: nn.Module = model
    if info.distributed:
        ids = [info.device.index] if info.device.type == "cuda" else None
        train_model = DistributedDataParallel(model, device_ids=ids)

    if resume_dir is not None:
        rngs = state["rng"]
        if len(rngs) != info.world_size:
            before = cfg.data.batch_size * acc * len(rngs)
            logger.warning(
                "resuming a %d-process run with %d processes: global batch %d -> %d (lr scaled with it if "
                "optim.lr_batch_size is set), %d steps per epoch now; deterministic but not bit-identical to "
                "an uninterrupted run (resume with %d processes for that)",
                len(rngs),
                info.world_size,
                before,
                global_batch,
                steps_per_epoch,
                len(rngs),
            )
        restore_rng_state(rngs[info.rank % len(rngs)])  # last: building things above consumed randomness
    # only now that the model, data and checkpoint accept this config: a resume override that fails above
    # leaves the run's config.yaml as it was, so the run can still be resumed
    if info.is_main:
        atomic_write_text(run_dir / CONFIG_FILE, yaml.safe_dump(config_to_dict(cfg), sort_keys=False))
    tb = TBWriter(run_dir / "tensorboard", enabled=info.is_main)
    settings = _settings(cfg, info, cfg.train.max_steps_per_epoch)
    metrics: dict[str, float] = log.rows[-1] if log.rows else {}
    logger.info(
        "training %s for %d epochs (%d steps/epoch, global batch %d) -> %s",
        cfg.name,
        cfg.train.epochs,
        steps_per_epoch,
        global_batch,
        run_dir,
    )
    try:
        for epoch in range(start_epoch, cfg.train.epochs):
            train_sampler.set_epoch(epoch)
            builders.reseed_loader(train_loader, cfg.seed, epoch, info.rank)
            stats, step = train_one_epoch(
                train_model,
                train_loader,
                optimizer,
                schedule,
                step,
                settings,
                scaler=scaler,
                teacher=teacher,
                desc=f"epoch {epoch + 1}/{cfg.train.epochs}",
            )
            row: dict[str, float] = {
                "epoch": epoch + 1,
                "step": step,
                "lr": lr_at(max(step - 1, 0), schedule),
            }
            row.update({f"train_{k}": v for k, v in stats.items()})
            sync_buffers(model)  # DDP ranks drift apart in BN statistics; evaluate and save rank 0's
            evaluate_now = (epoch + 1) % max(1, cfg.train.eval_every) == 0 or epoch + 1 == cfg.train.epochs
            # a copy: the Predictor takes its model over (eval mode, BatchNorm folded), as vidattn test does
            predictor = Predictor(copy.deepcopy(model), device=info.device, precision=cfg.train.precision) \
                if evaluate_now and (val_loader is not None or test_loader is not None) else None
            for split, loader in (("val", val_loader), ("test", test_loader)):
                if loader is not None and predictor is not None:
                    m, _, _ = evaluate(predictor, loader, progress=settings.progress, desc=f"{split} {epoch + 1}")
                    row.update({f"{split}_{k}": v for k, v in m.items() if k not in ("num_samples", "num_labelled")})
            metrics = row
            rngs = all_gather(capture_rng_state())
            if info.is_main:
                best = _end_of_epoch(run_dir, cfg, model, optimizer, scaler, epoch, step, best, row, log, tb, rngs,
                                     kept)
            barrier()
    except NonFiniteLossError as err:
        kept = _kept(run_dir)
        logger.error("%s; %s", err, kept)
        if info.is_main:
            _write_run_json(run_dir, cfg, info, metrics, best, status=f"stopped: {err}")
        raise NonFiniteLossError(f"{run_dir}: {err}; {kept}") from None
    except KeyboardInterrupt:
        if info.is_main:
            _write_run_json(run_dir, cfg, info, metrics, best, status="interrupted")
        raise TrainingInterrupted(
            f"{run_dir}: interrupted; {_kept(run_dir)}; continue with: vidattn train --resume {run_dir}"
        ) from None
    finally:
        tb.close()
    if info.is_main:
        check = verify_best_weights(run_dir, model, best, kept.best_state)
        _write_run_json(run_dir, cfg, info, metrics, best, status="finished", best_weights=check)
    barrier()  # every rank returns after the run directory is complete
    return RunResult(run_dir=run_dir, metrics=metrics, best=best, epochs=cfg.train.epochs)


def _kept(run_dir: Path) -> str:
    """What a stopped run kept: the checkpoint's epoch, or that there is none yet."""
    path = run_dir / CHECKPOINT
    if not path.is_file():
        return f"no checkpoint yet (stopped in the first epoch), nothing to resume in {run_dir}"
    try:
        epoch = load_training_state(path)["epoch"]
    except (ValueError, FileNotFoundError):
        return f"{path} is unreadable"
    return f"kept {path} after epoch {epoch} (and its model_last/best weights)"


def _end_of_epoch(
    run_dir: Path,
    cfg: Config,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler | None,
    epoch: int,
    step: int,
    best: dict[str, Any],
    row: dict[str, float],
    log: MetricsLog,
    tb: TBWriter,
    rngs: list[dict[str, Any]],
    kept: _BestKept | None = None,
) -> dict[str, Any]:
    """Rank 0: weights, then checkpoint.pt (the commit point), then metrics.csv, curves.png, TensorBoard.

    A kill before the checkpoint replays the epoch on resume; metrics.csv is rebuilt from the checkpoint.
    """
    # best on validation; training accuracy only for recipes without a validation split (EPIC-55)
    key = f"{'val' if cfg.data.val_split else 'train'}_{cfg.train.best_metric}"
    value = row.get(key, math.nan)
    if math.isfinite(value) and value > best["value"]:
        if export_weights(model, run_dir / BEST_WEIGHTS) is not None:
            best = {"metric": key, "value": value, "epoch": epoch + 1}
            if kept is not None:
                kept.best_state = _cpu_state(model)
    export_weights(model, run_dir / LAST_WEIGHTS)
    save_training_state(
        run_dir / CHECKPOINT,
        model=model,
        optimizer=optimizer,
        epoch=epoch + 1,
        step=step,
        best=best,
        scaler=scaler,
        config=config_to_dict(cfg),
        history=[*log.rows, row],
        rng_per_rank=rngs,
    )
    log.append(row)
    plot_curves(log.rows, run_dir / "curves.png", title=cfg.name)
    tb.scalars(row, epoch + 1)
    logger.info(
        "epoch %d: %s",
        epoch + 1,
        ", ".join(f"{k}={v:.4g}" for k, v in row.items() if k.endswith(("loss", "top1", "top5")) and math.isfinite(v)),
    )
    return best


@dataclass
class _BestKept:
    #: the weights last written to model_best.safetensors (rank 0, on the CPU), or None
    best_state: dict[str, Tensor] | None = None


def _cpu_state(model: nn.Module) -> dict[str, Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in unwrap(model).state_dict().items()}


def _read_best(run_dir: Path, best: dict[str, Any]) -> dict[str, Tensor] | None:
    """Resume: the best weights into memory, so a model_best that later fails to read back can be rewritten."""
    from vidattn.models.compat import CheckpointError, load_weights

    path = run_dir / BEST_WEIGHTS
    if not best.get("epoch") or not path.is_file():
        return None
    try:
        # copies: safetensors' tensors may map the file, and a file truncated in place would crash their reader
        return {k: v.clone() for k, v in load_weights(path)[0].items()}
    except CheckpointError as err:
        logger.warning("%s; the best epoch's weights (epoch %s) are lost, model_last.safetensors will serve "
                       "for evaluation unless a later epoch is better", err, best["epoch"])
        return None


def verify_best_weights(
    run_dir: Path, model: nn.Module, best: dict[str, Any], best_state: dict[str, Tensor] | None
) -> dict[str, Any]:
    """End of a run: read ``model_best.safetensors`` back (and compare it with the copy in memory).

    A file that does not read back, or differs from the weights written, is rewritten from ``best_state``
    when there is one; otherwise the problem is logged. Returns what ``run.json`` records as ``best_weights``:
    ``{"file", "status": "ok" | "rewritten" | "unreadable" | "none", "problem"?}``."""
    path = run_dir / BEST_WEIGHTS
    if not best.get("epoch"):
        return {"file": path.name, "status": "none"}
    from vidattn.models.compat import CheckpointError, load_weights

    try:
        on_disk, problem = load_weights(path)[0], None
    except CheckpointError as err:
        on_disk, problem = {}, str(err)
    if problem is None and best_state is not None:
        if on_disk.keys() != best_state.keys() or not all(torch.equal(on_disk[k], best_state[k]) for k in on_disk):
            problem = f"{path}: holds other values than the best epoch's weights written"
    del on_disk
    if problem is None:
        return {"file": path.name, "status": "ok"}
    if best_state is not None:
        import copy

        best_model = copy.deepcopy(unwrap(model)).cpu()
        best_model.load_state_dict(best_state)
        if export_weights(best_model, path) is not None and weights_problem(path) is None:
            logger.warning("%s; rewritten from the best epoch's weights in memory (epoch %s)", problem, best["epoch"])
            return {"file": path.name, "status": "rewritten", "problem": problem}
    logger.error("%s; the best epoch's weights (epoch %s) are lost: `vidattn test` uses %s instead",
                 problem, best["epoch"], LAST_WEIGHTS)
    return {"file": path.name, "status": "unreadable", "problem": problem}


def _write_run_json(
    run_dir: Path,
    cfg: Config,
    info: DistInfo,
    metrics: dict[str, float],
    best: dict[str, Any],
    status: str,
    **extra: Any,  # noqa: ANN401 - JSON-serialisable values
) -> None:
    write_run_json(
        run_dir / "run.json",
        name=cfg.name,
        status=status,
        seed=cfg.seed,
        world_size=info.world_size,
        device=str(info.device),
        config=config_to_dict(cfg),
        final_metrics=metrics,
        best=best,
        target=config_to_dict(cfg)["target"],
        **extra,
    )
