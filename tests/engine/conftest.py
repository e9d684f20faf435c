"""Shared fixtures: real SynthActions videos generated once per session, and a tiny-run config."""

from pathlib import Path

import pytest
import torch

from vidattn.config import load_config
from vidattn.data import generate_synth_actions

RECIPE = Path(__file__).resolve().parents[2] / "configs" / "synth_actions.yaml"


@pytest.fixture(autouse=True, scope="session")
def _one_cpu_thread():
    """The engine tests run 1 intra-op thread: on a small shared CI machine OpenMP spinning across
    busy cores costs far more than it gains (and torchrun's workers use 1 thread each anyway)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_synth(tmp_path_factory):
    """4 classes x 6 videos of 8 frames at 32 px (12 train / 4 val / 8 test): mechanics, not learning."""
    root = tmp_path_factory.mktemp("synth_tiny")
    return generate_synth_actions(
        root,
        num_classes=4,
        videos_per_class=6,
        num_frames=8,
        size=32,
        split=(0.5, 0.17, 0.33),
        workers=2,
        progress=False,
    )


@pytest.fixture(scope="session")
def learn_synth(tmp_path_factory):
    """4 classes x 150 videos at 40 px, one distractor: enough signal to beat chance in 2 epochs."""
    root = tmp_path_factory.mktemp("synth_learn")
    return generate_synth_actions(
        root, num_classes=4, videos_per_class=150, num_frames=8, size=40, max_distractors=1, workers=2, progress=False
    )


def tiny_overrides(root, out_dir, **extra):
    """A c3d model on 4-frame 32 px clips, 1 CPU thread, no progress bars."""
    base = {
        "data.root": str(root),
        "data.num_classes": 4,
        "data.num_segments": 4,
        "data.scale_size": 32,
        "data.crop_size": 32,
        "data.batch_size": 4,
        "data.num_workers": 0,
        "model.name": "c3d",
        "model.options": "{channels: 8, pool_output: [2, 4, 4], hidden: [32]}",
        "optim.name": "adam",
        "optim.lr": 1e-3,
        "optim.schedule": "constant",
        "optim.warmup_epochs": 0,
        "train.epochs": 1,
        "train.output_dir": str(out_dir),
        "train.run_name": "run",
        "train.progress": False,
        "train.num_threads": 1,
        "data.test_split": "null",
    }
    base.update(extra)
    return [f"{k}={v}" for k, v in base.items()]


@pytest.fixture
def tiny_config(tiny_synth, tmp_path):
    def make(**extra):
        return load_config(RECIPE, tiny_overrides(tiny_synth, tmp_path / "runs", **extra))

    return make
