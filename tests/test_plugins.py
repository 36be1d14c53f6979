"""Attention plugins SE, ECA and CBAM: registry, defining behaviour, reference
equivalence, placement in mmdet's ResNet and published parameter counts."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import build_plugin_layer
from mmdet.models.backbones import ResNet
from mmdet.models.backbones.resnet import Bottleneck
from mmengine.registry import DefaultScope

from mmext.models.plugins import CBAM, ECA, SE, eca_kernel_size, eca_plugins
from design_checks import ODD_SIZE, assert_all_grads

FC_1000 = 2048 * 1000 + 1000  # ImageNet classifier of a ResNet-50
PLUGINS = {'SE': SE, 'ECA': ECA, 'CBAM': CBAM}


class ConstGate(nn.Module):
    """Stands in for a sigmoid: a gate that is exactly ``value``."""

    def __init__(self, value):
        super().__init__()
        self.value = value

    def forward(self, x):
        return torch.full_like(x, self.value)


def gate_names(name):
    """The sigmoid modules that produce each plugin's gates."""
    return {'SE': ['conv2.activate'], 'ECA': ['activate'],
            'CBAM': ['channel_activate', 'spatial_activate']}[name]


def set_gate(module, path, value):
    parent, _, attr = path.rpartition('.')
    setattr(module.get_submodule(parent) if parent else module, attr, ConstGate(value))


def inputs(c, size=(9, 11), batch=2, seed=0):
    torch.manual_seed(seed)
    # A per-channel offset keeps the pooled descriptors away from 0, so SE's
    # small ReLU bottleneck has live units for every sample.
    return torch.randn(batch, c, *size) + torch.randn(1, c, 1, 1)


def mmdet_scope():
    from mmdet.utils import register_all_modules
    register_all_modules(init_default_scope=False)
    return DefaultScope.overwrite_default_scope('mmdet')


def n_params(module):
    return sum(p.numel() for p in module.parameters())


# --------------------------------------------------------------------------
# Registry and the smallest maps (shape at an odd size, gradients and bf16 run
# in test_component_contract.py, from each class's component_examples).


@pytest.mark.parametrize('name', list(PLUGINS))
def test_build_from_mmdet_scope_and_shapes(name):
    with mmdet_scope():
        layer_name, plugin = build_plugin_layer(dict(type=f'mmext.{name}'), in_channels=64,
                                                postfix='_1')
    assert isinstance(plugin, PLUGINS[name])
    assert layer_name == f'{name.lower()}_1'
    for size in ((1, 1), (3, 5)):
        x = inputs(64, size)
        assert plugin(x).shape == x.shape
    # Batch 1 at 1x1 leaves CBAM's spatial BN one value per channel: only valid in eval.
    plugin.eval()
    x = inputs(64, (1, 1), batch=1)
    assert plugin(x).shape == x.shape


# --------------------------------------------------------------------------
# Defining behaviour: the plugin only rescales its input by its gates.


@pytest.mark.parametrize('name', list(PLUGINS))
def test_constant_gate(name):
    x = inputs(32)
    plugin = PLUGINS[name](32)
    assert not torch.allclose(plugin(x), x)
    for path in gate_names(name):
        set_gate(plugin, path, 1.0)
    torch.testing.assert_close(plugin(x), x, rtol=0, atol=0)
    for path in gate_names(name):
        others = [p for p in gate_names(name) if p != path]
        plugin = PLUGINS[name](32)
        for p in others:
            set_gate(plugin, p, 1.0)
        set_gate(plugin, path, 0.3)
        torch.testing.assert_close(plugin(x), 0.3 * x)
    if name == 'CBAM':
        plugin = CBAM(32)
        set_gate(plugin, 'channel_activate', 0.3)
        set_gate(plugin, 'spatial_activate', 0.5)
        torch.testing.assert_close(plugin(x), 0.15 * x)


@pytest.mark.parametrize('name', list(PLUGINS))
def test_placement_in_bottleneck(name):
    """A zero gate at after_conv3 removes the residual branch: the block is
    relu(identity), so the plugin sits before the identity add. A gate of c
    scales exactly the branch after bn3."""
    plugins = [dict(cfg=dict(type=f'mmext.{name}'), position='after_conv3')]
    with mmdet_scope():
        block = Bottleneck(64, 16, plugins=plugins).eval()
    plugin = getattr(block, name.lower())
    x = inputs(64)
    for path in gate_names(name):
        set_gate(plugin, path, 0.0)
    torch.testing.assert_close(block(x), F.relu(x), rtol=0, atol=0)
    set_gate(plugin, gate_names(name)[0], 0.5)
    for path in gate_names(name)[1:]:
        set_gate(plugin, path, 1.0)
    with torch.no_grad():
        branch = block.norm3(block.conv3(block.relu(block.norm2(block.conv2(
            block.relu(block.norm1(block.conv1(x))))))))
        torch.testing.assert_close(block(x), F.relu(0.5 * branch + x))


