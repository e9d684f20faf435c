"""SynthActions: a procedural "what, where, when" action dataset that trains on a CPU in minutes.

Every class has a time-reversal partner (move right / move left, grow / shrink, rotate clockwise /
counter-clockwise, ...). A class-B video is *generated as a class-A video and then played backwards*
(frames, actor boxes, distractors and background jitter alike), so the set of frames of a B video has
exactly the distribution of the set of frames of an A video: a model that ignores frame order (TSN's
average of per-frame predictions) cannot beat 50% between the two classes of a pair, while a temporal
model (TSM, W3) can. The actor shares the frame with randomly moving distractors on a textured,
jittering background ("where"/"what"), and its bounding box is recorded in every frame.

On disk (``root``), in the mmaction2 list format read by :class:`vidattn.data.ListDataset`::

    videos/<class>/<class>_<i>.avi   MPEG-4 Part 2 in AVI (like UCF-101), ``size`` x ``size``
    train.txt val.txt test.txt       "videos/<class>/<class>_<i>.avi <label>" per line
    classes.txt                      one class name per line (label = line number, 0-based)
    synth_actions.json               config, classes, reversal_pairs, flip_pairs
    boxes.json                       {video_id: [[x0, y0, x1, y1, alpha], ...] one per frame} (pixels)

Defaults: 16 classes (8 reversal pairs) x 40 videos, 16 frames, 96x96, 12 fps; split 60/20/20 per class
(24/8/8 videos per class: 384/128/128).
"""

from __future__ import annotations

import json
import logging
import multiprocessing as mp
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

__all__ = [
    "SYNTH_CLASSES",
    "REVERSAL_PAIRS",
    "FLIP_PAIRS",
    "SynthConfig",
    "generate_synth_actions",
    "render_video",
    "reversal_pair_accuracy",
]

