"""The mmext ResNet host: same networks as mmdet / mmseg, plus plugins and conv
swaps on BasicBlock, chained plugins and ``block_conv_cfg``; and every design
through every host a config can name."""
import pytest
import torch
from mmengine.registry import DefaultScope
from torch import nn

from mmext.models.backbones.resnet import ResNet, ResNeXt
from mmext.registry import MODELS


@MODELS.register_module(name='_AffinePlugin', force=True)
class AffinePlugin(nn.Module):
    """y = scale * x + shift: the order of two of them is visible in the output."""

    def __init__(self, in_channels, scale=1.0, shift=0.0):
        super().__init__()
        self.in_channels = in_channels
        self.scale = nn.Parameter(torch.tensor(float(scale)))
        self.shift = nn.Parameter(torch.tensor(float(shift)))

    def forward(self, x):
        return self.scale * x + self.shift


def affine(position, scale, shift, stages=None):
    plugin = dict(cfg=dict(type='mmext._AffinePlugin', scale=scale, shift=shift),
                  position=position)
    if stages is not None:
        plugin['stages'] = stages
    return plugin


def n_params(module):
    return sum(p.numel() for p in module.parameters())


def _library(scope):
    if scope == 'mmdet':
        from mmdet.registry import MODELS as lib
        from mmdet.utils import register_all_modules
    else:
        from mmseg.registry import MODELS as lib
        from mmseg.utils import register_all_modules
    register_all_modules(init_default_scope=False)
    return lib


def build(scope, cfg):
    lib = _library(scope)
    with DefaultScope.overwrite_default_scope(scope):
        return lib.build(cfg)


@pytest.mark.parametrize('depth,last_norm', [(18, 'norm2'), (50, 'norm3')])
def test_host_initialises_like_mmdet(depth, last_norm):
    """zero_init_residual reaches the host's own block classes (mmdet checks
    the block class by identity, so subclasses would silently lose it)."""
    from mmdet.models.backbones import ResNet as DetResNet
    for net in (ResNet(depth=depth, base_channels=16), DetResNet(depth=depth, base_channels=16)):
        net.init_weights()
        for layer in (net.layer1, net.layer4):
            assert all(getattr(b, last_norm).weight.abs().sum() == 0 for b in layer)
            assert all(b.norm1.weight.eq(1).all() for b in layer)
    kept = ResNet(depth=depth, base_channels=16, zero_init_residual=False)
    kept.init_weights()
    assert getattr(kept.layer1[0], last_norm).weight.eq(1).all()


def test_resnext_host_keeps_norm3_like_mmdet():
    """mmdet's identity check skips its ResNeXt block, so zero_init_residual
    leaves norm3 at 1 there; the host does the same (the differential test
    compares every weight, this pins which way both go)."""
    from mmdet.models.backbones import ResNeXt as DetResNeXt
    for net in (ResNeXt(4, 4, depth=50, base_channels=16),
                DetResNeXt(4, 4, depth=50, base_channels=16)):
        net.init_weights()
        assert all(b.norm3.weight.eq(1).all() for b in net.layer1)


def test_upstream_traps_that_the_host_closes():
    """What mmdet 3.3.0 / mmseg 1.2.2 do, verified, so the host's reason to
    exist stays checked against the installed versions."""
    from mmdet.models.backbones import ResNet as DetResNet
    from mmseg.models.backbones import ResNetV1c as SegResNetV1c

    # BasicBlock refuses plugins and dcn.
    with pytest.raises(AssertionError, match='Not implemented'):
        DetResNet(depth=18, plugins=[affine('after_conv2', 2, 0)])
    # Two plugins of one type in a block collide on the name.
    with pytest.raises(AssertionError, match='duplicate plugin'):
        DetResNet(depth=50, plugins=[affine('after_conv3', 2, 1), affine('after_conv3', 3, -1)])
    # mmseg feeds the block input to each plugin of a position: no chaining.
    seg = SegResNetV1c(depth=50, plugins=[
        dict(cfg=dict(type='mmext._AffinePlugin', scale=2, shift=1, postfix='_a'),
             position='after_conv3'),
        dict(cfg=dict(type='mmext._AffinePlugin', scale=3, shift=-1, postfix='_b'),
             position='after_conv3')])
    z = torch.randn(2, 4)
    assert torch.equal(seg.layer1[0].forward_plugin(z, ['affine_plugin_a', 'affine_plugin_b']),
                       3 * z - 1)


def _basic_block_reference(block, x):
    out = block.relu(block.norm1(block.conv1(x)))
    for name in block.after_conv1_plugin_names:
        out = getattr(block, name)(out)
    out = block.norm2(block.conv2(out))
    for name in block.after_conv2_plugin_names:
        out = getattr(block, name)(out)
    identity = x if block.downsample is None else block.downsample(x)
    return block.relu(out + identity)


