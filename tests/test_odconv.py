"""ODConv: attention heads and kernel layout, reduction to a plain conv, per-sample reference,
batching, the official checkpoint layout and the published parameter counts."""
import types

import pytest
import torch
import torch.nn.functional as F

import mmext.models.layers.odconv as odconv_mod
from mmext.models.layers import ODConv
from mmext.registry import MODELS

ATTENTION_HEADS = {'fc', 'bn', 'channel_fc', 'filter_fc', 'spatial_fc', 'kernel_fc'}


@pytest.mark.parametrize('kernel_size,kernel_num,groups,depthwise', [
    (3, 4, 1, False),
    (3, 1, 1, False),
    (1, 4, 1, False),
    (1, 1, 1, False),  # the static pointwise fast path
    (3, 4, 4, False),
    (3, 4, None, True),
])
def test_attention_heads_and_kernel_layout(kernel_size, kernel_num, groups, depthwise):
    """Which heads exist and the bank's shape (the conv contract itself runs
    in test_component_contract.py, from ODConv.component_examples)."""
    in_ch, out_ch = (16, 16) if depthwise else (16, 24)
    conv = ODConv(in_ch, out_ch, kernel_size, padding=kernel_size // 2,
                  groups=in_ch if depthwise else groups, kernel_num=kernel_num)
    att = conv.attention
    assert (att.spatial_fc is None) == (kernel_size == 1)
    assert (att.kernel_fc is None) == (kernel_num == 1)
    assert (att.filter_fc is None) == depthwise
    assert conv.weight.shape == (kernel_num, out_ch, in_ch // (in_ch if depthwise else groups),
                                 kernel_size, kernel_size)
    # hidden width max(C * 0.0625, 16)
    assert att.fc.out_channels == 16
    assert ODConv(512, 8, 1).attention.fc.out_channels == 32


def _uniform_attention(conv):
    def forward(x):
        n, k = x.size(0), conv.kernel_size
        return (x.new_ones(n, conv.in_channels, 1, 1), x.new_ones(n, conv.out_channels, 1, 1),
                x.new_ones(n, k, k), x.new_full((n, conv.kernel_num), 1 / conv.kernel_num))
    return forward


