"""Video decoding: one reader interface over PyAV (default), frame folders, decord and torchcodec; frames in
order as they decode from a file, folder, capture device or network stream (`FrameStream`, for
`vidattn stream`); and writing (`write_video`: GIF, MP4, AVI; `VideoWriter`: MP4/AVI frame by frame;
`default_font` for text drawn on frames).

Every reader exposes ``num_frames``, ``fps``, ``height``, ``width`` and ``read(indices)``, which returns
``uint8 (len(indices), H, W, 3)`` RGB frames, and works as a context manager.

Frame-index semantics: index ``i`` is the ``i``-th frame in presentation order (0-based), whatever the
timestamps are. For variable-frame-rate files this means indices are *frames*, not time; ``fps`` is the
container's average rate and only a hint. Display rotation metadata (multiples of 90 degrees) is
applied, so ``height``/``width`` describe the frames as displayed.

Errors are :class:`VideoError` with a one-line message naming the file and the cause.
"""

from __future__ import annotations

import bisect
import logging
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

__all__ = ["VideoError", "VideoReader", "PyAVReader", "FrameFolderReader", "open_video", "BACKENDS", "source_kind",
           "SourceFrame", "FrameStream", "write_video", "VideoWriter", "default_font"]


class VideoError(Exception):
    """A video or frame folder cannot be read; the message names the file and the cause."""

    def __init__(self, path: str | os.PathLike, cause: str) -> None:
        self.path = str(path)
        self.cause = " ".join(str(cause).split())  # always one line
        super().__init__(f"{self.path}: {self.cause}")


class VideoReader:
    """Base class: subclasses set the four properties and implement ``_read``."""

    path: str
    num_frames: int
    fps: float
    height: int
    width: int

    def read(self, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        """Frames at ``indices`` (any order, repeats allowed) as ``uint8 (len, H, W, 3)`` RGB."""
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        if idx.size == 0:
            return np.zeros((0, self.height, self.width, 3), np.uint8)
        if idx.min() < 0 or idx.max() >= self.num_frames:
            raise VideoError(
                self.path,
                f"frame index out of range: asked for {int(idx.min())}..{int(idx.max())}, "
                f"video has {self.num_frames} frames",
            )
        unique, inverse = np.unique(idx, return_inverse=True)
        frames = self._read(unique.tolist())
        return frames[inverse]

    def _read(self, sorted_unique: list[int]) -> np.ndarray:
        raise NotImplementedError

    def close(self) -> None:
        """Release the file handle (idempotent)."""

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.path!r}, frames={self.num_frames}, "
            f"{self.width}x{self.height}, fps={self.fps:.3g})"
        )


