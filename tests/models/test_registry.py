"""Every registered model: shapes, gradients, multi-head output, features and attention maps."""

import pytest
import torch

import vidattn
from vidattn.models import VideoOutput

REQUIRED = ["tsn_r50", "tsm_r50", "tsm_w3_r50", "tsm_cbam_r50", "tsm_nl_r50", "tsn_r18", "tsm_r18",
            "tsm_w3_r18", "tsm_r101", "tsm_w3_r101", "i3d_r18", "i3d_r50", "i3d_w3_r18", "tam_r50",
            "tam_w3_r50", "c3d_attention", "c3d"]


def test_required_names_are_registered():
    names = vidattn.list_models()
    assert [n for n in REQUIRED if n not in names] == []
    assert vidattn.list_models("tsm_w3_*") == ["tsm_w3_r101", "tsm_w3_r18", "tsm_w3_r34", "tsm_w3_r50"]


def test_unknown_model_is_a_clear_error():
    with pytest.raises(KeyError, match="unknown model 'tsm_w9_r50'"):
        vidattn.create_model("tsm_w9_r50")


def test_duplicate_registration_is_refused():
    from vidattn.models.registry import register_model

    with pytest.raises(ValueError, match="registered twice"):
        register_model(lambda **kw: None, name="tsm_r50")


@pytest.mark.parametrize("name", vidattn.list_models())
def test_forward_backward_every_model(name):
    model = vidattn.create_model(name, num_classes=7, num_segments=4)
    model.train()
    clip = torch.randn(2, 3, 4, 32, 32)
    out = model(clip, return_all=True)
    assert isinstance(out, VideoOutput)
    assert out.logits.shape == (2, 7)
    # logits-only forward gives the same result in eval mode
    model.eval()
    with torch.no_grad():
        a = model(clip)
        b = model(clip, return_all=True).logits
    torch.testing.assert_close(a, b)
    model.train()
    loss = torch.nn.functional.cross_entropy(model(clip), torch.tensor([1, 3]))
    loss.backward()
    grads = {n: p.grad for n, p in model.named_parameters()}
    missing = [n for n, g in grads.items() if g is None]
    assert missing == [], f"parameters without gradient: {missing[:5]}"
    assert all(torch.isfinite(g).all() for g in grads.values())
    first = next(p for n, p in model.named_parameters() if n.endswith("conv1.weight") or n == "conv.weight")
    assert first.grad.abs().sum() > 0
    assert model.vidattn_config["name"] == name


def test_multi_head_returns_one_tensor_per_label_space():
    model = vidattn.create_model("tsm_w3_r18", num_classes=(5, 9), num_segments=4).eval()
    verb, noun = model(torch.randn(3, 3, 4, 64, 64))
    assert verb.shape == (3, 5) and noun.shape == (3, 9)
    model = vidattn.create_model("i3d_r18", num_classes=[4, 6], num_segments=8).eval()
    assert [z.shape for z in model(torch.randn(1, 3, 8, 64, 64))] == [(1, 4), (1, 6)]


def test_features_and_attention_maps_come_from_one_pass():
    model = vidattn.create_model("tsm_w3_r18", num_classes=5, num_segments=4).eval()
    out = model(torch.randn(2, 3, 4, 96, 96), return_all=True)
    assert out.features.shape == (8, 512, 3, 3)  # (B*T, C, h, w) refined by AFR
    assert len(out.attention) == 8  # every residual block of ResNet-18
    sizes = {"layer1": 24, "layer2": 12, "layer3": 6, "layer4": 3}
    channels = {"layer1": 64, "layer2": 128, "layer3": 256, "layer4": 512}
    for block, maps in out.attention.items():
        stage = block.split(".")[0]
        assert maps["spatial"].shape == (2, 4, sizes[stage], sizes[stage])
        assert maps["channel"].shape == (2, 4, channels[stage])
        for m in maps.values():
            assert 0 <= m.min() and m.max() <= 1
    cbam = vidattn.create_model("tsm_cbam_r18", num_classes=5, num_segments=4).eval()
    maps = cbam(torch.randn(2, 3, 4, 64, 64), return_all=True).attention["layer2.1"]
    assert maps["spatial"].shape == (2, 4, 8, 8) and maps["channel"].shape == (2, 4, 128)


def test_wrong_clip_length_is_a_clear_error():
    model = vidattn.create_model("tsm_r18", num_classes=5, num_segments=8)
    with pytest.raises(ValueError, match="num_segments=8 got clips of 4 frames"):
        model(torch.randn(1, 3, 4, 64, 64))
    with pytest.raises(ValueError, match=r"\(B, 3, T, H, W\)"):
        model(torch.randn(8, 3, 64, 64))


def test_frame_logits_average_to_the_logits_and_a_twin_for_other_clips_shares_every_weight():
    model = vidattn.create_model("tsm_w3_r18", num_classes=(5, 3), num_segments=4, base_width=8).eval()
    x = torch.randn(2, 3, 4, 32, 32)
    with torch.no_grad():
        out = model(x, return_all=True)
        frames = model.frame_logits(out.features)
    assert [z.shape for z in frames] == [(2, 4, 5), (2, 4, 3)]
    for z, video in zip(frames, out.logits):
        torch.testing.assert_close(z.mean(dim=1), video, rtol=0, atol=0)  # the consensus is their mean
    twin = model.with_num_segments(2)
    assert all(a is b for a, b in zip(twin.state_dict(keep_vars=True).values(),
                                      model.state_dict(keep_vars=True).values()))
    assert twin.backbone.layer1[0].attn.num_segments == 2 and model.backbone.layer1[0].attn.num_segments == 4
    assert twin.vidattn_config["num_segments"] == 2 and model.vidattn_config["num_segments"] == 4
    assert [z.shape for z in twin(x[:, :, :2])] == [(2, 5), (2, 3)]
    with pytest.raises(ValueError, match="3D recognizer pools over time"):
        vidattn.create_model("i3d_r18", num_classes=5, num_segments=4, base_width=8).frame_logits(out.features)


def test_reset_classifier_keeps_backbone():
    model = vidattn.create_model("tsm_r18", num_classes=5, num_segments=4)
    before = model.backbone.conv1.weight.clone()
    model.reset_classifier(11)
    assert model(torch.randn(1, 3, 4, 64, 64)).shape == (1, 11)
    assert torch.equal(model.backbone.conv1.weight, before)


def test_base_width_builds_a_narrower_resnet():
    wide = vidattn.create_model("tsm_w3_r18", num_classes=5, num_segments=4)
    narrow = vidattn.create_model("tsm_w3_r18", num_classes=5, num_segments=4, base_width=16)
    assert narrow.backbone.conv1.out_channels == 16 and narrow.num_features == 128
    assert sum(p.numel() for p in narrow.parameters()) < sum(p.numel() for p in wide.parameters()) / 10
    assert narrow(torch.randn(1, 3, 4, 32, 32)).shape == (1, 5)


def test_small_stem_keeps_full_resolution_for_tiny_inputs():
    model = vidattn.create_model("tsm_r18", num_classes=5, num_segments=4, base_width=16, stem="small").eval()
    assert model.backbone.conv1.kernel_size == (3, 3) and model.backbone.conv1.stride == (1, 1)
    out = model(torch.randn(1, 3, 4, 32, 32), return_all=True)
    assert out.features.shape == (4, 128, 4, 4)  # 32 / 8: only layers 2-4 downsample
    with pytest.raises(ValueError, match="stem must be"):
        vidattn.create_model("tsm_r18", stem="tiny")
