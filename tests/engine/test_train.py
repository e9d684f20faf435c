"""Real training runs on SynthActions: learning, run-directory outputs, non-finite stop, bad videos."""

import json
import math

import pytest
import torch
from safetensors.torch import load_file

from vidattn.config import load_config
from vidattn.engine.evaluate import run_evaluation
from vidattn.engine.run_log import read_metrics_csv
from vidattn.engine.train import NonFiniteLossError, resume_training, run_training

from .conftest import RECIPE, tiny_overrides


def test_two_epochs_beat_chance_and_write_the_run_dir(learn_synth, tmp_path):
    overrides = tiny_overrides(
        learn_synth,
        tmp_path,
        **{
            "data.num_segments": 8,
            "data.scale_size": 40,
            "data.crop_size": 40,
            "data.batch_size": 8,
            "data.num_workers": 2,
            "data.prefetch_factor": 4,
            "data.flip": False,
            "train.epochs": 2,
            "optim.lr": 2e-3,
            "model.options": "{channels: 32, pool_output: [4, 6, 6], hidden: [128], dropout: 0.25}",
        },
    )
    result = run_training(load_config(RECIPE, overrides))
    run = result.run_dir
    # chance is 25% (4 balanced classes, 120 validation videos)
    # chance is 25% +- 4 (4 balanced classes, 120 validation videos); this run reaches ~48
    assert result.metrics["val_top1"] > 37.5, result.metrics
    for name in (
        "config.yaml",
        "checkpoint.pt",
        "model_last.safetensors",
        "model_best.safetensors",
        "metrics.csv",
        "curves.png",
        "run.json",
    ):
        assert (run / name).is_file(), name
    rows = read_metrics_csv(run / "metrics.csv")
    assert [r["epoch"] for r in rows] == [1, 2]
    assert all(math.isfinite(r["train_loss"]) and math.isfinite(r["val_top1"]) for r in rows)
    info = json.loads((run / "run.json").read_text())
    assert info["seed"] == 0 and info["status"] == "finished"
    assert info["versions"]["torch"] == torch.__version__
    assert info["final_metrics"]["val_top1"] == pytest.approx(result.metrics["val_top1"])
    assert info["config"]["model"]["name"] == "c3d"
    # `vidattn test RUN_DIR`: best weights, 1 clip centre crop = the per-epoch validation of the best epoch
    ev = run_evaluation(run, split="val", overrides=["train.progress=false"])
    best_row = rows[result.best["epoch"] - 1]
    assert ev.metrics["top1"] == pytest.approx(best_row["val_top1"])
    assert ev.metrics["gmacs_per_view"] > 0 and ev.metrics["views"] == 1
    assert (ev.output_dir / "metrics.json").is_file() and (ev.output_dir / "confusion.png").is_file()
    assert (run / "curves.png").read_bytes()[:4] == b"\x89PNG"


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tiny_config):
    result = run_training(tiny_config(**{"optim.name": "sgd", "optim.lr": 0.01}))
    ckpt = result.run_dir / "checkpoint.pt"
    before = ckpt.read_bytes(), (result.run_dir / "model_last.safetensors").read_bytes()
    with pytest.raises(NonFiniteLossError, match="non-finite loss"):
        resume_training(result.run_dir, ["train.epochs=2", "optim.lr=1e30", "train.grad_clip=null"])
    assert (ckpt.read_bytes(), (result.run_dir / "model_last.safetensors").read_bytes()) == before
    info = json.loads((result.run_dir / "run.json").read_text())
    assert info["status"].startswith("stopped: non-finite loss")
    assert all(torch.isfinite(t).all() for t in load_file(result.run_dir / "model_last.safetensors").values())


