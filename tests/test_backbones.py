"""Any torchvision image model as a 2-D backbone: pooled features, the input convolution found
and cross-modality averaged whatever its name, partial BN, and TSN's parameter groups."""

import pytest
import torch
import torchvision
from torch import nn

from engine.optim import parameter_groups
from network.first_conv import input_conv
from network.recognizer import build_recognizer
from network.statistics import flow_statistics

# (arch, the input convolution's name in torchvision's model, pooled feature size)
ARCHS = [
    ("mobilenet_v2", "features.0.0", 1280),
    ("mobilenet_v3_small", "features.0.0", 1024),
    ("efficientnet_b0", "features.0.0", 1280),
    ("regnet_y_400mf", "stem.0", 440),
    ("convnext_tiny", "features.0.0", 768),
    ("shufflenet_v2_x0_5", "conv1.0", 1024),
]


@pytest.fixture(scope="module", params=ARCHS, ids=[a[0] for a in ARCHS])
def weights_file(request, tmp_path_factory):
    arch, conv, features = request.param
    torch.manual_seed(3)
    state = torchvision.models.get_model(arch).state_dict()
    path = tmp_path_factory.mktemp("weights") / f"{arch}.pth"
    torch.save(state, path)
    return arch, conv, features, path, state


def test_flow_backbone_from_a_state_file(weights_file):
    arch, conv, features, path, state = weights_file
    model = build_recognizer(
        arch,
        num_classes=5,
        in_channels=20,
        dropout=0.5,
        pretrained=str(path),
        statistics=flow_statistics,
    )
    name, first = input_conv(model.backbone)
    assert name == conv
    rgb = state[f"{conv}.weight"]
    torch.testing.assert_close(first.weight.data, rgb.mean(1, keepdim=True).expand(-1, 20, -1, -1))
    assert model.head.fc.in_features == features
    # every other pretrained tensor arrives unchanged (the classifier is the head's)
    loaded = model.backbone.state_dict()
    same = [k for k in loaded if k in state and k != f"{conv}.weight"]
    assert len(same) > 10 and all(torch.equal(loaded[k], state[k]) for k in same)
    assert not any(isinstance(m, nn.Dropout) for m in model.backbone.modules())  # the head's only
    x = torch.randint(0, 256, (2, 3, 20, 64, 64), dtype=torch.uint8)
    assert model.eval()(x).shape == (2, 5)


def test_partial_bn_and_parameter_groups(weights_file):
    arch, conv, _, path, _ = weights_file
    model = build_recognizer(
        arch, num_classes=4, in_channels=3, partial_bn=True, pretrained=str(path)
    )
    bns = [m for m in model.backbone.modules() if isinstance(m, nn.BatchNorm2d)]
    model.train()
    if bns:  # ConvNeXt has LayerNorms only: nothing to freeze
        assert bns[0].training and not any(bn.training for bn in bns[1:])
    groups = parameter_groups(model)
    assert groups["first_conv"] == [model.backbone.get_submodule(conv).weight]
    assert groups["head_weight"] == [model.head.fc.weight]
    assert groups["head_bias"] == [model.head.fc.bias]
    norms = {id(p) for p in groups["norm"]}
    trainable_norm = [
        p
        for m in model.backbone.modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm | nn.LayerNorm)
        for p in m.parameters(recurse=False)
        if p.requires_grad
    ]
    assert {id(p) for p in trainable_norm} == norms
    grouped = sum(len(v) for v in groups.values())
    assert grouped == sum(1 for p in model.parameters() if p.requires_grad)
