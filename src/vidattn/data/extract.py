"""Turn a folder of videos into JPEG frame folders, the layout `open_video(folder)` reads ~10x faster.

`src/<rel>/<name>.<ext>` becomes `dst/<rel>/<name>/00001.jpg, 00002.jpg, ...` (template and start index
configurable; the defaults are `open_video`'s frame-folder defaults). Frames are decoded sequentially in
presentation order with PyAV, display rotation applied (as `open_video` does), resized so the short side is
at most `short_side` (aspect kept, never upscaled), and written as JPEG. A folder is complete when its
`.done` marker exists and matches the source (size, mtime) and the settings; anything else (no marker: an
interrupted run) is cleared and extracted again, so a rerun resumes where the last one stopped.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from vidattn.data.video import VideoError

logger = logging.getLogger(__name__)

VIDEO_EXTENSIONS = (".avi", ".mp4", ".webm", ".mkv", ".mov", ".m4v", ".mpg", ".mpeg", ".flv", ".wmv")
DONE_MARKER = ".done"


@dataclass
class ExtractReport:
    """What `extract_frames` did: folders written, folders already complete, failures (path, cause)."""

    extracted: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    num_frames: int = 0


def find_videos(src_dir: str | os.PathLike, extensions: Sequence[str] = VIDEO_EXTENSIONS) -> list[Path]:
    """Video files below `src_dir` (recursive, by extension, case-insensitive), sorted."""
    exts = {e.lower() for e in extensions}
    return sorted(p for p in Path(src_dir).rglob("*") if p.is_file() and p.suffix.lower() in exts)


def _settings(video: Path, short_side: int | None, quality: int, template: str, start_index: int) -> dict:
    st = video.stat()
    return {"source_size": st.st_size, "source_mtime_ns": st.st_mtime_ns, "short_side": short_side,
            "quality": quality, "template": template, "start_index": start_index}


def is_complete(folder: Path, settings: dict) -> bool:
    """Whether `folder` holds a finished extraction made with `settings` from the same source file."""
    marker = folder / DONE_MARKER
    if not marker.is_file():
        return False
    try:
        done = json.loads(marker.read_text())
    except (OSError, ValueError):
        return False
    return all(done.get(k) == v for k, v in settings.items())


def _resize(img: Image.Image, short_side: int | None) -> Image.Image:
    w, h = img.size
    if not short_side or min(w, h) <= short_side:
        return img
    scale = short_side / min(w, h)
    size = (short_side, max(1, round(h * scale))) if w <= h else (max(1, round(w * scale)), short_side)
    return img.resize(size, Image.BILINEAR)  # antialiased when shrinking


def extract_video(video: str | os.PathLike, folder: str | os.PathLike, short_side: int | None = 256,
                  quality: int = 90, template: str = "{:05d}.jpg", start_index: int = 1) -> int:
    """Extract one video into `folder` (cleared first); returns the number of frames written.

    Raises `vidattn.data.VideoError` for an unreadable file; the marker is written only after the last frame.
    """
    video, folder = Path(video), Path(folder)
    settings = _settings(video, short_side, quality, template, start_index)
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    try:
        count = _decode_into(video, folder, short_side, quality, template, start_index)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)  # a failed video leaves no (empty or partial) folder
        raise
    tmp = folder / (DONE_MARKER + ".tmp")
    tmp.write_text(json.dumps({**settings, "num_frames": count}))
    tmp.replace(folder / DONE_MARKER)
    return count


def _decode_into(video: Path, folder: Path, short_side: int | None, quality: int, template: str,
                 start_index: int) -> int:
    import av

    count = 0
    try:
        with av.open(str(video), metadata_errors="ignore") as container:
            if not container.streams.video:
                raise VideoError(video, "no video stream")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            for frame in container.decode(stream):
                rgb = frame.to_ndarray(format="rgb24")
                k = (int(getattr(frame, "rotation", 0) or 0) // 90) % 4  # FFmpeg display matrix, CCW
                if k:
                    rgb = np.ascontiguousarray(np.rot90(rgb, k=k))
                img = _resize(Image.fromarray(rgb), short_side)
                img.save(folder / template.format(start_index + count), quality=quality)
                count += 1
    except (av.FFmpegError, UnicodeDecodeError, ValueError) as e:
        if count == 0:
            raise VideoError(video, f"not a readable video ({type(e).__name__}: {e})") from None
        logger.warning("%s: decoding stopped after %d frames (%s); keeping them", video, count, e)
    if count == 0:
        raise VideoError(video, "no frames decoded")
    return count


def _extract_one(args: tuple) -> tuple[str, int | None, str | None]:
    video, folder, *rest = args
    try:
        return str(video), extract_video(video, folder, *rest), None
    except (VideoError, OSError) as e:
        return str(video), None, str(e)


def extract_frames(src_dir: str | os.PathLike, dst_dir: str | os.PathLike, short_side: int | None = 256,
                   quality: int = 90, workers: int | None = None, template: str = "{:05d}.jpg",
                   start_index: int = 1, extensions: Sequence[str] = VIDEO_EXTENSIONS, overwrite: bool = False,
                   progress: bool = True) -> ExtractReport:
    """Extract every video below `src_dir` into JPEG frame folders below `dst_dir` (see the module docstring).

    `workers` processes (default: all CPUs; 1 runs in this process); complete folders are skipped unless
    `overwrite`; a file that cannot be decoded is logged and listed in `report.failed`, the others go on.
    """
    from tqdm import tqdm

    src, dst = Path(src_dir), Path(dst_dir)
    if not src.is_dir():
        raise FileNotFoundError(f"{src}: no such directory of videos")
    if template.format(start_index) == template.format(start_index + 1):
        raise ValueError(f"frame template {template!r} must contain a '{{}}' field for the frame number")
    videos = find_videos(src, extensions)
    report = ExtractReport()
    todo = []
    by_folder: dict[Path, list[Path]] = {}
    for video in videos:
        by_folder.setdefault(dst / video.relative_to(src).with_suffix(""), []).append(video)
    for video in videos:
        folder = dst / video.relative_to(src).with_suffix("")
        if len(by_folder[folder]) > 1:  # x.avi and x.mp4: neither may silently win the shared folder
            others = ", ".join(p.name for p in by_folder[folder] if p != video)
            report.failed.append((str(video), f"{video}: shares the output folder {folder} with {others}; "
                                              "rename one of them"))
            logger.warning("%s", report.failed[-1][1])
            continue
        if not overwrite and is_complete(folder, _settings(video, short_side, quality, template, start_index)):
            report.skipped.append(str(video))
        else:
            todo.append((video, folder, short_side, quality, template, start_index))
    logger.info("%d videos in %s: %d to extract, %d already complete", len(videos), src, len(todo),
                len(report.skipped))
    workers = max(1, min(workers or os.cpu_count() or 1, len(todo) or 1))
    bar = tqdm(total=len(todo), unit="video", desc="extract-frames", disable=not progress)
    if workers == 1:
        results = (_extract_one(job) for job in todo)
        _collect(results, report, bar)
    else:
        with ProcessPoolExecutor(workers) as pool:
            _collect((f.result() for f in as_completed([pool.submit(_extract_one, job) for job in todo])),
                     report, bar)
    bar.close()
    if report.failed:
        logger.warning("%d of %d videos failed; rerun to retry them", len(report.failed), len(todo))
    return report


def _collect(results: object, report: ExtractReport, bar: object) -> None:
    for video, count, error in results:  # type: ignore[attr-defined]
        if error is None:
            report.extracted.append(video)
            report.num_frames += count
        else:
            logger.warning("skipping %s", error)
            report.failed.append((video, error))
        bar.update(1)  # type: ignore[attr-defined]
