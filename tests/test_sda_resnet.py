"""SDA-ResNet (selective depth attention across the blocks of a stage)."""
import pytest
import torch
import torch.nn.functional as F
from mmdet.models.backbones import ResNet
from mmdet.models.backbones.resnext import Bottleneck as MMDetResNeXtBottleneck
from mmengine.registry import DefaultScope

from mmext.models.backbones.resnet import XBottleneck
from mmext.models.backbones.sda_resnet import SDAResLayer, SDAResNet


def n_params(module):
    return sum(p.numel() for p in module.parameters())


def attention_params(stage_channels, stage_blocks, reduction=16, min_channels=64):
    """Per stage: 1x1 C->d (no bias) + BN(d) + n_blocks x 1x1 d->C (with bias)."""
    total = 0
    for c, n in zip(stage_channels, stage_blocks):
        d = max(c // reduction, min_channels)
        total += c * d + 2 * d + n * (d * c + c)
    return total


def small_sda50(**kwargs):
    return SDAResNet(depth=50, base_channels=8, **kwargs)


def test_sda_resnet86_matches_published_count():
    model = SDAResNet(depth=86)
    # 3x3 convs are 8-group with width = planes (64/128/256/512).
    for i, planes in enumerate((64, 128, 256, 512)):
        conv2 = getattr(model, f'layer{i + 1}')[0].conv2
        assert conv2.groups == 8 and conv2.weight.shape == (planes, planes // 8, 3, 3)
    assert [len(getattr(model, f'layer{i + 1}').fcs) for i in range(4)] == [5, 6, 12, 5]
    total = n_params(model) + 2048 * 1000 + 1000  # ImageNet classifier
    assert abs(total - 27.22e6) / 27.22e6 < 0.01, total
    # With the official head's BN after pooling (``bn2``, 2 x 2048) it is exact.
    assert round((total + 2 * 2048) / 1e6, 2) == 27.22


def test_sda_r50_count_is_r50_plus_attention():
    extra = attention_params((256, 512, 1024, 2048), (3, 4, 6, 3))
    assert n_params(SDAResNet(depth=50)) == n_params(ResNet(depth=50)) + extra


def _reference_stage(stage, x):
    """Run the blocks with mmdet's own Bottleneck.forward (post-ReLU) to check
    the captured pre-activation outputs, and compute the SDA mix by hand."""
    zs = []
    originals = [blk.forward_preact for blk in stage.blocks]

    def record(fn):
        def wrapped(inp):
            out = fn(inp)
            zs.append(out.detach().clone())
            return out
        return wrapped

    for blk, fn in zip(stage.blocks, originals):
        blk.forward_preact = record(fn)
    try:
        out = stage(x)
    finally:
        for blk in stage.blocks:
            del blk.forward_preact
    assert len(zs) == stage.num_blocks

    # Z_i is the residual sum before the block ReLU, and block i+1 sees ReLU(Z_i).
    inp = x
    for blk, z in zip(stage.blocks, zs):
        assert (z < 0).any()
        assert torch.allclose(F.relu(z), MMDetResNeXtBottleneck.forward(blk, inp), atol=1e-5)
        inp = F.relu(z)

    conv_sq, bn, _ = stage.fc
    u = sum(zs).mean(dim=(2, 3))                                   # (N, C)
    v = u @ conv_sq.weight.flatten(1).t()
    v = (v - bn.running_mean) / torch.sqrt(bn.running_var + bn.eps) * bn.weight + bn.bias
    v = F.relu(v)
    logits = torch.stack([v @ fc.weight.flatten(1).t() + fc.bias for fc in stage.fcs], 1)
    a = logits.softmax(dim=1)                                      # (N, n, C)
    expected = F.relu(sum(a[:, i, :, None, None] * z for i, z in enumerate(zs)))
    return out, expected, zs


def test_stage_output_is_softmax_mix_of_block_outputs():
    torch.manual_seed(0)
    stage = SDAResLayer(XBottleneck, inplanes=16, planes=8, num_blocks=3, stride=2,
                        min_channels=8).eval()
    # Non-trivial BN statistics and attention weights.
    for m in stage.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.5, 0.5)
    for fc in stage.fcs:
        fc.weight.data.normal_(0, 1.0)
        fc.bias.data.normal_(0, 1.0)
    x = torch.randn(2, 16, 11, 13)
    with torch.no_grad():
        out, expected, zs = _reference_stage(stage, x)
        assert out.shape == (2, 32, 6, 7)
        assert torch.allclose(out, expected, atol=1e-5)
        # The mix differs from the plain last block output (what ResNet returns).
        assert not torch.allclose(out, F.relu(zs[-1]), atol=1e-3)
        attn = stage.depth_attention(zs)
        assert attn.shape == (2, 3, 32, 1, 1)
        assert torch.allclose(attn.sum(1), torch.ones(2, 32, 1, 1))
        assert not torch.allclose(attn[0], attn[1])  # input dependent

        # Equal logits: the stage output is the mean of the Z_i.
        for fc in stage.fcs:
            fc.weight.zero_()
            fc.bias.zero_()
        out, _, zs = _reference_stage(stage, x)
        assert torch.allclose(out, F.relu(sum(zs) / len(zs)), atol=1e-5)


def test_plugins_go_into_the_sda_stages():
    plugins = [dict(cfg=dict(type='ContextBlock', ratio=1. / 4), position='after_conv3',
                    stages=(False, True, True, True))]
    model = small_sda50(plugins=plugins).eval()
    assert hasattr(model.layer2[0], 'context_block') and not hasattr(model.layer1[0],
                                                                     'context_block')
    with torch.no_grad():
        assert model(torch.randn(2, 3, 48, 48))[-1].shape == (2, 256, 2, 2)


def test_zero_init_residual():
    model = small_sda50()
    model.init_weights()
    assert all((getattr(model, f'layer{s}')[b].norm3.weight == 0).all()
               for s in range(1, 5) for b in range(len(getattr(model, f'layer{s}').fcs)))
    assert (model.layer1.fc[1].weight == 1).all()
    model = small_sda50(zero_init_residual=False)
    model.init_weights()
    assert (model.layer1[0].norm3.weight == 1).all()


def test_convert_official_state_dict():
    model = small_sda50()
    official = {}
    for key, value in model.state_dict().items():
        if key.startswith('layer'):
            stage, rest = key.split('.', 1)
            s = stage[len('layer'):]
            key = f'stage{s}.{rest}' if rest.startswith('fc') else f'stage{s}.layers.{rest}'
        official['module.' + key] = value
    official['module.bn2.weight'] = torch.ones(256)
    official['module.fc.weight'] = torch.zeros(1000, 256)
    official['module.fc.bias'] = torch.zeros(1000)
    assert 'module.stage1.layers.0.downsample.1.weight' in official
    assert 'module.stage4.fcs.2.bias' in official
    converted = SDAResNet.convert_official(official)
    assert set(converted) == set(model.state_dict())
    small_sda50().load_state_dict(converted, strict=True)


@pytest.mark.parametrize('scope', ['mmdet', 'mmseg'])
def test_build_from_downstream_config(scope):
    if scope == 'mmdet':
        from mmdet.registry import MODELS
        from mmdet.utils import register_all_modules
    else:
        from mmseg.registry import MODELS
        from mmseg.utils import register_all_modules
    register_all_modules(init_default_scope=False)
    with DefaultScope.overwrite_default_scope(scope):
        model = MODELS.build(dict(type='mmext.SDAResNet', depth=86))
    assert type(model) is SDAResNet
    assert n_params(model) == n_params(SDAResNet(depth=86))
