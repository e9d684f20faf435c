"""The fast layer (`vidattn.models.fast`): every fast module against its reference module, outputs and gradients
(fp32), and whole optimized models against the reference models."""

import copy

import pytest
import torch

import vidattn
from vidattn.inference import Predictor, fold_batchnorm, to_channels_last
from vidattn.models.attention import CBAM, W3Attention
from vidattn.models.c3d_attention import C3DAttention
from vidattn.models.fast import (
    FastBottleneck,
    FastC3D,
    FastCBAM,
    FastTemporalShift,
    FastW3,
    conv3d_on_frames,
    optimize,
    reference,
)
from vidattn.models.resnet import BasicBlock, Bottleneck
from vidattn.models.temporal_shift import TemporalShift

TOL = {"rtol": 1e-5, "atol": 1e-5}
GRAD_TOL = {"rtol": 1e-4, "atol": 1e-5}


def grads(module, inputs, out):
    """d(sum(out^2)) / d(inputs and every parameter)."""
    params = [p for p in module.parameters() if p.requires_grad]
    return torch.autograd.grad(out.square().sum(), [*inputs, *params])


def assert_same_grads(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y, **GRAD_TOL)


def fast_copy(module):
    return optimize(copy.deepcopy(module))


W3_OPTIONS = [{}, {"spatial": False}, {"temporal": False}, {"channel_temporal_groups": "full"},
              {"mask_init_bias": None}]


@pytest.mark.parametrize("options", W3_OPTIONS)
@pytest.mark.parametrize("layout", ["frames", "frames channels-last", "clips", "clips channels-last-3d"])
def test_fast_w3_equals_reference_w3(options, layout):
    """Same output, masks and gradients (input and parameters) on every layout W3 meets; with a residual and
    `overwrite` without autograd, reference(x) + residual written into the caller's map."""
    torch.manual_seed(0)
    ref = W3Attention(16, num_segments=4, reduction=4, **options).eval()
    fast = fast_copy(ref)
    assert type(fast) is FastW3
    x = torch.randn(8, 16, 6, 5) if layout.startswith("frames") else torch.randn(2, 16, 4, 6, 5)
    if layout == "frames channels-last":
        x = x.contiguous(memory_format=torch.channels_last)
    elif layout == "clips channels-last-3d":
        x = x.contiguous(memory_format=torch.channels_last_3d)
    xr, xf = x.clone().requires_grad_(), x.clone().requires_grad_()
    out_r, maps_r = ref.forward_with_maps(xr)
    out_f, maps_f = fast.forward_with_maps(xf)
    torch.testing.assert_close(out_f, out_r, **TOL)
    assert maps_f.keys() == maps_r.keys()
    for key in maps_r:
        torch.testing.assert_close(maps_f[key], maps_r[key], **TOL)
    assert_same_grads(grads(fast, [xf], out_f), grads(ref, [xr], out_r))
    residual = torch.randn_like(x)
    with torch.inference_mode():
        owned = x.clone()
        out, _ = fast.forward_with_maps(owned, residual=residual, overwrite=True)
        torch.testing.assert_close(out, ref(x) + residual, **TOL)
        assert out.data_ptr() == owned.data_ptr()  # written into the caller's temporary, no new map


def test_fast_cbam_equals_reference_cbam():
    torch.manual_seed(0)
    ref = CBAM(16, reduction=4).eval()
    torch.nn.init.uniform_(ref.spatial_bn.weight, 0.5, 1.5)
    fast = fast_copy(ref)
    assert type(fast) is FastCBAM
    x = torch.randn(6, 16, 7, 5).contiguous(memory_format=torch.channels_last)
    xr, xf = x.clone().requires_grad_(), x.clone().requires_grad_()
    out_r, maps_r = ref.forward_with_maps(xr)
    out_f, maps_f = fast.forward_with_maps(xf)
    torch.testing.assert_close(out_f, out_r, **TOL)
    for key in maps_r:
        torch.testing.assert_close(maps_f[key], maps_r[key], **TOL)
    assert_same_grads(grads(fast, [xf], out_f), grads(ref, [xr], out_r))
    residual = torch.randn_like(x)
    a = x.clone().requires_grad_()  # with autograd on, overwrite never touches the input
    fast.forward_with_maps(a, residual=residual, overwrite=True)
    torch.testing.assert_close(a.detach(), x)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_fast_temporal_shift_equals_reference_and_keeps_the_layout(layout, causal):
    ref = TemporalShift(16, num_segments=4, causal=causal)
    fast = fast_copy(ref)
    assert type(fast) is FastTemporalShift
    x = torch.randn(8, 16, 5, 3).contiguous(memory_format=layout)
    with torch.no_grad():
        out = fast(x)
    assert torch.equal(out, ref(x)) and out.is_contiguous(memory_format=layout)
    xr, xf = x.clone().requires_grad_(), x.clone().requires_grad_()
    out_r, out_f = ref(xr), fast(xf)
    assert torch.equal(out_f, out_r)
    assert_same_grads(grads(fast, [xf], out_f), grads(ref, [xr], out_r))


