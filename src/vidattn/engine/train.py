"""The training loop shared by every model (TSM recipe; Adam for the UCF-101 paper's 3D-ConvNets).

``run_training(config)`` is what ``vidattn train CONFIG key=value`` calls: it builds the model, data
and optimizer from the config, trains for ``train.epochs`` epochs with a per-epoch validation, writes
checkpoints, metrics and curves into the run directory, and returns a :class:`RunResult`. The same call
runs under ``torchrun`` (DDP, rank-0 writes). ``resume_training(run_dir)`` continues a run bit-for-bit.

``_run`` reads top to bottom: :func:`setup` (threads, seeds, run dir, model, data, schedule,
optimizer), :func:`resume` (``--resume``: the checkpoint into the state, RNG states last), then per
epoch :func:`train_one_epoch`, :func:`evaluate_epoch`, :func:`end_epoch` (rank 0 writes; checkpoint.pt
is the commit point), and :func:`finish` (model_best read back, run.json). :class:`TrainRun` holds what
stays fixed, :class:`TrainState` what the loop changes and a checkpoint saves.

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
from collections.abc import Iterator
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
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

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
from vidattn.models.fast import optimize
from vidattn.runtime import apply_requested_cpu_settings

__all__ = [
    "RunResult",
    "NonFiniteLossError",
    "TrainingInterrupted",
    "StepSettings",
    "TrainRun",
    "TrainState",
    "seed_everything",
    "apply_partial_bn",
    "classification_loss",
    "run_training",
    "resume_training",
    "setup",
    "resume",
    "train_one_epoch",
    "evaluate_epoch",
    "end_epoch",
    "finish",
    "verify_best_weights",
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
    #: optimizer steps between host syncs (loss check, log line)
    log_every: int = 20

    @classmethod
    def from_config(cls, cfg: Config, info: DistInfo) -> StepSettings:
        return cls(
            device=info.device,
            precision=cfg.train.precision,
            accumulate_steps=max(1, cfg.train.accumulate_steps),
            grad_clip=cfg.train.grad_clip,
            label_smoothing=cfg.train.label_smoothing,
            partial_bn=cfg.train.partial_bn,
            channels_last=cfg.train.channels_last,
            distill_weight=cfg.distill.weight if cfg.distill.teacher else 0.0,
            max_steps=cfg.train.max_steps_per_epoch,
            progress=cfg.train.progress and info.is_main,
            log_every=max(1, cfg.train.log_every),
        )


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


def _correct(logits: Tensor | tuple[Tensor, ...], labels: Tensor) -> Tensor:
    """How many samples have a right top-1 on every head (multi-hot labels: top-1 is one of the sample's
    classes), as a tensor on the device: counting never waits for it."""
    if labels.is_floating_point():
        top = _heads(logits)[0].argmax(dim=1, keepdim=True)
        return (labels.gather(1, top) > 0).sum()
    labels = labels.view(labels.shape[0], -1)
    ok = torch.ones(labels.shape[0], dtype=torch.bool, device=labels.device)
    for h, z in enumerate(_heads(logits)):
        ok &= z.argmax(dim=1) == labels[:, h]
    return ok.sum()


# ----------------------------------------------------------------------------------------------------------
# the whole run: setup -> (resume) -> for each epoch: train, evaluate, commit -> finish


@dataclass
class TrainState:
    """What the loop changes; ``end_epoch`` saves it into checkpoint.pt and ``resume`` restores it."""

    model: nn.Module  # the plain model (evaluated, exported, saved); DDP trains it through TrainRun.train_model
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler | None
    log: MetricsLog  # the finished epochs' metric rows (metrics.csv, the checkpoint's history)
    best: dict[str, Any]  # {"metric", "value", "epoch"} of model_best.safetensors
    epoch: int = 0  # finished epochs
    step: int = 0  # optimizer steps taken
    metrics: dict[str, float] = field(default_factory=dict)  # the last epoch's row
    #: rank 0: a CPU copy of the weights in model_best.safetensors, to repair a file that does not read back
    best_state: dict[str, Tensor] | None = None


@dataclass
class TrainRun:
    """What stays fixed while a run trains."""

    cfg: Config
    info: DistInfo
    run_dir: Path
    train_model: nn.Module  # TrainState.model, or its DistributedDataParallel wrapper
    teacher: nn.Module | None  # MFR (distill.teacher), frozen
    train_loader: DataLoader
    train_sampler: DistributedSampler
    eval_loaders: dict[str, DataLoader]  # "val", and "test" with train.eval_test_each_epoch
    schedule: LRSchedule
    settings: StepSettings
    steps_per_epoch: int
    global_batch: int
    #: opened once the run's config is accepted (``_recording``); until then a writer that writes nothing
    tb: TBWriter = field(default_factory=lambda: TBWriter("", enabled=False))


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


def _run(cfg: Config, info: DistInfo, resume_dir: Path | None) -> RunResult:
    run, state = setup(cfg, info, resume_dir)
    if resume_dir is not None:
        resume(run, state)
    with _recording(run, state):
        while state.epoch < cfg.train.epochs:
            row = train_one_epoch(run, state)
            row |= evaluate_epoch(run, state)
            end_epoch(run, state, row)
    return finish(run, state)


def setup(cfg: Config, info: DistInfo, resume_dir: Path | None) -> tuple[TrainRun, TrainState]:
    """Process settings, run directory, model, data, schedule and optimizer of a fresh run.

    The order fixes what the seeded RNGs draw (model initialisation, then the data), so it is part of
    what makes two runs of one config equal; ``resume`` restores the RNG states after all of it.
    """
    if cfg.train.num_threads:
        torch.set_num_threads(cfg.train.num_threads)
    if info.device.type == "cpu":
        apply_requested_cpu_settings()  # only if the process opted in
    seed_everything(cfg.seed + info.rank)
    if cfg.distill.teacher:
        cfg.distill.teacher = str(teacher_from_run_dir(cfg.distill.teacher).resolve())
    run_dir = resume_dir if resume_dir is not None else _make_run_dir(cfg, info)
    if info.is_main:
        remove_orphan_temporaries(run_dir)  # of a write killed mid-way (kill -9, power loss)

    model = _build_model(cfg, info)
    teacher = load_teacher(cfg.distill.teacher, info.device, model) if cfg.distill.teacher else None
    train_loader, train_sampler = builders.build_train_loader(cfg, info, seed_worker)
    if info.is_main:
        _write_class_names(run_dir, train_loader.dataset)
    splits = {"val": cfg.data.val_split, "test": cfg.data.test_split if cfg.train.eval_test_each_epoch else None}
    eval_loaders = {name: builders.build_eval_loader(cfg, split, info)[0] for name, split in splits.items() if split}

    acc = max(1, cfg.train.accumulate_steps)
    steps_per_epoch = math.ceil(len(train_loader) / acc)
    if cfg.train.max_steps_per_epoch is not None:
        steps_per_epoch = min(steps_per_epoch, cfg.train.max_steps_per_epoch)
    global_batch = cfg.data.batch_size * acc * info.world_size
    optimizer = build_optimizer(model, cfg.optim, fine_tune=cfg.model.pretrained is not None)
    cuda = info.device.type == "cuda"
    scaler = torch.amp.GradScaler(info.device.type, enabled=cuda) if cfg.train.precision == "fp16" else None
    ids = [info.device.index] if cuda else None
    train_model = DistributedDataParallel(model, device_ids=ids) if info.distributed else model
    run = TrainRun(cfg, info, run_dir, train_model, teacher, train_loader, train_sampler, eval_loaders,
                   schedule=build_schedule(cfg.optim, steps_per_epoch, cfg.train.epochs, global_batch),
                   settings=StepSettings.from_config(cfg, info), steps_per_epoch=steps_per_epoch,
                   global_batch=global_batch)
    best = {"metric": cfg.train.best_metric, "value": -math.inf, "epoch": 0}
    return run, TrainState(model, optimizer, scaler, MetricsLog(run_dir / "metrics.csv"), best)


def _build_model(cfg: Config, info: DistInfo) -> nn.Module:
    """The recipe's model on this process's device (partial BN, channels-last, fast modules as configured)."""
    model = builders.build_model(cfg)
    if cfg.train.fast:
        optimize(model)  # in place; the state dict (names, tensors) is the reference model's
    if cfg.train.partial_bn:
        logger.info("partial BN: %d BatchNorm layers frozen", apply_partial_bn(model))
    if cfg.train.channels_last:
        model = to_channels_last(model)  # per conv: nn.Module.to refuses models mixing 1D/2D/3D convs (W3)
    return model.to(info.device)


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


def _write_class_names(run_dir: Path, dataset: object) -> None:
    """`classes.txt` (one name per line; `classes_head{k}.txt` per head of a multi-head model) beside the
    weights, so `vidattn predict` / `visualize` can name the classes."""
    names = builders.class_names(dataset)  # type: ignore[arg-type]
    if not names:
        return
    files = ["classes.txt"] if len(names) == 1 else [f"classes_head{k}.txt" for k in range(len(names))]
    for file, head in zip(files, names):
        atomic_write_text(run_dir / file, "\n".join(head) + "\n")


def resume(run: TrainRun, state: TrainState) -> None:
    """Continue after the checkpoint's last finished epoch: weights, optimizer, scaler, counters, best,
    metric history, and (last, as building the run drew from them) this process's RNG states."""
    ckpt = load_training_state(run.run_dir / CHECKPOINT)
    state.model.load_state_dict(ckpt["model"])  # in place: the DDP wrapper trains these same tensors
    state.optimizer.load_state_dict(ckpt["optimizer"])
    if state.scaler is not None and ckpt.get("scaler"):
        state.scaler.load_state_dict(ckpt["scaler"])
    state.epoch, state.step, state.best = ckpt["epoch"], ckpt["step"], ckpt["best"] or state.best
    state.log = MetricsLog(run.run_dir / "metrics.csv", ckpt.get("history", []))
    state.metrics = state.log.rows[-1] if state.log.rows else {}
    if run.info.is_main:
        state.best_state = _read_best(run.run_dir, state.best)
    logger.info("resuming %s after epoch %d (step %d)", run.run_dir, state.epoch, state.step)
    rngs = ckpt["rng"]
    if len(rngs) != run.info.world_size:
        logger.warning(
            "resuming a %d-process run with %d processes: global batch %d -> %d (lr scaled with it if "
            "optim.lr_batch_size is set), %d steps per epoch now; deterministic but not bit-identical to "
            "an uninterrupted run (resume with %d processes for that)",
            len(rngs),
            run.info.world_size,
            run.global_batch // run.info.world_size * len(rngs),
            run.global_batch,
            run.steps_per_epoch,
            len(rngs),
        )
    restore_rng_state(rngs[run.info.rank % len(rngs)])


