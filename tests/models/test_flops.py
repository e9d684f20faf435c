"""The papers' compute figures that can be checked without training (W3 paper Tables 1 and 6)."""

import copy
import subprocess
import sys

import pytest
import torch

from vidattn.analysis.flops import count_macs, count_model
from vidattn.models.attention import W3Attention
from vidattn.models.fast import optimize


def rel(a, b):
    return abs(a / b - 1)


def test_tsm_r50_matches_table_1():
    assert rel(count_model("tsm_r50", 8).gmacs, 33.0) < 0.01  # "33"
    assert rel(count_model("tsm_r50", 16).gmacs, 65.0) < 0.01  # "65.0"
    # the temporal shift costs nothing: TSM counts exactly as TSN
    assert count_model("tsm_r50", 8).macs == count_model("tsn_r50", 8).macs


def test_attention_overheads_over_tsm_at_16_frames():
    tsm = count_model("tsm_r50", 16).gmacs
    w3 = count_model("tsm_w3_r50", 16).gmacs
    cbam = count_model("tsm_cbam_r50", 16).gmacs
    nl = count_model("tsm_nl_r50", 16)
    assert 0 < w3 - tsm < 0.05 * tsm  # paper: 67.1 vs 65.0 ("+3.2%")
    assert 0 < cbam - tsm < 0.05 * tsm  # paper: 66.5
    assert nl.gmacs > 1.4 * tsm  # paper: 115; non-local is the expensive one
    assert nl.by_operator["bmm"] > 0  # the pairwise affinities are counted
    # The full (C -> C) reading of W3's temporal convs reproduces Table 1's 67.1 within 1%
    full = count_model("tsm_w3_r50", 16, attention_options={"channel_temporal_groups": "full"}).gmacs
    assert rel(full, 67.1) < 0.01


def test_resnet50_per_frame_matches_the_reference_convention():
    """REFERENCES.md: torchvision ResNet-50 at 224 is 4.09 GMACs per frame."""
    assert rel(count_model("tsn_r50", 1, num_classes=1000).gmacs, 4.09) < 0.005


def test_count_of_a_small_conv_by_hand():
    conv = torch.nn.Conv2d(3, 4, 3, padding=1, bias=False)
    assert count_macs(conv, (1, 3, 5, 5)).macs == 4 * 3 * 9 * 25
    lin = torch.nn.Linear(10, 7)
    assert count_macs(lin, (2, 10)).macs == 2 * 10 * 7


def test_ucf101_models_at_16x112x112():
    conv_macs = 64 * 3 * 27 * 16 * 112 * 112
    gate_macs = 64 * 64 * 16 * 112 * 112
    base = count_model("c3d", 16, 112, num_classes=101)
    att = count_model("c3d_attention", 16, 112, num_classes=101)
    assert base.by_operator["convolution"] == conv_macs
    assert att.by_operator["convolution"] == conv_macs + gate_macs


@pytest.mark.parametrize("args,expect", [(["tsm_r50", "--frames", "16"], "65.40 GMACs"),
                                         (["--table"], "TSM+W3 R50")])
def test_flops_cli(args, expect):
    out = subprocess.run([sys.executable, "-m", "vidattn.cli", "flops", *args], capture_output=True, text=True,
                         check=True).stdout
    assert expect in out


def test_w3_temporal_convs_count_as_their_conv1d():
    """Eq. 4's depthwise temporal convs count as the two Conv1d they are, k MACs per output element each:
    2*k*C*T*N in all; the mask multiplies stay uncounted. An optimized module (whose fast forward computes
    them as multiply-adds the counter cannot see) counts the same: the count runs the reference path."""
    n, t, c, k = 2, 8, 64, 3
    shape = (n * t, c, 7, 7)
    frame_level = count_macs(W3Attention(c, num_segments=t, temporal=False, spatial=False), shape)
    channel_only = count_macs(W3Attention(c, num_segments=t, temporal_kernel=k, spatial=False), shape)
    assert frame_level.macs == 2 * n * t * 2 * c * 8  # hidden = max(64 // 16, 8)
    assert channel_only.macs - frame_level.macs == 2 * k * c * t * n
    module = W3Attention(c, num_segments=t, temporal_kernel=k)
    optimized = optimize(copy.deepcopy(module))
    assert type(optimized) is not W3Attention
    assert count_macs(optimized, shape).macs == count_macs(module, shape).macs
    assert type(optimized) is not W3Attention  # the model itself is not changed
