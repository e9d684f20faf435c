"""Checkpoint compatibility: our safetensors files and foreign layouts (official TSM, mmaction2, ImageNet).

Each foreign file is built here from one of our models with random weights, renamed *into* the foreign
layout by code written independently of `vidattn.models.compat` (the forward direction, ours -> theirs,
following the reference repositories' module names), and must load back to the same logits.
"""

from __future__ import annotations

import os
import pickle

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from vidattn.models import build_from_weights, create_model
from vidattn.models.compat import (
    CheckpointError,
    detect_format,
    inflate_2d_to_3d,
    load_pretrained,
    load_weights,
    save_weights,
)

NL_BLOCKS = {"layer2.0", "layer2.2", "layer3.0", "layer3.2", "layer3.4"}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """The tensors here are tiny: intra-op threads only add overhead (2x slower on a busy 2-core box)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def randomize_(model: nn.Module, seed: int) -> nn.Module:
    """Random values for every parameter and BN statistic, so a swapped tensor changes the logits."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.state_dict().items():
            if not p.is_floating_point():
                continue
            r = torch.randn(p.shape, generator=g)
            if name.endswith("running_var"):
                p.copy_(0.5 + r.abs())
            elif name.endswith("running_mean") or name.endswith("bias"):
                p.copy_(0.1 * r)
            elif p.dim() == 1:  # BN weights
                p.copy_(1.0 + 0.2 * r)
            else:
                p.copy_(r / p[0].numel() ** 0.5)
    return model.eval()


def clip(t: int, size: int, seed: int = 0, batch: int = 1) -> torch.Tensor:
    return torch.randn(batch, 3, t, size, size, generator=torch.Generator().manual_seed(seed))


def logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(x)


# --- foreign layouts, written from the reference repositories' module structure ------------------------

def to_official_tsm(state: dict, nl_blocks: set[str] = frozenset()) -> dict:
    """Our keys -> mit-han-lab/temporal-shift-module: DataParallel `module.`, `base_model.`, TemporalShift
    wrapping conv1 (`conv1.net`), NL3DWrapper (`block` + `nl` with g/phi in Sequentials, W = [conv, BN]),
    classifier `new_fc`."""
    out = {}
    nl_names = {"theta": ["theta"], "phi": ["phi", "0"], "g": ["g", "0"], "out_conv": ["W", "0"],
                "out_bn": ["W", "1"]}
    for key, value in state.items():
        if key.startswith("head.fc."):
            out["module.new_fc." + key.split(".", 2)[2]] = value
            continue
        assert key.startswith("backbone."), key
        parts = key.split(".")[1:]
        if parts[0].startswith("layer"):
            block, rest = parts[:2], parts[2:]
            if rest[0] == "post":
                rest = ["nl", *nl_names[rest[1]], *rest[2:]]
            else:
                if rest[0] == "conv1":
                    rest = ["conv1", "net", *rest[1:]]
                if ".".join(block) in nl_blocks:
                    rest = ["block", *rest]
            parts = [*block, *rest]
        out["module.base_model." + ".".join(parts)] = value
    return out


def to_mmaction2(state: dict, nl_blocks: set[str] = frozenset()) -> dict:
    """Our keys -> mmaction2 ResNetTSM: ConvModule (`convK.conv`, `convK.bn`, stem `conv1.conv/bn`,
    `downsample.conv/bn`), TemporalShift wrapping `conv1.conv` (`.net`), NL3DWrapper (`block`,
    `non_local_block` with ConvModules, g/phi followed by max-pool in a Sequential, no bias on conv_out),
    classifier `cls_head.fc_cls`."""
    out = {}
    nl_names = {"theta": ["theta", "conv"], "phi": ["phi", "0", "conv"], "g": ["g", "0", "conv"],
                "out_conv": ["conv_out", "conv"], "out_bn": ["conv_out", "bn"]}
    for key, value in state.items():
        if key.startswith("head.fc."):
            out["cls_head.fc_cls." + key.split(".", 2)[2]] = value
            continue
        parts = key.split(".")[1:]
        if parts[0] == "conv1":
            parts = ["conv1", "conv", *parts[1:]]
        elif parts[0] == "bn1":
            parts = ["conv1", "bn", *parts[1:]]
        else:
            block, rest = parts[:2], parts[2:]
            name = rest[0]
            if name == "post":
                if rest[1:] == ["out_conv", "bias"]:
                    assert torch.count_nonzero(value) == 0  # mmcv's conv_out (followed by BN) has no bias
                    continue
                rest = ["non_local_block", *nl_names[rest[1]], *rest[2:]]
            elif name == "downsample":
                rest = ["downsample", {"0": "conv", "1": "bn"}[rest[1]], *rest[2:]]
            elif name.startswith("conv"):
                rest = [name, "conv", *(["net"] if name == "conv1" else []), *rest[1:]]
            elif name.startswith("bn"):
                rest = ["conv" + name[2:], "bn", *rest[1:]]
            if ".".join(block) in nl_blocks and rest[0] != "non_local_block":
                rest = ["block", *rest]
            parts = [*block, *rest]
        out["backbone." + ".".join(parts)] = value
    return out


