"""Every recipe in configs/ loads, names its paper target, builds its model and its data pipeline.

The pipeline (sampling, train transform, test views) is built exactly as the engine builds it, on a
miniature SynthActions set standing in for the recipe's dataset; the recipe's own dataset class is
checked to accept its split names.
"""

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from vidattn.config import load_config
from vidattn.data import DATASETS
from vidattn.engine import builders

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "configs").glob("*.yaml"))


def test_there_is_a_recipe_per_published_row():
    names = {p.stem for p in CONFIGS}
    for required in (
        "tsm_r50_8f_sthv1",
        "tsm_w3_r50_16f_sthv1",
        "tsm_w3_r50_16f_sthv1_mfr",
        "tsm_cbam_r50_16f_sthv1",
        "tsm_nl_r50_16f_sthv1",
        "tsm_r50_8f_sthv2",
        "tsm_w3_r50_8f_egogesture_mfr",
        "tsm_w3_r50_8f_epic55_mfr",
        "i3d_w3_r18_32f_sthv1",
        "tam_w3_r50_8f_sthv1",
        "c3d_ucf101",
        "c3d_attention_ucf101",
        "synth_actions",
    ):
        assert required in names


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_recipe_builds_model_and_pipeline(path, tiny_synth):
    cfg = load_config(path)
    assert cfg.name == path.stem
    assert cfg.target.source, "every recipe states the paper number it targets (or why there is none)"
    if cfg.distill.teacher:
        assert path.stem.endswith("_mfr") and cfg.train.run_name is None

    # the recipe's dataset class exists and accepts its splits (no data here: a missing-file error)
    assert cfg.data.dataset in DATASETS
    for split in filter(None, (cfg.data.train_split, cfg.data.val_split, cfg.data.test_split)):
        with pytest.raises(FileNotFoundError):
            DATASETS[cfg.data.dataset]("/nonexistent/vidattn", split, **cfg.data.options)

    # model: the recipe's architecture, classes and frames (no ImageNet file here), on a small input
    model = builders.build_model(replace(cfg, model=replace(cfg.model, pretrained=None))).eval()
    t = cfg.data.num_segments
    with torch.no_grad():
        out = model(
            torch.randn(1, 3, t, 32, 32)
            if "c3d" not in cfg.model.name
            else torch.randn(1, 3, t, cfg.data.crop_size, cfg.data.crop_size)
        )
    classes = cfg.data.num_classes
    if isinstance(classes, list):
        assert [o.shape for o in out] == [(1, k) for k in classes]
    else:
        assert out.shape == (1, classes)

    # data pipeline: the recipe's sampler + transforms on a stand-in dataset
    mini = replace(cfg, data=replace(cfg.data, dataset="synth_actions", root=str(tiny_synth), options={}))
    train = builders.build_dataset(mini, "train", train=True)[0]
    crop = cfg.data.crop_size
    assert train["clip"].shape == (3, t, crop, crop)
    test = builders.build_dataset(mini, "val", train=False, views=True)[0]["clip"]
    views = cfg.eval.clips * cfg.eval.crops
    side = cfg.data.scale_size if cfg.eval.full_res else crop
    expected = (3, t, side, side) if views == 1 else (views, 3, t, side, side)
    assert tuple(test.shape) == expected