def test_plugins_on_basic_block_chain_in_order():
    net = ResNet(depth=18, plugins=[
        affine('after_conv1', 0.5, 0.25),
        affine('after_conv2', 2, 1),
        affine('after_conv2', 3, -1),
    ])
    net.eval()
    block = net.layer2[0]
    assert block.after_conv1_plugin_names == ['affine_plugin']
    assert block.after_conv2_plugin_names == ['affine_plugin_1', 'affine_plugin_2']
    x = torch.randn(2, 64, 15, 11)
    with torch.no_grad():
        out = block(x)
        torch.testing.assert_close(out, _basic_block_reference(block, x))
        # The second plugin sees the first one's output: 3 * (2z + 1) - 1.
        z = block.norm2(block.conv2(block.affine_plugin(block.relu(block.norm1(block.conv1(x))))))
        identity = block.downsample(x)
        torch.testing.assert_close(out, torch.relu(6 * z + 2 + identity))
    # Plugins appear in every block of the selected stages only.
    only_stage4 = ResNet(depth=34, plugins=[affine('after_conv2', 2, 0, (False, False, False, True))])
    assert n_params(only_stage4) - n_params(ResNet(depth=34)) == 3 * 2


def test_chained_plugins_on_bottleneck():
    net = ResNet(depth=50, plugins=[affine('after_conv3', 2, 1), affine('after_conv3', 3, -1)])
    block = net.layer1[0].eval()
    x = torch.randn(1, 64, 9, 7)
    with torch.no_grad():
        z = block.norm3(block.conv3(block.relu(block.norm2(block.conv2(
            block.relu(block.norm1(block.conv1(x))))))))
        torch.testing.assert_close(block(x), torch.relu(6 * z + 2 + block.downsample(x)))


def test_basic_block_rejects_a_bottleneck_only_position():
    with pytest.raises(ValueError, match='after_conv1 / after_conv2'):
        ResNet(depth=18, plugins=[affine('after_conv3', 2, 0)])


def test_dcn_slot_on_basic_block_swaps_both_3x3():
    net = ResNet(depth=18, dcn=dict(type='mmext.ODConv', kernel_num=1),
                 stage_with_dcn=(False, True, True, True))
    from mmext.models.layers import ODConv
    assert type(net.layer1[0].conv1) is nn.Conv2d
    for layer in (net.layer2, net.layer3, net.layer4):
        for block in layer:
            assert isinstance(block.conv1, ODConv) and isinstance(block.conv2, ODConv)
            assert block.conv1.stride == block.stride
    assert type(net.layer2[0].downsample[0]) is nn.Conv2d
    out = net(torch.randn(2, 3, 65, 47))
    assert [o.shape[1:] for o in out] == [(64, 17, 12), (128, 9, 6), (256, 5, 3), (512, 3, 2)]
    with pytest.raises(ValueError, match='must be None when dcn'):
        ResNet(depth=18, dcn=dict(type='mmext.ODConv'), stage_with_dcn=(True, ) * 4,
               block_conv_cfg=dict(type='mmext.ODConv'))


@pytest.mark.parametrize('depth', [18, 50])
def test_block_conv_cfg_swaps_block_convs_only(depth):
    from mmext.models.layers import ODConv
    net = ResNet(depth=depth, block_conv_cfg=dict(type='mmext.ODConv', kernel_num=1))
    convs = {name: m for name, m in net.named_modules() if isinstance(m, (nn.Conv2d, ODConv))}
    for name, conv in convs.items():
        in_block = '.conv' in name and 'attention' not in name
        if in_block:
            assert isinstance(conv, ODConv), name
        elif name == 'conv1' or 'downsample' in name:
            assert type(conv) is nn.Conv2d, name
    n_block_convs = 2 * 8 if depth == 18 else 3 * 16
    assert sum(isinstance(m, ODConv) for m in convs.values()) == n_block_convs


# One line in a config, through every host a user can name: the upstream
# Bottleneck hosts take one plugin per position and the dcn slot natively;
# ResNet-18/34 need the mmext host.
PLUGINS = [dict(type='mmext.SE'), dict(type='mmext.ECA'), dict(type='mmext.CBAM')]
CONVS = [dict(type='mmext.SKConv'), dict(type='mmext.DynamicConv'),
         dict(type='mmext.ODConv', kernel_num=4), dict(type='mmext.DCDC'),
         dict(type='mmext.TAdaConv')]
