"""--resume after a real kill -9 mid-run gives the same metrics and weights as an uninterrupted run."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from safetensors.torch import load_file

from vidattn.config import load_config
from vidattn.engine.run_log import read_metrics_csv
from vidattn.engine.train import resume_training, run_training

from .conftest import RECIPE, tiny_overrides

SCRIPT = Path(__file__).with_name("_train_script.py")


def comparable(rows):
    return [{k: v for k, v in r.items() if k != "train_clips_per_s"} for r in rows]


def test_killed_run_resumes_bit_for_bit(tiny_synth, tmp_path):
    # TSM with dropout, multi-scale crops, flips and 2 DataLoader workers: every source of randomness
    extra = {
        "model.name": "tsm_r18",
        "model.options": "{dropout: 0.5, base_width: 16}",
        "data.num_workers": 2,
        "train.epochs": 2,
        "optim.name": "sgd",
        "optim.lr": 0.01,
        "optim.schedule": "cosine",
    }
    full = run_training(load_config(RECIPE, tiny_overrides(tiny_synth, tmp_path / "a", **extra)))

    overrides = tiny_overrides(tiny_synth, tmp_path / "b", **extra)
    env = {**os.environ, "PYTHONPATH": str(SCRIPT.parents[2] / "src")}
    proc = subprocess.Popen(
        [sys.executable, str(SCRIPT), str(RECIPE), *overrides],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    run_dir = tmp_path / "b" / "run"
    deadline = time.time() + 120
    while not (run_dir / "metrics.csv").is_file() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)  # somewhere in epoch 2 (or after it on a very fast machine)
    proc.wait()
    done = len(read_metrics_csv(run_dir / "metrics.csv"))
    assert 1 <= done, proc.stderr.read().decode()[-2000:]

    resumed = resume_training(run_dir)
    assert comparable(read_metrics_csv(run_dir / "metrics.csv")) == comparable(
        read_metrics_csv(full.run_dir / "metrics.csv")
    )
    a, b = load_file(full.run_dir / "model_last.safetensors"), load_file(run_dir / "model_last.safetensors")
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)
    assert resumed.best == full.best