def to_torchvision(state: dict, num_classes: int = 1000) -> dict:
    """Our 2D ResNet backbone -> a torchvision ResNet state dict (our names are torchvision's), plus `fc`."""
    out = {k[len("backbone."):]: v for k, v in state.items() if k.startswith("backbone.")}
    last_bn = "layer4.0.bn3.weight" if "layer4.0.bn3.weight" in out else "layer4.0.bn2.weight"
    width = out[last_bn].shape[0]
    out["fc.weight"] = torch.randn(num_classes, width)
    out["fc.bias"] = torch.randn(num_classes)
    return out


# --- our format -------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tsm_w3():
    torch.manual_seed(0)
    model = create_model("tsm_w3_r18", num_classes=10, num_segments=4,
                         attention_options={"reduction": 8, "channel_temporal_groups": "full"})
    return randomize_(model, 1)


def test_round_trip_reproduces_logits(tsm_w3, tmp_path):
    x = clip(4, 32)
    path = save_weights(tsm_w3, tmp_path / "model.safetensors")
    assert [p.name for p in tmp_path.iterdir()] == ["model.safetensors"]  # no temp file left behind
    rebuilt = build_from_weights(path)
    assert rebuilt.vidattn_config == tsm_w3.vidattn_config  # nested options survive the JSON metadata
    assert torch.equal(logits(rebuilt, x), logits(tsm_w3, x))
    torch.manual_seed(5)
    again = create_model("tsm_w3_r18", num_classes=10, num_segments=4, pretrained=path,
                         attention_options={"reduction": 8, "channel_temporal_groups": "full"})
    assert torch.equal(logits(again, x), logits(tsm_w3, x))
    state, config = load_weights(path)
    assert config["name"] == "tsm_w3_r18" and config["options"]["attention_options"]["reduction"] == 8
    assert detect_format(state) == "vidattn"


def test_save_handles_shared_and_non_contiguous_tensors(tmp_path):
    model = nn.Module()
    model.a = nn.Linear(4, 4)
    model.b = nn.Linear(4, 4)
    model.b.weight = model.a.weight  # shared storage
    model.register_buffer("t", torch.arange(12.0).view(3, 4).t())  # non-contiguous
    save_weights(model, tmp_path / "tied.safetensors")
    state, config = load_weights(tmp_path / "tied.safetensors")
    assert config is None
    assert torch.equal(state["b.weight"], model.a.weight) and torch.equal(state["t"], model.t)


def test_build_from_weights_needs_our_config(tmp_path):
    path = tmp_path / "bare.safetensors"
    save_weights(nn.Linear(2, 2), path)
    with pytest.raises(CheckpointError, match="no vidattn model config"):
        build_from_weights(path)


# --- official TSM --------------------------------------------------------------------------------------

def test_official_tsm_checkpoint(tmp_path):
    torch.manual_seed(0)
    source = randomize_(create_model("tsm_r18", num_classes=12, num_segments=4), 2)
    path = tmp_path / "TSM_something_RGB_resnet18_shift8_blockres_avg_segment4_e45.pth"
    foreign = to_official_tsm(source.state_dict())
    assert "module.base_model.layer1.0.conv1.net.weight" in foreign and "module.new_fc.bias" in foreign
    torch.save({"epoch": 45, "arch": "resnet18", "state_dict": foreign, "best_prec1": 45.6}, path)
    fresh = create_model("tsm_r18", num_classes=12, num_segments=4, pretrained=path)
    x = clip(4, 32)
    assert torch.equal(logits(fresh, x), logits(source, x))


