"""The ResNet backbone against a functional re-implementation that reads torchvision's key names."""

import torch
import torch.nn.functional as F

from vidattn.models.resnet import ResNet2d


def bn(x, sd, prefix):
    return F.batch_norm(x, sd[f"{prefix}.running_mean"], sd[f"{prefix}.running_var"], sd[f"{prefix}.weight"],
                        sd[f"{prefix}.bias"], eps=1e-5)


def resnet_reference(sd, x, blocks, bottleneck):
    """torchvision's ResNet forward, written from its key layout (stride on the 3x3 conv, 'v1.5')."""
    x = F.max_pool2d(F.relu(bn(F.conv2d(x, sd["conv1.weight"], stride=2, padding=3), sd, "bn1")), 3, 2, 1)
    for stage, count in enumerate(blocks, start=1):
        for i in range(count):
            p = f"layer{stage}.{i}"
            stride = 2 if stage > 1 and i == 0 else 1
            if bottleneck:
                out = F.relu(bn(F.conv2d(x, sd[f"{p}.conv1.weight"]), sd, f"{p}.bn1"))
                out = F.relu(bn(F.conv2d(out, sd[f"{p}.conv2.weight"], stride=stride, padding=1), sd, f"{p}.bn2"))
                out = bn(F.conv2d(out, sd[f"{p}.conv3.weight"]), sd, f"{p}.bn3")
            else:
                out = F.relu(bn(F.conv2d(x, sd[f"{p}.conv1.weight"], stride=stride, padding=1), sd, f"{p}.bn1"))
                out = bn(F.conv2d(out, sd[f"{p}.conv2.weight"], padding=1), sd, f"{p}.bn2")
            if f"{p}.downsample.0.weight" in sd:
                x = bn(F.conv2d(x, sd[f"{p}.downsample.0.weight"], stride=stride), sd, f"{p}.downsample.1")
            x = F.relu(out + x)
    return x


def randomise_bn(model):
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.1, 0.1)


def test_resnet18_and_50_match_torchvision_layout_reference():
    for depth, blocks, bottleneck in [(18, (2, 2, 2, 2), False), (50, (3, 4, 6, 3), True)]:
        model = ResNet2d(depth).eval()
        randomise_bn(model)
        sd = model.state_dict()
        x = torch.randn(2, 3, 64, 64)
        with torch.no_grad():
            ours = model.forward_features(x).features
        torch.testing.assert_close(ours, resnet_reference(sd, x, blocks, bottleneck), rtol=1e-4, atol=1e-4)


def test_parameter_names_and_counts_are_torchvision_resnets():
    """torchvision's ResNet-18/50 have 11,689,512 / 25,557,032 parameters including the 1000-way fc."""
    for depth, expected, fc_in in [(18, 11_689_512, 512), (50, 25_557_032, 2048)]:
        model = ResNet2d(depth)
        total = sum(p.numel() for p in model.parameters()) + fc_in * 1000 + 1000
        assert total == expected
        names = set(model.state_dict())
        assert {"conv1.weight", "bn1.running_var", "layer1.0.conv1.weight", "layer4.1.bn2.weight"} <= names
        assert ("layer1.0.downsample.0.weight" in names) == (depth == 50)
