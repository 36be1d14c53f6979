"""MogaNet and its spatial mixer MultiOrderGatedAggregation (MOGA): published
parameter counts and FLOPs, official checkpoint layout, a hand reference of
MOGA and CA-FFN, and MOGA as a ResNet plugin (the shared backbone contract
runs in test_backbone_contract.py)."""
import functools

import pytest
import torch
import torch.nn.functional as F
from backbone_checks import check_official_checkpoint, count_params, same_names_as
from design_checks import ODD_SIZE, randomize
from mmengine.analysis import FlopAnalyzer
from mmengine.registry import DefaultScope

from mmext.models.backbones.moganet import (ChannelAggregationFFN, MogaNet,
                                            MultiOrderGatedAggregation)
from mmext.registry import MODELS

# Published: Li et al., MogaNet (ICLR 2024) Table / official README (IN-1k, 224^2).
PUBLISHED = {  # arch: (params M, GFLOPs or None)
    'xtiny': (2.97, 0.80),
    'tiny': (5.20, 1.10),
    'small': (25.3, 4.97),
    'base': (43.9, 9.93),
    'large': (82.5, 15.9),
}
# FLOPs: every variant but large (15.9 G, slow to trace on one core).
FLOP_ARCHS = ('xtiny', 'tiny', 'small', 'base')


def classifier_params(model):
    # The official classifier: GAP of the (already normalised, norm4) last
    # stage, then Linear(C, 1000); norm4 is part of the backbone here.
    return model.out_channels[-1] * 1000 + 1000


@pytest.mark.parametrize('arch', list(PUBLISHED))
def test_published_param_counts(arch):
    model = MogaNet(arch=arch)
    total = count_params(model) + classifier_params(model)
    published = PUBLISHED[arch][0] * 1e6
    assert abs(total - published) / published < 0.01, (arch, total)


@pytest.mark.parametrize('arch', FLOP_ARCHS)
def test_published_flops(arch):
    model = MogaNet(arch=arch).eval()
    analyzer = FlopAnalyzer(model, torch.randn(1, 3, 224, 224))
    analyzer.unsupported_ops_warnings(False)
    analyzer.uncalled_modules_warnings(False)
    # Classifier: one multiply-add per weight of Linear(C, 1000).
    flops = analyzer.total() + model.out_channels[-1] * 1000
    published = PUBLISHED[arch][1] * 1e9
    assert abs(flops - published) / published < 0.05, (arch, flops)


def test_arch_aliases_and_errors():
    for alias, name in (('xt', 'xtiny'), ('x-tiny', 'xtiny'), ('t', 'tiny'), ('s', 'small'),
                        ('b', 'base'), ('l', 'large'), ('XT', 'xtiny')):
        assert MogaNet(arch=alias).out_channels == tuple(
            MogaNet.arch_settings[name]['embed_dims'])
    with pytest.raises(ValueError, match='xtiny'):
        MogaNet(arch='huge')
    with pytest.raises(ValueError, match='keys'):
        MogaNet(arch=dict(embed_dims=[8, 16, 24, 32], depths=[1, 1, 1, 1]))
    custom = MogaNet(arch=dict(embed_dims=[8, 16, 24, 32], depths=[1, 1, 1, 1],
                               ffn_ratios=[2, 2, 2, 2]))
    assert custom.blocks3[0].mlp.fc1.out_channels == 48


def test_registry_builds_it():
    model = MODELS.build(dict(type='mmext.MogaNet', arch='xt', out_indices=(3, )))
    assert isinstance(model, MogaNet)
    assert model(torch.randn(1, 3, 33, 35))[0].shape == (1, 192, 2, 2)


# --------------------------------------------------------------------------
# Official checkpoint: documented layout (../shared/checkpoint_layouts.md):
# patch_embed{i}.projection.* (stage 1: the two-conv stem), blocks{i}.{j}.*,
# norm{i}; classifier head.*. mmext keeps these names.
to_official = same_names_as(
    r'^(patch_embed1\.projection\.[0134]\.|patch_embed[234]\.(projection|norm)\.|'
    r'blocks[1-4]\.\d+\.(norm1|norm2|layer_scale_1$|layer_scale_2$|attn\.proj_1|attn\.gate|'
    r'attn\.value\.(DW_conv[012]|PW_conv)|attn\.proj_2|attn\.sigma\.scale$|'
    r'mlp\.(fc1|dwconv|fc2|decompose)|mlp\.sigma\.scale$)|norm[1-4]\.)')


def test_official_checkpoint(tmp_path):
    check_official_checkpoint(
        functools.partial(MogaNet, arch='xtiny'), to_official, tmp_path, 'MogaNet', 'xtiny',
        classifier={'head.weight': torch.randn(1000, 192), 'head.bias': torch.zeros(1000)})


def test_official_init():
    """Official init: N(0, 2 / fan_out) convs, fan_out = k * k * out / groups;
    layer scale and sigma 1e-5."""
    torch.manual_seed(0)
    model = MogaNet(arch='small')
    model.init_weights()
    block = model.blocks3[0]
    for conv in (block.attn.value.DW_conv2, block.mlp.dwconv, block.attn.proj_1, block.mlp.fc1,
                 model.patch_embed2.projection):
        k = conv.kernel_size[0] * conv.kernel_size[1]
        expected = (2 / (k * conv.out_channels / conv.groups))**0.5
        assert abs(conv.weight.std().item() / expected - 1) < 0.1, conv
        assert torch.all(conv.bias == 0)
    assert torch.all(block.layer_scale_1 == 1e-5) and torch.all(block.attn.sigma.scale == 1e-5)
    assert torch.all(block.mlp.sigma.scale == 1e-5)


