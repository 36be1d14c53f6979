"""The all-convolutional stem (``stem_pool='conv'`` on the ResNet hosts):
Springenberg et al., "Striving for Simplicity: The All Convolutional Net",
arXiv 1412.6806. The shared contract runs it through ``mmext.ResNet``'s
``backbone_examples``; this file checks what is specific to it."""
import os.path as osp

import pytest
import torch
import torch.nn.functional as F
from conftest import CONFIGS
from design_checks import ODD_SIZE, randomize

from mmext.models.backbones import ResNet, ResNetV1c, ResNetV1d, ResNeXt, SDAResNet

HOSTS = [
    (ResNet, dict(depth=18, base_channels=8, stem_channels=16)),
    (ResNetV1c, dict(depth=18, base_channels=8, stem_channels=16)),
    (ResNetV1d, dict(depth=18, base_channels=8, stem_channels=16)),
    (ResNeXt, dict(depth=50, groups=2, base_width=4, base_channels=8, stem_channels=16)),
    (SDAResNet, dict(depth=18, base_channels=8, stem_channels=16, min_channels=8)),
]


def n_params(module):
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize('cls,kwargs', HOSTS, ids=[c.__name__ for c, _ in HOSTS])
def test_every_host_takes_the_stem_and_keeps_its_strides(cls, kwargs):
    """Same output shapes as the max-pool stem at odd sizes; 9 C^2 + 2 C more
    parameters (the 3x3 C->C conv without bias and its BN), nothing else
    changes."""
    torch.manual_seed(0)
    pool, conv = cls(**kwargs).eval(), cls(**kwargs, stem_pool='conv').eval()
    c = 16
    assert n_params(conv) - n_params(pool) == 9 * c * c + 2 * c
    extra = set(conv.state_dict()) - set(pool.state_dict())
    assert extra and all(k.startswith('pool_conv.') for k in extra)
    assert set(pool.state_dict()) <= set(conv.state_dict())
    assert not hasattr(conv, 'maxpool')
    sizes = [ODD_SIZE, (511, 673)] if cls is ResNet else [ODD_SIZE]
    with torch.no_grad():
        for size in sizes:
            x = torch.randn(1, 3, *size)
            a, b = pool(x), conv(x)
            assert [o.shape for o in a] == [o.shape for o in b], size
            assert [o.shape[-2:] for o in b] == [
                (-(-size[0] // s), -(-size[1] // s)) for s in conv.out_strides]


def test_pool_conv_is_strided_conv_bn_relu_of_the_stem():
    """The stage input is ReLU(BN(conv3x3_s2(stem(x)))), computed here with
    torch.nn.functional from the module's own weights."""
    model = randomize(ResNet(depth=18, base_channels=8, stem_pool='conv')).eval()
    bn = model.pool_conv.bn
    bn.running_mean.uniform_(-0.5, 0.5)
    bn.running_var.uniform_(0.5, 2.0)
    x = torch.randn(2, 3, 33, 47)
    with torch.no_grad():
        stem = F.relu(model.norm1(model.conv1(x)))
        y = F.conv2d(stem, model.pool_conv.conv.weight, stride=2, padding=1)
        y = F.relu(F.batch_norm(y, bn.running_mean, bn.running_var, bn.weight, bn.bias,
                                eps=bn.eps))
        torch.testing.assert_close(model(x)[0], model.layer1(y))


def test_frozen_stages_zero_freezes_pool_conv_with_the_stem():
    model = ResNetV1c(depth=18, base_channels=8, stem_channels=16, stem_pool='conv',
                      frozen_stages=0).train()
    assert model.pool_conv in model.stage_modules(0)
    assert not model.pool_conv.training and not model.pool_conv.bn.training
    frozen = [n for n, p in model.named_parameters() if not p.requires_grad]
    assert frozen and all(n.startswith(('stem.', 'pool_conv.')) for n in frozen)
    assert {n.split('.')[0] for n in frozen} == {'stem', 'pool_conv'}


def test_norm_and_conv_follow_the_host():
    model = ResNet(depth=18, base_channels=8, stem_pool='conv',
                   norm_cfg=dict(type='GN', num_groups=4, requires_grad=True))
    assert isinstance(model.pool_conv.gn, torch.nn.GroupNorm)
    assert model.pool_conv.conv.bias is None and model.pool_conv.conv.stride == (2, 2)


def test_unknown_stem_pool_is_refused():
    with pytest.raises(ValueError, match=r"ResNet: stem_pool='avg'; expected one of 'max', "):
        ResNet(depth=18, stem_pool='avg')


def test_default_stem_is_unchanged():
    model = ResNet(depth=18)
    assert isinstance(model.maxpool, torch.nn.MaxPool2d) and not hasattr(model, 'pool_conv')
    assert not any('pool' in k for k in model.state_dict())


def test_configs_turn_it_on():
    from mmext.utils.config import load_config
    for name, cls in (('retinanet_r50-allconv_fpn_1x_coco.py', 'mmext.ResNet'),
                      ('upernet_r18-c128-allconv_4xb4-160k_ade20k-512x512.py',
                       'mmext.ResNetV1c')):
        cfg = load_config(osp.join(CONFIGS, 'allconv', name))
        assert cfg.model.backbone.type == cls and cfg.model.backbone.stem_pool == 'conv'
