"""Metrics against hand-computed values; challenge prediction files."""

import json

import numpy as np
import pytest
import torch

from vidattn.engine.metrics import (
    action_topk_accuracy,
    classification_metrics,
    confusion_matrix,
    mean_class_accuracy,
    multihead_metrics,
    save_confusion_csv,
    save_confusion_png,
    topk_accuracy,
)
from vidattn.engine.submission import epic_submission, write_epic_submission, write_something_predictions


def test_topk_and_mean_class_accuracy():
    scores = torch.tensor([[0.9, 0.1, 0.0], [0.2, 0.5, 0.3], [0.1, 0.6, 0.3], [0.3, 0.3, 0.4]])
    labels = torch.tensor([0, 1, 2, 2])
    acc = topk_accuracy(scores, labels, (1, 2, 5))
    assert acc[1] == pytest.approx(75.0) and acc[2] == pytest.approx(100.0) and acc[5] == 100.0
    m, cm = classification_metrics(scores, labels)
    assert cm.tolist() == [[1, 0, 0], [0, 1, 0], [0, 1, 1]]
    # per-class recall 1, 1, 0.5 -> 83.33 (top-1 is 75: the class-imbalanced average)
    assert m["mean_class_acc"] == pytest.approx(250 / 3)
    assert mean_class_accuracy(np.zeros((2, 2), dtype=int)) != mean_class_accuracy(np.eye(2))


def test_confusion_matrix_orientation():
    cm = confusion_matrix(torch.tensor([1, 1]), torch.tensor([0, 1]), 2)
    assert cm[0, 1] == 1 and cm[1, 1] == 1  # rows are the true class


def test_action_accuracy_uses_joint_scores():
    verb = torch.tensor([[0.6, 0.4], [0.9, 0.1]])
    noun = torch.tensor([[0.5, 0.3, 0.2], [0.2, 0.7, 0.1]])
    labels = torch.tensor([[1, 0], [0, 2]])
    acc = action_topk_accuracy([verb, noun], labels, (1, 2, 3))
    # sample 0: joint (v1,n0)=0.20 ranks 2nd after (v0,n0)=0.30; sample 1: (v0,n2)=0.09 ranks 3rd
    assert acc[1] == 0.0 and acc[2] == 50.0 and acc[3] == 100.0
    m, cms = multihead_metrics([verb.log(), noun.log()], labels, [verb, noun])
    assert m["verb_top1"] == 50.0 and m["noun_top1"] == 50.0 and m["action_top1"] == 0.0
    assert m["top1"] == m["action_top1"] and len(cms) == 2


def test_confusion_files(tmp_path):
    cm = np.array([[3, 1], [0, 2]])
    save_confusion_csv(cm, tmp_path / "cm.csv", ["a", "b"])
    assert (tmp_path / "cm.csv").read_text().splitlines() == ["true\\pred,a,b", "a,3,1", "b,0,2"]
    save_confusion_png(cm, tmp_path / "cm.png", ["a", "b"])
    assert (tmp_path / "cm.png").read_bytes()[:4] == b"\x89PNG"


def test_epic_submission_format(tmp_path):
    verb, noun = torch.rand(2, 125), torch.rand(2, 331)
    sub = epic_submission(["1924", "1925"], verb, noun)
    assert sub["version"] == "0.1" and sub["challenge"] == "action_recognition"
    assert set(sub["results"]) == {"1924", "1925"}
    entry = sub["results"]["1924"]
    assert set(entry) == {"verb", "noun"} and len(entry["verb"]) == 125 and len(entry["noun"]) == 331
    assert entry["noun"]["330"] == pytest.approx(float(noun[0, 330]), abs=1e-6)
    path = write_epic_submission(tmp_path / "seen.json", ["1924", "1925"], verb, noun)
    assert json.loads(path.read_text()) == json.loads(json.dumps(sub))


def test_something_predictions(tmp_path):
    scores = torch.tensor([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7]])
    path = write_something_predictions(tmp_path / "p.csv", ["100", "9", "25"], scores, ["Holding", "Pushing"])
    assert path.read_text().splitlines() == ["9;Holding", "25;Pushing", "100;Pushing"]