@contextlib.contextmanager
def _recording(run: TrainRun, state: TrainState) -> Iterator[None]:
    """Around the epochs: config.yaml and TensorBoard on the way in; on a diverged loss or Ctrl-C,
    run.json says "stopped: ..." / "interrupted" and one line says what was kept."""
    cfg, info, run_dir = run.cfg, run.info, run.run_dir
    # only now that the model, data and checkpoint accept this config: a resume override that fails above
    # leaves the run's config.yaml as it was, so the run can still be resumed
    if info.is_main:
        atomic_write_text(run_dir / CONFIG_FILE, yaml.safe_dump(config_to_dict(cfg), sort_keys=False))
    run.tb = TBWriter(run_dir / "tensorboard", enabled=info.is_main)
    logger.info("training %s for %d epochs (%d steps/epoch, global batch %d) -> %s",
                cfg.name, cfg.train.epochs, run.steps_per_epoch, run.global_batch, run_dir)
    try:
        yield
    except NonFiniteLossError as err:
        kept = _kept(run_dir)
        logger.error("%s; %s", err, kept)
        if info.is_main:
            _write_run_json(run, state, status=f"stopped: {err}")
        raise NonFiniteLossError(f"{run_dir}: {err}; {kept}") from None
    except KeyboardInterrupt:
        if info.is_main:
            _write_run_json(run, state, status="interrupted")
        raise TrainingInterrupted(
            f"{run_dir}: interrupted; {_kept(run_dir)}; continue with: vidattn train --resume {run_dir}"
        ) from None
    finally:
        run.tb.close()


