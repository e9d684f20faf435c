"""SynthActions: a procedural "what, where, when" action dataset that trains on a CPU in minutes.

Every class has a time-reversal partner (move right / move left, grow / shrink, rotate clockwise /
counter-clockwise, ...). A class-B video is *generated as a class-A video and then played backwards*
(frames, actor boxes, distractors and background jitter alike), so the set of frames of a B video has
exactly the distribution of the set of frames of an A video: a model that ignores frame order (TSN's
average of per-frame predictions) cannot beat 50% between the two classes of a pair, while a temporal
model (TSM, W3) can.

Two modes (``SynthConfig.mode``):

``"classic"`` (default)
    16 classes (:data:`SYNTH_CLASSES`); the actor shares the frame with smaller, randomly wandering
    distractors on a textured, jittering background, and its bounding box is recorded in every frame.
``"www"`` (what-where-when)
    8 classes (:data:`WWW_CLASSES`), built so that attention is *needed* and each facet has ground truth:

    - WHAT: every object has an appearance (shape, colour, texture; :data:`APPEARANCES`). The actor always
      has ``config.actor_appearance``; the distractors have other appearances and perform the *same kinds of
      motion* (distractor 0 always performs the reversal partner of the actor's class), so only the actor's
      appearance tells which of the motions on screen is the label.
    - WHERE: the actor's per-frame box (``boxes.json``), from its rendered pixels.
    - WHEN: the actor moves only inside a random window ``[start, end)`` of frames and is still outside it
      (``windows.json``); the distractors move in windows of their own.

On disk (``root``), in the mmaction2 list format read by :class:`vidattn.data.ListDataset`::

    videos/<class>/<class>_<i>.avi   MPEG-4 Part 2 in AVI (like UCF-101), ``size`` x ``size``, fixed quantiser
    train.txt val.txt test.txt       "videos/<class>/<class>_<i>.avi <label>" per line
    classes.txt                      one class name per line (label = line number, 0-based)
    synth_actions.json               mode, config, classes, reversal_pairs, flip_pairs
                                     (www: also actor_appearance, appearances)
    boxes.json                       {video_id: [[x0, y0, x1, y1, alpha], ...] one per frame} (pixels)
    windows.json                     www only: {video_id: [start, end]} actor motion frames, end exclusive
    videos.json                      www only: {video_id: {"actor": appearance, "distractors": [appearance..],
                                     "distractor_motions": [class name..], "distractor_windows": [[s, e]..]}}

Defaults: 16 classes (8 reversal pairs) x 40 videos (www: 8 classes), 16 frames, 96x96, 12 fps; split
60/20/20 per class (24/8/8 videos per class: 384/128/128).
"""

from __future__ import annotations

import json
import logging
import multiprocessing as mp
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

log = logging.getLogger(__name__)

