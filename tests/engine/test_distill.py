"""MFR (W3 eq. 9): the feature-mimicking loss, the frozen teacher, and a real stage-1 -> stage-2 run."""

import json

import pytest
import torch

from vidattn import create_model
from vidattn.engine.checkpoint import export_weights
from vidattn.engine.distill import feature_mimic_loss, load_teacher, teacher_from_run_dir
from vidattn.engine.run_log import read_metrics_csv
from vidattn.engine.train import run_training


def test_feature_mimic_loss_is_mean_per_frame_l2_norm():
    s = torch.zeros(2, 3, 1, 1)  # 2 frames (B*T), C=3, 1x1
    t = torch.tensor([[3.0, 4.0, 0.0], [0.0, 0.0, 1.0]]).view(2, 3, 1, 1)
    assert feature_mimic_loss(s, t).item() == pytest.approx((5.0 + 1.0) / 2)
    # 3D features (B, C, t, h, w): frames are the temporal positions
    s3 = torch.zeros(1, 2, 2, 1, 1)
    t3 = torch.tensor([[3.0, 0.0], [4.0, 2.0]]).view(1, 2, 2, 1, 1)  # frame 0: (3, 4), frame 1: (0, 2)
    assert feature_mimic_loss(s3, t3).item() == pytest.approx((5.0 + 2.0) / 2)
    student = torch.zeros(2, 3, 1, 1, requires_grad=True)
    feature_mimic_loss(student, t).backward()
    assert torch.isfinite(student.grad).all()
    with pytest.raises(ValueError, match="MFR"):
        feature_mimic_loss(torch.zeros(2, 3, 1, 1), torch.zeros(2, 4, 1, 1))


def test_teacher_is_frozen_and_must_match_the_student(tmp_path):
    model = create_model("tsm_w3_r18", num_classes=4, num_segments=4)
    path = export_weights(model, tmp_path / "model_best.safetensors")
    assert teacher_from_run_dir(tmp_path) == path
    teacher = load_teacher(tmp_path, torch.device("cpu"), model)
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
    other = create_model("tsm_w3_r18", num_classes=4, num_segments=8)
    with pytest.raises(ValueError, match="num_segments"):
        load_teacher(path, torch.device("cpu"), other)
    with pytest.raises(FileNotFoundError):
        teacher_from_run_dir(tmp_path / "nothing")


def test_stage2_student_mimics_a_stage1_teacher(tiny_config, tmp_path):
    w3 = {"model.name": "tsm_w3_r18", "model.options": "{dropout: 0.0, base_width: 16}", "optim.lr": 1e-3}
    stage1 = run_training(tiny_config(**w3, **{"train.run_name": "stage1"}))
    teacher_file = stage1.run_dir / "model_best.safetensors"
    teacher_bytes = teacher_file.read_bytes()

    stage2 = run_training(
        tiny_config(
            **w3,
            **{
                "train.run_name": "stage2",
                "train.epochs": 2,
                "distill.teacher": str(stage1.run_dir),
                "distill.weight": 10.0,
            },
        )
    )
    rows = read_metrics_csv(stage2.run_dir / "metrics.csv")
    fm = [r["train_fm_loss"] for r in rows]
    assert all(v > 0 for v in fm)
    assert fm[1] < fm[0]  # the student's refined features move towards the teacher's
    assert teacher_file.read_bytes() == teacher_bytes  # the teacher is never trained or rewritten
    resolved = json.loads((stage2.run_dir / "run.json").read_text())["config"]["distill"]["teacher"]
    assert resolved == str(teacher_file.resolve())