# ----------------------------------------------------------------------------------------------------------
# one epoch


def train_one_epoch(run: TrainRun, state: TrainState) -> dict[str, float]:
    """One pass over the training data (at most ``train.max_steps_per_epoch`` optimizer steps).

    Returns the epoch's row: ``epoch``, ``step``, ``lr`` and ``train_*`` summed over processes. Nothing
    waits for the device per micro-batch: loss and accuracy are summed where they are computed, and the
    host reads them, checks the loss (agreed over processes) and logs every ``train.log_every``
    optimizer steps and at the end of the epoch.
    """
    s, model = run.settings, run.train_model
    run.train_sampler.set_epoch(state.epoch)
    builders.reseed_loader(run.train_loader, run.cfg.seed, state.epoch, run.info.rank)
    model.train()
    if s.partial_bn:
        apply_partial_bn(model)
    acc = s.accumulate_steps
    n_batches = len(run.train_loader) if s.max_steps is None else min(len(run.train_loader), s.max_steps * acc)
    desc = f"epoch {state.epoch + 1}/{run.cfg.train.epochs}"
    tally = _Tally(s.device)
    window = 0  # clips of the current accumulation window (0: nothing to step on)
    state.optimizer.zero_grad(set_to_none=True)
    bar = tqdm(total=n_batches, desc=desc, disable=not s.progress, leave=False, dynamic_ncols=True)
    with bar, logging_redirect_tqdm() if s.progress else contextlib.nullcontext():
        for i, batch in enumerate(run.train_loader):
            if i >= n_batches:
                break
            last_micro = (i + 1) % acc == 0 or i + 1 == n_batches
            if i % acc == 0:
                set_lr(state.optimizer, lr_at(state.step, run.schedule))
            tally.skipped += float(batch.get("num_skipped", 0))
            if batch.get("clip") is not None:
                window += _forward_backward(run, state, batch, last_micro, tally)
            elif run.info.distributed:
                # the other ranks' backward waits for this rank's gradients: no way to skip alone
                raise RuntimeError(
                    f"{desc}: a whole batch of this process was unreadable (data.on_error=skip) under DDP; "
                    "fix or remove the unreadable videos (see the warnings above) or use a larger data.batch_size"
                )
            else:  # every sample of the batch was unreadable (on_error=skip)
                tally.skipped_batches += 1
            if last_micro:
                _optimizer_step(run, state, window)
                window = 0
                if state.step % s.log_every == 0:
                    _sync(run, state, tally, bar)
            bar.update(1)
        _sync(run, state, tally, bar, log=False)
    return {"epoch": state.epoch + 1, "step": state.step, "lr": lr_at(max(state.step - 1, 0), run.schedule),
            **{f"train_{k}": v for k, v in tally.epoch_stats(run.teacher is not None, desc).items()}}