HOSTS = [
    ('mmdet', dict(type='ResNet', depth=50), 'after_conv3'),
    ('mmdet', dict(type='ResNeXt', depth=50, groups=32, base_width=4), 'after_conv3'),
    ('mmseg', dict(type='ResNetV1c', depth=50), 'after_conv3'),
    ('mmdet', dict(type='mmext.ResNet', depth=18), 'after_conv2'),
    ('mmseg', dict(type='mmext.ResNetV1c', depth=34, contract_dilation=True), 'after_conv2'),
]


def _stage_shapes(backbone, channels):
    backbone.train()
    out = backbone(torch.randn(2, 3, 49, 35))
    strides_hw = [(13, 9), (7, 5), (4, 3), (2, 2)]
    assert [tuple(o.shape[1:]) for o in out] == [(c, *hw) for c, hw in zip(channels, strides_hw)]
    out[-1].mean().backward()


def _channels(host):
    return (64, 128, 256, 512) if host['depth'] in (18, 34) else (256, 512, 1024, 2048)


@pytest.mark.parametrize('plugin', PLUGINS, ids=lambda p: p['type'])
@pytest.mark.parametrize('scope,host,position', HOSTS, ids=lambda h: str(h))
def test_every_plugin_in_every_host(scope, host, position, plugin):
    backbone = build(scope, dict(host, plugins=[dict(cfg=plugin, position=position)]))
    abbr = plugin['type'].split('.')[1].lower()
    assert hasattr(backbone.layer4[0], abbr)
    _stage_shapes(backbone, _channels(host))


@pytest.mark.parametrize('conv', CONVS, ids=lambda c: c['type'])
@pytest.mark.parametrize('scope,host,position', HOSTS, ids=lambda h: str(h))
def test_every_conv_in_every_host(scope, host, position, conv):
    conv_cls = MODELS.get(conv['type'].split('.')[1])
    backbone = build(scope, dict(host, dcn=conv, stage_with_dcn=(True, ) * 4))
    assert isinstance(backbone.layer3[1].conv2, conv_cls)
    _stage_shapes(backbone, _channels(host))


@pytest.mark.parametrize('conv', CONVS, ids=lambda c: c['type'])
def test_every_conv_as_conv_cfg(conv):
    """conv_cfg reaches every conv: the 7x7 stride-2 stem, the 1x1 stride-2
    downsample (no padding argument: nn.Conv2d's default 0) and the blocks."""
    conv_cls = MODELS.get(conv['type'].split('.')[1])
    backbone = build('mmdet', dict(type='mmext.ResNet', depth=18, conv_cfg=conv))
    for m in (backbone.conv1, backbone.layer2[0].downsample[0], backbone.layer3[1].conv2):
        assert isinstance(m, conv_cls)
    _stage_shapes(backbone, (64, 128, 256, 512))


# block_cfg / stem_cfg: designs that replace a whole block or the stem.
GN = dict(type='GN', num_groups=4, requires_grad=True)


class ToyBlock(nn.Module):
    """A 'block' component: one conv with the block's stride and dilation and
    a strided 1x1 shortcut; records what the host built it with."""
    host_norm_args = ('norm_cfg', )

    def __init__(self, in_channels, out_channels, stride=1, dilation=1, norm_cfg=None,
                 with_cp=False):
        super().__init__()
        self.args = dict(in_channels=in_channels, out_channels=out_channels, stride=stride,
                         dilation=dilation, norm_cfg=norm_cfg, with_cp=with_cp)
        self.stride, self.dilation = stride, dilation
        self.conv = nn.Conv2d(in_channels, out_channels, 3, stride, dilation, dilation)
        self.shortcut = nn.Conv2d(in_channels, out_channels, 1, stride)

    def forward(self, x):
        return self.conv(x) + self.shortcut(x)


class ToyBlockNoCp(ToyBlock):

    def __init__(self, in_channels, out_channels, stride=1, dilation=1, norm_cfg=None):
        super().__init__(in_channels, out_channels, stride, dilation, norm_cfg)


class ToyStem(nn.Module):
    """A 'stem' component: stride 4 in two ceil-mode halvings."""
    host_norm_args = ('norm_cfg', )

    def __init__(self, in_channels, out_channels, norm_cfg=None):
        super().__init__()
        self.args = dict(in_channels=in_channels, out_channels=out_channels, norm_cfg=norm_cfg)
        self.conv = nn.Conv2d(in_channels, out_channels, 3, 2, 1)
        self.pool = nn.MaxPool2d(3, 2, 1)

    def forward(self, x):
        return self.pool(self.conv(x))


def _odd_shapes(backbone, x=(97, 131)):
    out = backbone(torch.randn(1, 3, *x))
    return [tuple(o.shape[1:]) for o in out]


