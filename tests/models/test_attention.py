"""Attention modules against independent functional re-implementations of their papers' equations."""

import pytest
import torch
import torch.nn.functional as F

import vidattn
from vidattn.models.attention import CBAM, NonLocalBlock, W3Attention
from vidattn.models.refine import AttentionRefinement


def mlp(p, prefix, x):
    h = F.relu(F.linear(x, p[f"{prefix}.0.weight"], p[f"{prefix}.0.bias"]))
    return F.linear(h, p[f"{prefix}.2.weight"], p[f"{prefix}.2.bias"])


def w3_reference(module, x, t, causal=False):
    """W3 eqs. 3-6, frame by frame and channel by channel, from the module's parameters. `causal`: the
    temporal convolutions of eqs. 4 and 6 see k-1 = 2 zero steps before the first frame and none after."""
    p = dict(module.named_parameters())
    n = x.shape[0] // t
    c = x.shape[1]
    pt = 0 if causal else 1  # temporal padding of the convs themselves

    def past(seq):  # (..., T, [H, W]) with the time axis at dim 2: 2 zero steps before the first when causal
        return F.pad(seq, (0, 0) * (seq.dim() - 3) + (2, 0)) if causal else seq

    out = torch.empty_like(x)
    for clip in range(n):
        frames = x[clip * t:(clip + 1) * t]  # (T, C, H, W)
        m_frm = torch.stack([torch.sigmoid(mlp(p, "channel_mlp", f.mean(dim=(1, 2)))
                                           + mlp(p, "channel_mlp", f.amax(dim=(1, 2)))) for f in frames])  # eq. 3
        seq = m_frm.T.unsqueeze(0)  # (1, C, T): each channel's sequence
        h = F.relu(F.conv1d(past(seq), p["channel_temporal.0.weight"], p["channel_temporal.0.bias"], padding=pt,
                            groups=c))
        m_c = torch.sigmoid(F.conv1d(past(h), p["channel_temporal.2.weight"], p["channel_temporal.2.bias"],
                                     padding=pt, groups=c))[0].T  # eq. 4, (T, C)
        f_c = frames * m_c[:, :, None, None]
        s_frm = torch.stack([torch.sigmoid(F.conv2d(torch.stack([f.mean(0), f.amax(0)])[None],
                                                    p["spatial_conv.weight"], p["spatial_conv.bias"], padding=3))[0, 0]
                             for f in f_c])  # eq. 5, (T, H, W)
        h = F.relu(F.conv3d(past(s_frm[None, None]), p["spatial_temporal.0.weight"], p["spatial_temporal.0.bias"],
                            padding=(pt, 1, 1)))
        m_s = torch.sigmoid(F.conv3d(past(h), p["spatial_temporal.2.weight"], p["spatial_temporal.2.bias"],
                                     padding=(pt, 1, 1)))
        out[clip * t:(clip + 1) * t] = f_c * m_s[0, 0][:, None]  # eq. 6 applied
    return out


@pytest.mark.parametrize("options", [{}, {"mask_init_bias": None}, {"causal": True, "mask_init_bias": None}])
def test_w3_matches_equations_1_to_6(options):
    """The reference module, in fp64, against the equations written out frame by frame (eqs. 3-6); the causal
    variant against the same equations with the temporal convolutions padded on the past side only."""
    torch.manual_seed(0)
    module = W3Attention(32, num_segments=4, reduction=4, **options).double()
    x = torch.randn(8, 32, 6, 5, dtype=torch.float64)
    expected = w3_reference(module, x, 4, causal=options.get("causal", False))
    torch.testing.assert_close(module(x), expected, rtol=1e-12, atol=1e-12)


def test_causal_w3_has_the_centred_w3s_parameters_and_its_masks_ignore_later_frames():
    """Same parameter names and shapes (an offline checkpoint loads), `open_masks` works, and a frame's masks
    do not change when a later frame does (they do in the centred W3)."""
    torch.manual_seed(0)
    centred = W3Attention(16, num_segments=5, reduction=4, mask_init_bias=None)
    causal = W3Attention(16, num_segments=5, reduction=4, causal=True)
    causal.load_state_dict(centred.state_dict())
    causal.open_masks(2.0)
    assert torch.all(causal.spatial_temporal[-1].bias == 2.0) and torch.all(causal.channel_temporal[-1].bias == 2.0)
    causal.load_state_dict(centred.state_dict())
    x = torch.randn(10, 16, 4, 4)
    y = x.clone()
    y[[3, 8]] += 1  # frame 3 of each clip
    for module, unchanged in ((causal, True), (centred, False)):
        (_, a), (_, b) = module.forward_with_maps(x), module.forward_with_maps(y)
        for key in ("channel", "spatial"):
            before = (a[key] - b[key])[:, :3].abs().max()
            assert (before == 0) if unchanged else (before > 1e-6), (key, unchanged)
            assert (a[key] - b[key])[:, 3].abs().max() > 0