__all__ = [
    "SYNTH_CLASSES",
    "REVERSAL_PAIRS",
    "FLIP_PAIRS",
    "WWW_CLASSES",
    "WWW_REVERSAL_PAIRS",
    "WWW_FLIP_PAIRS",
    "SHAPES",
    "COLOURS",
    "TEXTURES",
    "APPEARANCES",
    "NUM_APPEARANCES",
    "SynthConfig",
    "WWWVideo",
    "appearance_index",
    "generate_synth_actions",
    "render_appearance_image",
    "render_video",
    "render_www_video",
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
_FLIPPED = {"move_right": "move_left", "rotate_clockwise": "rotate_counterclockwise"}


def _flip_pairs(classes: list[str]) -> list[tuple[int, int]]:
    return [(classes.index(a), classes.index(b)) for a, b in _FLIPPED.items() if a in classes]


FLIP_PAIRS = _flip_pairs(SYNTH_CLASSES)
WWW_CLASSES = SYNTH_CLASSES[:8]  # the motions a distractor can perform as well (same pairs as above)
WWW_REVERSAL_PAIRS = [(2 * i, 2 * i + 1) for i in range(len(WWW_CLASSES) // 2)]
WWW_FLIP_PAIRS = _flip_pairs(WWW_CLASSES)

SHAPES = ("disk", "square", "triangle", "ell")
# Four well-separated colours (RGB): the appearance stays recognisable after 4:2:0 video coding.
COLOURS = {"red": (220, 40, 40), "green": (40, 190, 70), "blue": (50, 90, 235), "yellow": (235, 210, 40)}
TEXTURES = ("solid", "stripes", "checker")
APPEARANCES = [(sh, c, tx) for sh in SHAPES for c in COLOURS for tx in TEXTURES]
NUM_APPEARANCES = len(APPEARANCES)  # 48


def appearance_index(shape: str, colour: str, texture: str) -> int:
    """Index of an appearance in :data:`APPEARANCES` (shape in :data:`SHAPES`, colour a :data:`COLOURS`
    name, texture in :data:`TEXTURES`)."""
    try:
        return APPEARANCES.index((shape, colour, texture))
    except ValueError:
        raise ValueError(f"unknown appearance {(shape, colour, texture)}; shapes {SHAPES}, colours "
                         f"{tuple(COLOURS)}, textures {TEXTURES}") from None


@dataclass(frozen=True)
class SynthConfig:
    """Generator parameters (all recorded in ``synth_actions.json``).

    ``num_classes`` defaults to every class of the mode (16 classic, 8 www). The ``www_*`` fields and
    ``actor_appearance`` only matter in ``mode="www"``: ``www_distractors`` objects besides the actor,
    ``www_window`` the range of the motion window length as a fraction of ``num_frames``.
    """

    num_classes: int | None = None
    videos_per_class: int = 40
    num_frames: int = 16
    size: int = 96
    fps: int = 12
    max_distractors: int = 3
    seed: int = 0
    split: tuple[float, float, float] = (0.6, 0.2, 0.2)
    qscale: int = 3
    mode: str = "classic"
    www_distractors: int = 2
    www_window: tuple[float, float] = (0.4, 0.6)
    #: object radius range as a fraction of ``size`` (actor, distractors and pretraining images)
    www_radius: tuple[float, float] = (0.10, 0.14)
    actor_appearance: int = appearance_index("square", "red", "checker")

    def __post_init__(self) -> None:
        if self.mode not in ("classic", "www"):
            raise ValueError(f"mode must be 'classic' or 'www'; got {self.mode!r}")
        classes = SYNTH_CLASSES if self.mode == "classic" else WWW_CLASSES
        if self.num_classes is None:
            object.__setattr__(self, "num_classes", len(classes))
        if self.num_classes % 2 or not 2 <= self.num_classes <= len(classes):
            raise ValueError(f"num_classes must be even, 2..{len(classes)} in mode {self.mode!r}; "
                             f"got {self.num_classes}")
        if self.num_frames < 4 or self.size < 32:
            raise ValueError("SynthActions needs num_frames >= 4 and size >= 32")
        if not 1 <= self.qscale <= 31:
            raise ValueError(f"qscale must be 1..31 (MPEG-4 quantiser); got {self.qscale}")
        lo, hi = self.www_window
        if not 0 < lo <= hi <= 1:
            raise ValueError(f"www_window must satisfy 0 < lo <= hi <= 1; got {self.www_window}")
        if self.www_distractors < 0:
            raise ValueError("www_distractors must be >= 0")
        if not 0 <= self.actor_appearance < NUM_APPEARANCES:
            raise ValueError(f"actor_appearance must be 0..{NUM_APPEARANCES - 1}")

    @property
    def classes(self) -> list[str]:
        return (SYNTH_CLASSES if self.mode == "classic" else WWW_CLASSES)[: self.num_classes]


def _config_json(cfg: SynthConfig | dict[str, Any]) -> dict[str, Any]:
    """The config as stored in ``synth_actions.json`` (tuples as lists)."""
    d = asdict(cfg) if isinstance(cfg, SynthConfig) else dict(cfg)
    return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


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
    shape = SHAPES[int(rng.integers(len(SHAPES)))]
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
            kind_other = "ring" if name == "cover_target" else SHAPES[int(rng.integers(len(SHAPES)))]
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
        objects.insert(0, _obj(n, shape=SHAPES[int(rng.integers(len(SHAPES)))], colour=_colour(rng),
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


def _background(size: int, rng: np.random.Generator, margin: int) -> np.ndarray:
    """A smooth random texture, larger than the frame by ``margin`` on every side (for camera jitter)."""
    side = size + 2 * margin
    coarse = rng.uniform(0, 1, size=(side // 8 + 2, side // 8 + 2, 3))
    idx = np.linspace(0, coarse.shape[0] - 1.001, side)
    i0, f = idx.astype(int), (idx - idx.astype(int))[:, None]
    rows = coarse[i0] * (1 - f[..., None]) + coarse[i0 + 1] * f[..., None]
    tex = rows[:, i0] * (1 - f[None, :, :]) + rows[:, i0 + 1] * f[None, :, :]
    base = rng.uniform(40, 150, size=3)
    stripes = 12 * np.sin(np.arange(side) / rng.uniform(2, 5))[None, :, None]
    return (base + rng.uniform(30, 70) * (tex - 0.5) + stripes).astype(np.float32)


def _texture_period(size: int) -> float:
    """Stripe period in pixels (checkers: 1.5x): 3.6 px at 48 px, never below 3 px (visible after coding)."""
    return max(3.0, 0.075 * size)


def _draw(
    img: np.ndarray, ob: dict[str, Any], i: int, xx: np.ndarray, yy: np.ndarray, period: float,
    paint: bool = True,
) -> np.ndarray:
    """Draw frame ``i`` of object ``ob`` onto ``img`` (float, in place) and return its pixel mask.

    The one object renderer of both modes and of :func:`render_appearance_image`. The texture (``ob``'s
    optional ``"texture"``, default solid) lives in the object's rotated local frame, in pixels, so a
    rotation turns the stripes with the object. ``paint=False`` only computes the mask."""
    x, y, r, a, al = ob["x"][i], ob["y"][i], ob["r"][i], ob["angle"][i], ob["alpha"][i]
    dx, dy = xx - x, yy - y
    pu = np.cos(a) * dx + np.sin(a) * dy  # rotated local coordinates, pixels
    pv = -np.sin(a) * dx + np.cos(a) * dy
    m = _mask(ob["shape"], pu / r, pv / r)
    texture = ob.get("texture", "solid")
    if paint and al > 0:
        colour = ob["colour"]
        if texture == "stripes":
            cells = np.floor(pu[m] / (period / 2))
        elif texture == "checker":  # 1.5x coarser: 2-px cells would read as noise after coding
            cells = np.floor(pu[m] / (0.75 * period)) + np.floor(pv[m] / (0.75 * period))
        if texture != "solid":
            colour = np.where((cells % 2 == 0)[:, None], colour, 0.3 * np.asarray(colour))
        img[m] = (1 - al) * img[m] + al * colour
    return m


def _render(
    objects: list[dict[str, Any]], actor_pos: int, cfg: SynthConfig, rng: np.random.Generator,
    paint_actor: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Frames ``uint8 (T, S, S, 3)`` and actor boxes ``(T, 5)`` of a scene, in generation (forward) order:
    objects drawn in list order on a jittering, flickering background."""
    n, s, margin = cfg.num_frames, cfg.size, 3
    bg = _background(cfg.size, rng, margin)
    shifts = rng.integers(0, 2 * margin + 1, size=(n, 2))
    gains = rng.uniform(0.95, 1.05, size=n)
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32) + 0.5
    period = _texture_period(s)
    frames = np.empty((n, s, s, 3), np.uint8)
    boxes = np.zeros((n, 5), np.float32)
    for i in range(n):
        img = bg[shifts[i, 0] : shifts[i, 0] + s, shifts[i, 1] : shifts[i, 1] + s] * gains[i]
        for j, ob in enumerate(objects):
            m = _draw(img, ob, i, xx, yy, period, paint=paint_actor or j != actor_pos)
            if j == actor_pos:
                x, y, r, al = ob["x"][i], ob["y"][i], ob["r"][i], ob["alpha"][i]
                ys, xs = np.nonzero(m)
                if len(xs):
                    boxes[i] = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1, al)
                else:
                    boxes[i] = (x - r, y - r, x + r, y + r, al)
        frames[i] = np.clip(img, 0, 255).astype(np.uint8)
    boxes[:, :4] = boxes[:, :4].clip(0, s)
    return frames, boxes


def render_video(kind: int, cfg: SynthConfig, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Frames ``uint8 (T, S, S, 3)`` and actor boxes ``(T, 5)`` = x0, y0, x1, y1, alpha of a class-``kind``
    video of ``cfg.mode``; odd (reversed) classes are rendered as their forward partner and played
    backwards. In www mode see :func:`render_www_video` for the rest of the ground truth."""
    if cfg.mode == "www":
        video = render_www_video(kind, cfg, rng)
        return video.frames, video.boxes
    objects, actor_pos = _scene(kind - kind % 2, cfg, rng)
    frames, boxes = _render(objects, actor_pos, cfg, rng)
    if kind % 2:
        frames, boxes = frames[::-1].copy(), boxes[::-1].copy()
    return frames, boxes


# ---------------------------------------------------------------- what-where-when mode

_REACH = 1.45  # an object's pixels stay within _REACH * r of its centre at any angle (the ell's corner)


class WWWVideo(NamedTuple):
    """One www-mode video and its ground truth (all in playback order, i.e. after reversal)."""

    frames: np.ndarray  # uint8 (T, S, S, 3)
    boxes: np.ndarray  # float32 (T, 5): actor x0, y0, x1, y1, alpha (pixels)
    window: np.ndarray  # int64 [start, end): frames where the actor moves; still before and after
    actor: int  # appearance index of the actor (= config.actor_appearance)
    distractors: list[int]  # appearance index per distractor (never the actor's)
    distractor_motions: list[str]  # class name of the motion each distractor performs
    distractor_windows: list[list[int]]  # [start, end) per distractor


def _window(n: int, fraction: tuple[float, float], rng: np.random.Generator) -> tuple[int, int]:
    """WHEN: a random window ``[start, end)`` whose length is a random ``fraction`` of ``n`` frames."""
    length = int(np.clip(round(rng.uniform(*fraction) * n), 2, n))
    start = int(rng.integers(0, n - length + 1))
    return start, start + length


def _motion(name: str, n: int, window: tuple[int, int], size: int, rng: np.random.Generator,
            radius_range: tuple[float, float] = (0.10, 0.14)) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Offsets from the start position, radius and angle per frame of one object performing motion
    ``name`` (any of :data:`WWW_CLASSES`, reversed ones included) inside ``window``, still outside it.
    Large enough to see at 32-48 px: moves of 35-55% of the frame, radius x1.8-2.5, 90-135 degrees."""
    start, end = window
    p = np.clip((np.arange(n) - start) / max(end - 1 - start, 1), 0.0, 1.0)
    r0 = rng.uniform(*radius_range) * size
    angle0 = rng.uniform(0, 2 * np.pi)
    ox, oy, radius, angle = np.zeros(n), np.zeros(n), np.full(n, r0), np.full(n, angle0)
    if name.startswith("move_"):
        axis = {"move_right": (1, 0), "move_left": (-1, 0), "move_down": (0, 1), "move_up": (0, -1)}[name]
        tilt = rng.uniform(-0.15, 0.15)
        ux = axis[0] * np.cos(tilt) - axis[1] * np.sin(tilt)
        uy = axis[0] * np.sin(tilt) + axis[1] * np.cos(tilt)
        span = size - 2 * _REACH * r0  # room for the centre
        dist = min(rng.uniform(0.35, 0.55) * size, 0.98 * span / max(abs(ux), abs(uy)))
        ox, oy = dist * ux * p, dist * uy * p
    elif name in ("grow", "shrink"):
        factor = rng.uniform(1.8, 2.5)
        small = r0 / np.sqrt(factor)  # r0 is the geometric mean of the two sizes
        radius = small * (1 + (factor - 1) * p) if name == "grow" else \
            small * factor * (1 - (1 - 1 / factor) * p)
    elif name in ("rotate_clockwise", "rotate_counterclockwise"):
        turn = rng.uniform(0.5, 0.75) * np.pi  # +angle is clockwise on screen (y points down)
        angle = angle0 + (turn if name == "rotate_clockwise" else -turn) * p
    else:
        raise ValueError(f"{name!r} is not a www motion; expected one of {WWW_CLASSES}")
    return ox, oy, radius, angle


def _place(ox: np.ndarray, oy: np.ndarray, radius: np.ndarray, placed: list[dict[str, Any]], size: int,
           rng: np.random.Generator, tries: int = 40) -> tuple[np.ndarray, np.ndarray]:
    """A start position keeping the whole trajectory inside the frame, rejection-sampled so that the object
    does not come closer to an already placed one than the sum of their radii (best try otherwise)."""
    reach = _REACH * radius.max()
    lo_x, hi_x = reach - ox.min(), size - reach - ox.max()
    lo_y, hi_y = reach - oy.min(), size - reach - oy.max()
    best, best_gap = None, -np.inf
    for _ in range(tries):
        x = ox + rng.uniform(lo_x, max(lo_x, hi_x))
        y = oy + rng.uniform(lo_y, max(lo_y, hi_y))
        gap = min((np.hypot(x - ob["x"], y - ob["y"]) - (radius + ob["r"])).min() for ob in placed) \
            if placed else 0.0
        if gap > best_gap:
            best, best_gap = (x, y), gap
        if gap >= 0:
            break
    assert best is not None
    return best


def _www_object(appearance: int, motion: str, cfg: SynthConfig, placed: list[dict[str, Any]],
                rng: np.random.Generator) -> tuple[dict[str, Any], tuple[int, int]]:
    window = _window(cfg.num_frames, cfg.www_window, rng)
    ox, oy, radius, angle = _motion(motion, cfg.num_frames, window, cfg.size, rng, cfg.www_radius)
    x, y = _place(ox, oy, radius, placed, cfg.size, rng)
    shape, colour, texture = APPEARANCES[appearance]
    ob = _obj(cfg.num_frames, shape=shape, colour=np.array(COLOURS[colour], np.float64), texture=texture,
              x=x, y=y, r=radius, angle=angle, alpha=1.0)
    return ob, window


def render_www_video(kind: int, cfg: SynthConfig, rng: np.random.Generator, *, paint_actor: bool = True
                     ) -> WWWVideo:
    """A www-mode video of class ``kind`` (index into :data:`WWW_CLASSES`) with its ground truth.

    The actor (appearance ``cfg.actor_appearance``) performs the class motion in its window; distractor 0
    performs the reversal partner's motion, the others random class motions, each in its own window and
    with a random appearance other than the actor's (WHAT: without looking at appearance, "right" and
    "left" are both on screen). The actor is drawn last, so it is never occluded and its box is its mask.
    Odd classes are generated as the even partner and played backwards (frames, boxes, windows, distractor
    motions). ``paint_actor=False`` renders the identical scene without the actor's pixels (same boxes),
    e.g. to check the ground truth against the pixels or for counterfactual inputs."""
    forward = kind - kind % 2
    classes = cfg.classes
    others = [a for a in range(NUM_APPEARANCES) if a != cfg.actor_appearance]
    actor, window = _www_object(cfg.actor_appearance, classes[forward], cfg, [], rng)
    placed, windows, motions, looks = [actor], [], [], []
    for d in range(cfg.www_distractors):
        motion = classes[forward + 1] if d == 0 else classes[int(rng.integers(len(classes)))]
        look = others[int(rng.integers(len(others)))]
        ob, w = _www_object(look, motion, cfg, placed, rng)
        placed.append(ob)
        windows.append(w)
        motions.append(motion)
        looks.append(look)
    objects = placed[1:] + [actor]
    frames, boxes = _render(objects, len(objects) - 1, cfg, rng, paint_actor=paint_actor)
    n = cfg.num_frames
    if kind % 2:
        frames, boxes = frames[::-1].copy(), boxes[::-1].copy()
        window = (n - window[1], n - window[0])
        windows = [(n - e, n - s) for s, e in windows]
        motions = [WWW_CLASSES[WWW_CLASSES.index(m) ^ 1] for m in motions]
    return WWWVideo(frames, boxes, np.array(window, np.int64), cfg.actor_appearance, looks, motions,
                    [list(w) for w in windows])


def render_appearance_image(appearance: int, size: int, rng: np.random.Generator,
                            radius: tuple[float, float] = (0.10, 0.14)) -> np.ndarray:
    """``uint8 (size, size, 3)``: one object of ``appearance`` (index into :data:`APPEARANCES`) at a random
    position and angle, radius a random fraction in ``radius`` of ``size`` (as ``SynthConfig.www_radius``),
    on a random background of the kind the videos use.

    For pretraining an appearance classifier ("ImageNet stand-in"): drawn by the same code as the videos."""
    if not 0 <= appearance < NUM_APPEARANCES:
        raise ValueError(f"appearance must be 0..{NUM_APPEARANCES - 1}; got {appearance}")
    img = _background(size, rng, 0)
    r = rng.uniform(*radius) * size
    x, y = rng.uniform(_REACH * r, size - _REACH * r, size=2)
    shape, colour, texture = APPEARANCES[appearance]
    ob = _obj(1, shape=shape, colour=np.array(COLOURS[colour], np.float64), texture=texture, x=x, y=y, r=r,
              angle=rng.uniform(0, 2 * np.pi), alpha=1.0)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    _draw(img, ob, 0, xx, yy, _texture_period(size))
    return np.clip(img, 0, 255).astype(np.uint8)


# ---------------------------------------------------------------- writing

FF_QP2LAMBDA = 118  # libavcodec's lambda per quantiser step


def _write_avi(path: Path, frames: np.ndarray, fps: int, qscale: int) -> None:
    """MPEG-4 Part 2 at a fixed quantiser ``qscale`` on every frame (constant quality along the clip).

    ``options={"qscale": ...}`` is ignored by PyAV's mpeg4 encoder, which then rate-controls (luma PSNR fell
    from 47 to 30 dB along a 16-frame clip). The fixed-qscale flag alone is not enough either: libavcodec
    takes a fixed-qscale frame's lambda from ``AVFrame.quality`` (the ffmpeg CLI copies ``global_quality``
    into every frame; PyAV leaves it 0, which clamps to ``qmin`` = 2), so ``qmin = qmax = qscale`` pins it."""
    import av

    with av.open(str(path), "w", format="avi") as out:
        stream = out.add_stream("mpeg4", rate=fps)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        cc = stream.codec_context
        cc.gop_size = 12
        cc.thread_count = 1
        cc.qscale = True  # AV_CODEC_FLAG_QSCALE: no rate control
        cc.global_quality = qscale * FF_QP2LAMBDA
        cc.qmin = cc.qmax = qscale
        for f in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def _job(args: tuple[int, int, SynthConfig, str]) -> tuple[str, list[list[float]], dict[str, Any] | None]:
    kind, i, cfg, root = args
    rng = np.random.default_rng([cfg.seed, kind, i])
    extra = None
    if cfg.mode == "www":
        video = render_www_video(kind, cfg, rng)
        frames, boxes = video.frames, video.boxes
        extra = {"window": video.window.tolist(), "actor": video.actor, "distractors": video.distractors,
                 "distractor_motions": video.distractor_motions,
                 "distractor_windows": video.distractor_windows}
    else:
        frames, boxes = render_video(kind, cfg, rng)
    name = cfg.classes[kind]
    rel = f"videos/{name}/{name}_{i:03d}.avi"
    _write_avi(Path(root) / rel, frames, cfg.fps, cfg.qscale)
    return rel, np.round(boxes, 2).tolist(), extra


def _write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, separators=(",", ":")))


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
    ``overwrite``. Keyword ``overrides`` replace config fields, e.g. ``videos_per_class=10`` or
    ``mode="www"`` (then ``num_classes`` defaults to the www classes unless given).
    """
    cfg = config or SynthConfig()
    if overrides:
        base = asdict(cfg)
        if overrides.get("mode", cfg.mode) != cfg.mode and "num_classes" not in overrides:
            base["num_classes"] = None  # the new mode's default
        cfg = SynthConfig(**{**base, **overrides})
    root = Path(root)
    meta_file = root / "synth_actions.json"
    www = cfg.mode == "www"
    classes = cfg.classes
    pairs = (WWW_REVERSAL_PAIRS if www else REVERSAL_PAIRS)[: cfg.num_classes // 2]
    meta: dict[str, Any] = {
        "format": "synth_actions/1", "mode": cfg.mode, "config": _config_json(cfg), "classes": classes,
        "reversal_pairs": [list(p) for p in pairs], "flip_pairs": [list(p) for p in _flip_pairs(classes)]}
    if www:
        meta["actor_appearance"] = cfg.actor_appearance
        meta["appearances"] = [list(a) for a in APPEARANCES]
    if meta_file.exists() and not overwrite:
        old = json.loads(meta_file.read_text())
        # Datasets written before a config field existed were generated with its default.
        old_config = {**_config_json(SynthConfig(num_classes=2)), **old.get("config", {})}
        if old_config == meta["config"]:
            log.info("SynthActions already generated in %s; reusing it", root)
            return root
        raise FileExistsError(f"{root}: holds SynthActions with another config; pass overwrite=True")
    for name in classes:
        (root / "videos" / name).mkdir(parents=True, exist_ok=True)
    jobs = [(k, i, cfg, str(root)) for k in range(cfg.num_classes) for i in range(cfg.videos_per_class)]
    workers = workers or os.cpu_count() or 1
    results: dict[str, tuple[list[list[float]], dict[str, Any] | None]] = {}
    from tqdm.auto import tqdm

    bar = tqdm(total=len(jobs), desc=f"SynthActions ({cfg.mode})", unit="video", disable=not progress)
    if workers > 1:
        ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else None)
        with ctx.Pool(workers) as pool:
            for rel, boxes, extra in pool.imap_unordered(_job, jobs, chunksize=8):
                results[rel] = boxes, extra
                bar.update()
    else:
        for job in jobs:
            rel, boxes, extra = _job(job)
            results[rel] = boxes, extra
            bar.update()
    bar.close()
    split_rng = np.random.default_rng([cfg.seed, 2**31 - 1])
    lines: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    n_train = round(cfg.split[0] * cfg.videos_per_class)
    n_val = round(cfg.split[1] * cfg.videos_per_class)
    for k, name in enumerate(classes):
        order = split_rng.permutation(cfg.videos_per_class)
        for rank, i in enumerate(order):
            part = "train" if rank < n_train else "val" if rank < n_train + n_val else "test"
            lines[part].append(f"videos/{name}/{name}_{i:03d}.avi {k}")
    for part, rows in lines.items():
        (root / f"{part}.txt").write_text("\n".join(sorted(rows)) + "\n")
    (root / "classes.txt").write_text("\n".join(classes) + "\n")
    ids = {rel: os.path.splitext(rel)[0] for rel in sorted(results)}
    _write_json(root / "boxes.json", {vid: results[rel][0] for rel, vid in ids.items()})
    for stale in ("windows.json", "videos.json"):  # a www dataset overwritten by a classic one
        (root / stale).unlink(missing_ok=True)
    if www:
        extras = {vid: dict(results[rel][1]) for rel, vid in ids.items()}  # type: ignore[arg-type]
        _write_json(root / "windows.json", {vid: e.pop("window") for vid, e in extras.items()})
        _write_json(root / "videos.json", extras)
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
