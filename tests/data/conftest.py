"""Shared fixtures for the data tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from vidattn_test_media import FORMATS, frame_folder, pattern_video


@pytest.fixture(scope="session")
def media(tmp_path_factory) -> dict[str, Path]:
    """One 24-frame 64x48 file per format, plus a JPEG folder, shared by the read-only tests."""
    root = tmp_path_factory.mktemp("media")
    files = {fmt: pattern_video(root / fmt, fmt=fmt) for fmt in FORMATS}
    files["jpeg"] = frame_folder(root / "jpeg", 24)
    return files