# --------------------------------------------------------------------------
# Reference computations from the modules' own weights.


def test_se_reference():
    se = SE(64)
    x = inputs(64)
    w1, b1 = se.conv1.conv.weight.flatten(1), se.conv1.conv.bias
    w2, b2 = se.conv2.conv.weight.flatten(1), se.conv2.conv.bias
    assert w1.shape == (4, 64) and w2.shape == (64, 4)  # C -> C/16 -> C
    s = torch.sigmoid(F.linear(F.relu(F.linear(x.mean((2, 3)), w1, b1)), w2, b2))
    torch.testing.assert_close(se(x), x * s[:, :, None, None])


def test_eca_reference():
    eca = ECA(64, kernel_size=5)
    with torch.no_grad():
        eca.conv.weight.copy_(torch.randn(1, 1, 5))
    assert n_params(eca) == 5  # no bias
    x = inputs(64)
    w = eca.conv.weight.flatten()
    y = x.mean((2, 3))
    c = y.shape[1]
    ref = torch.zeros_like(y)
    # Cross-correlation along channels with zero padding: channel i sees i-2 ... i+2.
    for i in range(c):
        for j in range(5):
            src = i + j - 2
            if 0 <= src < c:
                ref[:, i] += w[j] * y[:, src]
    torch.testing.assert_close(eca(x), x * torch.sigmoid(ref)[:, :, None, None])


def cbam_reference(cbam, x, spatial_first=False, mean_first=False):
    mlp1, mlp2 = cbam.channel_mlp[0].conv, cbam.channel_mlp[1].conv
    bn = cbam.spatial_conv.norm

    def mlp(v):
        h = F.relu(F.linear(v, mlp1.weight.flatten(1), mlp1.bias))
        return F.linear(h, mlp2.weight.flatten(1), mlp2.bias)

    def channel(t):
        att = torch.sigmoid(mlp(t.mean((2, 3))) + mlp(t.amax((2, 3))))
        return t * att[:, :, None, None]

    def spatial(t):
        mx, mean = t.amax(1, keepdim=True), t.mean(1, keepdim=True)
        desc = torch.cat([mean, mx] if mean_first else [mx, mean], 1)
        s = F.conv2d(desc, cbam.spatial_conv.conv.weight, padding=3)
        s = (s - bn.running_mean) / torch.sqrt(bn.running_var + bn.eps) * bn.weight + bn.bias
        return t * torch.sigmoid(s)

    return channel(spatial(x)) if spatial_first else spatial(channel(x))


def test_cbam_reference():
    cbam = CBAM(64)
    # One MLP shared by both descriptors (biases on both layers), a 7x7 2->1
    # conv without bias, and BN's two affine parameters.
    assert n_params(cbam) == 64 * 4 + 4 + 4 * 64 + 64 + 2 * 49 + 2
    assert cbam.spatial_conv.conv.bias is None
    bn = cbam.spatial_conv.norm
    with torch.no_grad():
        bn.running_mean.fill_(0.2)
        bn.running_var.fill_(1.7)
        bn.weight.fill_(1.3)
        bn.bias.fill_(-0.1)
    cbam.eval()
    x = inputs(64)
    out = cbam(x)
    torch.testing.assert_close(out, cbam_reference(cbam, x))
    # The reference is sensitive to what it pins down.
    for wrong in (dict(spatial_first=True), dict(mean_first=True)):
        assert not torch.allclose(out, cbam_reference(cbam, x, **wrong), atol=1e-4)


def test_cbam_official_init():
    """init_weights zeroes the spatial BN weight as the official code does:
    the spatial gate starts at 0.5 everywhere."""
    cbam = CBAM(64)
    cbam.init_weights()
    assert torch.equal(cbam.spatial_conv.norm.weight, torch.zeros(1))
    cbam.eval()
    x = inputs(64)
    ref = CBAM(64).eval()
    ref.load_state_dict(cbam.state_dict())
    set_gate(ref, 'spatial_activate', 0.5)
    torch.testing.assert_close(cbam(x), ref(x))
    # It survives mmdet ResNet's init (BN weights to 1, then the children).
    with mmdet_scope():
        r50 = ResNet(depth=50, base_channels=8,
                     plugins=[dict(cfg=dict(type='mmext.CBAM', ratio=4), position='after_conv3')])
    r50.init_weights()
    assert r50.layer1[0].norm1.weight.eq(1).all()
    assert r50.layer1[0].cbam.spatial_conv.norm.weight.eq(0).all()
    # With the spatial BN weight at 0 its conv gets no gradient; perturb it
    # so the gradient check sees every parameter.
    with torch.no_grad():
        cbam.spatial_conv.norm.weight.fill_(0.5)
    cbam.train()
    assert_all_grads(cbam, cbam(x))