def _rotate(rgb: np.ndarray, rotation: int) -> np.ndarray:
    """Apply a display rotation (degrees counter-clockwise, FFmpeg's display-matrix convention)."""
    k = (rotation // 90) % 4
    return np.ascontiguousarray(np.rot90(rgb, k=k)) if k else rgb


def _frame_rgb(frame: Any) -> np.ndarray:
    """A decoded PyAV frame as displayed: uint8 (H, W, 3) RGB, display rotation applied."""
    return _rotate(frame.to_ndarray(format="rgb24"), int(getattr(frame, "rotation", 0) or 0))


class PyAVReader(VideoReader):
    """PyAV (FFmpeg) reader with keyframe-seeking random access.

    On open, the packets are demuxed (no decoding) to build a presentation-order index of timestamps and
    keyframes. ``read`` then either decodes sequentially from the start (short files, dense requests, or
    files whose timestamps cannot be trusted) or seeks to the keyframe before each wanted frame and
    decodes forward. Both paths return identical pixels for the same indices.

    Args:
        path: video file.
        threads: decoder threads (0 = FFmpeg's choice). Defaults to 1, which is best inside DataLoader
            workers; raise it when decoding in the main process.
        seek_threshold: files with at most this many frames are always decoded sequentially.
    """

    def __init__(self, path: str | os.PathLike, threads: int = 1, seek_threshold: int = 64) -> None:
        import av

        self.path = str(path)
        self._av = av
        self.seek_threshold = seek_threshold
        self._container = None
        if not os.path.isfile(self.path):
            raise VideoError(self.path, "no such file" if not os.path.exists(self.path) else "not a file")
        if os.path.getsize(self.path) == 0:
            raise VideoError(self.path, "empty file (0 bytes)")
        try:
            self._container = av.open(self.path, metadata_errors="ignore")
        except (av.FFmpegError, UnicodeDecodeError, ValueError) as e:
            raise VideoError(self.path, f"not a readable media file ({_short(e)})") from None
        try:
            self._init_stream(threads)
        except BaseException:
            self.close()
            raise

    def _init_stream(self, threads: int) -> None:
        av = self._av
        streams = self._container.streams.video
        if not streams:
            kinds = sorted({s.type for s in self._container.streams})
            raise VideoError(self.path, f"no video stream (streams: {', '.join(kinds) or 'none'})")
        stream = streams[0]
        self._stream_index = stream.index
        ctx = stream.codec_context
        ctx.thread_count = threads
        if threads != 1:
            ctx.thread_type = "AUTO"
        pts_list: list[int] = []
        key_pts: list[int] = []
        usable = True
        try:
            for packet in self._container.demux(stream):
                if packet.size == 0:  # flush packet at EOF
                    continue
                if packet.pts is None:
                    usable = False
                    pts_list.append(len(pts_list))
                    continue
                pts_list.append(packet.pts)
                if packet.is_keyframe:
                    key_pts.append(packet.pts)
        except av.FFmpegError as e:
            raise VideoError(self.path, f"corrupt or truncated container ({_short(e)})") from None
        if not pts_list:
            raise VideoError(self.path, "video stream has zero frames")
        order = sorted(pts_list)
        if len(set(order)) != len(order):
            usable = False
        self._pts = order
        self._pts_to_index = {p: i for i, p in enumerate(order)}
        self._key_indices = sorted(self._pts_to_index[p] for p in key_pts if p in self._pts_to_index)
        self._seekable = usable and bool(self._key_indices)
        self.num_frames = len(order)
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        self.fps = float(rate) if rate else 0.0
        self._time_base = stream.time_base or Fraction(1, 1)
        # Decode the first frame: proves the codec works and gives the displayed size and rotation.
        first = self._decode_sequential([0])
        self.height, self.width = first.shape[1:3]
        self._first = first

    def _frames_from(self, container: Any) -> Any:
        return container.decode(container.streams[self._stream_index])

    def _decode_sequential(self, wanted: list[int]) -> np.ndarray:
        av = self._av
        out: list[np.ndarray] = []
        want_pos = 0
        decoded = 0
        stream = self._container.streams[self._stream_index]
        self._container.seek(0, backward=True, any_frame=False, stream=stream)
        try:
            for i, frame in enumerate(self._frames_from(self._container)):
                decoded = i + 1
                if i == wanted[want_pos]:
                    out.append(_frame_rgb(frame))
                    want_pos += 1
                    if want_pos == len(wanted):
                        break
        except av.FFmpegError as e:
            raise VideoError(self.path, f"decoding failed near frame {len(out)} ({_short(e)})") from None
        if want_pos != len(wanted):
            raise VideoError(
                self.path,
                f"truncated: the container lists {self.num_frames} frames, only {decoded} decode",
            )
        return np.stack(out)

    def _decode_seeking(self, wanted: list[int]) -> np.ndarray | None:
        """Keyframe-seek path; returns None if the timestamps turn out unreliable (caller falls back)."""
        av = self._av
        stream = self._container.streams[self._stream_index]
        out: dict[int, np.ndarray] = {}
        position = None  # index of the next frame the decoder will produce, when known
        frames_iter = None
        for target in wanted:
            if target in out:
                continue
            key = self._key_indices[max(bisect.bisect_right(self._key_indices, target) - 1, 0)]
            if position is None or target < position or key > position:
                self._container.seek(self._pts[key], backward=True, any_frame=False, stream=stream)
                frames_iter = self._frames_from(self._container)
                position = None
            try:
                for frame in frames_iter:
                    if frame.pts is None or frame.pts not in self._pts_to_index:
                        return None
                    index = self._pts_to_index[frame.pts]
                    position = index + 1
                    if index == target:
                        out[target] = _frame_rgb(frame)
                        break
                    if index > target:
                        return None
            except av.FFmpegError as e:
                raise VideoError(self.path, f"decoding failed near frame {target} ({_short(e)})") from None
            if target not in out:
                return None
        return np.stack([out[i] for i in wanted])

    def _read(self, sorted_unique: list[int]) -> np.ndarray:
        if sorted_unique == [0] and getattr(self, "_first", None) is not None:
            return self._first.copy()
        sequential = (
            not self._seekable
            or self.num_frames <= self.seek_threshold
            or len(sorted_unique) * 4 >= self.num_frames  # dense request: one pass is cheaper
        )
        if not sequential:
            frames = self._decode_seeking(sorted_unique)
            if frames is not None:
                return frames
            log.debug("%s: timestamps unreliable for seeking; decoding sequentially", self.path)
            self._seekable = False
        return self._decode_sequential(sorted_unique)

    def read_sequential(self, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        """Like ``read`` but always decodes from the start (reference path, used in tests)."""
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        unique, inverse = np.unique(idx, return_inverse=True)
        return self._decode_sequential(unique.tolist())[inverse]

    def read_seeking(self, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        """Like ``read`` but always uses keyframe seeking (VideoError if the file does not allow it)."""
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        unique, inverse = np.unique(idx, return_inverse=True)
        frames = self._decode_seeking(unique.tolist()) if self._seekable else None
        if frames is None:
            raise VideoError(self.path, "container timestamps do not allow frame-accurate seeking")
        return frames[inverse]

    def close(self) -> None:
        if self._container is not None:
            self._container.close()
            self._container = None


def _short(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return text[:200]


_FIELD = re.compile(r"\{[^{}]*\}|%0?\d*d")


class FrameFolderReader(VideoReader):
    """A folder of JPEG/PNG frames named by ``frame_template`` from ``start_index``.

    ``frame_template`` is a ``str.format`` pattern (``"{:05d}.jpg"``, ``"img_{:05d}.jpg"``,
    ``"frame_{:010d}.jpg"``) or printf style (``"%05d.jpg"``). ``num_frames`` is the number of files
    matching the template unless given (mmaction2 lists give it); a missing frame inside that range is an
    error naming the first missing file. Images are decoded with Pillow (which executes nothing).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        frame_template: str = "{:05d}.jpg",
        start_index: int = 1,
        num_frames: int | None = None,
        fps: float = 30.0,
    ) -> None:
        self.path = str(path)
        self.template = _to_format(frame_template)
        self.start_index = start_index
        self.fps = float(fps)
        if not os.path.isdir(self.path):
            raise VideoError(self.path, "frame folder does not exist" if not os.path.exists(self.path)
                             else "not a directory")
        names = set(os.listdir(self.path))
        if num_frames is None:
            pattern = _template_regex(self.template)
            num_frames = sum(1 for n in names if pattern.fullmatch(n))
        if num_frames <= 0:
            raise VideoError(self.path, f"no frames matching {self.template!r} (other file names need a frame "
                             "template, e.g. 'img_{:05d}.jpg' or 'img_%05d.jpg')")
        for i in range(num_frames):
            name = self.template.format(start_index + i)
            if name not in names:
                raise VideoError(self.path, f"frame {name} missing (gap in a {num_frames}-frame folder)")
        self.num_frames = num_frames
        first = self._load(0)
        self.height, self.width = first.shape[:2]

    def _load(self, i: int) -> np.ndarray:
        from PIL import Image, UnidentifiedImageError

        file = os.path.join(self.path, self.template.format(self.start_index + i))
        try:
            with Image.open(file) as img:
                rgb = np.asarray(img.convert("RGB"))
        except (OSError, UnidentifiedImageError, ValueError) as e:
            raise VideoError(file, f"cannot decode image ({_short(e)})") from None
        return rgb

    def _read(self, sorted_unique: list[int]) -> np.ndarray:
        frames = [self._load(i) for i in sorted_unique]
        shapes = {f.shape for f in frames}
        if len(shapes) > 1:
            raise VideoError(self.path, f"frames have different sizes: {sorted(shapes)}")
        return np.stack(frames)


def _to_format(template: str) -> str:
    """Accept printf-style ``%05d`` templates too; return a ``str.format`` template."""
    if "{" in template:
        return template
    return re.sub(r"%(0?\d*)d", lambda m: "{:" + m.group(1) + "d}", template, count=1)


def _template_regex(template: str) -> re.Pattern[str]:
    parts = _FIELD.split(template, maxsplit=1)
    if len(parts) != 2:
        raise ValueError(f"frame template {template!r} needs one integer field such as {{:05d}}")
    return re.compile(re.escape(parts[0]) + r"\d+" + re.escape(parts[1]))


class DecordReader(VideoReader):
    """decord backend (optional; used only when ``decord`` is installed)."""

    def __init__(self, path: str | os.PathLike, threads: int = 1) -> None:
        try:
            import decord
        except ImportError:
            raise VideoError(path, "backend 'decord' requested but decord is not installed") from None
        self.path = str(path)
        if not os.path.isfile(self.path):
            raise VideoError(self.path, "no such file")
        try:
            self._vr = decord.VideoReader(self.path, num_threads=threads)
        except decord.DECORDError as e:
            raise VideoError(self.path, f"decord cannot open it ({_short(e)})") from None
        self.num_frames = len(self._vr)
        if self.num_frames == 0:
            raise VideoError(self.path, "video stream has zero frames")
        self.fps = float(self._vr.get_avg_fps())
        self.height, self.width = self._vr[0].shape[:2]

    def _read(self, sorted_unique: list[int]) -> np.ndarray:
        return self._vr.get_batch(sorted_unique).asnumpy()

    def close(self) -> None:
        self._vr = None


class TorchCodecReader(VideoReader):
    """torchcodec backend (optional; used only when ``torchcodec`` is installed)."""

    def __init__(self, path: str | os.PathLike) -> None:
        try:
            from torchcodec.decoders import VideoDecoder
        except ImportError:
            raise VideoError(path, "backend 'torchcodec' requested but torchcodec is not installed") from None
        self.path = str(path)
        if not os.path.isfile(self.path):
            raise VideoError(self.path, "no such file")
        try:
            self._dec = VideoDecoder(self.path, dimension_order="NHWC")
        except (RuntimeError, ValueError) as e:
            raise VideoError(self.path, f"torchcodec cannot open it ({_short(e)})") from None
        meta = self._dec.metadata
        self.num_frames = int(meta.num_frames or 0)
        if self.num_frames == 0:
            raise VideoError(self.path, "video stream has zero frames")
        self.fps = float(meta.average_fps or 0.0)
        self.height, self.width = int(meta.height), int(meta.width)

    def _read(self, sorted_unique: list[int]) -> np.ndarray:
        return self._dec.get_frames_at(sorted_unique).data.numpy()

    def close(self) -> None:
        self._dec = None


BACKENDS = {"pyav": PyAVReader, "decord": DecordReader, "torchcodec": TorchCodecReader}


def open_video(path: str | os.PathLike, backend: str = "pyav", **kw: Any) -> VideoReader:
    """Open a video file, or a frame folder when ``path`` is a directory.

    Args:
        path: video file (any container/codec FFmpeg reads) or folder of frames.
        backend: ``"pyav"`` (default), ``"decord"`` or ``"torchcodec"``; ignored for frame folders.
        **kw: reader options, e.g. ``threads`` for PyAV, or ``frame_template="{:05d}.jpg"``,
            ``start_index=1``, ``num_frames`` for frame folders.

    Raises:
        VideoError: naming the file and the cause.
    """
    path = Path(path)
    if path.is_dir():
        return FrameFolderReader(path, **kw)
    if backend not in BACKENDS:
        raise ValueError(f"unknown video backend {backend!r}; choose one of {sorted(BACKENDS)}")
    for key in ("frame_template", "start_index", "num_frames"):
        kw.pop(key, None)  # frame-folder options passed by a generic dataset
    return BACKENDS[backend](path, **kw)


# ----------------------------------------------------------------------------------------------------------
# sequential decoding of files, frame folders, capture devices and network streams

#: a network stream: any ``scheme://`` FFmpeg has a protocol for (rtsp, rtmp, http(s), udp, tcp, srt, ...)
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def source_kind(source: str | os.PathLike) -> str:
    """What a ``vidattn stream`` SOURCE string names: ``"url"`` (``scheme://...``), ``"device"`` (a V4L2
    capture device, ``/dev/videoN``), ``"folder"`` (a directory of frames) or ``"file"`` (anything else)."""
    text = str(source)
    if _URL.match(text):
        return "url"
    if text.startswith("/dev/video"):
        return "device"
    return "folder" if os.path.isdir(text) else "file"


@dataclass(frozen=True)
class SourceFrame:
    """One decoded frame of a :class:`FrameStream`: its index in decoding order (0-based), its timestamp in
    the source (seconds; ``index / fps`` where the source has none) and its pixels, uint8 ``(H, W, 3)`` RGB."""

    index: int
    time: float
    rgb: np.ndarray


class FrameStream:
    """The frames of a source in order, one at a time, as they decode: what ``vidattn stream`` reads.

    ``source``: a video file, a frame folder (files named by ``frame_template`` from ``start_index``, read
    as :class:`FrameFolderReader` reads them; ``fps`` its frame rate, default 30), a V4L2 capture device
    (``/dev/video0``: FFmpeg's ``v4l2`` input) or a network stream URL (``rtsp://``, ``http(s)://``,
    ``udp://``, ...). Files, devices and URLs are one path: ``av.open`` with the input format (``v4l2`` for a
    device, else probed) and, for devices and URLs, ``timeout`` seconds to open and to wait for data. ``live``:
    a device or URL (the source, not the reader, sets the pace).

    Opening and every frame raise :class:`VideoError` naming the source and the cause: a file that decodes
    fewer frames than its container lists is truncated, one that fails to decode says after which frame.
    """

    def __init__(self, source: str | os.PathLike, *, timeout: float = 10.0, frame_template: str | None = None,
                 start_index: int = 1, fps: float | None = None) -> None:
        self.source = str(source)
        self.kind = source_kind(self.source)
        self.live = self.kind in ("url", "device")
        self._container: Any = None
        self._folder: FrameFolderReader | None = None
        if self.kind == "folder":
            self._folder = FrameFolderReader(self.source, frame_template or "{:05d}.jpg", start_index,
                                             fps=fps or 30.0)
            self.fps = self._folder.fps
            return
        if self.kind == "file" and not os.path.isfile(self.source):
            raise VideoError(self.source, "no such file" if not os.path.exists(self.source) else "not a file")
        import av

        self._av = av
        try:
            self._container = av.open(self.source, format="v4l2" if self.kind == "device" else None,
                                      timeout=timeout if self.live else None, metadata_errors="ignore")
        except (av.FFmpegError, OSError, UnicodeDecodeError, ValueError) as e:
            what = "cannot open the stream" if self.live else "not a readable media file"
            raise VideoError(self.source, f"{what} ({_short(e)})") from None
        if not self._container.streams.video:
            self.close()
            raise VideoError(self.source, "no video stream")
        self._stream = self._container.streams.video[0]
        self._stream.codec_context.thread_count = 1  # the cores are the model's
        rate = self._stream.average_rate or self._stream.guessed_rate or self._stream.base_rate
        self.fps = fps or (float(rate) if rate else 0.0) or 30.0

    def __iter__(self) -> Iterator[SourceFrame]:
        if self._folder is not None:
            for i in range(self._folder.num_frames):
                yield SourceFrame(i, i / self.fps, self._folder.read([i])[0])
            return
        av, index, packets = self._av, 0, 0
        try:
            for packet in self._container.demux(self._stream):
                packets += packet.size > 0
                for frame in packet.decode():
                    time = frame.time if frame.time is not None else index / self.fps
                    yield SourceFrame(index, float(time), _frame_rgb(frame))
                    index += 1
        except (av.FFmpegError, OSError) as e:
            raise VideoError(self.source, f"decoding failed after {index} frames ({_short(e)})") from None
        listed = self._stream.frames
        if self.kind == "file" and listed and packets < listed:
            raise VideoError(self.source, f"truncated: the container lists {listed} frames, the file holds {packets}"
                                          f" ({index} decoded)")

    def close(self) -> None:
        """Release the file, device or connection (idempotent)."""
        if self._container is not None:
            self._container.close()
            self._container = None

    def __enter__(self) -> FrameStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ----------------------------------------------------------------------------------------------------------
# writing


def write_video(frames: Sequence[np.ndarray] | np.ndarray, path: str | os.PathLike, fps: float = 8.0) -> Path:
    """Write uint8 RGB frames ``(T, H, W, 3)``: ``.gif`` with Pillow (looping), ``.mp4`` / ``.avi`` with
    :class:`VideoWriter`. Returns the path."""
    path = Path(path)
    frames = [np.ascontiguousarray(f, dtype=np.uint8) for f in frames]
    if not frames:
        raise ValueError(f"{path}: no frames to write")
    if path.suffix.lower() not in (".gif", ".mp4", ".avi"):
        raise ValueError(f"{path}: unsupported video extension {path.suffix.lower()!r}; use .gif, .mp4 or .avi")
    if path.suffix.lower() == ".gif":
        from PIL import Image

        path.parent.mkdir(parents=True, exist_ok=True)
        images = [Image.fromarray(f) for f in frames]
        images[0].save(path, save_all=True, append_images=images[1:], duration=round(1000 / fps), loop=0)
        return path
    with VideoWriter(path, fps) as writer:
        for f in frames:
            writer.write(f)
    return path


class VideoWriter:
    """Frames appended one at a time to ``.mp4`` (H.264) or ``.avi`` (MPEG-4 Part 2), with PyAV; odd sizes are
    padded to even (yuv420p). The file is created at the first frame, and ``close`` (or leaving the ``with``
    block, also on an exception) flushes the encoder and writes the index, so it plays after any number of
    frames; ``frames`` counts them."""

    def __init__(self, path: str | os.PathLike, fps: float) -> None:
        self.path = Path(path)
        self.ext = self.path.suffix.lower()
        if self.ext not in (".mp4", ".avi"):
            raise ValueError(f"{self.path}: unsupported video extension {self.ext!r}; use .mp4 or .avi")
        self.fps = fps
        self.frames = 0
        self._out: Any = None
        self._stream: Any = None
        self._size: tuple[int, int] = (0, 0)

    def write(self, frame: np.ndarray) -> None:
        """Append one uint8 ``(H, W, 3)`` RGB frame (every frame the size of the first)."""
        import av

        frame = np.ascontiguousarray(frame, dtype=np.uint8)
        h, w = frame.shape[:2]
        if self._out is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._out = av.open(str(self.path), "w")
            rate = Fraction(self.fps).limit_denominator(1000)
            self._stream = self._out.add_stream("libx264" if self.ext == ".mp4" else "mpeg4", rate=rate)
            self._stream.width, self._stream.height, self._stream.pix_fmt = w + w % 2, h + h % 2, "yuv420p"
            if self.ext == ".mp4":
                self._stream.options = {"crf": "20", "preset": "veryfast"}
            self._stream.codec_context.thread_count = 1
            self._size = (h, w)
        if (h, w) != self._size:
            raise ValueError(f"{self.path}: frame {self.frames} is {w}x{h}, the video {self._size[1]}x{self._size[0]}")
        if h % 2 or w % 2:
            frame = np.pad(frame, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
        self._out.mux(self._stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        self.frames += 1

    def close(self) -> None:
        """Flush the encoder and close the file (idempotent)."""
        if self._out is not None:
            try:
                self._out.mux(self._stream.encode())
            finally:
                self._out.close()
                self._out = None

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def default_font(px: int) -> Any:
    """Pillow's built-in font at `px` pixels (a bitmap font on Pillow < 10.1)."""
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=px)  # Pillow >= 10.1: a scalable built-in font
    except TypeError:
        return ImageFont.load_default()
