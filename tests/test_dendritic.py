"""DendriticConv (dendrite-activated connections): the definition
``y_j = sum_i w_ji * ReLU(x_i + b_ji)`` against a direct computation, its
special case ``conv(ReLU(x + b))``, the parameter overhead, the memory bound
of the chunked evaluation, the FLOP declaration, and the ResNet hosts.

Shape, gradient, bf16 and one-image checks of the unit itself are the shared
ones (tests/test_component_contract.py)."""
import pytest
import torch
import torch.nn.functional as F
from backbone_checks import check_block_convs, count_params
from design_checks import randomize

import mmext.models  # noqa: F401
from mmext.analysis.flops import count_flops
from mmext.models.layers import DendriticConv
from mmext.registry import MODELS


def definition(conv, x):
    """The unit written out per output filter: every filter ``j`` applies
    its own ReLU(x_i + b_ji) to the input channels of its group, pads the
    result with zeros and convolves it with its kernel."""
    groups = conv.groups
    c_in, c_out = conv.in_channels // groups, conv.out_channels // groups
    outs = []
    for j in range(conv.out_channels):
        g = j // c_out
        if conv.bias_granularity == 'pair':
            b = conv.dendritic_bias[j]
        else:
            b = conv.dendritic_bias[g * c_in:(g + 1) * c_in]
        z = F.relu(x[:, g * c_in:(g + 1) * c_in] + b.view(1, -1, 1, 1))
        outs.append(F.conv2d(z, conv.weight[j:j + 1], None, conv.stride, conv.padding,
                             conv.dilation))
    out = torch.cat(outs, 1)
    if conv.bias is not None:
        out = out + conv.bias.view(1, -1, 1, 1)
    return out


@pytest.mark.parametrize('kwargs', [
    dict(kernel_size=3, padding=1),
    dict(kernel_size=3, padding=2, dilation=2, stride=2, groups=3),
    dict(kernel_size=1, bias=False, groups=3),
    # Chunks of 2 filters: 100 values hold at most 2 of 2 x 4 x 5 x 3.
    dict(kernel_size=3, padding=1, max_expanded_elements=100),
    dict(kernel_size=3, padding=1, bias_granularity='input', groups=3),
], ids=['3x3', 'strided-dilated-grouped', '1x1-grouped', 'chunked', 'input-bias'])
def test_equals_definition_with_gradients(kwargs):
    """Forward and every gradient (input, weight, dendritic and output
    biases) against the per-filter definition, in float64, with the
    connection inputs recomputed in the backward pass and stored."""
    torch.manual_seed(0)
    kwargs = dict(kwargs)
    k = kwargs.pop('kernel_size')
    ref_grads = None
    for recompute in (True, False):
        conv = randomize(DendriticConv(6, 9, k, recompute=recompute, **kwargs)).double()
        x = torch.randn(2, 6, 5, 3, dtype=torch.float64, requires_grad=True)
        out, ref = conv(x), definition(conv, x)
        torch.testing.assert_close(out, ref, rtol=0, atol=1e-12)
        g = torch.randn_like(out)
        params = [x] + list(conv.parameters())
        grads = torch.autograd.grad((out * g).sum(), params)
        expected = torch.autograd.grad((ref * g).sum(), params)
        for got, want in zip(grads, expected):
            torch.testing.assert_close(got, want, rtol=0, atol=1e-12)
        assert conv.dendritic_bias.grad is None and grads[2].abs().sum() > 0
        if ref_grads is not None:
            for a, b in zip(grads, ref_grads):
                torch.testing.assert_close(a, b, rtol=0, atol=1e-12)
        ref_grads = grads


def test_per_input_biases_equal_conv_of_relu():
    """Biases equal along the output filters (b_ji = b_i) give exactly
    conv(ReLU(x + b)), zero-padded after the ReLU; the 'input' granularity
    is that computation itself (bit for bit)."""
    torch.manual_seed(1)
    x = torch.randn(2, 8, 11, 13, dtype=torch.float64)
    pair = randomize(DendriticConv(8, 12, 3, padding=1)).double()
    shared = torch.randn(8, dtype=torch.float64)
    with torch.no_grad():
        pair.dendritic_bias.copy_(shared.expand(12, 8))
    ref = F.conv2d(F.relu(x + shared.view(1, -1, 1, 1)), pair.weight, pair.bias, padding=1)
    torch.testing.assert_close(pair(x), ref, rtol=0, atol=1e-12)

    single = DendriticConv(8, 12, 3, padding=1, bias_granularity='input').double()
    single.load_state_dict(dict(pair.state_dict(), dendritic_bias=shared))
    plain = F.conv2d(F.relu(x + shared.view(1, -1, 1, 1)), pair.weight, None, padding=1)
    assert torch.equal(single(x), plain + pair.bias.view(1, -1, 1, 1))


