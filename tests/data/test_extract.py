"""extract-frames: real videos encoded here, extracted, read back with open_video on the folders."""

import json

import numpy as np
import pytest
from vidattn_test_media import level, pattern_video

from vidattn.data import open_video
from vidattn.data.extract import DONE_MARKER, extract_frames


@pytest.fixture()
def videos(tmp_path):
    src = tmp_path / "videos"
    pattern_video(src / "classA" / "v1", n=12, height=96, width=128, fmt="avi_xvid")
    pattern_video(src / "classB" / "v2", n=10, height=96, width=128, fmt="mp4_h264")
    pattern_video(src / "classB" / "rot", n=6, height=48, width=64, fmt="mp4_h264", rotation=90)
    (src / "classB" / "broken.mp4").write_bytes(b"not a video at all")
    (src / "notes.txt").write_text("ignored")
    return src


def test_extract_resizes_and_reads_back_like_the_video(videos, tmp_path):
    dst = tmp_path / "frames"
    report = extract_frames(videos, dst, short_side=64, quality=95, workers=2, progress=False)
    assert sorted(p.split("/")[-1] for p in report.extracted) == ["rot.mp4", "v1.avi", "v2.mp4"]
    assert [p.split("/")[-1] for p, _ in report.failed] == ["broken.mp4"]
    assert report.num_frames == 12 + 10 + 6
    for name, n in (("classA/v1", 12), ("classB/v2", 10)):
        folder = dst / name
        assert (folder / "00001.jpg").is_file() and not (folder / "00000.jpg").exists()
        with open_video(folder) as frames, open_video(videos / (name + (".avi" if "v1" in name else ".mp4"))) as v:
            assert frames.num_frames == v.num_frames == n
            assert (frames.height, frames.width) == (64, 85)  # short side 96 -> 64, aspect kept
            got = frames.read(np.arange(n))
        # each frame keeps its identifying grey level, in order (centre pixel, away from the red marker)
        want = np.array([level(i) for i in range(n)])
        assert np.all(np.abs(got[:, 40, 60, 1].astype(int) - want) <= 6)
    with open_video(dst / "classB" / "rot") as r:  # display rotation applied, as open_video does on the file
        assert (r.height, r.width) == (64, 48)


def test_resume_skips_complete_folders_and_redoes_partial_ones(videos, tmp_path):
    dst = tmp_path / "frames"
    extract_frames(videos, dst, short_side=None, workers=1, progress=False)
    assert json.loads((dst / "classA" / "v1" / DONE_MARKER).read_text())["num_frames"] == 12
    # simulate an interrupted run: marker gone, some frames missing, a stale extra file
    (dst / "classA" / "v1" / DONE_MARKER).unlink()
    for f in sorted((dst / "classA" / "v1").glob("*.jpg"))[5:]:
        f.unlink()
    (dst / "classA" / "v1" / "stale.tmp").write_text("x")
    report = extract_frames(videos, dst, short_side=None, workers=1, progress=False)
    assert [p.split("/")[-1] for p in report.extracted] == ["v1.avi"]
    assert sorted(p.split("/")[-1] for p in report.skipped) == ["rot.mp4", "v2.mp4"]
    assert len(list((dst / "classA" / "v1").glob("*.jpg"))) == 12
    assert not (dst / "classA" / "v1" / "stale.tmp").exists()
    # other settings are not "complete": a new short side re-extracts everything readable
    report = extract_frames(videos, dst, short_side=32, workers=1, progress=False)
    assert len(report.extracted) == 3 and not report.skipped


def test_extract_rejects_bad_arguments(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such directory"):
        extract_frames(tmp_path / "missing", tmp_path / "out", progress=False)
    with pytest.raises(ValueError, match="frame template"):
        extract_frames(tmp_path, tmp_path / "out", template="frame.jpg", progress=False)


def test_same_stem_videos_never_share_a_folder_and_failures_leave_no_folder(videos, tmp_path):
    pattern_video(videos / "classA" / "v1", n=8, height=96, width=128, fmt="mp4_h264")  # beside v1.avi
    dst = tmp_path / "frames"
    report = extract_frames(videos, dst, short_side=64, workers=1, progress=False)
    failed = {p.split("/")[-1]: cause for p, cause in report.failed}
    assert set(failed) == {"v1.avi", "v1.mp4", "broken.mp4"}
    assert "shares the output folder" in failed["v1.avi"] and "v1.mp4" in failed["v1.avi"]
    assert not (dst / "classA" / "v1").exists()
    assert not (dst / "classB" / "broken").exists()  # no empty folder for a video that failed
    assert sorted(p.split("/")[-1] for p in report.extracted) == ["rot.mp4", "v2.mp4"]
