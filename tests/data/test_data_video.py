"""Decoding real files of every kind the datasets ship, and every kind of bad input."""

from __future__ import annotations

import socket

import av
import numpy as np
import pytest
from vidattn_test_media import FORMATS, encode, frame_folder, frame_pattern, level, pattern_video

from vidattn.data import VideoError, open_video
from vidattn.data.video import FrameStream, VideoWriter, source_kind

ALL = [*FORMATS, "jpeg"]


def grey(frames: np.ndarray) -> np.ndarray:
    """The frame-identifying grey level, read away from the red marker."""
    return frames[:, -8:, -8:].reshape(len(frames), -1).mean(axis=1)


@pytest.mark.parametrize("kind", ALL)
def test_reads_counts_sizes_and_pixels(media, kind):
    with open_video(media[kind]) as r:
        assert (r.num_frames, r.height, r.width) == (24, 48, 64)
        if kind != "jpeg":
            assert r.fps == pytest.approx(25)
        idx = [0, 5, 23, 5, 11]
        frames = r.read(idx)
    assert frames.dtype == np.uint8 and frames.shape == (5, 48, 64, 3)
    np.testing.assert_allclose(grey(frames), [level(i) for i in idx], atol=4)
    # RGB order and orientation: the red marker is top-left.
    np.testing.assert_allclose(frames[:, 2, 2].astype(float), np.tile([200, 30, 30], (5, 1)), atol=30)


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_seek_and_sequential_paths_give_identical_pixels(tmp_path, fmt):
    path = pattern_video(tmp_path / "long", n=120, fmt=fmt, gop=10)
    with open_video(path, seek_threshold=0) as r:
        assert r._seekable, "the test files have reliable timestamps, so the seeking path must be used"
        idx = [3, 97, 50, 51, 119, 10, 10]
        seq, seek, auto = r.read_sequential(idx), r.read_seeking(idx), r.read(idx)
    np.testing.assert_array_equal(seq, seek)
    np.testing.assert_array_equal(seq, auto)
    np.testing.assert_allclose(grey(seq), [level(i) for i in idx], atol=4)


def test_h264_with_b_frames_seeks_exactly(tmp_path):
    frames = np.stack([frame_pattern(i, 48, 64) for i in range(90)])
    path = tmp_path / "bframes.mp4"
    with av.open(str(path), "w") as out:
        stream = out.add_stream(FORMATS["mp4_h264"][1], rate=30)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.codec_context.gop_size = 12
        stream.codec_context.max_b_frames = 3
        for f in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    with open_video(path, seek_threshold=0) as r:
        idx = [88, 1, 47, 13, 60]
        np.testing.assert_array_equal(r.read_sequential(idx), r.read_seeking(idx))
        np.testing.assert_allclose(grey(r.read(idx)), [level(i) for i in idx], atol=4)


def test_frame_folder_templates(tmp_path):
    frame_folder(tmp_path / "img", 6, template="img_{:05d}.jpg")
    with open_video(tmp_path / "img", frame_template="img_%05d.jpg", start_index=1) as r:
        assert r.num_frames == 6
        np.testing.assert_allclose(grey(r.read([5, 0])), [level(5), level(0)], atol=3)
    frame_folder(tmp_path / "epic", 4, template="frame_{:010d}.jpg", start=1)
    with open_video(tmp_path / "epic", frame_template="frame_{:010d}.jpg") as r:
        assert r.num_frames == 4


def test_odd_sizes_decode(tmp_path):
    for fmt in ("avi_xvid", "webm_vp9"):
        with open_video(pattern_video(tmp_path / fmt, n=6, height=241, width=321, fmt=fmt)) as r:
            assert (r.height, r.width) == (241, 321)
            assert r.read([5]).shape == (1, 241, 321, 3)


def test_rotation_metadata_is_applied(tmp_path):
    path = pattern_video(tmp_path / "rot", n=6, fmt="mp4_h264", rotation=90)
    with open_video(path) as r:
        assert (r.height, r.width) == (64, 48)  # displayed size
        frame = r.read([3])[0]
    # 90 degrees counter-clockwise: the top-left marker ends bottom-left.
    assert frame[-3, 2, 0] > 150 and frame[2, 2, 0] < 60


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_variable_frame_rate_indices_are_frames(tmp_path, fmt):
    pts = [0, 1, 2, 5, 6, 7, 12, 13, 20, 21, 22, 23, 30, 31, 40, 41, 42, 43, 44, 45, 50, 51, 60, 61, 70]
    frames = np.stack([frame_pattern(i, 48, 64) for i in range(len(pts))])
    with open_video(encode(tmp_path / "vfr", frames, fmt=fmt, pts=pts, gop=4), seek_threshold=0) as r:
        assert r.num_frames == len(pts)
        idx = [1, 9, 17, 24]
        np.testing.assert_array_equal(r.read_sequential(idx), r.read_seeking(idx))
        np.testing.assert_allclose(grey(r.read(idx)), [level(i) for i in idx], atol=4)