# Even index = the "forward" class that is generated; odd index = its time reversal.
SYNTH_CLASSES = [
    "move_right", "move_left",
    "move_down", "move_up",
    "grow", "shrink",
    "rotate_clockwise", "rotate_counterclockwise",
    "fade_in", "fade_out",
    "move_then_stop", "start_moving",
    "cover_target", "uncover_target",
    "approach_object", "leave_object",
]
REVERSAL_PAIRS = [(2 * i, 2 * i + 1) for i in range(len(SYNTH_CLASSES) // 2)]
# A horizontal flip turns right into left and clockwise into counter-clockwise.
FLIP_PAIRS = [(0, 1), (6, 7)]
_SHAPES = ("disk", "square", "triangle", "ell")


@dataclass(frozen=True)
class SynthConfig:
    """Generator parameters (all recorded in ``synth_actions.json``)."""

    num_classes: int = 16
    videos_per_class: int = 40
    num_frames: int = 16
    size: int = 96
    fps: int = 12
    max_distractors: int = 3
    seed: int = 0
    split: tuple[float, float, float] = (0.6, 0.2, 0.2)
    qscale: int = 3

    def __post_init__(self) -> None:
        if self.num_classes % 2 or not 2 <= self.num_classes <= len(SYNTH_CLASSES):
            raise ValueError(f"num_classes must be even, 2..{len(SYNTH_CLASSES)}; got {self.num_classes}")
        if self.num_frames < 4 or self.size < 32:
            raise ValueError("SynthActions needs num_frames >= 4 and size >= 32")


# ---------------------------------------------------------------- scene: trajectories of every object


def _ramp(t: np.ndarray, t0: float, t1: float) -> np.ndarray:
    return np.clip((t - t0) / max(t1 - t0, 1e-6), 0.0, 1.0)


def _colour(rng: np.random.Generator) -> np.ndarray:
    """A saturated random colour (random hue, high value)."""
    hue = rng.random() * 6.0
    i, f = int(hue), hue - int(hue)
    table = [(1, f, 0), (1 - f, 1, 0), (0, 1, f), (0, 1 - f, 1), (f, 0, 1), (1, 0, 1 - f)]
    return (np.array(table[i % 6]) * rng.uniform(170, 255) + rng.uniform(0, 40)).clip(0, 255)


def _obj(t_len: int, **fields: Any) -> dict[str, Any]:
    out = {}
    for key, value in fields.items():
        out[key] = np.broadcast_to(np.asarray(value, dtype=np.float64), (t_len,)).copy() \
            if key in ("x", "y", "r", "angle", "alpha") else value
    return out


def _scene(kind: int, cfg: SynthConfig, rng: np.random.Generator) -> tuple[list[dict[str, Any]], int]:
    """Objects (drawn in list order) of a forward-class video; returns (objects, actor position)."""
    n, s = cfg.num_frames, float(cfg.size)
    t = np.arange(n, dtype=np.float64)
    t0, t1 = rng.uniform(0, 0.25) * (n - 1), rng.uniform(0.75, 1.0) * (n - 1)
    ramp = _ramp(t, t0, t1)
    r = rng.uniform(0.09, 0.14) * s
    shape = _SHAPES[int(rng.integers(len(_SHAPES)))]
    colour = _colour(rng)
    angle = rng.uniform(0, 2 * np.pi)
    objects: list[dict[str, Any]] = []
    lo, hi = 1.1 * r, s - 1.1 * r

    def line(dx: float, dy: float, progress: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x0 = rng.uniform(max(lo, lo - dx), min(hi, hi - dx)) if abs(dx) < hi - lo else (lo if dx > 0 else hi)
        y0 = rng.uniform(max(lo, lo - dy), min(hi, hi - dy)) if abs(dy) < hi - lo else (lo if dy > 0 else hi)
        return x0 + dx * progress, y0 + dy * progress

    name = SYNTH_CLASSES[kind]
    x = y = None
    radius, alpha, rot = r, 1.0, angle
    if name in ("move_right", "move_down"):
        dist, tilt = rng.uniform(0.35, 0.6) * s, rng.uniform(-0.2, 0.2)
        along, across = dist * np.cos(tilt), dist * np.sin(tilt)
        x, y = line(along, across, ramp) if name == "move_right" else line(across, along, ramp)
    elif name == "grow":
        radius = r * (0.6 + rng.uniform(1.0, 1.6) * ramp)
        x, y = rng.uniform(0.3, 0.7, size=2) * s
    elif name == "rotate_clockwise":
        shape = ("ell", "triangle")[int(rng.integers(2))]
        radius = r * 1.3
        rot = angle + rng.uniform(0.5, 1.0) * np.pi * ramp  # +angle is clockwise on screen (y points down)
        x, y = rng.uniform(0.3, 0.7, size=2) * s
    elif name == "fade_in":
        alpha = ramp
        x, y = rng.uniform(0.25, 0.75, size=2) * s
    elif name in ("move_then_stop", "cover_target", "approach_object"):
        stop_at = rng.uniform(0.4, 0.6) * (n - 1) if name == "move_then_stop" else t1
        progress = _ramp(t, min(t0, 0.1 * (n - 1)), stop_at)
        heading = rng.uniform(0, 2 * np.pi)
        if name == "move_then_stop":
            dist = rng.uniform(0.3, 0.5) * s
            x, y = line(dist * np.cos(heading), dist * np.sin(heading), progress)
        else:
            tx, ty = rng.uniform(0.3, 0.7, size=2) * s
            other_r = r * (0.6 if name == "cover_target" else rng.uniform(0.8, 1.1))
            end_gap = 0.0 if name == "cover_target" else (r + other_r) * 1.4
            start_gap = end_gap + rng.uniform(0.3, 0.45) * s
            gap = start_gap + (end_gap - start_gap) * progress
            x, y = tx + gap * np.cos(heading), ty + gap * np.sin(heading)
            kind_other = "ring" if name == "cover_target" else _SHAPES[int(rng.integers(len(_SHAPES)))]
            objects.append(_obj(n, shape=kind_other, colour=_colour(rng), x=tx, y=ty, r=other_r,
                                angle=rng.uniform(0, 2 * np.pi), alpha=1.0))
            radius = r * (1.3 if name == "cover_target" else 1.0)
    else:
        raise ValueError(f"{name} is not a forward SynthActions class")
    actor = _obj(n, shape=shape, colour=colour, x=x, y=y, r=radius, angle=rot, alpha=alpha)
    # Distractors: smaller, wandering with momentum, bouncing off the borders.
    for _ in range(int(rng.integers(1, cfg.max_distractors + 1)) if cfg.max_distractors > 0 else 0):
        dr = rng.uniform(0.05, 0.08) * s
        pos, vel = rng.uniform(dr, s - dr, size=2), rng.normal(0, 0.02 * s, size=2)
        xs, ys = np.empty(n), np.empty(n)
        for i in range(n):
            xs[i], ys[i] = pos
            vel = 0.8 * vel + rng.normal(0, 0.015 * s, size=2)
            pos = pos + vel
            for d in range(2):
                if not dr <= pos[d] <= s - dr:
                    vel[d] = -vel[d]
                    pos[d] = np.clip(pos[d], dr, s - dr)
        spin = rng.uniform(0, 2 * np.pi) + rng.normal(0, 0.2) * t
        objects.insert(0, _obj(n, shape=_SHAPES[int(rng.integers(len(_SHAPES)))], colour=_colour(rng),
                               x=xs, y=ys, r=dr, angle=spin, alpha=1.0))
    objects.append(actor)
    return objects, len(objects) - 1


# ---------------------------------------------------------------- rendering


def _mask(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Shape in unit local coordinates (``v`` points down)."""
    if shape == "disk":
        return u * u + v * v <= 1.0
    if shape == "ring":
        d = u * u + v * v
        return (d <= 1.0) & (d >= 0.45)
    if shape == "square":
        return (np.abs(u) <= 0.8) & (np.abs(v) <= 0.8)
    if shape == "triangle":  # apex up, chiral enough once rotated
        return (v <= 0.7) & (v >= 1.7 * np.abs(u) - 0.9)
    if shape == "ell":  # an L: asymmetric, so rotation direction is visible
        foot = (np.abs(u) <= 1.0) & (v >= 0.4) & (v <= 1.0)
        return foot | ((u >= -1.0) & (u <= -0.4) & (np.abs(v) <= 1.0))
    raise ValueError(f"unknown shape {shape!r}")


def _background(cfg: SynthConfig, rng: np.random.Generator, margin: int) -> np.ndarray:
    """A smooth random texture, larger than the frame by ``margin`` on every side (for camera jitter)."""
    side = cfg.size + 2 * margin
    coarse = rng.uniform(0, 1, size=(side // 8 + 2, side // 8 + 2, 3))
    idx = np.linspace(0, coarse.shape[0] - 1.001, side)
    i0, f = idx.astype(int), (idx - idx.astype(int))[:, None]
    rows = coarse[i0] * (1 - f[..., None]) + coarse[i0 + 1] * f[..., None]
    tex = rows[:, i0] * (1 - f[None, :, :]) + rows[:, i0 + 1] * f[None, :, :]
    base = rng.uniform(40, 150, size=3)
    stripes = 12 * np.sin(np.arange(side) / rng.uniform(2, 5))[None, :, None]
    return (base + rng.uniform(30, 70) * (tex - 0.5) + stripes).astype(np.float32)


def render_video(kind: int, cfg: SynthConfig, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Frames ``uint8 (T, S, S, 3)`` and actor boxes ``(T, 5)`` = x0, y0, x1, y1, alpha of a class-``kind``
    video; odd (reversed) classes are rendered as their forward partner and played backwards."""
    objects, actor_pos = _scene(kind - kind % 2, cfg, rng)
    n, s, margin = cfg.num_frames, cfg.size, 3
    bg = _background(cfg, rng, margin)
    shifts = rng.integers(0, 2 * margin + 1, size=(n, 2))
    gains = rng.uniform(0.95, 1.05, size=n)
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32) + 0.5
    frames = np.empty((n, s, s, 3), np.uint8)
    boxes = np.zeros((n, 5), np.float32)
    for i in range(n):
        img = bg[shifts[i, 0] : shifts[i, 0] + s, shifts[i, 1] : shifts[i, 1] + s] * gains[i]
        for j, ob in enumerate(objects):
            x, y, r, a, al = ob["x"][i], ob["y"][i], ob["r"][i], ob["angle"][i], ob["alpha"][i]
            dx, dy = xx - x, yy - y
            u = (np.cos(a) * dx + np.sin(a) * dy) / r
            v = (-np.sin(a) * dx + np.cos(a) * dy) / r
            m = _mask(ob["shape"], u, v)
            if al > 0:
                img[m] = (1 - al) * img[m] + al * ob["colour"]
            if j == actor_pos:
                ys, xs = np.nonzero(m)
                if len(xs):
                    boxes[i] = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1, al)
                else:
                    boxes[i] = (x - r, y - r, x + r, y + r, al)
        frames[i] = np.clip(img, 0, 255).astype(np.uint8)
    boxes[:, :4] = boxes[:, :4].clip(0, s)
    if kind % 2:
        frames, boxes = frames[::-1].copy(), boxes[::-1].copy()
    return frames, boxes


# ---------------------------------------------------------------- writing


def _write_avi(path: Path, frames: np.ndarray, fps: int, qscale: int) -> None:
    import av

    with av.open(str(path), "w", format="avi") as out:
        stream = out.add_stream("mpeg4", rate=fps, options={"qscale": str(qscale)})
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        stream.codec_context.gop_size = 12
        stream.codec_context.thread_count = 1
        for f in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def _job(args: tuple[int, int, SynthConfig, str]) -> tuple[str, list[list[float]]]:
    kind, i, cfg, root = args
    rng = np.random.default_rng([cfg.seed, kind, i])
    frames, boxes = render_video(kind, cfg, rng)
    name = SYNTH_CLASSES[kind]
    rel = f"videos/{name}/{name}_{i:03d}.avi"
    _write_avi(Path(root) / rel, frames, cfg.fps, cfg.qscale)
    return rel, np.round(boxes, 2).tolist()


def generate_synth_actions(
    root: str | os.PathLike,
    config: SynthConfig | None = None,
    *,
    workers: int | None = None,
    overwrite: bool = False,
    progress: bool = True,
    **overrides: Any,
) -> Path:
    """Write SynthActions under ``root`` (see the module docstring for the layout) and return ``root``.

    Deterministic from ``config.seed`` (each video has its own seed ``(seed, class, index)``, so the
    result does not depend on ``workers``). Uses ``workers`` processes (default: all cores) and shows a
    tqdm bar. If ``root`` already holds a dataset generated with the same config it is reused unless
    ``overwrite``. Keyword ``overrides`` replace config fields, e.g. ``videos_per_class=10``.
    """
    cfg = config or SynthConfig()
    if overrides:
        cfg = SynthConfig(**{**asdict(cfg), **overrides})
    root = Path(root)
    meta_file = root / "synth_actions.json"
    meta = {"format": "synth_actions/1", "config": asdict(cfg), "classes": SYNTH_CLASSES[: cfg.num_classes],
            "reversal_pairs": [list(p) for p in REVERSAL_PAIRS[: cfg.num_classes // 2]],
            "flip_pairs": [list(p) for p in FLIP_PAIRS if p[1] < cfg.num_classes]}
    meta["config"]["split"] = list(cfg.split)
    if meta_file.exists() and not overwrite:
        old = json.loads(meta_file.read_text())
        if old.get("config") == meta["config"]:
            log.info("SynthActions already generated in %s; reusing it", root)
            return root
        raise FileExistsError(f"{root}: holds SynthActions with another config; pass overwrite=True")
    for name in meta["classes"]:
        (root / "videos" / name).mkdir(parents=True, exist_ok=True)
    jobs = [(k, i, cfg, str(root)) for k in range(cfg.num_classes) for i in range(cfg.videos_per_class)]
    workers = workers or os.cpu_count() or 1
    results: dict[str, list[list[float]]] = {}
    from tqdm.auto import tqdm

    bar = tqdm(total=len(jobs), desc="SynthActions", unit="video", disable=not progress)
    if workers > 1:
        ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else None)
        with ctx.Pool(workers) as pool:
            for rel, boxes in pool.imap_unordered(_job, jobs, chunksize=8):
                results[rel] = boxes
                bar.update()
    else:
        for job in jobs:
            rel, boxes = _job(job)
            results[rel] = boxes
            bar.update()
    bar.close()
    split_rng = np.random.default_rng([cfg.seed, 2**31 - 1])
    lines: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    n_train = round(cfg.split[0] * cfg.videos_per_class)
    n_val = round(cfg.split[1] * cfg.videos_per_class)
    for k, name in enumerate(meta["classes"]):
        order = split_rng.permutation(cfg.videos_per_class)
        for rank, i in enumerate(order):
            part = "train" if rank < n_train else "val" if rank < n_train + n_val else "test"
            lines[part].append(f"videos/{name}/{name}_{i:03d}.avi {k}")
    for part, rows in lines.items():
        (root / f"{part}.txt").write_text("\n".join(sorted(rows)) + "\n")
    (root / "classes.txt").write_text("\n".join(meta["classes"]) + "\n")
    boxes_json = {os.path.splitext(rel)[0]: results[rel] for rel in sorted(results)}
    (root / "boxes.json").write_text(json.dumps(boxes_json, separators=(",", ":")))
    meta_file.write_text(json.dumps(meta, indent=1))  # written last: marks a complete dataset
    return root


def reversal_pair_accuracy(
    logits: np.ndarray | Any, labels: np.ndarray | Any, pairs: list[tuple[int, int]] | list[list[int]]
) -> float:
    """Accuracy of telling each sample's class from its reversal partner: for samples whose label is in a
    pair, correct when its own logit beats the partner's. An order-blind model scores about 0.5."""
    logits, labels = np.asarray(logits, dtype=np.float64), np.asarray(labels)
    partner = {a: b for a, b in pairs} | {b: a for a, b in pairs}
    rows = [i for i, y in enumerate(labels) if int(y) in partner]
    if not rows:
        return float("nan")
    hits = [logits[i, int(labels[i])] > logits[i, partner[int(labels[i])]] for i in rows]
    return float(np.mean(hits))


def __getattr__(name: str) -> Any:
    if name == "SynthActions":  # lazy: the dataset module imports torch
        from vidattn.data.datasets.synth_actions import SynthActions

        return SynthActions
    raise AttributeError(name)