def test_block_cfg_replaces_the_first_block_of_chosen_stages():
    net = ResNet(depth=50, base_channels=16, norm_cfg=GN, block_cfg=dict(type=ToyBlock),
                 stage_with_block_cfg=(True, False, True, True), block_cfg_blocks='first')
    assert isinstance(net.layer1[0], ToyBlock) and isinstance(net.layer3[0], ToyBlock)
    assert not isinstance(net.layer2[0], ToyBlock)
    assert not any(isinstance(b, ToyBlock) for layer in (net.layer1, net.layer3)
                   for b in list(layer)[1:])
    # Widths, stride and the host's norm: stage 1 takes the stem's 16 channels.
    assert net.layer1[0].args == dict(in_channels=16, out_channels=64, stride=1, dilation=1,
                                      norm_cfg=GN, with_cp=False)
    assert net.layer3[0].args == dict(in_channels=128, out_channels=256, stride=2, dilation=1,
                                      norm_cfg=GN, with_cp=False)
    assert _odd_shapes(net) == [(64, 25, 33), (128, 13, 17), (256, 7, 9), (512, 4, 5)]


def test_block_cfg_all_blocks_keep_the_hosts_strides_and_dilations():
    """Every block of a dilated mmseg network (contract_dilation, multi_grid)
    is replaced with the stride and dilation of the block it replaces."""
    kwargs = dict(depth=18, base_channels=16, stem_channels=16, strides=(1, 2, 1, 1),
                  dilations=(1, 1, 2, 4), contract_dilation=True, multi_grid=(1, 2))
    from mmext.models.backbones.resnet import ResNetV1c
    plain = ResNetV1c(**kwargs)
    net = ResNetV1c(block_cfg=dict(type=ToyBlock), **kwargs)
    for name in net.res_layers:
        for ours, host in zip(getattr(net, name), getattr(plain, name)):
            assert isinstance(ours, ToyBlock)
            assert (ours.args['stride'], ours.args['dilation']) == (host.stride, host.dilation)
    # mmseg: multi_grid sets layer4's dilations, contract_dilation halves layer3[0]'s.
    assert [b.dilation for b in net.layer4] == [1, 2]
    assert [b.dilation for b in net.layer3] == [1, 2]
    assert _odd_shapes(net) == [(16, 25, 33), (32, 13, 17), (64, 13, 17), (128, 13, 17)]


def test_block_cfg_with_cp_and_refusals():
    net = ResNet(depth=18, base_channels=16, with_cp=True, block_cfg=dict(type=ToyBlock))
    assert net.layer2[1].args['with_cp'] is True
    with pytest.raises(ValueError, match='ToyBlockNoCp takes no with_cp'):
        ResNet(depth=18, with_cp=True, block_cfg=dict(type=ToyBlockNoCp))
    with pytest.raises(ValueError, match="block_cfg_blocks='last'"):
        ResNet(depth=18, block_cfg=dict(type=ToyBlock), block_cfg_blocks='last')
    with pytest.raises(ValueError, match='3 flags for 4 stages'):
        ResNet(depth=18, block_cfg=dict(type=ToyBlock), stage_with_block_cfg=(True, ) * 3)


@pytest.mark.parametrize('host', ['ResNet', 'ResNetV1c'])
def test_stem_cfg_replaces_the_whole_stem(host):
    from mmext.models.backbones import resnet
    net = getattr(resnet, host)(depth=18, base_channels=16, stem_channels=32, norm_cfg=GN,
                                frozen_stages=0, stem_cfg=dict(type=ToyStem))
    assert isinstance(net.stem, ToyStem)
    assert net.stem.args == dict(in_channels=3, out_channels=32, norm_cfg=GN)
    # Nothing of the plain or deep stem is left behind.
    assert not any(hasattr(net, n) for n in ('conv1', 'maxpool', 'pool_conv'))
    assert not any(isinstance(m, nn.Sequential) for m in net.stem.modules())
    assert _odd_shapes(net) == [(16, 25, 33), (32, 13, 17), (64, 7, 9), (128, 4, 5)]
    # frozen_stages=0: the stem alone, as mmdet freezes its own stem.
    net.train()
    assert not any(p.requires_grad for p in net.stem.parameters())
    assert all(p.requires_grad for p in net.layer1.parameters())
    assert net.stage_modules(0)[0] is net.stem


def test_stem_cfg_refuses_the_conv_pool():
    with pytest.raises(ValueError, match="cannot be combined with stem_pool='conv'"):
        ResNet(depth=18, stem_cfg=dict(type=ToyStem), stem_pool='conv')