# --------------------------------------------------------------------------
# ECA kernel sizes.


def test_eca_adaptive_kernel():
    # k = int((log2 C + 1) / 2), bumped to odd:
    # 64: 3.5->3; 128: 4->5; 256: 4.5->4->5; 512: 5; 1024: 5.5->5; 2048: 6->7.
    expected = {64: 3, 128: 5, 256: 5, 512: 5, 1024: 5, 2048: 7}
    for c, k in expected.items():
        assert eca_kernel_size(c) == k, c
        assert ECA(c).conv.kernel_size == (k,), c
    assert ECA(2048, kernel_size=3).kernel_size == 3
    assert ECA(64, gamma=1, b=0).kernel_size == 7  # int(6 / 1) = 6 -> 7
    with pytest.raises(AssertionError):
        ECA(64, kernel_size=4)


def test_eca_plugins_layout():
    plugins = eca_plugins()
    assert [p['cfg']['kernel_size'] for p in plugins] == [3, 5, 5, 7]
    assert [p['stages'] for p in plugins] == [
        (True, False, False, False), (False, True, False, False),
        (False, False, True, False), (False, False, False, True)]
    with mmdet_scope():
        r50 = ResNet(depth=50, plugins=plugins)
    for stage, k in zip((r50.layer1, r50.layer2, r50.layer3, r50.layer4), (3, 5, 5, 7)):
        for block in stage:
            assert block.after_conv3_plugin_names == ['eca']
            assert block.eca.kernel_size == k


# --------------------------------------------------------------------------
# Whole networks: published parameter counts and stage shapes.


def r50_params(plugins=None):
    with mmdet_scope():
        return n_params(ResNet(depth=50, plugins=plugins))


def test_se_resnet50_params():
    n = r50_params([dict(cfg=dict(type='mmext.SE'), position='after_conv3')]) + FC_1000
    assert n == 28_088_024
    assert abs(n / 28.09e6 - 1) < 0.01  # SENet / CBAM papers: SE-ResNet-50 28.09M


def test_cbam_resnet50_params():
    n = r50_params([dict(cfg=dict(type='mmext.CBAM'), position='after_conv3')]) + FC_1000
    assert n == 28_089_624  # SE-ResNet-50 + 16 blocks x (7*7*2 conv + 2 BN)
    assert abs(n / 28.09e6 - 1) < 0.01  # CBAM paper Table: ResNet50 + CBAM 28.09M


def test_eca_resnet50_params():
    base = r50_params() + FC_1000
    eca = r50_params(eca_plugins()) + FC_1000
    assert base == 25_557_032
    # The defining fact: k per block, no bias: 3*3 + 4*5 + 6*5 + 3*7 = 80.
    assert eca - base == 80
    # ECA-Net's paper and README count in units of 2**20 parameters (their
    # paras_flops.py formats thop's count with num / 1024**2 and calls it
    # "M"): 25.56e6 / 2**20 = 24.37 for both R-50 and ECA-Net50, so the
    # published 24.37M is reproduced exactly in those units; it is not 24.37
    # million parameters.
    published_r50, published_eca50 = 24.37, 24.37
    assert round(base / 2**20, 2) == published_r50
    assert round(eca / 2**20, 2) == published_eca50
    # Why the two published figures agree: +80 is far below their resolution.
    assert (eca - base) / 2**20 < 0.01


def test_se_resnet50_stage_shapes():
    torch.manual_seed(0)
    plugins = [dict(cfg=dict(type='mmext.SE'), position='after_conv3')]
    with mmdet_scope():
        r50 = ResNet(depth=50, plugins=plugins)
    r50.eval()  # mmdet's ResNet.train() returns None, so no chaining
    assert all(isinstance(b.se, SE) for stage in (r50.layer1, r50.layer4) for b in stage)
    with torch.no_grad():
        outs = r50(torch.randn(1, 3, *ODD_SIZE))
    # stem /4 (97x131 -> 49x66 -> 25x33), then /2 per stage with ceil.
    assert [tuple(o.shape) for o in outs] == [
        (1, 256, 25, 33), (1, 512, 13, 17), (1, 1024, 7, 9), (1, 2048, 4, 5)]
