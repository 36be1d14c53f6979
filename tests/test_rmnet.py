"""RMResNet: reserve & merge (Meng et al., "RMNet: Equivalently Removing Residual
Connection from Networks", arXiv 2111.00687; official fxmeng/RMNet
``models/easy_resnet2vgg.py``, ``models/easy_resnet50_to_vgg.py``). The shared
contract runs the training form through ``backbone_examples``; this file checks
the conversion."""
import pytest
import torch
import torch.nn.functional as F
from design_checks import ODD_SIZE, randomize_norms

from mmext.models.backbones.rmnet import PlainBlock, RMResNet, reserve_and_merge
from mmext.utils.errors import MMExtError


def n_params(module):
    return sum(p.numel() for p in module.parameters())



def build(**kwargs):
    torch.manual_seed(0)
    return randomize_norms(RMResNet(**kwargs)).eval()


@pytest.mark.parametrize('depth,fc_in,expected', [(18, 512, 20_176_360), (34, 512, 40_383_400),
                                                  (50, 2048, 277_325_864)])
def test_converted_params_as_the_catalog_counts_them(depth, fc_in, expected):
    """The stem's conv1 / bn1 unchanged, every converted conv with a bias, plus
    the 1000-class classifier (added here: the backbone has none). Built on
    the meta device: only shapes count, and R-50's widened 3x3s would take
    seconds to allocate."""
    with torch.device('meta'):
        model = RMResNet(depth=depth)
        before = n_params(model)
        model.deploy()
    fc = fc_in * 1000 + 1000
    assert before + fc == {18: 11_689_512, 34: 21_797_672, 50: 25_557_032}[depth]
    assert n_params(model) + fc == expected


CASES = {
    'r18': dict(depth=18, base_channels=8),
    # Dilated stages: the reserved Dirac tap is the kernel centre at any dilation.
    'r18-dilated': dict(depth=18, base_channels=8, strides=(1, 2, 1, 1), dilations=(1, 1, 2, 4)),
    # The all-convolutional stem and the deep stem stay as they are.
    'r34-allconv-deepstem': dict(depth=34, base_channels=4, stem_pool='conv', deep_stem=True),
    'r50-pytorch': dict(depth=50, base_channels=4),
    # caffe style: the stride sits on the bottleneck's 1x1 conv1.
    'r50-caffe-allconv': dict(depth=50, base_channels=4, style='caffe', stem_pool='conv'),
}


@pytest.mark.parametrize('name', list(CASES))
def test_deploy_keeps_the_outputs(name):
    model = build(**CASES[name])
    sizes = [ODD_SIZE, (511, 673)] if name == 'r18' else [ODD_SIZE]
    inputs = [torch.randn(1, 3, *s, generator=torch.Generator().manual_seed(1)) for s in sizes]
    with torch.no_grad():
        before = [model(x) for x in inputs]
        assert model.deploy() is model
        after = [model(x) for x in inputs]
    blocks = [b for name_ in model.res_layers for b in getattr(model, name_)]
    assert blocks and all(isinstance(b, PlainBlock) for b in blocks)
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
                   for b in blocks for m in b.modules())
    for outs_b, outs_a in zip(before, after):
        for b, a in zip(outs_b, outs_a):
            assert b.shape == a.shape
            assert b.abs().max() > 0.1  # a non-trivial function was compared
            assert (b - a).abs().max() <= 1e-4, (name, (b - a).abs().max())


