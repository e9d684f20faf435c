"""`vidattn stream`: online action recognition of a video file, frame folder, webcam or network stream, one
frame at a time (issue 12).

A background thread decodes the source (:class:`vidattn.data.video.FrameStream`) into a bounded
:class:`FrameQueue`; the calling thread takes one frame at a time, gives it to an online recognizer
(:class:`vidattn.online.OnlineRecognizer`: per-frame logits of a causal model, and the running video-level
prediction, the mean of the frames' softmax so far as in the TSN/W3 consensus) and emits one record per frame;
optionally it writes an annotated MP4 of the frames as the model saw them (resized and centre-cropped by the
model's input spec), the running top-1 label drawn on each and, for models with spatial attention, the last
block's spatial mask overlaid (`vidattn.analysis.visualize.overlay`, colour scale: the running min..max of the
masks so far).

Queue policy (``realtime``):
- realtime (live sources, webcam and URL, always; files and folders when asked): the reader keeps the source's
  pace (it waits until each frame's timestamp, measured from the first frame; a live source sets its own pace)
  and never waits for the model: when the queue is full, the oldest queued frame is dropped to make room
  (drop-oldest), so the model always works on the newest frames, is never more than the queue behind real time,
  and every dropped frame is counted (``dropped`` in each record and in the summary);
- otherwise (files and folders by default): the reader waits for room and every frame is processed.
Frames still queued when a stream is stopped count as dropped, so ``processed + dropped == decoded``.

A stream ends when the source ends, after ``max_frames`` source frames, when ``stop`` is set (``vidattn
stream``: Ctrl-C, :func:`stop_on_sigint`), or when the source fails (``StreamSummary.error``: one line naming
the source and the problem; what was processed until then is in the summary). In every case the reader thread
is stopped and the MP4 closed (complete and playable).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from vidattn.analysis.visualize import aggregate_maps, denormalize, overlay
from vidattn.data.video import FrameStream, SourceFrame, VideoError, VideoWriter, source_kind
from vidattn.predict import annotate_frames, topk_labels

logger = logging.getLogger(__name__)

__all__ = ["FrameQueue", "StreamSummary", "run_stream", "check_source", "stop_on_sigint"]

#: a realtime reader more than this far ahead of a frame's timestamp takes it as a jump in the source's clock
#: and restarts its schedule there, instead of sleeping through the gap
_MAX_AHEAD_S = 2.0


class FrameQueue:
    """The bounded queue between the decoding thread and the model. ``drop_oldest``: a full queue drops its
    oldest frame for the new one (counted in ``dropped``); otherwise ``put`` waits for room."""

    def __init__(self, maxsize: int, drop_oldest: bool) -> None:
        if maxsize < 1:
            raise ValueError(f"queue size must be >= 1, got {maxsize}")
        self.maxsize = maxsize
        self.drop_oldest = drop_oldest
        self.dropped = 0
        self._items: deque[Any] = deque()
        self._cond = threading.Condition(threading.Lock())
        self._ended = False
        self._cancelled = False

    def put(self, item: Any) -> bool:  # noqa: ANN401
        """Queue ``item`` (producer); once the consumer has cancelled, count it as dropped and return False."""
        with self._cond:
            while not self.drop_oldest and len(self._items) >= self.maxsize and not self._cancelled:
                self._cond.wait()
            if self._cancelled:
                self.dropped += 1
                return False
            if len(self._items) >= self.maxsize:
                self._items.popleft()
                self.dropped += 1
            self._items.append(item)
            self._cond.notify_all()
            return True

    def end(self) -> None:
        """No more items (producer): ``get`` returns None once the queue is empty."""
        with self._cond:
            self._ended = True
            self._cond.notify_all()

    def get(self, timeout: float) -> Any:  # noqa: ANN401
        """The oldest item; None when ended and empty; ``FrameQueue.EMPTY`` after ``timeout`` seconds without one."""
        with self._cond:
            if not self._items and not self._ended:
                self._cond.wait(timeout)
            if self._items:
                item = self._items.popleft()
                self._cond.notify_all()
                return item
            return None if self._ended else FrameQueue.EMPTY

    def cancel(self) -> None:
        """The consumer stops: the frames still queued count as dropped and the producer's ``put`` returns False."""
        with self._cond:
            self._cancelled = True
            self.dropped += len(self._items)
            self._items.clear()
            self._cond.notify_all()

    EMPTY = object()


