"""The inference path: its choices, channels-last on mixed 2D/1D/3D convs, equal top-1 in every precision, and
logits that are always a tuple of heads, views averaged in one place."""

import copy

import pytest
import torch

from vidattn.data import SynthActions, SynthConfig, generate_synth_actions
from vidattn.inference import Predictor, bf16_is_fast, fold_batchnorm, plan_inference, to_channels_last
from vidattn.models import create_model, save_weights

BF16_LOGIT_TOL = 0.05  # documented in docs/performance.md: |logit_bf16 - logit_fp32| <= 0.05 * max(1, |logits|_max)


def test_auto_plan_follows_the_hardware_and_forcing_wins():
    model = create_model("tsm_w3_r18", num_classes=4, num_segments=4)
    fast, why = bf16_is_fast(torch.device("cpu"))
    plan = plan_inference(model, device="cpu")
    assert plan.precision == ("bf16" if fast else "fp32") and plan.channels_last and not plan.compile
    assert why in plan.describe()
    assert plan_inference(model, device="cpu", precision="bf16", channels_last=False).precision == "bf16"
    # 3D-conv models stay in fp32 on CPU whatever the CPU
    assert plan_inference(create_model("c3d_attention", num_classes=5, num_segments=16), device="cpu").precision \
        == "fp32"
    with pytest.raises(ValueError, match="precision must be one of"):
        plan_inference(model, precision="int8")


