"""Prediction files for the unlabelled test sets of the challenge servers.

- EPIC-Kitchens-55 action recognition (S1 "seen" / S2 "unseen" kitchens): one JSON per test set,
  ``{"version": "0.1", "challenge": "action_recognition", "results": {uid: {"verb": {class: score},
  "noun": {class: score}}}}`` with a score for every class; the server derives action scores itself
  (softmax of verb and noun scores, product). Files are named ``seen.json`` / ``unseen.json`` in the
  submission zip.
- Something-Something V1/V2: one ``id;label`` line per test video, the layout of the datasets' own
  label CSVs; ``label`` is the class text when class names are known, else the class index.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import torch

from vidattn.engine.checkpoint import atomic_write_text

__all__ = ["epic_submission", "write_epic_submission", "write_something_predictions"]


def epic_submission(uids: Sequence[str], verb_scores: torch.Tensor, noun_scores: torch.Tensor) -> dict:
    """The EPIC-Kitchens-55 action-recognition submission object (scores as given, every class)."""
    if not (len(uids) == len(verb_scores) == len(noun_scores)):
        raise ValueError("epic_submission: uids, verb and noun scores must have the same length")
    results = {}
    for uid, verb, noun in zip(uids, verb_scores.tolist(), noun_scores.tolist()):
        results[str(uid)] = {
            "verb": {str(c): round(float(s), 6) for c, s in enumerate(verb)},
            "noun": {str(c): round(float(s), 6) for c, s in enumerate(noun)},
        }
    return {"version": "0.1", "challenge": "action_recognition", "results": results}


def write_epic_submission(
    path: str | Path, uids: Sequence[str], verb_scores: torch.Tensor, noun_scores: torch.Tensor
) -> Path:
    """Write :func:`epic_submission` as JSON (``seen.json`` for S1, ``unseen.json`` for S2)."""
    return atomic_write_text(path, json.dumps(epic_submission(uids, verb_scores, noun_scores)))


def write_something_predictions(
    path: str | Path, video_ids: Sequence[str], scores: torch.Tensor, class_names: Sequence[str] | None = None
) -> Path:
    """One ``id;label`` line per video (top-1 prediction), sorted by id as the test CSV is."""
    preds = scores.argmax(dim=1).tolist()
    rows = sorted(zip(video_ids, preds), key=lambda r: (len(str(r[0])), str(r[0])))
    lines = [f"{vid};{class_names[p] if class_names is not None else p}" for vid, p in rows]
    return atomic_write_text(path, "\n".join(lines) + "\n")