@pytest.fixture(scope="module")
def tsm_nl():
    """TSM-NL R50 with random weights (output conv biases zero, as mmcv's bias-free conv_out) and its
    logits on a tiny clip (the non-local blocks need H, W >= 4 at layer3: 64 px)."""
    torch.manual_seed(0)
    source = randomize_(create_model("tsm_nl_r50", num_classes=5, num_segments=2), 3)
    with torch.no_grad():
        for name, p in source.named_parameters():
            if name.endswith("post.out_conv.bias"):
                p.zero_()
    x = clip(2, 64)
    return source, x, logits(source, x)


def test_official_tsm_non_local_checkpoint(tsm_nl, tmp_path):
    source, x, expected = tsm_nl
    foreign = to_official_tsm(source.state_dict(), NL_BLOCKS)
    for key in ("layer2.0.block.conv1.net.weight", "layer2.0.nl.g.0.weight", "layer3.4.nl.phi.0.bias",
                "layer2.2.nl.theta.weight", "layer3.2.nl.W.0.weight", "layer3.0.nl.W.1.running_var",
                "layer2.1.conv1.net.weight", "layer1.0.downsample.1.bias", "layer2.0.block.bn1.running_mean"):
        assert "module.base_model." + key in foreign, key
    path = tmp_path / "TSM_kinetics_RGB_resnet50_shift8_blockres_avg_segment8_e100_dense_nl.pth"
    torch.save({"epoch": 100, "arch": "resnet50", "state_dict": foreign, "best_prec1": 75.6}, path)
    fresh = create_model("tsm_nl_r50", num_classes=5, num_segments=2, pretrained=path)
    assert torch.equal(logits(fresh, x), expected)


# --- mmaction2 -----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tsm_r50():
    torch.manual_seed(0)
    return randomize_(create_model("tsm_r50", num_classes=10, num_segments=2), 4)


def test_mmaction2_tsm_r50_checkpoint(tsm_r50, tmp_path):
    foreign = to_mmaction2(tsm_r50.state_dict())
    for key in ("backbone.conv1.conv.weight", "backbone.conv1.bn.running_mean",
                "backbone.layer1.0.conv1.conv.net.weight", "backbone.layer1.0.conv3.bn.weight",
                "backbone.layer3.5.conv2.conv.weight", "backbone.layer2.0.downsample.conv.weight",
                "backbone.layer2.0.downsample.bn.num_batches_tracked", "cls_head.fc_cls.weight"):
        assert key in foreign, key
    path = tmp_path / "tsm_r50_1x1x8_50e_sthv1_rgb.pth"
    torch.save({"meta": {"epoch": 50, "mmaction_version": "0.24.1", "config": "model = dict(...)"},
                "state_dict": foreign}, path)
    fresh = create_model("tsm_r50", num_classes=10, num_segments=2, pretrained=path)
    x = clip(2, 32)
    assert torch.equal(logits(fresh, x), logits(tsm_r50, x))


def test_mmaction2_non_local_names(tsm_nl, tmp_path):
    source, x, expected = tsm_nl
    foreign = to_mmaction2(source.state_dict(), NL_BLOCKS)
    assert "backbone.layer2.0.block.conv1.conv.net.weight" in foreign
    assert "backbone.layer3.4.non_local_block.g.0.conv.weight" in foreign
    path = tmp_path / "tsm_nl.pth"
    torch.save({"state_dict": foreign}, path)
    fresh = create_model("tsm_nl_r50", num_classes=5, num_segments=2, pretrained=path)
    assert torch.equal(logits(fresh, x), expected)


# --- ImageNet ResNets ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def imagenet_r18():
    """A 2D ResNet-18 with random weights and its torchvision-layout state dict."""
    torch.manual_seed(0)
    net = randomize_(create_model("tsn_r18", num_classes=3, num_segments=2), 7)
    return net, to_torchvision(net.state_dict())