def test_corrupt_video_is_skipped_and_counted(tiny_synth, tmp_path):
    import shutil

    root = tmp_path / "synth"
    shutil.copytree(tiny_synth, root)
    first = (root / "train.txt").read_text().split()[0]
    (root / first).write_bytes(b"\x00not a video at all" * 10)
    cfg = load_config(RECIPE, tiny_overrides(root, tmp_path / "runs", **{"data.num_workers": 2}))
    result = run_training(cfg)
    assert result.metrics["train_num_skipped"] == 1
    assert math.isfinite(result.metrics["train_loss"])
    strict = load_config(RECIPE, tiny_overrides(root, tmp_path / "runs2", **{"data.on_error": "raise"}))
    with pytest.raises(Exception, match=first.split("/")[-1]):
        run_training(strict)


def test_existing_run_dir_is_never_overwritten(tiny_config):
    cfg = tiny_config()
    run_training(cfg)
    with pytest.raises(FileExistsError, match="resume"):
        run_training(cfg)


def test_performance_knobs_train_and_partial_bn_freezes_statistics(tiny_config):
    from vidattn import create_model
    from vidattn.engine.train import apply_partial_bn

    model = create_model("tsm_r18", num_classes=4, num_segments=4)
    model.train()
    assert apply_partial_bn(model) == sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules()) - 1
    stem = model.backbone.bn1  # the first BatchNorm the input meets stays trainable
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d) and m is not stem]
    assert stem.training and not any(m.training or m.weight.requires_grad for m in bns)

    knobs = {
        "model.name": "tsm_r18",
        "model.options": "{dropout: 0.5, base_width: 16}",
        "train.precision": "bf16",
        "train.channels_last": True,
        "train.accumulate_steps": 2,
        "train.partial_bn": True,
        "train.label_smoothing": 0.1,
        "optim.name": "sgd",
        "optim.lr": 0.01,
        "optim.warmup_epochs": 0.5,
        "optim.schedule": "cosine",
    }
    result = run_training(tiny_config(**knobs))
    assert math.isfinite(result.metrics["train_loss"]) and math.isfinite(result.metrics["val_loss"])
    assert result.metrics["step"] == 2  # 3 batches of 4 clips, 2 per optimizer step (the last one alone)
    # partial BN: every BatchNorm but the first kept its initial running statistics
    weights = load_file(result.run_dir / "model_last.safetensors")
    means = [k for k in weights if k.endswith("running_mean") and k != "backbone.bn1.running_mean"]
    assert weights["backbone.bn1.running_mean"].abs().sum() > 0
    assert means and all(weights[k].abs().sum() == 0 for k in means)


@pytest.mark.parametrize("model, options", [("tsm_w3_r18", "{base_width: 8, dropout: 0.0}"),
                                            ("c3d_attention", "{channels: 8, pool_output: [2, 4, 4], hidden: [32]}")])
def test_train_fast_trains_the_fast_modules_to_the_reference_weights(tiny_config, model, options):
    """`train.fast` swaps in the fast layer's modules: the same state dict keys, and after the same steps the
    same weights and losses up to summation order."""
    from vidattn.models.fast import FastC3D, FastW3

    results = {fast: run_training(tiny_config(**{"model.name": model, "model.options": options,
                                                 "train.fast": fast, "train.run_name": f"fast-{fast}"}))
               for fast in (False, True)}
    ref, fast = (load_file(results[f].run_dir / "model_last.safetensors") for f in (False, True))
    assert ref.keys() == fast.keys()
    for key in ref:
        assert torch.allclose(ref[key], fast[key], rtol=1e-3, atol=1e-5), key
    assert results[True].metrics["train_loss"] == pytest.approx(results[False].metrics["train_loss"], rel=1e-4)
    # the fast modules are what trained
    from vidattn.engine.distributed import init_distributed
    from vidattn.engine.train import _build_model

    cfg = tiny_config(**{"model.name": model, "model.options": options, "train.fast": True})
    assert any(isinstance(m, (FastW3, FastC3D)) for m in _build_model(cfg, init_distributed("cpu")).modules())