def test_w3_on_3d_maps_equals_2d_layout():
    """The same module serves a 3D network's (N, C, T, H, W) map without any change."""
    module = W3Attention(16, num_segments=5, reduction=4)
    x = torch.randn(2, 16, 5, 4, 4)
    folded = x.transpose(1, 2).reshape(10, 16, 4, 4)
    y3d, maps = module.forward_with_maps(x)
    torch.testing.assert_close(y3d.transpose(1, 2).reshape(10, 16, 4, 4), module(folded))
    assert maps["spatial"].shape == (2, 5, 4, 4) and maps["channel"].shape == (2, 5, 16)


def test_w3_masks_are_in_unit_interval_with_paper_shapes():
    module = W3Attention(64, num_segments=8)
    _, maps = module.forward_with_maps(torch.randn(16, 64, 7, 7) * 10)
    assert maps["channel"].shape == (2, 8, 64) and maps["spatial"].shape == (2, 8, 7, 7)
    for m in maps.values():
        assert m.min() >= 0 and m.max() <= 1


def count(module):
    return sum(p.numel() for p in module.parameters())


def test_w3_ablation_switches_remove_submodules():
    full = W3Attention(64, 8)
    no_spatial = W3Attention(64, 8, spatial=False)
    no_temporal = W3Attention(64, 8, temporal=False)
    assert not hasattr(no_spatial, "spatial_conv") and not hasattr(no_spatial, "spatial_temporal")
    assert not hasattr(no_temporal, "channel_temporal") and not hasattr(no_temporal, "spatial_temporal")
    assert count(full) > count(no_temporal) > count(no_spatial) - count(full.channel_temporal)
    _, maps = no_spatial.forward_with_maps(torch.randn(8, 64, 4, 4))
    assert set(maps) == {"channel"}
    # frame-level only: every frame's mask depends on that frame alone
    x = torch.randn(16, 64, 4, 4)
    y = x.clone()
    y[3] += 1
    _, a = no_temporal.forward_with_maps(x)
    _, b = no_temporal.forward_with_maps(y)
    changed = (a["spatial"] - b["spatial"]).abs().amax(dim=(2, 3))[0]
    assert changed[3] > 0 and torch.all(changed[[0, 1, 2, 4, 5, 6, 7]] == 0)


def test_model_level_ablations_and_afr_switch():
    def params(**opts):
        return count(vidattn.create_model("tsm_w3_r18", num_classes=5, num_segments=4, **opts))

    full, no_afr = params(), params(afr=False)
    no_sa = params(attention_options={"spatial": False})  # AFR needs spatial masks: off by default then
    no_ta = params(attention_options={"temporal": False})
    assert full - no_afr == 4 * 512 + 512  # AFR: one 1x1 conv from 4 stage masks to 512 channels
    assert len({full, no_afr, no_sa, no_ta}) == 4
    with pytest.raises(ValueError, match="AFR"):
        vidattn.create_model("tsm_r18", num_classes=5, num_segments=4, afr=True)


def test_afr_matches_equations_7_and_8():
    afr = AttentionRefinement(3, 8)
    masks = [torch.rand(2, 4, 16, 16), torch.rand(2, 4, 8, 8), torch.rand(2, 4, 4, 4)]
    feats = torch.randn(8, 8, 4, 4)
    w = afr.proj.weight.view(8, 3)
    expected = feats.clone()
    for clip in range(2):
        for f in range(4):
            stacked = torch.stack([F.adaptive_avg_pool2d(m[clip, f][None], (4, 4))[0] for m in masks])  # eq. 7
            refine = F.relu(torch.einsum("cs,shw->chw", w, stacked) + afr.proj.bias[:, None, None])
            expected[clip * 4 + f] += refine  # eq. 8
    torch.testing.assert_close(afr(feats, masks), expected, rtol=1e-5, atol=1e-6)


def test_cbam_matches_reference_definition():
    module = CBAM(32, reduction=4).eval()
    torch.nn.init.uniform_(module.spatial_bn.weight, 0.5, 1.5)
    torch.nn.init.uniform_(module.spatial_bn.bias, -0.5, 0.5)
    x = torch.randn(3, 32, 6, 6)
    p = dict(module.named_parameters())
    m_c = torch.sigmoid(mlp(p, "channel_mlp", x.mean((2, 3))) + mlp(p, "channel_mlp", x.amax((2, 3))))
    f = x * m_c[:, :, None, None]
    pooled = torch.stack([f.amax(1), f.mean(1)], dim=1)  # CBAM's order: [max, mean]
    s = F.conv2d(pooled, p["spatial_conv.weight"], padding=3)
    s = F.batch_norm(s, module.spatial_bn.running_mean, module.spatial_bn.running_var, p["spatial_bn.weight"],
                     p["spatial_bn.bias"], eps=module.spatial_bn.eps)
    torch.testing.assert_close(module(x), f * torch.sigmoid(s), rtol=1e-5, atol=1e-6)