# --------------------------------------------------------------------------
# The mixers against a hand reference.
def test_moga_matches_hand_reference():
    c = 16  # split [1, 3, 4] / 8 -> 2 / 6 / 8 channels
    moga = randomize(MultiOrderGatedAggregation(c)).eval()
    x = torch.randn(2, c, 9, 11)

    def conv(t, m, **kw):
        return F.conv2d(t, m.weight, m.bias, **kw)

    y = conv(x, moga.proj_1)
    s = moga.sigma.scale
    y = F.silu(y + s * (y - y.mean((2, 3), keepdim=True)))
    g = conv(y, moga.gate)
    v0 = conv(y, moga.value.DW_conv0, padding=2, groups=c)
    v1 = conv(v0[:, 2:8], moga.value.DW_conv1, padding=4, dilation=2, groups=6)
    v2 = conv(v0[:, 8:], moga.value.DW_conv2, padding=9, dilation=3, groups=8)
    v = conv(torch.cat([v0[:, :2], v1, v2], 1), moga.value.PW_conv)
    ref = conv(F.silu(g) * F.silu(v), moga.proj_2) + x
    with torch.no_grad():
        torch.testing.assert_close(moga(x), ref)
        moga.with_shortcut = False
        torch.testing.assert_close(moga(x), ref - x)
    assert (moga.value.DW_conv1.kernel_size, moga.value.DW_conv1.dilation) == ((5, 5), (2, 2))
    assert (moga.value.DW_conv2.kernel_size, moga.value.DW_conv2.dilation) == ((7, 7), (3, 3))


def test_ca_ffn_matches_hand_reference():
    ffn = randomize(ChannelAggregationFFN(8, 32)).eval()
    x = torch.randn(2, 8, 7, 5)
    h = F.gelu(F.conv2d(F.conv2d(x, ffn.fc1.weight, ffn.fc1.bias), ffn.dwconv.weight,
                        ffn.dwconv.bias, padding=1, groups=32))
    d = F.gelu(F.conv2d(h, ffn.decompose.weight, ffn.decompose.bias))  # (N, 1, H, W)
    h = h + ffn.sigma.scale * (h - d)
    with torch.no_grad():
        torch.testing.assert_close(ffn(x), F.conv2d(h, ffn.fc2.weight, ffn.fc2.bias))


def test_block_is_layer_scaled_residual():
    model = MogaNet(arch=dict(embed_dims=[8, 16, 24, 32], depths=[1, 1, 1, 1],
                              ffn_ratios=[2, 2, 2, 2])).eval()
    block = randomize(model.blocks2[0])
    x = torch.randn(1, 16, 6, 7)
    with torch.no_grad():
        mid = x + block.layer_scale_1 * block.attn(block.norm1(x))
        ref = mid + block.layer_scale_2 * block.mlp(block.norm2(mid))
        torch.testing.assert_close(block(x), ref)


def test_moga_fp32_gate_and_split():
    # Shape, gradients and bf16 at 16, 40 and 13 channels: the component
    # contract (tests/test_component_contract.py, the class's examples).
    moga = MultiOrderGatedAggregation(16, force_fp32=True).eval()
    with torch.no_grad(), torch.autocast('cpu', dtype=torch.bfloat16):
        assert moga(torch.randn(1, 16, 5, 5)).dtype == torch.float32
    with pytest.raises(ValueError, match='split'):
        MultiOrderGatedAggregation(2)


@pytest.mark.parametrize('depth,position', [(18, 'after_conv2'), (50, 'after_conv2')])
def test_moga_as_resnet_plugin(depth, position):
    from mmdet.utils import register_all_modules
    register_all_modules(init_default_scope=False)
    plugins = [dict(cfg=dict(type='mmext.MultiOrderGatedAggregation'), position=position,
                    stages=(False, False, True, True))]
    with DefaultScope.overwrite_default_scope('mmdet'):
        resnet = MODELS.build(dict(type='mmext.ResNet', depth=depth, plugins=plugins))
    mogas = [m for m in resnet.modules() if isinstance(m, MultiOrderGatedAggregation)]
    assert len(mogas) == (4 if depth == 18 else 9)
    plain = MODELS.build(dict(type='mmext.ResNet', depth=depth))
    assert count_params(resnet) > count_params(plain)
    resnet.eval()
    with torch.no_grad():
        outs = resnet(torch.randn(1, 3, *ODD_SIZE))
    width = 1 if depth == 18 else 4
    assert [o.shape[1] for o in outs] == [64 * width, 128 * width, 256 * width, 512 * width]
    assert outs[-1].shape[-2:] == (4, 5)


def test_options_and_partial_outputs():
    tiny = dict(embed_dims=[8, 16, 24, 32], depths=[1, 1, 1, 1], ffn_ratios=[2, 2, 2, 2])
    model = MogaNet(arch=tiny, attn_final_dilation=False)
    assert model.blocks4[0].attn.value.DW_conv2.dilation == (1, 1)
    assert model.blocks3[0].attn.value.DW_conv2.dilation == (3, 3)
    # Early exit after the last requested stage gives the same maps.
    full = MogaNet(arch=tiny).eval()
    part = MogaNet(arch=tiny, out_indices=(1, )).eval()
    part.load_state_dict(full.state_dict())
    x = torch.randn(1, 3, 45, 37)
    with torch.no_grad():
        torch.testing.assert_close(part(x)[0], full(x)[1])
