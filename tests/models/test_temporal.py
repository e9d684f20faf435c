"""Temporal modules against their per-element definitions, and the time-reversal property of recognizers."""

import pytest
import torch

import vidattn
from vidattn.models.tam import TemporalAggregation
from vidattn.models.temporal_shift import TemporalShift, temporal_shift


def shift_by_definition(x, t, fold_div):
    """REFERENCES.md: channels [0, fold) of frame t take frame t+1's values, [fold, 2 fold) frame t-1's."""
    nt, c, h, w = x.shape
    fold = c // fold_div
    out = torch.zeros_like(x)
    for clip in range(nt // t):
        for f in range(t):
            for ch in range(c):
                if ch < fold:
                    src = f + 1
                elif ch < 2 * fold:
                    src = f - 1
                else:
                    src = f
                if 0 <= src < t:
                    out[clip * t + f, ch] = x[clip * t + src, ch]
    return out


@pytest.mark.parametrize("channels,fold_div,t", [(16, 8, 4), (24, 4, 3), (10, 8, 5)])
def test_temporal_shift_matches_definition(channels, fold_div, t):
    x = torch.randn(2 * t, channels, 3, 2)
    torch.testing.assert_close(temporal_shift(x, t, fold_div), shift_by_definition(x, t, fold_div),
                               rtol=0, atol=0)


@pytest.mark.parametrize("channels,fold_div,t", [(16, 8, 4), (10, 8, 1)])
def test_causal_shift_takes_one_fold_from_the_past_frame(channels, fold_div, t):
    """TSM's online shift: channels [0, fold) of frame t are frame t-1's (zeros at t=0), the rest frame t's."""
    x = torch.randn(2 * t, channels, 3, 2).contiguous(memory_format=torch.channels_last)
    fold = channels // fold_div
    expected = x.clone()
    for clip in range(2):
        for f in range(t):
            expected[clip * t + f, :fold] = x[clip * t + f - 1, :fold] if f > 0 else 0
    y = TemporalShift(channels, t, fold_div, causal=True)(x)
    torch.testing.assert_close(y, expected, rtol=0, atol=0)


def test_temporal_shift_gradients():
    x = torch.randn(8, 16, 5, 5).to(memory_format=torch.channels_last).requires_grad_()
    y = TemporalShift(16, num_segments=4, fold_div=8)(x)
    y.sum().backward()
    # each channel of the shifted folds loses exactly one frame per clip (the zero-padded end)
    per_channel = x.grad.sum(dim=(0, 2, 3))
    assert torch.all(per_channel[:4] == 25 * 6) and torch.all(per_channel[4:] == 25 * 8)


def test_temporal_shift_rejects_incomplete_clips():
    with pytest.raises(ValueError, match="not a multiple of num_segments=4"):
        temporal_shift(torch.randn(6, 8, 2, 2), 4)


def test_tam_matches_definition():
    tam = TemporalAggregation(6, num_segments=4, identity_init=False)
    x = torch.randn(8, 6, 3, 3)
    w_prev, w_curr, w_next = tam.weight.detach()
    v = x.view(2, 4, 6, 3, 3)
    expected = torch.empty_like(v)
    for f in range(4):
        acc = w_curr[:, None, None] * v[:, f]
        if f > 0:
            acc = acc + w_prev[:, None, None] * v[:, f - 1]
        if f < 3:
            acc = acc + w_next[:, None, None] * v[:, f + 1]
        expected[:, f] = acc.clamp(min=0)
    torch.testing.assert_close(tam(x), expected.view_as(x))
    identity = TemporalAggregation(6, num_segments=4)
    assert torch.equal(identity(x.clamp(min=0)), x.clamp(min=0))


@pytest.mark.parametrize("name,invariant", [("tsn_r18", True), ("tsm_r18", False), ("tsm_w3_r18", False),
                                            ("tam_r18", False), ("tsn_w3_r18", False), ("i3d_r18", False)])
def test_time_reversal(name, invariant):
    """TSN averages per-frame predictions, so frame order cannot matter; temporal modules make it matter."""
    model = vidattn.create_model(name, num_classes=5, num_segments=4).eval()
    if name.startswith("tam"):  # TAM starts as the identity; give it a real temporal blend
        for module in model.modules():
            if isinstance(module, TemporalAggregation):
                torch.nn.init.uniform_(module.weight, 0.0, 1.0)
    clip = torch.randn(2, 3, 4, 32, 32)
    with torch.no_grad():
        forward, backward = model(clip), model(clip.flip(2))
    if invariant:
        torch.testing.assert_close(forward, backward, rtol=1e-4, atol=1e-5)
    else:
        assert (forward - backward).abs().max() > 1e-4 * forward.abs().max()


CAUSAL_OPTIONS = {"base_width": 8, "stem": "small", "causal": True, "attention_options": {"mask_init_bias": None}}


@pytest.mark.parametrize("name", ["tsm_r18", "tsm_w3_r18", "tsm_cbam_r18", "tsn_w3_r18"])
def test_causal_models_frame_outputs_ignore_later_frames(name):
    """`causal=True`: perturbing frame t changes no frame's logits before t (TSM, TSM+W3 with AFR, TSM+CBAM,
    TSN+W3), and the later ones do change; the centred model's earlier frames change."""
    options = {k: v for k, v in CAUSAL_OPTIONS.items() if "cbam" not in name or k != "attention_options"}
    causal = vidattn.create_model(name, num_classes=5, num_segments=5, **options).eval()
    centred = vidattn.create_model(name, num_classes=5, num_segments=5, **{**options, "causal": False}).eval()
    centred.load_state_dict(causal.state_dict())
    assert causal.afr is not None if "w3" in name else causal.afr is None
    x = torch.randn(2, 3, 5, 16, 16)
    y = x.clone()
    y[:, :, 2] += torch.randn_like(y[:, :, 2])
    with torch.no_grad():
        for model, unchanged in ((causal, True), (centred, False)):
            a, b = (model.frame_logits(model.forward_features(clip).features) for clip in (x, y))
            before = (a - b)[:, :2].abs().max()
            assert (before == 0) if unchanged else (before > 0)
            assert (a - b)[:, 2:].abs().amax(dim=(0, 2)).min() > 0
