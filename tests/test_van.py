"""VAN and LKA: published sizes and FLOPs, LKA's definition, LKA as a ResNet
plugin, and the official checkpoint layout (the shared backbone contract runs
in test_backbone_contract.py)."""
import functools

import pytest
import torch
import torch.nn.functional as F
from backbone_checks import check_official_checkpoint, count_params, same_names_as
from mmengine.analysis import FlopAnalyzer

from mmext.models.backbones import ResNet
from mmext.models.backbones.van import LKA, VAN

# (published params M, published GFLOPs at 224), classification form: backbone
# (its norm4 is the classifier's final norm too) + Linear(C, 1000).
PUBLISHED = {'b0': (4.1, 0.9), 'b1': (13.9, 2.5), 'b2': (26.6, 5.0), 'b3': (44.8, 9.0)}


def classifier_params(model):
    return model.out_channels[-1] * 1000 + 1000


@pytest.mark.parametrize('arch', sorted(PUBLISHED))
def test_published_parameter_count(arch):
    model = VAN(arch=arch)
    params = (count_params(model) + classifier_params(model)) / 1e6
    assert abs(params - PUBLISHED[arch][0]) / PUBLISHED[arch][0] < 0.01, params


@pytest.mark.parametrize('arch', ['b0', 'b1', 'b2'])
def test_published_flops(arch):
    model = VAN(arch=arch).eval()
    analyzer = FlopAnalyzer(model, (torch.randn(1, 3, 224, 224), ))
    analyzer.unsupported_ops_warnings(False)
    gflops = (analyzer.total() + model.out_channels[-1] * 1000) / 1e9
    assert abs(gflops - PUBLISHED[arch][1]) / PUBLISHED[arch][1] < 0.05, gflops


def test_aliases_and_larger_variants():
    assert VAN(arch='tiny').depths == [3, 3, 5, 2]
    assert VAN(arch='large').depths == [3, 5, 27, 3]
    # B4-B6 of the official classification code (no published target in the catalog).
    assert VAN(arch='b4').depths == [3, 6, 40, 3]
    assert VAN(arch='b6').out_channels == (96, 192, 384, 768)


def test_unknown_arch_and_custom_dict():
    with pytest.raises(ValueError, match='b0'):
        VAN(arch='b9')
    with pytest.raises(ValueError, match='mlp_ratios'):
        VAN(arch=dict(embed_dims=[8, 8, 8, 8], depths=[1, 1, 1, 1]))
    model = VAN(arch=dict(embed_dims=[8, 16, 24, 32], depths=[1, 1, 1, 1],
                          mlp_ratios=[2, 2, 2, 2]))
    assert [o.shape[1] for o in model(torch.randn(1, 3, 64, 64))] == [8, 16, 24, 32]


def test_lka_is_the_decomposed_large_kernel_times_the_input():
    lka = LKA(6)
    x = torch.randn(2, 6, 23, 17)
    attn = F.conv2d(x, lka.conv0.weight, lka.conv0.bias, padding=2, groups=6)
    attn = F.conv2d(attn, lka.conv_spatial.weight, lka.conv_spatial.bias, padding=9,
                    dilation=3, groups=6)
    attn = F.conv2d(attn, lka.conv1.weight, lka.conv1.bias)
    torch.testing.assert_close(lka(x), x * attn)
    # no sigmoid: scaling the 1x1 scales the output
    with torch.no_grad():
        lka.conv1.weight.mul_(2)
        lka.conv1.bias.mul_(2)
    torch.testing.assert_close(lka(x), 2 * x * attn)


def test_lka_receptive_field_is_23():
    lka = LKA(1)
    x = torch.zeros(1, 1, 41, 41, requires_grad=True)
    lka(x + 1)[0, 0, 20, 20].backward()
    rows = (x.grad[0, 0].abs().sum(1) > 0).nonzero().flatten()
    assert rows.min() == 20 - 11 and rows.max() == 20 + 11