def test_missing_pretrained_file_is_a_one_line_error(tiny_config):
    with pytest.raises(FileNotFoundError, match="model.pretrained: nowhere.pth not found"):
        run_training(tiny_config(**{"model.pretrained": "nowhere.pth"}))


def test_a_batch_whose_every_clip_is_unreadable_is_skipped_in_training_and_evaluation(tiny_synth, tmp_path):
    import shutil

    root = tmp_path / "synth"
    shutil.copytree(tiny_synth, root)
    for split in ("train", "val"):
        bad = (root / f"{split}.txt").read_text().split()[0]
        (root / bad).write_bytes(b"\x00not a video at all" * 10)
    extra = {"data.batch_size": 1, "eval.batch_size": 1, "train.max_steps_per_epoch": "null"}
    result = run_training(load_config(RECIPE, tiny_overrides(root, tmp_path / "runs", **extra)))
    assert result.metrics["train_num_skipped"] == 1 and result.metrics["train_num_skipped_batches"] == 1
    assert result.metrics["val_num_skipped"] == 1 and math.isfinite(result.metrics["train_loss"])
    assert result.metrics["step"] == 12  # the empty batch's step is counted: the schedule stays aligned
    ev = run_evaluation(result.run_dir, split="val", overrides=["train.progress=false"])
    assert ev.metrics["num_skipped"] == 1 and ev.num_samples == 3


def test_too_small_num_classes_is_found_when_the_dataset_is_read(tiny_config):
    with pytest.raises(ValueError, match=r"train.txt:\d+: label 3 is outside \[0, 3\) \(data.num_classes=3\)"):
        run_training(tiny_config(**{"data.num_classes": 3}))


def test_nan_in_the_first_epoch_says_there_is_no_checkpoint_and_no_fp32_hint_in_fp32(tiny_config, caplog):
    import logging
    import re

    cfg = tiny_config(**{"optim.name": "sgd", "optim.lr": 1e30, "train.grad_clip": "null", "train.epochs": 2,
                         "data.batch_size": 1, "train.log_every": 2})  # 12 steps per epoch, checked every 2
    with caplog.at_level(logging.INFO, logger="vidattn.engine.train"), pytest.raises(NonFiniteLossError) as err:
        run_training(cfg)
    msg = str(err.value)
    assert "no checkpoint yet" in msg and "precision=fp32" not in msg and "lower optim.lr" in msg
    # the stop comes at the first check after the first bad step: within log_every steps
    bad = int(re.search(r"non-finite loss \((?:nan|inf|-inf)\) at optimizer step (\d+)", msg).group(1))
    logged = [int(m.group(1)) for r in caplog.records if (m := re.match(r"step (\d+)/24 ", r.getMessage()))]
    assert logged == list(range(2, bad + 1, 2)), (bad, logged)


def test_log_every_reads_the_device_sums_without_changing_a_number(tiny_config, caplog):
    import logging

    knobs = {"data.batch_size": 2, "train.accumulate_steps": 2, "train.epochs": 2, "train.grad_clip": 1.0,
             "optim.name": "sgd", "optim.lr": 0.05}  # 6 batches per epoch, 3 optimizer steps
    runs = {}
    for every in (1, 50):
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="vidattn.engine.train"):
            result = run_training(tiny_config(**knobs, **{"train.log_every": every, "train.run_name": f"e{every}"}))
        runs[every] = result.run_dir
        steps = [r.getMessage().split()[1] for r in caplog.records if r.getMessage().startswith("step ")]
        assert steps == ([f"{k}/6" for k in range(1, 7)] if every == 1 else []), steps
    rows = [[{k: v for k, v in r.items() if k != "train_clips_per_s"} for r in read_metrics_csv(d / "metrics.csv")]
            for d in runs.values()]
    assert rows[0] == rows[1] and len(rows[0]) == 2
    a, b = (load_file(d / "model_last.safetensors") for d in runs.values())
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_sigint_marks_the_run_interrupted_and_prints_the_resume_command(tiny_synth, tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    extra = {"train.epochs": 50, "data.num_workers": 1}
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2] / "src"), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "vidattn.cli", "train", str(RECIPE),
                             *tiny_overrides(tiny_synth, tmp_path, **extra)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    run_dir = tmp_path / "run"
    deadline = time.time() + 120
    while not (run_dir / "checkpoint.pt").is_file() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-3000:]
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err[-3000:]
    assert f"vidattn train --resume {run_dir}" in err and "kept" in err and "checkpoint.pt after epoch" in err
    assert json.loads((run_dir / "run.json").read_text())["status"] == "interrupted"