def test_logits_are_a_tuple_of_heads_per_view_for_one_head_and_for_two():
    x = torch.randn(2, 3, 3, 4, 32, 32)  # 2 videos x 3 views of (3, 4, 32, 32)
    small = {"base_width": 8, "stem": "small"}
    one_model = create_model("tsn_r18", num_classes=5, num_segments=4, **small).eval()
    with torch.no_grad():
        expected = one_model(x.flatten(0, 1)).view(2, 3, 5)
    one = Predictor(one_model, device="cpu", precision="fp32")
    out = one.run(x)
    assert isinstance(out.logits, tuple) and [tuple(z.shape) for z in out.logits] == [(2, 3, 5)]
    torch.testing.assert_close(out.logits[0], expected, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(one.logits(x), expected.mean(dim=1), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(one.predict(x), expected.softmax(-1).mean(dim=1), rtol=1e-4, atol=1e-5)
    two = Predictor(create_model("tsn_r18", num_classes=[4, 6], num_segments=4, **small), device="cpu")
    out = two.run(x[0])  # 5D is a batch of clips, one view each: (B=3, V=1, K) per head
    assert [tuple(z.shape) for z in out.logits] == [(3, 1, 4), (3, 1, 6)]
    assert [tuple(s.shape) for s in out.scores()] == [(3, 4), (3, 6)]
    with pytest.raises(ValueError, match="2 classifier heads"):
        two.predict(x)


def test_channels_last_predictor_matches_the_plain_model_and_loads_weights(tmp_path):
    model = create_model("tsm_w3_r18", num_classes=4, num_segments=4).eval()
    plain = copy.deepcopy(model)
    pred = Predictor(model, device="cpu", precision="fp32")
    conv2d, conv3d = model.backbone.conv1.weight, model.backbone.layer1[0].attn.spatial_temporal[0].weight
    assert conv2d.is_contiguous(memory_format=torch.channels_last) and not conv2d.is_contiguous()
    assert conv3d.is_contiguous(memory_format=torch.channels_last_3d)
    x = torch.randn(2, 3, 4, 64, 64)
    with torch.no_grad():
        expected = plain(x)
    torch.testing.assert_close(pred.logits(x), expected, rtol=1e-4, atol=1e-4)
    probs = pred.predict(x[0])  # one clip (3, T, H, W)
    assert probs.shape == (1, 4) and torch.allclose(probs.sum(-1), torch.ones(1))
    save_weights(plain, tmp_path / "m.safetensors")
    from vidattn.inference import load_predictor

    again = load_predictor(tmp_path / "m.safetensors", device="cpu", precision="fp32", channels_last=False)
    torch.testing.assert_close(again.logits(x), expected, rtol=1e-4, atol=1e-4)


def test_c3d_channels_last_3d_matches_contiguous():
    model = create_model("c3d_attention", num_classes=5, num_segments=8).eval()
    x = torch.randn(2, 3, 8, 32, 32)
    with torch.no_grad():
        expected = copy.deepcopy(model)(x)
    to_channels_last(model)
    assert model.conv.weight.is_contiguous(memory_format=torch.channels_last_3d)
    torch.testing.assert_close(Predictor(model, device="cpu").logits(x), expected, rtol=1e-4, atol=1e-4)


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    generate_synth_actions(root, SynthConfig(num_classes=4, videos_per_class=10, num_frames=8, size=32), workers=1)
    return root


def _batch(root, split):
    ds = SynthActions(root, split, num_frames=8, size=32, seed=0)
    items = [ds[i] for i in range(len(ds))]
    return torch.stack([it["clip"] for it in items]), torch.tensor([int(it["label"]) for it in items])


def test_same_top1_on_synth_actions_in_every_precision(synth):
    """A TSM+W3-R18 gives the same SynthActions test predictions (so the same top-1) in fp32, bf16 and fp16, with
    logits within the stated tolerance. What is tested is numerical agreement at confident logits, not
    generalisation: the classifier is fitted on frozen random-backbone features of the train *and* test clips
    (a few hundred cheap steps), so the fp32 predictions are mostly right and have real margins."""
    torch.manual_seed(0)
    model = create_model("tsm_w3_r18", num_classes=4, num_segments=8).eval()
    x_test, y_test = _batch(synth, "test")
    x_train, y_train = _batch(synth, "train")
    x_train, y_train = torch.cat((x_train, x_test)), torch.cat((y_train, y_test))
    with torch.no_grad():  # fit the head on frozen features (a few hundred cheap steps) for confident logits
        feats = model.forward_features(x_train).features.mean(dim=(2, 3))
    head = model.head.fc
    opt = torch.optim.Adam(head.parameters(), lr=0.05)
    for _ in range(300):
        logits = head(feats).view(len(y_train), 8, -1).mean(1)
        loss = torch.nn.functional.cross_entropy(logits, y_train)
        opt.zero_grad()
        loss.backward()
        opt.step()
    ref = Predictor(model, device="cpu", precision="fp32").logits(x_test)
    top1 = (ref.argmax(-1) == y_test).float().mean().item()
    assert top1 >= 0.75, top1
    for precision in ("bf16", "fp16"):
        low = Predictor(model, device="cpu", precision=precision).logits(x_test)
        tol = BF16_LOGIT_TOL * max(1.0, ref.abs().max().item())
        assert torch.equal(low.argmax(-1), ref.argmax(-1)), precision
        assert (low - ref).abs().max().item() <= tol, precision


@pytest.mark.parametrize("name", ["tsm_w3_r18", "tsm_cbam_r18", "tsm_nl_r50", "tam_w3_r18", "i3d_w3_r18",
                                  "i3d_nl_r50"])
def test_fold_batchnorm_folds_every_batchnorm_and_keeps_the_logits(name):
    """Every BatchNorm of our models follows a conv; folded with random running statistics and affine
    parameters, the model computes the same logits (the Predictor folds by default)."""
    torch.manual_seed(0)
    model = create_model(name, num_classes=5, num_segments=4).eval()
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for bn in norms:
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.data.uniform_(0.5, 1.5)
        bn.bias.data.uniform_(-0.3, 0.3)
    x = torch.randn(2, 3, 4, 48, 48)
    with torch.no_grad():
        expected = model(x)
    assert fold_batchnorm(model) == len(norms)
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules())
    with torch.no_grad():
        torch.testing.assert_close(model(x), expected, rtol=1e-4, atol=1e-4)
    train_mode = create_model(name, num_classes=5, num_segments=4).train()
    assert fold_batchnorm(train_mode) == 0  # batch statistics cannot be folded
    for m in train_mode.modules():  # partial BN: frozen BatchNorms inside a model that trains its convs
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.eval()
    assert fold_batchnorm(train_mode) == 0