class _Reader(threading.Thread):
    """Decodes the source into the queue: paced by the frames' timestamps when ``realtime``, at most
    ``max_frames`` frames; an error of the source is kept in ``error`` and ends the queue like its end."""

    def __init__(self, source: str, queue: FrameQueue, realtime: bool, max_frames: int | None,
                 stream_options: dict[str, Any]) -> None:
        super().__init__(name=f"vidattn-stream-reader({source})", daemon=True)
        self.source, self.queue, self.realtime, self.max_frames = source, queue, realtime, max_frames
        self.stream_options = stream_options
        self.decoded = 0
        self.fps = 0.0
        self.error: VideoError | None = None
        self.failure: BaseException | None = None  # anything else: a bug, re-raised in the consumer
        self.halt = threading.Event()

    def run(self) -> None:
        try:
            with FrameStream(self.source, **self.stream_options) as frames:
                self.fps = frames.fps
                origin = None  # the monotonic time of timestamp 0
                for frame in frames:
                    if self.realtime:
                        now = time.monotonic()
                        if origin is None or origin + frame.time - now > _MAX_AHEAD_S:
                            origin = now - frame.time
                        if self.halt.wait(max(0.0, origin + frame.time - now)):
                            break
                    self.decoded += 1
                    if not self.queue.put(frame):
                        break
                    if self.max_frames is not None and self.decoded >= self.max_frames:
                        break
        except VideoError as e:
            self.error = e
        except BaseException as e:  # noqa: BLE001 (handed to the consumer thread)
            self.failure = e
        finally:
            self.queue.end()


@dataclass
class StreamSummary:
    """What a stream did: frames ``decoded`` from the source, ``processed`` by the model, ``dropped`` by the
    queue (``processed + dropped == decoded``), each step's latency, the wall time from the first frame taken
    to the last result, the final running prediction (top-k), how it ended (``"end"``, ``"max_frames"``,
    ``"stopped"``, ``"error"``) and, for a source that failed, ``error``: one line naming it and the problem."""

    source: str
    decoded: int = 0
    processed: int = 0
    dropped: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    seconds: float = 0.0
    final: list[dict[str, Any]] = field(default_factory=list)
    ended: str = "end"
    error: str | None = None

    @property
    def fps(self) -> float:
        """Frames processed per second of wall time."""
        return self.processed / self.seconds if self.seconds > 0 else 0.0

    def latency(self) -> dict[str, float]:
        """Mean, median and 95th percentile of the per-frame latency in ms (zeros without frames)."""
        if not self.latencies_ms:
            return {"mean": 0.0, "median": 0.0, "p95": 0.0}
        lat = np.asarray(self.latencies_ms)
        return {"mean": float(lat.mean()), "median": float(np.median(lat)), "p95": float(np.percentile(lat, 95))}

    def line(self) -> str:
        """The one-line summary ``vidattn stream`` prints to stderr."""
        how = {"end": "source ended", "max_frames": "max frames reached", "stopped": "stopped",
               "error": "source failed"}[self.ended]
        lat = self.latency()
        top = f"{self.final[0]['label']} ({self.final[0]['probability']:.3f})" if self.final else "none"
        return (f"{self.source}: {how}; frames: {self.processed} processed, {self.dropped} dropped, "
                f"{self.decoded} decoded; latency ms: mean {lat['mean']:.1f}, median {lat['median']:.1f}, "
                f"p95 {lat['p95']:.1f}; {self.fps:.1f} fps; final prediction: {top}")


def check_source(source: str | os.PathLike) -> None:
    """Raise :class:`VideoError` for a file or folder SOURCE that does not exist (before any model is loaded);
    devices and URLs are only known once opened."""
    if source_kind(source) == "file" and not os.path.exists(source):
        raise VideoError(source, "no such file or folder")


@contextlib.contextmanager
def stop_on_sigint() -> Iterator[threading.Event]:
    """An event that the first Ctrl-C (SIGINT) inside the block sets, for :func:`run_stream`'s ``stop``; a
    second Ctrl-C raises KeyboardInterrupt as usual. Outside the main thread (no signal handlers there) the
    event is only set by the caller."""
    event = threading.Event()

    def handler(signum: int, frame: object) -> None:
        # the consumer only reads the event (is_set takes no lock), so setting it here cannot deadlock
        if event.is_set():
            raise KeyboardInterrupt
        event.set()

    try:
        previous = signal.signal(signal.SIGINT, handler)
    except ValueError:  # not the main thread
        yield event
        return
    try:
        yield event
    finally:
        signal.signal(signal.SIGINT, previous)