def test_non_local_matches_embedded_gaussian_and_starts_as_identity():
    block = NonLocalBlock(16, num_segments=2).eval()
    x = torch.randn(4, 16, 6, 6)
    torch.testing.assert_close(block(x), x)  # output BN starts at zero
    torch.nn.init.uniform_(block.out_bn.weight, 0.5, 1.5)
    x5 = x.view(2, 2, 16, 6, 6).transpose(1, 2)  # (N, C, T, H, W)
    w_theta = block.theta.weight[:, :, 0, 0, 0]
    theta = torch.einsum("oc,ncthw->nothw", w_theta, x5) + block.theta.bias.view(1, -1, 1, 1, 1)
    phi = F.max_pool3d(block.phi(x5), (1, 2, 2))
    g = F.max_pool3d(block.g(x5), (1, 2, 2))
    attn = torch.softmax(torch.einsum("nci,ncj->nij", theta.flatten(2), phi.flatten(2)), dim=-1)
    y = torch.einsum("nij,ncj->nci", attn, g.flatten(2)).view(2, 8, 2, 6, 6)
    z = x5 + block.out_bn(block.out_conv(y))
    torch.testing.assert_close(block(x), z.transpose(1, 2).reshape(4, 16, 6, 6), rtol=1e-5, atol=1e-5)


def test_ucf101_models_follow_the_paper():
    """Sec. 2: one 3D conv of 64 channels + ReLU, sigmoid gate, 3D avg pooling, FC + ReLU + dropout 0.25."""
    att = vidattn.create_model("c3d_attention", num_classes=101, num_segments=16).eval()
    base = vidattn.create_model("c3d", num_classes=101, num_segments=16).eval()
    convs = [m for m in att.modules() if isinstance(m, torch.nn.Conv3d)]
    assert convs[0].out_channels == 64 and att.gate is not None and base.gate is None
    assert [m.p for m in att.modules() if isinstance(m, torch.nn.Dropout)] == [0.25]
    assert count(att) - count(base) == 64 * 64 + 64
    x = torch.randn(1, 3, 16, 112, 112)
    out = att(x, return_all=True)
    assert out.logits.shape == (1, 101)
    assert out.attention["gate"]["spatial"].shape == (1, 16, 112, 112)
    # the baseline is exactly the attention model with the gate removed
    base.load_state_dict({k: v for k, v in att.state_dict().items() if not k.startswith("gate.")})
    f = F.relu(att.conv(x))
    torch.testing.assert_close(base(x), att.forward_head(f))


@pytest.mark.parametrize(("name", "ablation"), [("tsm_w3_r18", {}), ("tsm_w3_r18", {"spatial": False}),
                                                ("tsm_w3_r18", {"temporal": False}), ("tsm_cbam_r18", {})])
def test_fresh_attention_branch_starts_close_to_the_plain_branch(name, ablation):
    """Default init: every attended residual branch is 0.85-1.0 x the plain branch (both masks ~0.95);
    the paper-literal init (PyTorch defaults, masks ~0.5) scales it by ~0.25."""
    torch.manual_seed(0)
    cls = W3Attention if "w3" in name else CBAM
    x = torch.rand(2 * 4, 32, 8, 8) * 2

    def ratio(**opts):
        module = cls(32, 4, reduction=4, **ablation, **opts).train()
        return float(module(x).norm() / x.norm())

    assert 0.85 <= ratio() <= 1.0
    assert ratio(mask_init_bias=None) < 0.6
    model = vidattn.create_model(name, num_classes=3, num_segments=4, base_width=8, stem="small",
                                 attention_options={**ablation, "mask_init_bias": None})
    assert all(float(m.sigmoid().mean()) < 0.8 for m in _mask_logit_biases(model))
    model = vidattn.create_model(name, num_classes=3, num_segments=4, base_width=8, stem="small",
                                 attention_options=ablation)
    assert all(torch.all(b.sigmoid() > 0.9) for b in _mask_logit_biases(model))


def _mask_logit_biases(model):
    """The biases of the last layer before every W3/CBAM sigmoid mask."""
    out = []
    for m in model.modules():
        if isinstance(m, W3Attention):
            out.append(m.channel_temporal[-1].bias if m.temporal else 2 * m.channel_mlp[-1].bias)
            if m.spatial:
                out.append(m.spatial_temporal[-1].bias if m.temporal else m.spatial_conv.bias)
        elif isinstance(m, CBAM):
            out += [2 * m.channel_mlp[-1].bias, m.spatial_bn.bias]
    assert out
    return out
