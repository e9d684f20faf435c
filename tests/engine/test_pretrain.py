"""The appearance pretraining (the ImageNet stand-in) learns appearances and loads like an ImageNet file."""

import json

import pytest
import torch

import vidattn
from vidattn.engine.pretrain import AppearancePretraining, pretrain_appearance, render_appearance_set
from vidattn.models.compat import inflate_2d_to_3d


@pytest.fixture(scope="module")
def pretrained_files(tmp_path_factory):
    """Tiny pretraining runs with the small stem (2D models) and the ImageNet stem (I3D: inflated)."""
    root = tmp_path_factory.mktemp("pretrain")
    files = {}
    for stem in ("small", "imagenet"):
        s = AppearancePretraining(base_width=8, stem=stem, size=32, images_per_appearance=2, steps=3,
                                  batch_size=16, held_out_per_appearance=1)
        path = root / f"appearance_{stem}.pth"
        pretrain_appearance(path, s, progress=False)
        files[stem] = path
    return files


def test_images_are_deterministic_and_labelled_by_appearance():
    a, la = render_appearance_set(2, 32, seed=5)
    b, lb = render_appearance_set(2, 32, seed=5)
    c, _ = render_appearance_set(2, 32, seed=6)
    assert a.shape == (96, 3, 32, 32) and a.dtype == torch.uint8
    assert torch.equal(a, b) and torch.equal(la, lb) and not torch.equal(a, c)
    assert la.tolist() == [k for k in range(48) for _ in range(2)]


def test_report_and_reuse(pretrained_files):
    path = pretrained_files["small"]
    report = json.loads((path.parent / (path.name + ".json")).read_text())
    assert report["num_appearances"] == 48 and 0 <= report["held_out_accuracy"] <= 100
    before = path.stat().st_mtime_ns
    settings = AppearancePretraining(**{**report["settings"], "radius": tuple(report["settings"]["radius"])})
    again = pretrain_appearance(path, settings, progress=False)
    assert again == report and path.stat().st_mtime_ns == before  # same settings: reused, not retrained
    state = torch.load(path, weights_only=True)
    assert "conv1.weight" in state and "layer1.0.conv1.weight" in state and "fc.weight" in state


@pytest.mark.parametrize("name", ["tsn_r18", "tsm_r18", "tsm_w3_r18", "tsm_cbam_r18", "tsm_nl_r18", "tam_r18",
                                  "tsn_w3_r18", "i3d_r18", "i3d_w3_r18"])
def test_weights_load_into_every_resnet_video_model(pretrained_files, name):
    three_d = name.startswith("i3d")
    path = pretrained_files["imagenet" if three_d else "small"]
    options = {} if three_d else {"stem": "small"}
    model = vidattn.create_model(name, num_classes=5, num_segments=4, base_width=8, pretrained=str(path),
                                 **options)
    state = torch.load(path, weights_only=True)
    target = model.state_dict()
    for key, value in state.items():
        if key.startswith("fc."):
            assert f"backbone.{key}" not in target
            continue
        got = target[f"backbone.{key}"]
        if got.dim() == 5:
            value = inflate_2d_to_3d(value, got.shape[2])
        torch.testing.assert_close(got, value, msg=f"{name}: {key}")
    assert target["head.fc.weight"].shape[0] == 5 if "head.fc.weight" in target else True


def test_pretraining_learns_appearances(tmp_path):
    """A short run fits its training images far above chance (1/48); held-out accuracy needs the real
    budget (the quickstart's report states it)."""
    torch.manual_seed(0)
    s = AppearancePretraining(base_width=8, size=32, images_per_appearance=12, steps=120, batch_size=32,
                              held_out_per_appearance=4, lr=3e-3)
    report = pretrain_appearance(tmp_path / "w.pth", s, progress=False)
    assert report["train_accuracy"] > 10 * 100 / 48, report  # chance: 2.1%
