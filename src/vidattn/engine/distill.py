"""MFR, mature-feature-guided regularisation (W3 paper Sec. 3.4, eq. 9).

Stage 1 trains a model (CE, with AFR) to convergence; stage 2 trains an identical student with

    L = CE + lambda * L_fm,    L_fm = || y_i^Q - y_i^P ||_2      (eq. 9)

where y^Q / y^P are the student's / teacher's refined final feature maps (eq. 8) of frame i. The
teacher is frozen: eval mode (BN running statistics, no dropout), no gradients.

Choices the paper leaves open (see ``docs/training.md``): the norm is the plain (not squared) L2 norm
of each frame's flattened C x h x w difference, averaged over all frames of the batch (B*T frames for
2D models; B*t temporal positions for 3D ones); lambda defaults to 1.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import Tensor, nn

from vidattn.engine.checkpoint import find_weights
from vidattn.models import build_from_weights

__all__ = ["teacher_from_run_dir", "load_teacher", "feature_mimic_loss", "frames_view"]

logger = logging.getLogger(__name__)


def teacher_from_run_dir(run_dir: str | Path) -> Path:
    """The stage-1 weights to distil from: a run dir's best weights (else last), or a weights file.

    This is what ``vidattn train --mfr-from RUN_DIR`` puts in ``distill.teacher``.
    """
    return find_weights(run_dir, prefer="best")


def load_teacher(source: str | Path, device: torch.device, student: nn.Module | None = None) -> nn.Module:
    """Rebuild the frozen stage-1 teacher from a run dir or safetensors file (eval mode, no grad).

    If ``student`` is given, the teacher must have the same architecture (eq. 9 needs matching features).
    """
    path = teacher_from_run_dir(source)
    teacher = build_from_weights(path)
    if student is not None:
        t_cfg, s_cfg = getattr(teacher, "vidattn_config", {}), getattr(student, "vidattn_config", {})
        for key in ("name", "num_segments"):
            if t_cfg.get(key) != s_cfg.get(key):
                raise ValueError(
                    f"distill.teacher {path}: teacher {key}={t_cfg.get(key)!r} differs from the student's "
                    f"{s_cfg.get(key)!r}; MFR needs an identical architecture"
                )
    teacher.to(device).eval().requires_grad_(False)
    logger.info("MFR teacher: %s (%s)", path, getattr(teacher, "vidattn_config", {}).get("name", "?"))
    return teacher


def frames_view(features: Tensor) -> Tensor:
    """Per-frame feature vectors: (B*T, C, h, w) -> (B*T, C*h*w); (B, C, t, h, w) -> (B*t, C*h*w)."""
    if features.dim() == 5:
        features = features.transpose(1, 2).flatten(0, 1)
    return features.flatten(1)


def feature_mimic_loss(student: Tensor, teacher: Tensor) -> Tensor:
    """Eq. 9: mean over frames of the L2 norm of the student-teacher feature difference (fp32)."""
    if student.shape != teacher.shape:
        raise ValueError(f"MFR: student features {tuple(student.shape)} vs teacher {tuple(teacher.shape)}")
    diff = frames_view(student.float()) - frames_view(teacher.detach().float())
    return diff.norm(p=2, dim=1).mean()