def _audio_only(path, with_empty_video: bool):
    with av.open(str(path), "w") as out:
        if with_empty_video:
            v = out.add_stream("mpeg4", rate=25)
            v.width, v.height, v.pix_fmt = 64, 48, "yuv420p"
        a = out.add_stream("pcm_s16le", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.int16), format="s16", layout="mono")
        frame.sample_rate = 8000
        for packet in [*a.encode(frame), *a.encode()]:
            out.mux(packet)
    return path


def test_bad_inputs_raise_one_line_errors_naming_the_file(tmp_path, media):
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    text = tmp_path / "notes.avi"
    text.write_text("not a video\n" * 50)
    good = media["mp4_h264"].read_bytes()
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(good[: len(good) // 2])
    gap = frame_folder(tmp_path / "gap", 5)
    (gap / "00003.jpg").unlink()
    corrupt = frame_folder(tmp_path / "corrupt", 3)
    (corrupt / "00002.jpg").write_bytes(b"\xff\xd8garbage")
    cases = {
        tmp_path / "missing.mp4": "no such file",
        empty: "empty file",
        text: "not a readable media file",
        truncated: "not a readable media file",
        _audio_only(tmp_path / "audio.wav", False): "no video stream",
        _audio_only(tmp_path / "novideo.mkv", True): "zero frames",
        gap: "00003.jpg missing",
    }
    for path, cause in cases.items():
        with pytest.raises(VideoError) as info:
            with open_video(path) as r:
                r.read([0])
        message = str(info.value)
        assert str(path) in message and cause in message and "\n" not in message, message
    with open_video(corrupt) as r, pytest.raises(VideoError, match=r"00002\.jpg: cannot decode image"):
        r.read([1])


def test_out_of_range_and_unknown_backend(media):
    with open_video(media["avi_xvid"]) as r, pytest.raises(VideoError, match="out of range"):
        r.read([24])
    with pytest.raises(ValueError, match="unknown video backend"):
        open_video(media["avi_xvid"], backend="opencv")


@pytest.mark.parametrize("kind", ALL)
def test_frame_stream_gives_the_readers_frames_in_order_with_timestamps(media, kind):
    with open_video(media[kind]) as r:
        expected = r.read(np.arange(r.num_frames))
    with FrameStream(media[kind]) as stream:
        frames = list(stream)
        assert (stream.kind, stream.live) == ("folder" if kind == "jpeg" else "file", False)
    assert [f.index for f in frames] == list(range(24))
    np.testing.assert_array_equal(np.stack([f.rgb for f in frames]), expected)
    fps = 30 if kind == "jpeg" else 25  # a folder's default rate; the files' own
    np.testing.assert_allclose([f.time for f in frames], np.arange(24) / fps, atol=1e-6)


def test_frame_stream_applies_rotation_and_names_the_source_in_errors(tmp_path):
    with FrameStream(pattern_video(tmp_path / "rot", n=6, fmt="mp4_h264", rotation=90)) as stream:
        assert next(iter(stream)).rgb.shape == (64, 48, 3)
    whole = pattern_video(tmp_path / "long", n=60).read_bytes()  # AVI: the frame count is in its header
    cut = tmp_path / "cut.avi"
    cut.write_bytes(whole[: len(whole) * 6 // 10])
    seen = 0
    with FrameStream(cut) as stream, pytest.raises(VideoError, match=r"cut\.avi: truncated: the container lists 60 "
                                                                     r"frames, the file holds \d+"):
        for _ in stream:
            seen += 1
    assert 0 < seen < 60
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}/video.mp4"
    cases = {tmp_path / "missing.mp4": "missing.mp4: no such file", "/dev/video99": "/dev/video99: cannot open the "
             "stream", url: f"{url}: cannot open the stream \\(.*Connection refused"}
    for source, message in cases.items():
        with pytest.raises(VideoError, match=message):
            FrameStream(source, timeout=5)
    assert [source_kind(s) for s in ("rtsp://cam/1", "udp://@:1234", "/dev/video0", tmp_path, cut)] == \
        ["url", "url", "device", "folder", "file"]


def test_video_writer_appends_frames_and_closes_a_playable_file(tmp_path):
    frames = [frame_pattern(i, 47, 63) for i in range(5)]  # odd sizes are padded to even
    with VideoWriter(tmp_path / "out.mp4", fps=25) as writer:
        for f in frames[:3]:
            writer.write(f)
        with pytest.raises(ValueError, match="frame 3 is 32x32, the video 63x47"):
            writer.write(frames[0][:32, :32])
    assert writer.frames == 3
    with open_video(tmp_path / "out.mp4") as r:
        assert (r.num_frames, r.height, r.width) == (3, 48, 64)
        np.testing.assert_allclose(grey(r.read([0, 1, 2])), [level(i) for i in range(3)], atol=4)
    VideoWriter(tmp_path / "none.mp4", fps=25).close()
    assert not (tmp_path / "none.mp4").exists()  # no frame, no file


@pytest.mark.parametrize("backend", ["decord", "torchcodec"])
def test_optional_backends_match_pyav(media, backend):
    pytest.importorskip(backend)
    idx = [0, 7, 23]
    for kind in FORMATS:
        with open_video(media[kind]) as ref, open_video(media[kind], backend=backend) as other:
            assert other.num_frames == ref.num_frames
            np.testing.assert_allclose(other.read(idx).astype(int), ref.read(idx).astype(int), atol=3)