def test_lka_as_resnet_plugin():
    # Alone (shape, gradients, bf16): the component contract.
    for depth, position in ((18, 'after_conv2'), (50, 'after_conv2')):
        plain = ResNet(depth=depth)
        net = ResNet(depth=depth, plugins=[dict(cfg=dict(type='mmext.LKA'), position=position,
                                                stages=(False, False, True, True))])
        added = count_params(net) - count_params(plain)
        c3, c4 = 256, 512  # after_conv2 sees the stage's planes in Basic and Bottleneck
        blocks = (2, 2) if depth == 18 else (6, 3)
        per = lambda c: c * 25 + c + c * 49 + c + c * c + c  # noqa: E731
        assert added == blocks[0] * per(c3) + blocks[1] * per(c4)
        outs = net(torch.randn(2, 3, 65, 97))
        assert outs[-1].shape[-2:] == (3, 4)



# The mmext module tree keeps the official names (patch_embed{i}, block{i}.{j}.attn
# .spatial_gating_unit.conv0/conv_spatial/conv1, mlp.dwconv.dwconv, norm{i}), so the
# official file is the same dict once every key has the documented form.
to_official = same_names_as(
    r'^(patch_embed[1-4]\.(proj|norm)\.|norm[1-4]\.|block[1-4]\.\d+\.('
    r'norm[12]\.|attn\.proj_[12]\.|attn\.spatial_gating_unit\.(conv0|conv_spatial|conv1)\.'
    r'|layer_scale_[12]$|mlp\.(fc1|fc2|dwconv\.dwconv)\.))')


def test_official_checkpoint_loads(tmp_path):
    check_official_checkpoint(
        functools.partial(VAN, arch='b0'), to_official, tmp_path, 'VAN', 'b0',
        classifier={'head.weight': torch.zeros(1000, 256), 'head.bias': torch.zeros(1000)})


def _official_forward(model, x):
    """The official classification code's stage computation, written out with
    torch.nn.functional on NCHW-contiguous tensors (the stage norm on the
    flattened (N, HW, C) tokens), independent of VAN.forward's memory layout."""

    def bn(m, t):
        return F.batch_norm(t, m.running_mean, m.running_var, m.weight, m.bias, False, 0., m.eps)

    def conv(m, t):
        return F.conv2d(t, m.weight, m.bias, m.stride, m.padding, m.dilation, m.groups)

    outs = []
    for i in range(4):
        embed = getattr(model, f'patch_embed{i + 1}')
        x = bn(embed.norm, conv(embed.proj, x))
        for blk in getattr(model, f'block{i + 1}'):
            a, lka = blk.attn, blk.attn.spatial_gating_unit
            y = F.gelu(conv(a.proj_1, bn(blk.norm1, x)))
            y = conv(a.proj_2, y * conv(lka.conv1, conv(lka.conv_spatial, conv(lka.conv0, y))))
            x = x + blk.layer_scale_1[:, None, None] * (y + bn(blk.norm1, x))
            m = blk.mlp
            y = conv(m.fc2, F.gelu(conv(m.dwconv.dwconv, conv(m.fc1, bn(blk.norm2, x)))))
            x = x + blk.layer_scale_2[:, None, None] * y
        n, c, h, w = x.shape
        norm = getattr(model, f'norm{i + 1}')
        tokens = F.layer_norm(x.flatten(2).transpose(1, 2), (c, ), norm.weight, norm.bias, norm.eps)
        x = tokens.transpose(1, 2).reshape(n, c, h, w).contiguous()
        outs.append(x)
    return outs


def test_forward_matches_the_official_computation():
    """VAN.forward runs its stages in channels-last memory on CPU (speed);
    the features must be the official computation's, NCHW-contiguous."""
    torch.manual_seed(0)
    model = VAN(arch=dict(embed_dims=[8, 16, 24, 32], depths=[2, 1, 1, 1],
                          mlp_ratios=[8, 8, 4, 4])).eval()
    for m in model.modules():  # non-trivial BN statistics and affine parameters
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.normal_()
            m.running_var.uniform_(0.5, 2)
            m.weight.data.normal_(1, 0.2)
        if isinstance(m, (torch.nn.BatchNorm2d, torch.nn.LayerNorm)):
            m.bias.data.normal_(0, 0.2)
    x = torch.randn(2, 3, 45, 37)
    with torch.no_grad():
        outs, expected = model(x), _official_forward(model, x)
    for out, exp in zip(outs, expected):
        assert out.is_contiguous()
        torch.testing.assert_close(out, exp, rtol=1e-4, atol=1e-5)