class _Annotator:
    """The annotated MP4: each processed frame as the model saw it, the running top-1 drawn on it and the
    spatial mask (when the step has one) overlaid on a colour scale of the masks' running min..max."""

    def __init__(self, path: str | os.PathLike, spec: Any) -> None:  # noqa: ANN401 (an InputSpec)
        self.spec = spec
        self.writer = VideoWriter(path, fps=30.0)  # a wrong extension fails here, before the stream starts
        self.lo, self.hi = np.inf, -np.inf

    def write(self, x: torch.Tensor, mask: torch.Tensor | None, video_top: list[dict[str, Any]], fps: float) -> None:
        view = denormalize(x.unsqueeze(1), self.spec)[0]
        if mask is not None:
            m = mask.float().cpu().reshape(1, *mask.shape[-2:])
            up = aggregate_maps({"mask": m}, 1, view.shape[:2])[0].numpy()
            self.lo, self.hi = min(self.lo, float(up.min())), max(self.hi, float(up.max()))
            view = overlay(view, up, self.lo, max(self.hi, self.lo + 1e-6))
        if self.writer.frames == 0:
            self.writer.fps = fps or self.writer.fps  # the source's rate, known once it is open
        self.writer.write(annotate_frames(view[None], {"topk": video_top}, k=1)[0])

    def close(self) -> None:
        self.writer.close()


def run_stream(
    recognizer: Any,  # noqa: ANN401 (an OnlineRecognizer, or anything with its preprocess/step/reset)
    source: str | os.PathLike,
    *,
    realtime: bool = False,
    max_frames: int | None = None,
    topk: int = 5,
    on_record: Callable[[dict[str, Any]], None] | None = None,
    video: str | os.PathLike | None = None,
    queue_size: int = 4,
    stop: threading.Event | None = None,
    timeout: float = 10.0,
    frame_template: str | None = None,
    start_index: int = 1,
    fps: float | None = None,
) -> StreamSummary:
    """Recognise the actions of ``source`` online, one frame at a time (module docstring: queue policy, what
    ends a stream). The recognizer is reset first, so every stream starts from empty caches.

    ``on_record`` gets one JSON-serialisable record per processed frame: ``frame`` (its index in the source),
    ``time`` (its timestamp in the source, seconds), ``step`` (the recognizer's frame count - 1), ``video_topk``
    (top-``topk`` of the running video prediction: ``[{"label", "index", "probability"}, ...]``), ``frame_topk``
    (of this frame's softmax), ``latency_ms`` (the recognizer's step) and ``dropped`` (frames dropped so far).
    ``video``: the annotated ``.mp4`` (or ``.avi``) to write, at the source's frame rate, one frame per processed
    frame. ``realtime`` applies to files and folders; webcams and URLs are always realtime. ``timeout``: seconds
    a device or URL may take to open or to send data; ``frame_template`` / ``start_index`` / ``fps``: the file
    names and frame rate of a frame folder (``fps`` also overrides a video's rate).
    """
    if topk < 1:
        raise ValueError(f"topk must be >= 1, got {topk}")
    source = str(source)
    realtime = realtime or source_kind(source) in ("url", "device")
    queue = FrameQueue(queue_size, drop_oldest=realtime)
    reader = _Reader(source, queue, realtime, max_frames,
                     {"timeout": timeout, "frame_template": frame_template, "start_index": start_index, "fps": fps})
    names = list(recognizer.class_names or [])
    annotator = _Annotator(video, recognizer.spec) if video is not None else None
    summary = StreamSummary(source)
    recognizer.reset()
    reader.start()
    started = None
    try:
        while True:
            if stop is not None and stop.is_set():
                summary.ended = "stopped"
                break
            frame: SourceFrame | None = queue.get(timeout=0.1)
            if frame is FrameQueue.EMPTY:
                continue
            if frame is None:
                break
            started = started or time.perf_counter()
            x = recognizer.preprocess(frame.rgb)
            result = recognizer.step(x, keep_maps=annotator is not None)
            video_probs = result.video_probs.float().cpu()
            if not names:
                names = [str(i) for i in range(video_probs.numel())]
            summary.final = topk_labels(video_probs, names, topk)
            record = {"frame": frame.index, "time": round(frame.time, 6), "step": int(result.index),
                      "video_topk": summary.final,
                      "frame_topk": topk_labels(result.frame_logits.float().cpu().softmax(-1), names, topk),
                      "latency_ms": round(float(result.latency_ms), 3), "dropped": queue.dropped}
            summary.processed += 1
            summary.latencies_ms.append(float(result.latency_ms))
            if on_record is not None:
                on_record(record)
            if annotator is not None:
                annotator.write(x, result.spatial_mask, summary.final, reader.fps)
            summary.seconds = time.perf_counter() - started
    finally:
        reader.halt.set()
        queue.cancel()
        reader.join(timeout=max(timeout, 1.0))
        if annotator is not None:
            annotator.close()
    if reader.failure is not None:
        raise reader.failure
    if reader.error is not None:
        summary.error, summary.ended = str(reader.error), "error"
    elif summary.ended == "end" and max_frames is not None and reader.decoded >= max_frames:
        summary.ended = "max_frames"
    summary.decoded, summary.dropped = reader.decoded, queue.dropped
    logger.debug("%s", summary.line())
    return summary