@pytest.mark.parametrize('granularity,groups,overhead', [
    ('pair', 1, 16 * 24), ('pair', 4, 16 * 24 // 4), ('input', 1, 16)])
def test_parameter_overhead(granularity, groups, overhead):
    conv = DendriticConv(16, 24, 3, padding=1, groups=groups, bias_granularity=granularity)
    plain = torch.nn.Conv2d(16, 24, 3, padding=1, groups=groups)
    assert count_params(conv) - count_params(plain) == overhead
    assert conv.dendritic_bias.numel() == overhead


def test_chunks_stay_within_the_memory_bound(monkeypatch):
    """No convolution input larger than ``max_expanded_elements`` (one
    filter's connection inputs at least): the full (N, C_out, C_in, H, W)
    tensor is never formed when it does not fit; same output."""
    torch.manual_seed(2)
    x = torch.randn(2, 16, 9, 7)
    one_filter = 2 * 16 * 9 * 7
    conv = randomize(DendriticConv(16, 24, 3, padding=1, max_expanded_elements=5 * one_filter))
    full = conv(x)
    seen = []
    conv2d = F.conv2d

    def spy(inp, *args, **kwargs):
        seen.append(inp.numel())
        return conv2d(inp, *args, **kwargs)

    monkeypatch.setattr(F, 'conv2d', spy)
    out = conv(x)
    # 24 filters in chunks of 5: 5 calls, none over the bound.
    assert len(seen) == 5 and max(seen) == 5 * one_filter
    torch.testing.assert_close(out, full, rtol=1e-5, atol=1e-5)


def test_flops_count_the_connections():
    """The traced convolution counts the plain convolution's multiply-adds;
    ``extra_flops`` adds one bias add per connection input."""
    x = torch.randn(1, 8, 10, 12)
    for granularity, extra in (('pair', 8 * 16 * 10 * 12), ('input', 8 * 10 * 12)):
        conv = DendriticConv(8, 16, 3, stride=2, padding=1, bias_granularity=granularity)
        count = count_flops(conv.eval(), x)
        macs = 16 * 8 * 9 * 5 * 6
        assert count.by_operator['conv'] == macs, granularity
        assert count.by_operator['dynamic_kernel'] == extra
        assert count.total == macs + extra


def test_unknown_granularity_is_refused():
    with pytest.raises(ValueError, match="bias_granularity='kernel'"):
        DendriticConv(4, 4, 3, bias_granularity='kernel')


def test_resnet_with_zero_dendritic_biases_is_the_plain_resnet():
    """Every block conv of a ResNet reads a ReLU output, so fresh (zero)
    dendritic biases compute the plain network: ImageNet weights load
    (only the dendritic biases are missing) and keep their function."""
    torch.manual_seed(3)
    cfg = dict(type='mmext.ResNet', depth=18, base_channels=8, stem_channels=8)
    plain = MODELS.build(cfg).eval()
    randomize(plain)
    dendritic = MODELS.build(dict(cfg, block_conv_cfg=dict(type='mmext.DendriticConv'))).eval()
    result = dendritic.load_state_dict(plain.state_dict(), strict=False)
    assert not result.unexpected_keys
    assert result.missing_keys and all(k.endswith('dendritic_bias')
                                       for k in result.missing_keys)
    x = torch.randn(1, 3, 35, 51)
    with torch.no_grad():
        for a, b in zip(dendritic(x), plain(x)):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


HOSTS = [dict(type='mmext.ResNet', depth=18), dict(type='mmext.ResNet', depth=50),
         dict(type='mmext.ResNetV1c', depth=18), dict(type='mmext.ResNetV1c', depth=50),
         dict(type='mmext.ResNeXt', depth=50, groups=4, base_width=4)]


@pytest.mark.parametrize('host', HOSTS, ids=lambda h: f"{h['type']}-{h['depth']}")
def test_hosts_at_an_odd_size(host):
    """Every block conv is a DendriticConv (grouped in ResNeXt); stem and
    downsample stay plain; the stage maps are ceil(H / s) at 97x131."""
    model = MODELS.build(dict(host, base_channels=4, stem_channels=8,
                              block_conv_cfg=dict(type='mmext.DendriticConv')))
    check_block_convs(model, DendriticConv)
    if host['type'] == 'mmext.ResNeXt':
        assert {m.groups for n, m in model.named_modules()
                if isinstance(m, DendriticConv) and n.endswith('conv2')} == {4}
    x = torch.randn(2, 3, 97, 131)
    with torch.no_grad():
        outs = model.eval()(x)
    for out, c, s in zip(outs, model.out_channels, model.out_strides):
        assert out.shape == (2, c, -(-97 // s), -(-131 // s))


def test_one_image_bf16_large_odd_size():
    """ResNet-50 host, batch 1 at 511x673 under bf16 autocast: finite maps
    of ceil(H / s)."""
    model = MODELS.build(dict(type='mmext.ResNet', depth=50, base_channels=2, stem_channels=4,
                              block_conv_cfg=dict(type='mmext.DendriticConv'))).train()
    with torch.autocast('cpu', dtype=torch.bfloat16):
        outs = model(torch.randn(1, 3, 511, 673))
    for out, s in zip(outs, model.out_strides):
        assert out.shape[-2:] == (-(-511 // s), -(-673 // s))
        assert torch.isfinite(out.float()).all()
    sum(o.float().mean() for o in outs).backward()
    assert all(m.dendritic_bias.grad is not None for m in model.modules()
               if isinstance(m, DendriticConv))
