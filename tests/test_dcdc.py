"""DCDC: the two branches against direct references, reductions."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from mmext.models.layers import DCDC
from mmext.registry import MODELS

# (stride, padding, dilation, groups)
SETTINGS = [(1, 1, 1, 1), (2, 1, 1, 2), (2, 2, 2, 4)]


def _randomize_bn(conv):
    for m in conv.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.5, 0.5)


def _make(stride, padding, dilation, groups, **kwargs):
    torch.manual_seed(0)
    conv = DCDC(16, 24, 3, stride, padding, dilation, groups, **kwargs)
    _randomize_bn(conv)
    return conv.eval()


def test_pointwise_and_dilated_shapes():
    x = torch.randn(2, 16, 13, 10)
    for k, s, p, d, g in [(1, 1, 0, 1, 1), (1, 2, 0, 1, 4), (3, 1, 2, 2, 2), (5, 2, 2, 1, 1)]:
        conv = DCDC(16, 32, k, s, p, d, g)
        ref = nn.Conv2d(16, 32, k, s, p, d, g)
        assert conv(x).shape == ref(x).shape, (k, s, p, d, g)


@pytest.mark.parametrize('stride,padding,dilation,groups', SETTINGS)
def test_forward_is_sum_of_branches(stride, padding, dilation, groups):
    conv = _make(stride, padding, dilation, groups, bias=True)
    x = torch.randn(2, 16, 11, 14)
    with torch.no_grad():
        ref = conv.global_branch(x) + conv.local_branch(x) + conv.bias.view(1, -1, 1, 1)
        assert torch.allclose(conv(x), ref, atol=1e-5)
        assert conv.local_branch(x).abs().mean() > 0.01  # both branches contribute


@pytest.mark.parametrize('stride,padding,dilation,groups', SETTINGS)
def test_global_branch_per_sample(stride, padding, dilation, groups):
    """The batched GSI branch equals one F.conv2d per sample with the kernel
    rebuilt here from the attention weights."""
    conv = _make(stride, padding, dilation, groups)
    x = torch.randn(3, 16, 11, 14)
    with torch.no_grad():
        out = conv.global_branch(x)
        for n in range(3):
            pooled = x[n].mean((1, 2))
            z = F.relu(conv.gsi_reduce.weight.flatten(1) @ pooled + conv.gsi_reduce.bias)
            filt = 2 * torch.sigmoid(conv.gsi_filter.weight.flatten(1) @ z + conv.gsi_filter.bias)
            spat = 2 * torch.sigmoid(conv.gsi_spatial.weight.flatten(1) @ z
                                     + conv.gsi_spatial.bias)
            kernel = conv.weight * filt.view(-1, 1, 1, 1) * spat.view(1, 1, 3, 3)
            ref = F.conv2d(x[n:n + 1], kernel, None, stride, padding, dilation, groups)
            assert torch.allclose(out[n:n + 1], ref, atol=1e-5), n
        # different samples get different kernels
        kernels = conv.global_kernel(x)
        assert not torch.allclose(kernels[0], kernels[1])


@pytest.mark.parametrize('stride,padding,dilation,groups', SETTINGS)
def test_local_branch_per_position(stride, padding, dilation, groups):
    """The unfold + einsum LSA branch equals, at a few output positions, the
    k×k window sum computed directly with the kernel predicted from the input
    at the window centre."""
    conv = _make(stride, padding, dilation, groups)
    x = torch.randn(2, 16, 11, 14)
    with torch.no_grad():
        out = conv.local_branch(x)
        h_out, w_out = out.shape[-2:]
        value = F.pad(F.conv2d(x, conv.lsa_value.weight, groups=groups), [padding] * 4)
        xpad = F.pad(x, [padding] * 4)
        centre = dilation  # (k - 1) // 2 * dilation, in padded coordinates
        group_size = 24 // conv.lsa_groups
        for i, j in [(0, 0), (h_out // 2, w_out - 1), (h_out - 1, 1)]:
            r0, c0 = i * stride, j * stride
            pix = xpad[:, :, r0 + centre, c0 + centre][..., None, None]
            kernel = conv.lsa_span(conv.lsa_reduce(pix)).view(2, conv.lsa_groups, 3, 3)
            window = value[:, :, r0:r0 + 2 * dilation + 1:dilation,
                           c0:c0 + 2 * dilation + 1:dilation]
            ref = (window * kernel.repeat_interleave(group_size, dim=1)).sum((2, 3))
            assert torch.allclose(out[:, :, i, j], ref, atol=1e-5), (i, j)
        # neighbouring positions get different kernels
        kernels = conv.local_kernel(x)
        assert not torch.allclose(kernels[..., 0, 0], kernels[..., 0, 1])


@pytest.mark.parametrize('stride,padding,dilation,groups', SETTINGS)
def test_zero_local_branch_leaves_global(stride, padding, dilation, groups):
    conv = _make(stride, padding, dilation, groups)
    x = torch.randn(2, 16, 11, 14)
    with torch.no_grad():
        before = conv(x)
        conv.lsa_span.weight.zero_()
        conv.lsa_span.bias.zero_()
        assert conv.local_branch(x).abs().max() == 0
        assert torch.allclose(conv(x), conv.global_branch(x), atol=1e-6)
        assert not torch.allclose(conv(x), before, atol=1e-3)


@pytest.mark.parametrize('stride,padding,dilation,groups', SETTINGS)
def test_constant_modulation_is_static_conv(stride, padding, dilation, groups):
    conv = _make(stride, padding, dilation, groups)
    x = torch.randn(2, 16, 11, 14)
    with torch.no_grad():
        for head in (conv.gsi_filter, conv.gsi_spatial):
            head.weight.zero_()
            head.bias.zero_()
        ref = F.conv2d(x, conv.weight, None, stride, padding, dilation, groups)
        assert torch.allclose(conv.global_branch(x), ref, atol=1e-5)
        conv.lsa_span.weight.zero_()
        conv.lsa_span.bias.zero_()
        assert torch.allclose(conv(x), ref, atol=1e-5)


def test_in_host_dcn_slot():
    backbone = MODELS.build(
        dict(type='mmext.ResNet', depth=18, dcn=dict(type='mmext.DCDC'),
             stage_with_dcn=(True, True, True, True)))
    assert sum(isinstance(m, DCDC) for m in backbone.modules()) == 16
    outs = backbone(torch.randn(2, 3, 64, 64))
    assert [o.shape[1:] for o in outs] == [(64, 16, 16), (128, 8, 8), (256, 4, 4), (512, 2, 2)]
