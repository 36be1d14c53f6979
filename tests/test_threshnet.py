"""ThreshNet: parameter counts of the official CIFAR-10 models, the harmonic
link pattern, the stage cut, and the forward against a computation written
with torch.nn.functional (the shared backbone contract runs in
test_backbone_contract.py)."""
import math

import pytest
import torch
import torch.nn.functional as F
from backbone_checks import count_params
from design_checks import randomize_norms

from mmext.models.backbones.threshnet import ThreshNet, harmonic_links, harmonic_width

# The official C10-demo models (RuiyangJu/ThreshNet) counted with their
# classifier, as ../shared/catalog_remaining.md (C11) measured them.
OFFICIAL_PARAMS = {'79': 14_371_858, '95': 16_189_202}
# The official head: AdaptiveAvgPool2d(1), Flatten, nn.Linear(960, 10).
CIFAR10_HEAD = 960 * 10 + 10


@pytest.fixture(scope='module')
def full():
    return {arch: ThreshNet(arch=arch) for arch in OFFICIAL_PARAMS}


@pytest.mark.parametrize('arch', sorted(OFFICIAL_PARAMS))
def test_official_parameter_count(full, arch):
    assert count_params(full[arch]) + CIFAR10_HEAD == OFFICIAL_PARAMS[arch]


def test_widths_strides_and_block_widths(full):
    assert full['79'].out_channels == (128, 192, 480, 960)
    assert full['95'].out_channels == (128, 256, 480, 960)
    for model in full.values():
        assert model.out_strides == (4, 8, 16, 32)
        # HarDNet's odd-layers-plus-last output of the two harmonic blocks:
        # 8 x 40 + 334 and 160 + 160 + 462, as the official blocks' get_out_ch().
        assert model.block4.out_channels == 654 and model.block5.out_channels == 782
    # Dense blocks: input + layers x 32 (the official transitions' inputs).
    assert [getattr(full['79'], f'block{i}').out_channels for i in (1, 2, 3)] == [256, 384, 576]
    assert [getattr(full['95'], f'block{i}').out_channels for i in (1, 2, 3)] == [256, 512, 768]
    assert [len(getattr(full['95'], f'block{i}').layers) for i in range(1, 6)] == [6, 12, 16,
                                                                                 16, 4]


def test_arch_names():
    assert ThreshNet.arch_key('ThreshNet79') == '79'
    with pytest.raises(ValueError, match="'79', '95'"):
        ThreshNet(arch='121')
    with pytest.raises(ValueError, match='dense_layers'):
        ThreshNet(arch=dict(ThreshNet.backbone_examples[0]['arch'], dense_layers=(1, 1)))
    with pytest.raises(ValueError, match='grmul'):
        ThreshNet(arch={k: v for k, v in ThreshNet.backbone_examples[0]['arch'].items()
                        if k != 'grmul'})


def _hardnet_rule(layer):
    """Written from the HarDNet paper (Chao et al., ICCV 2019, Sec. 3.1):
    layer l connects to l - 2^n whenever 2^n divides l."""
    return sorted((layer - 2**n for n in range(0, 10) if 2**n <= layer and layer % 2**n == 0),
                  reverse=True)


def test_harmonic_links_follow_the_hardnet_rule():
    for layer in range(1, 65):
        assert harmonic_links(layer) == _hardnet_rule(layer)
    assert harmonic_links(16) == [15, 14, 12, 8, 0]
    assert harmonic_links(12) == [11, 10, 8]
    with pytest.raises(ValueError, match='layer=0'):
        harmonic_links(0)
    # growth * 1.7^(links - 1), rounded to even: 40, 68, 115.6 -> 116, 196.52 -> 196,
    # 334.084 -> 334.
    assert [harmonic_width(l, 40, 1.7) for l in (1, 2, 4, 8, 16)] == [40, 68, 116, 196, 334]
    assert [harmonic_width(l, 160, 1.7) for l in (1, 2, 3, 4)] == [160, 272, 160, 462]


def _bn(m, x):
    return F.batch_norm(x, m.running_mean, m.running_var, m.weight, m.bias, False, 0., m.eps)


def _conv_bn_relu(cm, x):
    c = cm.conv
    return F.relu(_bn(cm.bn, F.conv2d(x, c.weight, None, c.stride, c.padding)))


def _pre_act(cm, x):
    c = cm.conv
    return F.conv2d(F.relu(_bn(cm.bn, x)), c.weight, None, c.stride, c.padding)


def _reference_forward(model, x, ceil):
    """The official network's computation (stem, DenseNet-B layers, harmonic
    layers on the paper's link rule, transitions, 2x2 pools after blocks 1, 2
    and 4), reading only the model's weights; ``ceil=False`` is the official
    floor pooling."""
    x = _conv_bn_relu(model.stem.conv1, x)
    x = F.max_pool2d(_conv_bn_relu(model.stem.conv2, x), 3, 2, 1)
    outs = []
    for i in range(1, 6):
        block = getattr(model, f'block{i}')
        if i <= 3:
            for layer in block.layers:
                x = torch.cat([x, _pre_act(layer.conv2, _pre_act(layer.conv1, x))], 1)
        else:
            maps = [x]
            for l, layer in enumerate(block.layers, 1):
                maps.append(_conv_bn_relu(layer, torch.cat([maps[k] for k in _hardnet_rule(l)],
                                                           1)))
            n = len(block.layers)
            x = torch.cat([maps[l] for l in range(1, n + 1) if l % 2 or l == n], 1)
        x = _conv_bn_relu(getattr(model, f'transition{i}'), x)
        if i != 3:
            outs.append(x)
        if i in (1, 2, 4):
            x = F.max_pool2d(x, 2, 2, ceil_mode=ceil)
    return outs



def test_forward_matches_the_official_computation():
    model = randomize_norms(ThreshNet(**ThreshNet.backbone_examples[0])).eval()
    # At a multiple of 32 the ceil-mode pools are the official floor pools.
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        outs, expected = model(x), _reference_forward(model, x, ceil=False)
    for out, exp in zip(outs, expected):
        torch.testing.assert_close(out, exp, rtol=1e-4, atol=1e-5)
    # Odd sizes: the same computation with ceil-mode pools.
    x = torch.randn(2, 3, 67, 45)
    with torch.no_grad():
        outs, expected = model(x), _reference_forward(model, x, ceil=True)
    for out, exp in zip(outs, expected):
        torch.testing.assert_close(out, exp, rtol=1e-4, atol=1e-5)


def test_large_odd_input_gives_ceil_maps():
    # The 511x673 (the shared contract covers 97x131, 67x45, 255x321).
    model = ThreshNet(**ThreshNet.backbone_examples[0]).eval()
    with torch.no_grad():
        outs = model(torch.randn(1, 3, 511, 673))
    assert [tuple(o.shape) for o in outs] == [
        (1, c, math.ceil(511 / s), math.ceil(673 / s))
        for c, s in zip(model.out_channels, model.out_strides)]


def test_stage_cut_follows_the_strides():
    model = ThreshNet(**ThreshNet.backbone_examples[0])
    # Stage 2 holds dense block 3 and harmonic block 4 (both at stride 16);
    # the pool after block 4 opens stage 3.
    names = [[n for n, m in model.named_children() if any(m is s for s in
                                                           model.stage_modules(i))]
             for i in range(4)]
    assert names == [['stem', 'block1', 'transition1'], ['block2', 'transition2', 'pool1'],
                     ['block3', 'transition3', 'block4', 'transition4', 'pool2'],
                     ['block5', 'transition5', 'pool4']]
