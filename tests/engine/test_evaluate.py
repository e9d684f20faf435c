"""Evaluation through the real pipeline: multi-view averaging, two-head (EPIC-style) metrics and the
challenge prediction files of unlabelled test splits."""

import json

import pytest
import torch
from torch import nn

from vidattn.config import load_config
from vidattn.engine.evaluate import run_evaluation
from vidattn.engine.train import run_training
from vidattn.inference import Predictor

from .conftest import RECIPE, tiny_overrides


def test_views_average_softmax_or_logits():
    class Echo(nn.Module):  # logits = the first pixel of each view, 2 classes
        def forward(self, x):
            return torch.stack([x[:, 0, 0, 0, 0], -x[:, 0, 0, 0, 0]], dim=1)

    clips = torch.zeros(1, 2, 3, 1, 1, 1)
    clips[0, 0, 0], clips[0, 1, 0] = 2.0, -1.0  # view logits (2, -2) and (-1, 1)
    out = Predictor(Echo(), device="cpu", precision="fp32").run(clips)
    assert len(out.logits) == 1 and out.logits[0].shape == (1, 2, 2)  # a tuple of heads, (B, V, K)
    scores, logits = out.scores("logits"), out.mean_logits()
    assert torch.allclose(scores[0], torch.tensor([[0.5, -0.5]])) and torch.equal(scores[0], logits[0])
    expected = (torch.tensor([2.0, -2.0]).softmax(0) + torch.tensor([-1.0, 1.0]).softmax(0)) / 2
    assert torch.allclose(out.scores("softmax")[0][0], expected)


def list_split(root, name, lines):
    (root / f"{name}.txt").write_text("\n".join(lines) + "\n")
    return name


@pytest.fixture
def two_head_splits(tiny_synth):
    """EPIC-style verb + noun labels over SynthActions (verb = class, noun = class // 2)."""

    def labelled(split):
        return [
            f"{p} {int(y)} {int(y) // 2}"
            for p, y in (line.split() for line in (tiny_synth / f"{split}.txt").read_text().splitlines())
        ]

    train = list_split(tiny_synth, "mh_train", labelled("train"))
    val = list_split(tiny_synth, "mh_val", labelled("val"))
    test = list_split(
        tiny_synth,
        "mh_test_s1",
        [f"{line.split()[0]} -1 -1" for line in (tiny_synth / "test.txt").read_text().splitlines()],
    )
    return train, val, test


def test_two_heads_verb_noun_action_and_epic_submission(tiny_synth, tmp_path, two_head_splits):
    train, val, test = two_head_splits
    cfg = load_config(
        RECIPE,
        tiny_overrides(
            tiny_synth,
            tmp_path,
            **{
                "data.dataset": "list",
                "data.num_classes": "[4, 2]",
                "data.train_split": train,
                "data.val_split": val,
                "data.flip": False,
            },
        ),
    )
    result = run_training(cfg)
    m = result.metrics
    for key in ("val_verb_top1", "val_noun_top1", "val_action_top1", "val_action_top5"):
        assert 0.0 <= m[key] <= 100.0, key
    assert m["val_top1"] == m["val_action_top1"] <= min(m["val_verb_top1"], m["val_noun_top1"])

    ev = run_evaluation(result.run_dir, split=test, overrides=["eval.clips=2", "eval.crops=3"])
    assert ev.metrics["views"] == 6
    assert ev.metrics["gmacs_total"] == pytest.approx(6 * ev.metrics["gmacs_per_view"])
    sub = json.loads(ev.files["submission"].read_text())
    assert ev.files["submission"].name == "seen.json"
    assert sub["version"] == "0.1" and sub["challenge"] == "action_recognition"
    ids = [line.split()[0].rsplit(".", 1)[0] for line in (tiny_synth / "test.txt").read_text().splitlines()]
    assert sorted(sub["results"]) == sorted(ids)
    entry = sub["results"][ids[0]]
    assert len(entry["verb"]) == 4 and len(entry["noun"]) == 2
    assert sum(entry["verb"].values()) == pytest.approx(1.0, abs=1e-4)  # averaged softmax scores


def test_something_style_predictions_for_an_unlabelled_split(tiny_config, tiny_synth):
    result = run_training(tiny_config())
    split = list_split(
        tiny_synth,
        "unlabelled",
        [f"{line.split()[0]} -1" for line in (tiny_synth / "test.txt").read_text().splitlines()],
    )
    ev = run_evaluation(result.run_dir, split=split, overrides=["eval.crops=3", "eval.full_res=true"])
    lines = ev.files["submission"].read_text().splitlines()
    assert ev.files["submission"].name == "predictions.csv" and len(lines) == 8
    classes = (tiny_synth / "classes.txt").read_text().split()
    assert all(";" in line and line.split(";")[1] in classes + ["0", "1", "2", "3"] for line in lines)
    assert "top1" not in ev.metrics  # nothing labelled, nothing scored
    # `vidattn test RUN_DIR/checkpoint.pt` evaluates that checkpoint's (last) weights
    val = run_evaluation(result.run_dir / "checkpoint.pt", split="val").metrics
    assert val["top1"] == pytest.approx(result.metrics["val_top1"])