@pytest.mark.parametrize('kernel_size,kernel_num', [(3, 1), (3, 4), (1, 1), (1, 4)])
def test_uniform_attention_is_plain_conv(kernel_size, kernel_num):
    torch.manual_seed(0)
    conv = ODConv(8, 12, kernel_size, stride=2, padding=kernel_size // 2, groups=2,
                  kernel_num=kernel_num)
    conv.attention.forward = _uniform_attention(conv)
    x = torch.randn(3, 8, 11, 13)
    ref = F.conv2d(x, conv.weight.mean(0), None, 2, kernel_size // 2, 1, 2)
    torch.testing.assert_close(conv(x), ref, atol=1e-5, rtol=1e-5)


def _loop_reference(conv, x):
    """Sample by sample: aggregated kernel, input scaled by the channel
    attention, output scaled by the filter attention."""
    channel, filt, spatial, kernel = conv.attention(x)
    outs, kernels = [], []
    for i in range(x.size(0)):
        if kernel is None:
            w = conv.weight[0]
        else:
            w = sum(kernel[i, k] * conv.weight[k] for k in range(conv.kernel_num))
        if spatial is not None:
            w = w * spatial[i]
        y = F.conv2d(x[i:i + 1] * channel[i:i + 1], w, None, conv.stride, conv.padding,
                     conv.dilation, conv.groups)
        if filt is not None:
            y = y * filt[i:i + 1]
        outs.append(y)
        kernels.append(w)
    return torch.cat(outs), kernels


@pytest.mark.parametrize('kernel_size,kernel_num,groups,dilation', [
    (3, 4, 1, 1), (3, 4, 2, 2), (3, 1, 1, 1), (1, 4, 1, 1), (1, 1, 1, 1), (3, 4, 8, 1)])
def test_matches_per_sample_loop(kernel_size, kernel_num, groups, dilation):
    torch.manual_seed(0)
    conv = ODConv(8, 8 if groups == 8 else 12, kernel_size, stride=2,
                  padding=dilation * (kernel_size // 2), dilation=dilation, groups=groups,
                  kernel_num=kernel_num).eval()
    # Non-trivial BN statistics and a non-default temperature, so every head matters.
    conv.attention.bn.running_mean.normal_()
    conv.attention.bn.running_var.uniform_(0.5, 2)
    conv.temperature = 2.0
    x = torch.randn(4, 8, 10, 9) * torch.tensor([0.5, 1., 2., 4.]).view(4, 1, 1, 1)
    with torch.no_grad():
        ref, kernels = _loop_reference(conv, x)
        out = conv(x)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    if kernel_size > 1 or kernel_num > 1:
        assert (kernels[0] - kernels[1]).abs().max() > 1e-3, 'samples share one kernel'
        batched = conv.aggregate_weight(*conv.attention(x)[2:])
        torch.testing.assert_close(batched, torch.stack(kernels), atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize('kernel_size,kernel_num', [(3, 4), (1, 1)])
def test_one_conv2d_call_per_forward(monkeypatch, kernel_size, kernel_num):
    calls = []

    def conv2d(*args, **kwargs):
        calls.append(1)
        return F.conv2d(*args, **kwargs)

    # Count only the calls made by odconv.py (the attention's own 1x1 convs
    # are nn.Conv2d and go through torch's namespace).
    namespace = {k: getattr(F, k) for k in dir(F) if not k.startswith('__')}
    namespace['conv2d'] = conv2d
    monkeypatch.setattr(odconv_mod, 'F', types.SimpleNamespace(**namespace))
    conv = ODConv(8, 12, kernel_size, padding=kernel_size // 2, kernel_num=kernel_num)
    out = conv(torch.randn(4, 8, 9, 9))
    assert out.shape == (4, 12, 9, 9)
    assert len(calls) == 1


def test_bias_is_added_after_filter_attention():
    torch.manual_seed(0)
    conv = ODConv(8, 12, 3, padding=1, bias=True).eval()
    x = torch.randn(2, 8, 7, 7)
    with torch.no_grad():
        out = conv(x)
        ref, _ = _loop_reference(conv, x)
    torch.testing.assert_close(out, ref + conv.bias.view(1, -1, 1, 1), atol=1e-5, rtol=1e-5)
    assert ODConv(8, 12, 3).bias is None


def _entropy(p):
    return -(p * p.clamp_min(1e-12).log()).sum(1).mean()


def test_temperature_flattens_kernel_attention():
    torch.manual_seed(0)
    conv = ODConv(16, 16, 3, padding=1, kernel_num=4).eval()
    conv.attention.bn.running_var.fill_(0.01)  # sharp logits at temperature 1
    x = torch.randn(4, 16, 8, 8)
    assert conv.temperature == 1.0  # official default
    with torch.no_grad():
        sharp = conv.attention(x)[3]
        conv.temperature = 30
        assert conv.attention.temperature == 30.0
        flat = conv.attention(x)[3]
    assert _entropy(flat) > _entropy(sharp) + 0.05


def test_build_from_mmcv_conv_cfg():
    from mmcv.cnn import build_conv_layer
    conv = build_conv_layer(dict(type='mmext.ODConv', kernel_num=2), 16, 32, kernel_size=3,
                            stride=2, padding=1, bias=False)
    assert isinstance(conv, ODConv) and conv.weight.shape == (2, 32, 16, 3, 3)
    assert conv(torch.randn(2, 16, 9, 9)).shape == (2, 32, 5, 5)


@pytest.mark.parametrize('depth,kernel_num,published', [
    (18, 1, 11.94e6), (18, 4, 44.90e6), (50, 1, 28.64e6), (50, 4, 90.67e6)])
def test_resnet_params_and_official_layout(depth, kernel_num, published):
    model = MODELS.build(dict(type='mmext.ResNet', depth=depth,
                              block_conv_cfg=dict(type='mmext.ODConv', kernel_num=kernel_num)))
    classifier = (512 if depth == 18 else 2048) * 1000 + 1000
    params = sum(p.numel() for p in model.parameters()) + classifier
    assert abs(params - published) / published < 0.01, params

    sd = model.state_dict()
    # stem and downsample stay plain convolutions
    assert sd['conv1.weight'].shape == (64, 3, 7, 7)
    assert sd['layer2.0.downsample.0.weight'].dim() == 4
    for name, m in model.named_modules():
        if isinstance(m, ODConv):
            assert {n for n, _ in m.attention.named_children()} - {'relu'} <= ATTENTION_HEADS
    k3 = 'layer1.0.conv2'  # the 3x3 conv in both block types
    assert sd[f'{k3}.weight'].shape == (kernel_num, 64, 64, 3, 3)
    for head in ('fc', 'channel_fc', 'filter_fc', 'spatial_fc'):
        assert f'{k3}.attention.{head}.weight' in sd
    assert 'layer1.0.conv2.attention.bn.running_var' in sd
    assert (f'{k3}.attention.kernel_fc.weight' in sd) == (kernel_num > 1)
    if depth == 50:
        assert isinstance(model.layer1[0].conv1, ODConv)
        assert isinstance(model.layer1[0].conv3, ODConv)
        assert sd['layer1.0.conv1.weight'].shape == (kernel_num, 64, 64, 1, 1)
        assert 'layer1.0.conv1.attention.spatial_fc.weight' not in sd  # 1x1
        assert ('layer1.0.conv1.attention.kernel_fc.weight' in sd) == (kernel_num > 1)
        assert 'layer1.0.conv3.attention.filter_fc.bias' in sd
    else:
        assert isinstance(model.layer1[0].conv1, ODConv)
        assert 'layer1.0.conv1.attention.spatial_fc.weight' in sd


def test_resnet18_forward_after_init_weights():
    torch.manual_seed(0)
    model = MODELS.build(dict(type='mmext.ResNet', depth=18, out_indices=(0, 3),
                              block_conv_cfg=dict(type='mmext.ODConv', kernel_num=4)))
    model.init_weights()
    outs = model(torch.randn(2, 3, 64, 64))
    assert [o.shape for o in outs] == [(2, 64, 16, 16), (2, 512, 2, 2)]
    assert all(torch.isfinite(o).all() for o in outs)