def _fold(w, bn):
    """Official rule, step 1: BN folded into the conv before it (eval)."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    return w * scale[:, None, None, None], bn.bias - bn.running_mean * scale


def test_one_block_against_the_official_rule_written_out():
    """A stride-2 basic block with a downsample, converted by the official
    rule (``rm_r_BasicBlock``) written here with torch.nn.functional:
    conv1' = [Dirac (reserve x); fused conv1], ReLU, conv2' = [fused
    downsample 1x1 zero-padded to 3x3 | fused conv2] with the two biases
    added, ReLU."""
    model = build(depth=18, base_channels=8)
    block = model.layer2[0]
    c_in, c_mid = 8, 16
    w1, b1 = _fold(block.conv1.weight, block.norm1)
    w2, b2 = _fold(block.conv2.weight, block.norm2)
    wd, bd = _fold(block.downsample[0].weight, block.downsample[1])
    eye = torch.zeros(c_in, c_in, 3, 3)
    eye[:, :, 1, 1] = torch.eye(c_in)
    conv1 = torch.cat([eye, w1]), torch.cat([torch.zeros(c_in), b1])
    conv2 = torch.cat([F.pad(wd, [1, 1, 1, 1]), w2], dim=1), b2 + bd
    x = torch.relu(torch.randn(2, c_in, 25, 31))  # a block input is non-negative
    with torch.no_grad():
        h = F.relu(F.conv2d(x, *conv1, stride=2, padding=1))
        expected = F.relu(F.conv2d(h, *conv2, padding=1))
        plain = reserve_and_merge(block)
        torch.testing.assert_close(plain[0].weight, conv1[0])
        torch.testing.assert_close(plain[2].weight, conv2[0])
        torch.testing.assert_close(plain[2].bias, conv2[1])
        torch.testing.assert_close(plain(x), expected, atol=1e-5, rtol=0)
        torch.testing.assert_close(expected, block(x), atol=1e-5, rtol=0)
    assert [type(m).__name__ for m in plain] == ['Conv2d', 'ReLU', 'Conv2d', 'ReLU']


def test_deployed_network_is_inference_only():
    model = build(depth=18, base_channels=8).deploy()
    assert model.deployed and not model.training
    with pytest.raises(MMExtError, match='deployed .* eval mode only'):
        model.train()
    assert model.eval() is model
    assert model.deploy() is model  # a second call changes nothing
    keys = [k for k in model.state_dict() if k.startswith('layer1.0.')]
    assert keys == ['layer1.0.0.weight', 'layer1.0.0.bias', 'layer1.0.2.weight',
                    'layer1.0.2.bias']


def test_torchvision_layout_trains_and_deploys(tmp_path):
    """A torchvision ResNet-18 state dict (the training checkpoint layout, as
    for mmext.ResNet) loads with every tensor equal, and the deployed
    network reproduces torchvision's last stage."""
    from torchvision.models import resnet18
    torch.manual_seed(0)
    ref = randomize_norms(resnet18()).eval()
    path = tmp_path / 'resnet18.pth'
    torch.save(ref.state_dict(), path)
    model = RMResNet(depth=18, out_indices=(3, ),
                     init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    model.init_weights()
    state = model.state_dict()
    for key, value in ref.state_dict().items():
        if not key.startswith('fc.'):
            assert torch.equal(state[key], value), key
    x = torch.randn(1, 3, 67, 45)
    with torch.no_grad():
        ref_out = ref.layer4(ref.layer3(ref.layer2(ref.layer1(
            ref.maxpool(ref.relu(ref.bn1(ref.conv1(x))))))))
        out = model.eval().deploy()(x)[0]
    assert (out - ref_out).abs().max() <= 1e-4


@pytest.mark.parametrize('kwargs,match', [
    (dict(avg_down=True), 'avg_down'),
    (dict(plugins=[dict(cfg=dict(type='mmext.SE', ratio=4), position='after_conv2')]),
     'plugins'),
    (dict(block_conv_cfg=dict(type='Conv2d')), 'block_conv_cfg'),
    (dict(norm_cfg=dict(type='GN', num_groups=4)), 'GroupNorm'),
])
def test_blocks_it_cannot_convert_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        RMResNet(depth=18, base_channels=8, **kwargs)


def test_detector_checkpoint_saved_after_deploy_loads_with_deploy_true():
    """The documented path: deploy a trained detector's backbone, save the
    detector, rebuild the config with ``model.backbone.deploy=True`` and load
    the state dict strictly."""
    import os.path as osp

    from conftest import CONFIGS
    from mmdet.registry import MODELS
    from mmengine.registry import DefaultScope

    from mmext.utils.config import load_config, register_library
    cfg = load_config(osp.join(CONFIGS, 'rmnet', 'retinanet_rmr18_fpn_1x_coco.py'))
    register_library(cfg)
    cfg.model.backbone.init_cfg = None  # no download; random weights do
    with DefaultScope.overwrite_default_scope('mmdet'):
        trained = MODELS.build(cfg.model).eval()
        cfg.model.backbone.deploy = True
        deployed = MODELS.build(cfg.model)
    randomize_norms(trained.backbone)
    x = torch.randn(1, 3, 67, 45)
    with torch.no_grad():
        ref = trained.extract_feat(x)
        trained.backbone.deploy()
        deployed.load_state_dict(trained.state_dict(), strict=True)
        out = deployed.eval().extract_feat(x)
    for a, b in zip(ref, out):
        assert (a - b).abs().max() <= 1e-4
    with pytest.raises(MMExtError):
        deployed.train()