def test_resume_removes_the_temporaries_of_a_killed_write(tiny_config):
    run = run_training(tiny_config()).run_dir
    orphans = [run / ".checkpoint.pt.k3j_x9q2.tmp.pt", run / ".model_last.safetensors.ab12cd34.tmp"]
    for p in orphans:
        p.write_bytes(b"torn")
    keep = run / ".keepme"
    keep.write_text("user file")
    resume_training(run, ["train.epochs=2"])
    assert not any(p.exists() for p in orphans) and keep.exists()


def test_resuming_with_another_world_size_warns_about_the_global_batch(tiny_config, caplog):
    import logging

    from vidattn.engine.checkpoint import load_training_state, save_training_state
    from vidattn.engine.optim import build_optimizer
    from vidattn.engine.train import builders

    run = run_training(tiny_config()).run_dir
    # the checkpoint of a 2-process run: one RNG state per rank
    state = load_training_state(run / "checkpoint.pt")
    cfg = load_config(run / "config.yaml")
    model = builders.build_model(cfg)
    model.load_state_dict(state["model"])
    optimizer = build_optimizer(model, cfg.optim, fine_tune=False)
    optimizer.load_state_dict(state["optimizer"])
    save_training_state(run / "checkpoint.pt", model=model, optimizer=optimizer, epoch=state["epoch"],
                        step=state["step"], best=state["best"], config=state["config"], history=state["history"],
                        rng_per_rank=state["rng"] * 2)
    with caplog.at_level(logging.WARNING, logger="vidattn.engine.train"):
        resume_training(run, ["train.epochs=2"])
    lines = [r.getMessage() for r in caplog.records if "processes" in r.getMessage()]
    assert len(lines) == 1 and "2-process run with 1 processes: global batch 8 -> 4" in lines[0]


def test_multi_label_list_trains_and_evaluates(tiny_synth, tmp_path):
    import shutil

    root = tmp_path / "ml"
    shutil.copytree(tiny_synth, root)
    lines = (root / "train.txt").read_text().splitlines()
    (root / "train.txt").write_text("".join(f"{ln} {(int(ln.split()[1]) + 1) % 4}\n" for ln in lines))
    extra = {"data.dataset": "list", "data.options": "{multi_class: true, num_classes: 4}"}
    result = run_training(load_config(RECIPE, tiny_overrides(root, tmp_path / "runs", **extra)))
    assert math.isfinite(result.metrics["train_loss"]) and 0 <= result.metrics["val_top1"] <= 100


