"""Two real CPU processes under torchrun (gloo): training, and evaluation equal to one process."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from vidattn.engine.distributed import ShardSampler, gather_predictions
from vidattn.engine.evaluate import run_evaluation
from vidattn.engine.run_log import read_metrics_csv

from .conftest import RECIPE, tiny_overrides

SCRIPT = Path(__file__).with_name("_train_script.py")


def test_shards_cover_every_index_once():
    for n in (0, 1, 7, 8):
        shards = [list(ShardSampler(n, r, 3)) for r in range(3)]
        assert sorted(i for s in shards for i in s) == list(range(n))
        assert [len(ShardSampler(n, r, 3)) for r in range(3)] == [len(s) for s in shards]
    recs = [{"index": 2}, {"index": 0}, {"index": 2}]
    assert [r["index"] for r in gather_predictions(recs)] == [0, 2]


def torchrun(*args, timeout=300):
    env = {**os.environ, "PYTHONPATH": str(SCRIPT.parents[2] / "src")}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(SCRIPT), *args]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr[-4000:]
    return done


@pytest.fixture
def odd_split(tiny_synth):
    """An odd-sized evaluation split (7 videos): 2 ranks get 4 and 3, nothing padded."""
    lines = (tiny_synth / "test.txt").read_text().splitlines()[:7]
    (tiny_synth / "odd7.txt").write_text("\n".join(lines) + "\n")
    return "odd7"


def test_torchrun_two_processes_train_and_evaluate_like_one(tiny_synth, tmp_path, odd_split):
    overrides = tiny_overrides(
        tiny_synth,
        tmp_path,
        # log_every=1: the periodic loss check and its all-reduce run at every optimizer step
        **{"data.val_split": odd_split, "train.epochs": 2, "data.num_workers": 0, "eval.batch_size": 3,
           "train.log_every": 1},
    )
    out = tmp_path / "eval2.json"
    torchrun(str(RECIPE), *overrides, "--then-eval", odd_split, str(out))
    run = tmp_path / "run"
    rows = read_metrics_csv(run / "metrics.csv")
    assert [r["epoch"] for r in rows] == [1, 2]
    assert json.loads((run / "run.json").read_text())["world_size"] == 2
    two = json.loads(out.read_text())
    one = run_evaluation(run, split=odd_split, overrides=["eval.batch_size=5"]).metrics
    assert two["num_samples"] == one["num_samples"] == 7
    for key in ("top1", "top5", "mean_class_acc"):
        assert two[key] == one[key], key
    # per-sample losses come from batches of other sizes: equal up to float32 rounding
    assert two["loss"] == pytest.approx(one["loss"], rel=1e-6)
    # the per-epoch validation done by 2 processes during training agrees with 1 process too
    best = rows[int(json.loads((run / "run.json").read_text())["best"]["epoch"]) - 1]
    assert best["val_top1"] == pytest.approx(one["top1"], abs=1e-6)
    assert best["val_loss"] == pytest.approx(one["loss"], rel=1e-6)