@pytest.mark.parametrize("attn", [None, "w3", "cbam"])
@pytest.mark.parametrize("block_type", [BasicBlock, Bottleneck])
def test_fused_residual_blocks_equal_reference_blocks(block_type, attn):
    torch.manual_seed(0)
    cout = 8 * block_type.expansion
    module = {"w3": lambda: W3Attention(cout, 4, reduction=4), "cbam": lambda: CBAM(cout, reduction=4),
              None: lambda: None}[attn]()
    ref = block_type(6, 8, stride=2, attn=module).eval()
    ref.downsample = torch.nn.Sequential(torch.nn.Conv2d(6, cout, 1, stride=2, bias=False),
                                         torch.nn.BatchNorm2d(cout)).eval()
    fast = fast_copy(ref)
    assert type(fast).__name__ == ("Fast" if attn else "") + block_type.__name__
    x = torch.randn(8, 6, 10, 10)
    xr, xf = x.clone().requires_grad_(), x.clone().requires_grad_()
    (out_r, maps_r), (out_f, maps_f) = ref.forward_with_maps(xr), fast.forward_with_maps(xf)
    torch.testing.assert_close(out_f, out_r, **TOL)
    assert (maps_r is None) == (maps_f is None)
    assert_same_grads(grads(fast, [xf], out_f), grads(ref, [xr], out_r))
    with torch.inference_mode():
        torch.testing.assert_close(fast(x), ref(x), **TOL)


@pytest.mark.parametrize(("gate", "frames"), [("conv", 6), ("conv", 8), ("self", 6), (None, 6)])
def test_fast_c3d_equals_reference_c3d(gate, frames):
    """Sizes that do not divide the pooling grid (6 frames, 22x18) exercise the separable adaptive pooling's
    general case, 8 frames its equal time bins."""
    torch.manual_seed(0)
    options = {"attention": False} if gate is None else {"gate": gate}
    ref = C3DAttention(7, frames, pool_output=(4, 5, 5), hidden=(16,), **options).eval()
    fast = fast_copy(ref)
    assert type(fast) is FastC3D
    x = torch.randn(2, 3, frames, 22, 18)
    xr, xf = x.clone().requires_grad_(), x.clone().requires_grad_()
    out_r, out_f = ref(xr, return_all=True), fast(xf, return_all=True)
    torch.testing.assert_close(out_f.logits, out_r.logits, **TOL)
    torch.testing.assert_close(out_f.features, out_r.features, **TOL)
    for key in out_r.attention:
        torch.testing.assert_close(out_f.attention[key]["spatial"], out_r.attention[key]["spatial"], **TOL)
    assert_same_grads(grads(fast, [xf], out_f.logits), grads(ref, [xr], out_r.logits))
    with torch.inference_mode():  # the fused conv+activation path (no autograd)
        torch.testing.assert_close(fast(x), out_r.logits.detach(), **TOL)


@pytest.mark.parametrize(("cin", "cout", "kernel", "stride", "padding", "bias"), [
    (3, 8, 3, 1, 1, True),  # the UCF-101 paper's conv
    (1, 4, 3, 1, 1, True),  # W3's eq. 6 maps
    (6, 5, (3, 7, 7), (1, 2, 2), (1, 3, 3), False),  # a strided I3D-style stem
    (4, 4, 1, 1, 0, True),  # a 1x1x1 gate
    (2, 3, (3, 1, 1), 1, 0, True),  # no temporal padding: T shrinks
    (1, 4, (7, 3, 3), 1, (3, 1, 1), True),  # more padding than frames: every tap outside is zero
])
def test_conv3d_on_frames_equals_conv3d_values_and_gradients(cin, cout, kernel, stride, padding, bias):
    torch.manual_seed(0)
    conv = torch.nn.Conv3d(cin, cout, kernel, stride=stride, padding=padding, bias=bias)
    x = torch.randn(2, cin, 2 if kernel == (7, 3, 3) else 5, 9, 8, requires_grad=True)
    y = conv(x)
    frames = x.detach().clone().transpose(1, 2).requires_grad_()
    z = conv3d_on_frames(frames, conv)
    torch.testing.assert_close(z.transpose(1, 2), y, **TOL)
    grad_x, grad_w = torch.autograd.grad(y.square().sum(), (x, conv.weight))
    grad_frames, grad_w_frames = torch.autograd.grad(z.square().sum(), (frames, conv.weight))
    torch.testing.assert_close(grad_frames.transpose(1, 2), grad_x, **GRAD_TOL)
    torch.testing.assert_close(grad_w_frames, grad_w, rtol=1e-4, atol=1e-4)  # sums over the whole map