def _forward_backward(run: TrainRun, state: TrainState, batch: dict[str, Any], last_micro: bool, tally: _Tally) -> int:
    """Forward under autocast, loss = CE [+ lambda * L_fm (eq. 9)], backward of loss / accumulate_steps.

    Under DDP gradients are all-reduced only on the micro-batch that ends a window. Returns the clip count."""
    s, model = run.settings, run.train_model
    clips = batch["clip"].to(s.device, non_blocking=True)
    labels = torch.as_tensor(batch["label"]).to(s.device, non_blocking=True)
    if s.channels_last and clips.dim() == 5:
        clips = clips.contiguous(memory_format=torch.channels_last_3d)
    sync = contextlib.nullcontext() if last_micro or not run.info.distributed else model.no_sync()
    with sync:
        with autocast_context(s.device, s.precision):
            if run.teacher is not None:
                out = model(clips, return_all=True)
                logits = out.logits
                with torch.no_grad():
                    target = run.teacher(clips, return_all=True).features
                fm = feature_mimic_loss(out.features, target)
            else:
                logits, fm = model(clips), None
            loss = classification_loss(logits, labels, s.label_smoothing)
            total = loss + s.distill_weight * fm if fm is not None else loss
        scaled = total / s.accumulate_steps
        (state.scaler.scale(scaled) if state.scaler is not None else scaled).backward()
    tally.add(state.step, loss, fm, _correct(logits, labels), total, len(clips))
    return len(clips)


