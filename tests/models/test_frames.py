"""3D convs on frames (`vidattn.models.frames`) and the UCF-101 model built on them, against PyTorch's Conv3d."""

import pytest
import torch
import torch.nn.functional as F

import vidattn
from vidattn.inference import Predictor
from vidattn.models.frames import conv3d_on_frames


@pytest.mark.parametrize(("cin", "cout", "kernel", "stride", "padding", "bias"), [
    (3, 8, 3, 1, 1, True),  # the UCF-101 paper's conv
    (1, 4, 3, 1, 1, True),  # W3's eq. 6 maps
    (6, 5, (3, 7, 7), (1, 2, 2), (1, 3, 3), False),  # a strided I3D-style stem
    (4, 4, 1, 1, 0, True),  # a 1x1x1 gate
    (2, 3, (3, 1, 1), 1, 0, True),  # no temporal padding: T shrinks
])
def test_conv3d_on_frames_equals_conv3d_values_and_gradients(cin, cout, kernel, stride, padding, bias):
    torch.manual_seed(0)
    conv = torch.nn.Conv3d(cin, cout, kernel, stride=stride, padding=padding, bias=bias)
    x = torch.randn(2, cin, 5, 9, 8, requires_grad=True)
    y = conv(x)
    frames = x.detach().clone().transpose(1, 2).requires_grad_()
    z = conv3d_on_frames(frames, conv)
    torch.testing.assert_close(z.transpose(1, 2), y, rtol=1e-5, atol=1e-5)
    weight_grad = torch.autograd.grad(y.square().sum(), (x, conv.weight))
    frames_grad = torch.autograd.grad(z.square().sum(), (frames, conv.weight))
    torch.testing.assert_close(frames_grad[0].transpose(1, 2), weight_grad[0], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(frames_grad[1], weight_grad[1], rtol=1e-4, atol=1e-4)


def naive_c3d_logits(model, x):
    """The UCF-101 model's layers as plain Conv3d/pooling calls on the (B, C, T, H, W) clip."""
    f = F.relu(F.conv3d(x, model.conv.weight, model.conv.bias, padding=1))
    if model.gate is not None:
        f = f * torch.sigmoid(F.conv3d(f, model.gate.weight, model.gate.bias))
    h = F.adaptive_avg_pool3d(f, model.pool.output_size).flatten(1)
    h = F.relu(F.linear(h, model.fc[1].weight, model.fc[1].bias))
    return F.linear(h, model.head.fc.weight, model.head.fc.bias)


@pytest.mark.parametrize(("name", "frames"), [("c3d_attention", 6), ("c3d_attention", 8), ("c3d", 6)])
def test_ucf101_models_equal_the_naive_conv3d_network(name, frames):
    """Training mode (autograd), eval mode and the channels-last Predictor all compute the naive network;
    sizes that do not divide the pooling grid (6 frames, 22x18) exercise the separable adaptive pooling,
    8 frames the equal time bins."""
    torch.manual_seed(0)
    model = vidattn.create_model(name, num_classes=7, num_segments=frames, pool_output=(4, 5, 5),
                                 hidden=(16,)).eval()
    x = torch.randn(2, 3, frames, 22, 18)
    expected = naive_c3d_logits(model, x)
    torch.testing.assert_close(model(x), expected, rtol=1e-4, atol=1e-5)
    logits = model(x.requires_grad_())
    (grad,) = torch.autograd.grad(logits.sum(), x)
    (grad_ref,) = torch.autograd.grad(naive_c3d_logits(model, x).sum(), x)
    torch.testing.assert_close(grad, grad_ref, rtol=1e-4, atol=1e-5)
    out = model(x.detach(), return_all=True)
    if name == "c3d_attention":
        assert out.attention["gate"]["spatial"].shape == (2, frames, 22, 18)
    torch.testing.assert_close(Predictor(model, device="cpu").logits(x.detach()), expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("activation", ["relu", "sigmoid"])
def test_fused_activation_equals_activation_after_conv(activation):
    """Without autograd the activation runs inside oneDNN's conv (on a map large enough: 1.2 M stacked
    inputs); with it, after the conv: same values."""
    torch.manual_seed(0)
    conv = torch.nn.Conv3d(3, 8, 3, padding=1)
    frames = torch.randn(1, 8, 3, 128, 128)
    expected = getattr(torch, activation)(conv(frames.transpose(1, 2))).transpose(1, 2)
    with torch.inference_mode():
        torch.testing.assert_close(conv3d_on_frames(frames, conv, activation), expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(conv3d_on_frames(frames, conv, activation), expected, rtol=1e-5, atol=1e-6)


def test_long_temporal_kernel_on_a_short_clip_equals_conv3d():
    """More padding than frames (W3 with temporal_kernel=7 on a 2-frame map): every tap outside is zero."""
    torch.manual_seed(0)
    conv = torch.nn.Conv3d(1, 4, (7, 3, 3), padding=(3, 1, 1))
    x = torch.randn(1, 1, 2, 7, 7)
    torch.testing.assert_close(conv3d_on_frames(x.transpose(1, 2), conv).transpose(1, 2), conv(x),
                               rtol=1e-5, atol=1e-6)


def test_fused_path_never_drops_a_gradient():
    """A frozen weight with a trainable bias still gets its bias gradient (the fused op has no autograd)."""
    torch.manual_seed(0)
    conv = torch.nn.Conv3d(3, 8, 3, padding=1)
    conv.weight.requires_grad_(False)
    frames = torch.randn(1, 8, 3, 128, 128)  # large enough for the fused kernel
    conv3d_on_frames(frames, conv, "relu").sum().backward()
    fused_grad = conv.bias.grad.clone()
    conv.bias.grad = None
    torch.relu(conv(frames.transpose(1, 2))).sum().backward()
    torch.testing.assert_close(fused_grad, conv.bias.grad, rtol=1e-4, atol=1e-3)


def test_hooked_conv_is_called_as_a_module():
    """A conv with a forward hook (or a subclass) is run as the module, so the hook still fires."""
    conv = torch.nn.Conv3d(2, 3, 3, padding=1)
    calls = []
    conv.register_forward_hook(lambda module, args, out: calls.append(out.shape))
    conv3d_on_frames(torch.randn(1, 4, 2, 5, 5), conv)
    assert calls == [torch.Size([1, 3, 4, 5, 5])]