def test_a_corrupt_best_is_said_in_run_json_and_test_falls_back_to_last(tiny_config, caplog):
    import logging

    from vidattn.engine.checkpoint import load_training_state, save_training_state
    from vidattn.engine.optim import build_optimizer
    from vidattn.engine.train import builders

    run = run_training(tiny_config()).run_dir
    assert json.loads((run / "run.json").read_text())["best_weights"]["status"] == "ok"
    (run / "model_best.safetensors").write_bytes(b"\x00" * 64)  # bit rot, a bad copy...
    # the checkpoint's best value cannot be beaten, so epoch 2 does not rewrite model_best itself
    state = load_training_state(run / "checkpoint.pt")
    cfg = load_config(run / "config.yaml")
    model = builders.build_model(cfg)
    model.load_state_dict(state["model"])
    optimizer = build_optimizer(model, cfg.optim, fine_tune=False)
    optimizer.load_state_dict(state["optimizer"])
    save_training_state(run / "checkpoint.pt", model=model, optimizer=optimizer, epoch=state["epoch"],
                        step=state["step"], best={**state["best"], "value": 101.0}, config=state["config"],
                        history=state["history"], rng_per_rank=state["rng"])
    with caplog.at_level(logging.WARNING):
        resume_training(run, ["train.epochs=2"])
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "finished"
    assert info["best_weights"]["status"] == "unreadable"
    assert "model_best.safetensors" in info["best_weights"]["problem"]
    assert any("model_best.safetensors" in r.getMessage() and "model_last.safetensors" in r.getMessage()
               and r.levelno == logging.ERROR for r in caplog.records)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="vidattn.engine.checkpoint"):
        ev = run_evaluation(run, split="val", overrides=["train.progress=false"])
    assert ev.num_samples == 4
    assert [r.getMessage() for r in caplog.records if "using model_last.safetensors instead" in r.getMessage()]


def test_end_of_run_rewrites_a_corrupt_best_from_memory(tiny_config):
    from vidattn.engine.train import builders, verify_best_weights
    from vidattn.models.compat import load_weights

    result = run_training(tiny_config())
    run = result.run_dir
    best_state = {k: v.clone() for k, v in load_weights(run / "model_best.safetensors")[0].items()}
    model = builders.build_model(load_config(run / "config.yaml"))
    # the weights in memory are the best; the file on disk was torn or altered after it was written
    for damage in (lambda b: b[: len(b) // 3], lambda b: b[:-8] + b"\x7f" * 8):
        (run / "model_best.safetensors").write_bytes(damage((run / "model_best.safetensors").read_bytes()))
        check = verify_best_weights(run, model, result.best, best_state)
        assert check["status"] == "rewritten" and "model_best.safetensors" in check["problem"]
        again = load_weights(run / "model_best.safetensors")[0]
        assert all(torch.equal(again[k], best_state[k]) for k in best_state)
    assert verify_best_weights(run, model, result.best, best_state)["status"] == "ok"


def test_fine_tuning_to_a_new_class_count_is_a_documented_switch(tiny_config):
    from vidattn.engine.train import builders
    from vidattn.models.compat import CheckpointError

    weights = run_training(tiny_config()).run_dir / "model_last.safetensors"  # 4 classes
    strict = tiny_config(**{"model.pretrained": str(weights), "data.num_classes": 5, "train.run_name": "ft"})
    assert strict.model.pretrained_strict is True
    with pytest.raises(CheckpointError, match=r"head.*model.pretrained_strict=false"):
        builders.build_model(strict)
    tuned = builders.build_model(tiny_config(**{"model.pretrained": str(weights), "data.num_classes": 5,
                                                "model.pretrained_strict": "false"}))
    backbone = {k: v for k, v in load_file(weights).items() if not k.startswith("head.")}
    state = tuned.state_dict()
    assert backbone and all(torch.equal(state[k], v) for k, v in backbone.items())
    assert tuned(torch.zeros(1, 3, 4, 32, 32)).shape == (1, 5)
    # the older spelling keeps working
    opts = "{channels: 8, pool_output: [2, 4, 4], hidden: [32], pretrained_strict: false}"
    old = builders.build_model(tiny_config(**{"model.pretrained": str(weights), "data.num_classes": 5,
                                              "model.options": opts}))
    assert all(torch.equal(old.state_dict()[k], v) for k, v in backbone.items())
    with pytest.raises(ValueError, match="model.pretrained_strict"):
        tiny_config(**{"model.pretrained_strict": "sometimes"})