def _optimizer_step(run: TrainRun, state: TrainState, window_seen: int) -> None:
    """End of an accumulation window: unscale, clip, step. A window whose every batch was unreadable has
    no gradients: its step is counted (the schedule stays aligned) but nothing changes."""
    s, optimizer, scaler = run.settings, state.optimizer, state.scaler
    if window_seen:
        if scaler is not None:
            scaler.unscale_(optimizer)
        if s.grad_clip is not None and s.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_([p for g in optimizer.param_groups for p in g["params"]], s.grad_clip)
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    state.step += 1


class _Tally:
    """An epoch's training sums. Loss x clips, L_fm x clips and correct clips stay on the device in
    float64 (adding them never waits for it; the same additions, in the same order, as host floats);
    clip and skip counts are host numbers. ``pending``: each micro-batch's loss since the last sync."""

    def __init__(self, device: torch.device) -> None:
        self.sums = torch.zeros(3, dtype=torch.float64, device=device)
        self.seen = self.skipped = self.skipped_batches = 0.0
        self.pending: list[tuple[int, Tensor]] = []  # (optimizer step, total loss)
        self.t0 = time.perf_counter()

    def add(self, step: int, loss: Tensor, fm: Tensor | None, correct: Tensor, total: Tensor, n: int) -> None:
        fm_sum = fm.detach().double() * n if fm is not None else self.sums.new_zeros(())
        self.sums += torch.stack([loss.detach().double() * n, fm_sum, correct.double()])
        self.seen += n
        self.pending.append((step, total.detach()))

    def epoch_stats(self, distilled: bool, desc: str) -> dict[str, float]:
        """The epoch's means over every process (one all-reduce)."""
        loss_sum, fm_sum, correct = self.sums.tolist()
        loss_sum, fm_sum, correct, seen, skipped, skipped_batches = all_reduce_sum(
            [loss_sum, fm_sum, correct, self.seen, self.skipped, self.skipped_batches]
        )
        if skipped_batches:
            logger.warning("%s: %d batches skipped whole (every clip unreadable)", desc, int(skipped_batches))
        stats = {
            "loss": loss_sum / max(seen, 1),
            "top1": 100.0 * correct / max(seen, 1),
            "num_skipped": skipped,
            "num_skipped_batches": skipped_batches,
            "clips_per_s": seen / max(time.perf_counter() - self.t0, 1e-9),
        }
        if distilled:
            stats["fm_loss"] = fm_sum / max(seen, 1)
        return stats


def _sync(run: TrainRun, state: TrainState, tally: _Tally, bar: tqdm, log: bool = True) -> None:
    """The host reads the device: stop if any loss since the last sync was NaN/inf on any process (all
    agree, or the others would wait forever in the next all-reduce), else log the epoch's running means."""
    losses = torch.stack([t for _, t in tally.pending]).double() if tally.pending else tally.sums[:0]
    loss_sum, _, correct, *values = torch.cat([tally.sums, losses]).tolist()  # one device-to-host copy
    bad = next(((step, v) for (step, _), v in zip(tally.pending, values) if not math.isfinite(v)), None)
    tally.pending.clear()
    any_bad, loss_sum, correct, seen = all_reduce_sum([float(bad is not None), loss_sum, correct, tally.seen])
    if any_bad:
        hint = "lower optim.lr" + (" or use train.precision=fp32" if run.settings.precision != "fp32" else "")
        where = f"({bad[1]}) at optimizer step {bad[0]}" if bad else f"on another process by step {state.step}"
        raise NonFiniteLossError(f"non-finite loss {where}: stopping; {hint}")
    if not log:
        return
    group = state.optimizer.param_groups[0]
    stats = {"loss": f"{loss_sum / max(seen, 1):.3f}", "acc": f"{100 * correct / max(seen, 1):.1f}",
             "clips_s": f"{seen / max(time.perf_counter() - tally.t0, 1e-9):.1f}",
             "lr": f"{group['lr'] / group.get('lr_mult', 1):.2e}"}
    bar.set_postfix(stats)
    if run.info.is_main:
        logger.info("step %d/%d (epoch %d): %s", state.step, run.schedule.total_steps, state.epoch + 1,
                    ", ".join(f"{k} {v}" for k, v in stats.items()))


