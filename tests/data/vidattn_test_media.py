"""Helpers that encode real media for the data tests (PyAV), in the formats the datasets ship."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
from PIL import Image

H264 = "libx264" if "libx264" in av.codecs_available else "h264"

# name -> (container suffix, codec, pixel format, extra codec options)
FORMATS = {
    "avi_xvid": (".avi", "mpeg4", "yuv420p", {"qscale": "2"}),  # UCF-101 style
    "webm_vp9": (".webm", "libvpx-vp9", "yuv420p", {"crf": "10", "b": "0", "deadline": "realtime"}),
    "mp4_h264": (".mp4", H264, "yuv420p", {"crf": "12", "preset": "ultrafast"}),
}


def level(i: int) -> int:
    """Grey level that identifies frame ``i`` (steps of 7 survive lossy coding; wraps after 35 frames)."""
    return 10 + 7 * (i % 35)


def frame_pattern(i: int, height: int, width: int) -> np.ndarray:
    """Frame ``i``: a flat grey level ``level(i)`` (identifies the frame after lossy coding) and a red bar."""
    img = np.full((height, width, 3), level(i), np.uint8)
    img[: height // 4, : width // 4] = (200, 30, 30)  # top-left marker: orientation check
    return img


def encode(
    path: Path,
    frames: np.ndarray,
    fmt: str = "avi_xvid",
    fps: int = 25,
    gop: int = 8,
    rotation: int | None = None,
    pts: list[int] | None = None,
) -> Path:
    """Write ``frames`` (T,H,W,3 uint8) with PyAV in the given format; ``pts`` gives VFR timestamps."""
    suffix, codec, pix_fmt, options = FORMATS[fmt]
    path = Path(path).with_suffix(suffix)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=fps, options=dict(options))
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = pix_fmt
        stream.codec_context.gop_size = gop
        if codec == "mpeg4":
            stream.codec_context.max_b_frames = 0
        if rotation is not None:
            stream.set_display_rotation(rotation)
        for i, f in enumerate(frames):
            vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")
            if pts is not None:
                vf.pts = pts[i]
            for packet in stream.encode(vf):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def pattern_video(path: Path, n: int = 24, height: int = 48, width: int = 64, **kw) -> Path:
    frames = np.stack([frame_pattern(i, height, width) for i in range(n)])
    return encode(path, frames, **kw)


def frame_folder(path: Path, n: int, height: int = 48, width: int = 64, template: str = "{:05d}.jpg",
                 start: int = 1) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.fromarray(frame_pattern(i, height, width)).save(path / template.format(start + i), quality=95)
    return path