@pytest.mark.parametrize("activation", ["relu", "sigmoid"])
def test_fused_activation_equals_activation_after_conv(activation):
    """Without autograd the activation runs inside oneDNN's conv (on a map large enough: 1.2 M stacked
    inputs); with a frozen weight but a trainable bias, after the conv, and the bias still gets its gradient."""
    torch.manual_seed(0)
    conv = torch.nn.Conv3d(3, 8, 3, padding=1)
    frames = torch.randn(1, 8, 3, 128, 128)
    expected = getattr(torch, activation)(conv(frames.transpose(1, 2))).transpose(1, 2)
    with torch.inference_mode():
        torch.testing.assert_close(conv3d_on_frames(frames, conv, activation), expected, rtol=1e-5, atol=1e-6)
    conv.weight.requires_grad_(False)
    (fused_grad,) = torch.autograd.grad(conv3d_on_frames(frames, conv, activation).sum(), conv.bias)
    (ref_grad,) = torch.autograd.grad(getattr(torch, activation)(conv(frames.transpose(1, 2))).sum(), conv.bias)
    torch.testing.assert_close(fused_grad, ref_grad, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize(("name", "options", "shape"), [
    ("tsm_w3_r18", {"base_width": 8}, (2, 3, 4, 32, 32)),
    ("tsm_w3_r18", {"base_width": 8, "causal": True}, (2, 3, 4, 32, 32)),  # causal convs called as modules
    ("tsm_cbam_r18", {"base_width": 8}, (2, 3, 4, 32, 32)),
    ("i3d_w3_r18", {"base_width": 8}, (1, 3, 4, 32, 32)),
    ("c3d_attention", {"channels": 8, "pool_output": (2, 4, 4), "hidden": (16,)}, (2, 3, 4, 24, 24)),
])
def test_optimized_model_equals_reference_model(name, options, shape):
    """Whole models: logits, refined features, every attention map and every parameter's gradient; then the
    Predictor's path (folded BN, channels-last, optimized, no autograd) gives the reference logits."""
    torch.manual_seed(0)
    ref = vidattn.create_model(name, num_classes=5, num_segments=shape[2], **options).eval()
    fast = fast_copy(ref)
    assert fast.state_dict().keys() == ref.state_dict().keys()
    x = torch.randn(shape)
    out_r, out_f = ref(x, return_all=True), fast(x, return_all=True)
    torch.testing.assert_close(out_f.logits, out_r.logits, **TOL)
    torch.testing.assert_close(out_f.features, out_r.features, **TOL)
    assert out_f.attention.keys() == out_r.attention.keys() and out_r.attention
    for block, maps in out_r.attention.items():
        for key, m in maps.items():
            torch.testing.assert_close(out_f.attention[block][key], m, **TOL)
    assert_same_grads(grads(fast, [], out_f.logits), grads(ref, [], out_r.logits))
    predictor = Predictor(copy.deepcopy(ref), device="cpu", precision="fp32")
    assert any(type(m).__name__.startswith("Fast") for m in predictor.model.modules())
    torch.testing.assert_close(predictor.logits(x), out_r.logits.detach(), **TOL)


def test_optimize_leaves_foreign_subclasses_and_reference_undoes_it():
    class MyW3(W3Attention):
        pass

    torch.manual_seed(0)
    model = vidattn.create_model("tsm_w3_r18", num_classes=3, num_segments=4, base_width=8)
    model.backbone.layer1[0].attn = MyW3(8, 4)
    optimize(model)
    assert type(model.backbone.layer1[0].attn) is MyW3 and type(model.backbone.layer1[0]) is BasicBlock
    assert type(model.backbone.layer1[1].attn) is FastW3
    reference(model)
    assert not any(type(m).__name__.startswith("Fast") for m in model.modules())
    r50 = vidattn.create_model("tsm_r50", num_classes=3, num_segments=4, base_width=8)
    assert type(optimize(r50).backbone.layer1[0]) is Bottleneck  # no attention: nothing to fuse
    cbam = vidattn.create_model("tsm_cbam_r50", num_classes=3, num_segments=4, base_width=8)
    assert type(optimize(cbam).backbone.layer1[0]) is FastBottleneck


def test_fast_path_on_a_folded_channels_last_model_keeps_the_maps():
    """The Predictor's preparation (BN folded, channels-last) then optimize: the same maps as the reference."""
    torch.manual_seed(0)
    ref = vidattn.create_model("tsm_w3_r18", num_classes=3, num_segments=4, base_width=8).eval()
    fast = copy.deepcopy(ref)
    fold_batchnorm(fast)
    optimize(to_channels_last(fast))
    x = torch.randn(1, 3, 4, 32, 32)
    with torch.inference_mode():
        a, b = ref(x, return_all=True), fast(x, return_all=True)
    torch.testing.assert_close(b.logits, a.logits, **TOL)
    for block, maps in a.attention.items():
        torch.testing.assert_close(b.attention[block]["spatial"], maps["spatial"], **TOL)