def evaluate_epoch(run: TrainRun, state: TrainState) -> dict[str, float]:
    """``val_*`` (and ``test_*``) of the epoch's model, every ``train.eval_every`` epochs and after the last."""
    sync_buffers(state.model)  # DDP ranks drift apart in BN statistics; evaluate and save rank 0's
    done, cfg = state.epoch + 1, run.cfg
    if done % max(1, cfg.train.eval_every) and done != cfg.train.epochs:
        return {}
    row: dict[str, float] = {}
    if not run.eval_loaders:
        return row
    # a copy: the Predictor takes its model over (eval mode, BatchNorm folded), as vidattn test does
    predictor = Predictor(copy.deepcopy(state.model), device=run.info.device, precision=cfg.train.precision)
    for split, loader in run.eval_loaders.items():
        m, _, _ = evaluate(predictor, loader, progress=run.settings.progress, desc=f"{split} {done}")
        row.update({f"{split}_{k}": v for k, v in m.items() if k not in ("num_samples", "num_labelled")})
    return row


def end_epoch(run: TrainRun, state: TrainState, row: dict[str, float]) -> None:
    """Commit the epoch: every process's RNG state to rank 0, which writes weights, then checkpoint.pt (the
    commit point), then metrics.csv, curves.png, TensorBoard.

    A kill before the checkpoint replays the epoch on resume; metrics.csv is rebuilt from the checkpoint.
    """
    state.epoch, state.metrics = state.epoch + 1, row
    rngs = all_gather(capture_rng_state())
    if run.info.is_main:
        _save_epoch(run, state, row, rngs)
    barrier()


def _save_epoch(run: TrainRun, state: TrainState, row: dict[str, float], rngs: list[dict[str, Any]]) -> None:
    cfg, run_dir, model = run.cfg, run.run_dir, state.model
    # best on validation; training accuracy only for recipes without a validation split (EPIC-55)
    key = f"{'val' if cfg.data.val_split else 'train'}_{cfg.train.best_metric}"
    value = row.get(key, math.nan)
    if math.isfinite(value) and value > state.best["value"]:
        if export_weights(model, run_dir / BEST_WEIGHTS) is not None:
            state.best = {"metric": key, "value": value, "epoch": state.epoch}
            state.best_state = _cpu_state(model)
    export_weights(model, run_dir / LAST_WEIGHTS)
    save_training_state(
        run_dir / CHECKPOINT,
        model=model,
        optimizer=state.optimizer,
        epoch=state.epoch,
        step=state.step,
        best=state.best,
        scaler=state.scaler,
        config=config_to_dict(cfg),
        history=[*state.log.rows, row],
        rng_per_rank=rngs,
    )
    state.log.append(row)
    plot_curves(state.log.rows, run_dir / "curves.png", title=cfg.name)
    run.tb.scalars(row, state.epoch)
    logger.info(
        "epoch %d: %s",
        state.epoch,
        ", ".join(f"{k}={v:.4g}" for k, v in row.items() if k.endswith(("loss", "top1", "top5")) and math.isfinite(v)),
    )


def finish(run: TrainRun, state: TrainState) -> RunResult:
    """Rank 0 reads model_best back (rewriting it from memory if it went bad) and marks run.json
    "finished"; every rank returns once the run directory is complete."""
    if run.info.is_main:
        check = verify_best_weights(run.run_dir, state.model, state.best, state.best_state)
        _write_run_json(run, state, status="finished", best_weights=check)
    barrier()
    return RunResult(run_dir=run.run_dir, metrics=state.metrics, best=state.best, epochs=run.cfg.train.epochs)


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




def _write_run_json(run: TrainRun, state: TrainState, status: str, **extra: Any) -> None:  # noqa: ANN401 - JSON values
    cfg = run.cfg
    write_run_json(
        run.run_dir / "run.json",
        name=cfg.name,
        status=status,
        seed=cfg.seed,
        world_size=run.info.world_size,
        device=str(run.info.device),
        config=config_to_dict(cfg),
        final_metrics=state.metrics,
        best=state.best,
        target=config_to_dict(cfg)["target"],
        **extra,
    )