def test_imagenet_resnet_into_2d_model(imagenet_r18, tmp_path):
    net, tv = imagenet_r18
    for key in ("conv1.weight", "bn1.running_var", "layer1.0.conv1.weight", "layer2.0.downsample.0.weight",
                "layer4.1.bn2.num_batches_tracked", "fc.weight"):
        assert key in tv, key
    path = tmp_path / "resnet18-f37072fd.pth"
    torch.save(tv, path)
    torch.manual_seed(1)
    fresh = create_model("tsn_r18", num_classes=7, num_segments=2, pretrained=path)
    x = clip(2, 32)
    with torch.no_grad():
        ours = fresh.eval().forward_features(x).features
        ref = net.eval().forward_features(x).features
    assert torch.equal(ours, ref)

    # A model with attention: the ResNet loads, attention / AFR / classifier stay as initialised.
    torch.manual_seed(2)
    model = create_model("tsm_w3_r18", num_classes=7, num_segments=2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    report = load_pretrained(model, path)
    after = model.state_dict()
    for key, value in tv.items():
        if not key.startswith("fc."):
            assert torch.equal(after["backbone." + key], value), key
    new = [k for k in after if ".attn." in k or k.startswith(("afr.", "head."))]
    assert new and all(torch.equal(after[k], before[k]) for k in new)
    assert set(new) <= set(report.missing) and report.format == "imagenet"


def test_imagenet_missing_backbone_tensor_is_an_error(imagenet_r18, tmp_path):
    tv = dict(imagenet_r18[1])
    del tv["layer3.1.bn1.running_mean"]
    path = tmp_path / "partial.pth"
    torch.save(tv, path)
    with pytest.raises(CheckpointError, match=r"backbone\.layer3\.1\.bn1\.running_mean"):
        create_model("tsn_r18", num_classes=7, num_segments=2, pretrained=path, pretrained_strict=False)


def test_imagenet_inflation_into_i3d(imagenet_r18, tmp_path):
    net, tv = imagenet_r18
    path = tmp_path / "resnet18.pth"
    torch.save(tv, path)
    model = create_model("i3d_r18", num_classes=7, num_segments=8, pretrained=path).eval()
    w3d = model.backbone.conv1.weight
    assert w3d.shape == (64, 3, 5, 7, 7)
    assert torch.allclose(w3d.sum(dim=2), tv["conv1.weight"], atol=1e-6)
    assert torch.equal(model.backbone.bn1.running_var, tv["bn1.running_var"])
    assert torch.allclose(model.backbone.layer2[1].conv1.weight.sum(dim=2), tv["layer2.1.conv1.weight"],
                          atol=1e-6)
    frame = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    constant = frame.unsqueeze(2).expand(1, 3, 8, 32, 32).contiguous()
    with torch.no_grad():
        out3d = model.backbone.conv1(constant)
        out2d = F.conv2d(frame, tv["conv1.weight"], stride=2, padding=3)
    for t in range(2, 6):  # frames away from the zero temporal padding of the 5-frame kernel
        torch.testing.assert_close(out3d[:, :, t], out2d, rtol=1e-5, atol=1e-5)
    # Sanity of the reference: an edge frame sees the padding, so it differs.
    assert not torch.allclose(out3d[:, :, 0], out2d, atol=1e-3)
    assert torch.equal(inflate_2d_to_3d(torch.ones(2, 2, 1, 1), 4), torch.full((2, 2, 4, 1, 1), 0.25))


def test_imagenet_resnet50_into_resnet18_is_refused(tsm_r50, tmp_path):
    tv = to_torchvision(tsm_r50.state_dict())
    path = tmp_path / "resnet50.pth"
    torch.save({"state_dict": tv}, path)
    with pytest.raises(CheckpointError, match="resnet50.pth"):
        create_model("tsn_r18", num_classes=3, num_segments=1, pretrained=path, pretrained_strict=False)


# --- fine-tuning: a classifier of another size -------------------------------------------------------------

def test_mismatching_classifier(tsm_w3, tmp_path):
    path = save_weights(tsm_w3, tmp_path / "k10.safetensors")
    options = tsm_w3.vidattn_config["options"]
    with pytest.raises(CheckpointError) as info:
        create_model("tsm_w3_r18", num_classes=7, num_segments=4, pretrained=path, **options)
    message = str(info.value)
    assert "head.fc.weight" in message and "pretrained_strict=False" in message and "\n" not in message

    torch.manual_seed(11)
    fresh_head = create_model("tsm_w3_r18", num_classes=7, num_segments=4, **options).head.fc.weight.clone()
    torch.manual_seed(11)
    model = create_model("tsm_w3_r18", num_classes=7, num_segments=4, pretrained=path,
                         pretrained_strict=False, **options)
    assert torch.equal(model.head.fc.weight, fresh_head)
    src = tsm_w3.state_dict()
    for key, value in model.state_dict().items():
        if not key.startswith("head."):
            assert torch.equal(value, src[key]), key
    report = load_pretrained(model, path, strict=False)
    assert set(report.skipped) == {"head.fc.weight", "head.fc.bias"} and not report.missing


# --- safety and broken files -----------------------------------------------------------------------------

class _Payload:
    def __init__(self, target: str) -> None:
        self.target = target

    def __reduce__(self):
        return os.system, (f"touch {self.target}",)


@pytest.mark.parametrize("writer", ["torch.save", "pickle"])
def test_pickle_with_code_is_refused(tmp_path, writer):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    payload = {"state_dict": {"conv1.weight": torch.zeros(1)}, "args": _Payload(str(marker))}
    if writer == "torch.save":
        torch.save(payload, path)
    else:
        with open(path, "wb") as f:
            pickle.dump(payload, f)
    with pytest.raises(CheckpointError, match="refuses to unpickle code") as info:
        create_model("tsm_r18", num_classes=3, num_segments=2, pretrained=path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(CheckpointError):
        load_weights(path)
    assert not marker.exists()


def test_custom_class_is_refused(tmp_path):
    path = tmp_path / "with_object.pth.tar"
    torch.save({"state_dict": {"a": torch.ones(1)}, "optimizer_cls": _Payload("x")}, path)
    with pytest.raises(CheckpointError, match="system"):
        load_weights(path)


def test_broken_files_name_the_file(tmp_path, tsm_w3):
    good = save_weights(tsm_w3, tmp_path / "good.safetensors")
    data = good.read_bytes()
    (tmp_path / "truncated.safetensors").write_bytes(data[: len(data) // 2])
    torch.save({"a": torch.ones(1000)}, tmp_path / "ok.pth")
    pth = (tmp_path / "ok.pth").read_bytes()
    (tmp_path / "truncated.pth").write_bytes(pth[: len(pth) // 2])
    (tmp_path / "empty.pth").write_bytes(b"")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint at all")
    for name in ("truncated.safetensors", "truncated.pth", "empty.pth", "junk.pt", "missing.pth"):
        path = tmp_path / name
        with pytest.raises(CheckpointError) as info:
            create_model("tsm_w3_r18", num_classes=10, num_segments=4, pretrained=path)
        assert str(path) in str(info.value) and "\n" not in str(info.value), name


def test_detect_format():
    with pytest.raises(CheckpointError, match="unrecognised"):
        detect_format({"encoder.weight": torch.ones(1)})
    one = torch.ones(1)
    assert detect_format({"conv1.weight": one, "layer1.0.conv1.weight": one, "fc.bias": one}) == "imagenet"
    assert detect_format({"base_model.conv1.weight": torch.ones(1)}) == "tsm_official"
    assert detect_format({"backbone.conv1.conv.weight": torch.ones(1)}) == "mmaction2"
    assert detect_format({"conv.weight": torch.ones(1), "gate.weight": torch.ones(1)}) == "vidattn"


@pytest.mark.parametrize("options, match", [
    ({"base_width": 1_000_000}, "asks for a tsm_r18 of"),  # 36 TB if it were built
    ({"base_width": 128}, "asks for a tsm_r18 of"),
    ({"base_width": "wide"}, "does not describe a buildable model"),
])
def test_metadata_asking_for_a_huge_or_unbuildable_model_is_refused(tmp_path, options, match):
    import json
    import time

    from safetensors.torch import load_file, save_file

    model = create_model("tsm_r18", num_classes=4, num_segments=4, base_width=8)
    save_weights(model, tmp_path / "ok.safetensors")
    config = {**model.vidattn_config, "options": {**model.vidattn_config.get("options", {}), **options}}
    save_file(load_file(tmp_path / "ok.safetensors"), tmp_path / "evil.safetensors",
              metadata={"format": "vidattn", "vidattn_config": json.dumps(config)})
    start = time.perf_counter()
    with pytest.raises(CheckpointError, match=rf"evil.safetensors: its vidattn_config metadata {match}"):
        build_from_weights(tmp_path / "evil.safetensors")
    assert time.perf_counter() - start < 30
    assert build_from_weights(tmp_path / "ok.safetensors") is not None
