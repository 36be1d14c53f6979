"""BWN / XNOR-Net (BinaryConv): the binary forward against F.conv2d, the
mean-centring and clamping of the real weights (written once per update), the
weight and input gradients, the input scale K, and the placement in the ResNet
hosts (stem and shortcuts full precision, the input BN after the host's ReLU)."""
import copy

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from backbone_checks import check_block_convs, check_one_image_trains, tiny_resnet_host

from mmext.models.layers import BinaryConv
from mmext.models.layers.xnor_net import centre_and_clamp
from mmext.registry import MODELS


def reference_binary_weight(w):
    """The official BinOp steps written out: centre over dim 1, clamp, then
    torch.sign(W) * mean|W| per output filter."""
    w = (w - w.mean(1, keepdim=True)).clamp(-1, 1)
    return torch.sign(w) * w.abs().mean(dim=(1, 2, 3), keepdim=True), w


@pytest.mark.parametrize('groups,stride,bias', [(1, 1, True), (2, 2, False)])
def test_bwn_forward_is_conv_with_sign_times_alpha_bit_for_bit(groups, stride, bias):
    torch.manual_seed(0)
    conv = BinaryConv(8, 12, 3, stride=stride, padding=1, groups=groups, bias=bias, mode='bwn')
    with torch.no_grad():
        conv.weight.mul_(40)  # |W| > 1 somewhere, so the clamp matters
    w_b, w_projected = reference_binary_weight(conv.weight.detach().clone())
    assert (w_projected.abs() == 1).any() and (w_projected.abs() < 1).any()
    assert not (w_projected == 0).any()  # torch.sign and sign(0) = +1 agree here
    x = torch.randn(2, 8, 11, 13)
    ref = F.conv2d(x, w_b, conv.bias, stride, 1, 1, groups)
    conv.eval()  # eval: projects a copy, writes nothing
    assert torch.equal(conv(x), ref)
    assert not torch.equal(conv.weight, w_projected)
    conv.train()  # training: writes the centred, clamped weights (official BinOp)
    assert torch.equal(conv(x), ref)
    assert torch.equal(conv.weight, w_projected)
    assert conv.weight_bits == 1 and conv.activation_bits == 32
    assert conv.input_norm is None


def test_mean_centre_and_clamp_by_hand():
    # One filter, two input channels, 1x1: (3, 1) has mean 2 -> (1, -1);
    # (0.2, 0.4) -> (-0.1, 0.1); (5, -3) -> (4, -4) -> clamped (1, -1).
    w = torch.tensor([[3., 1.], [0.2, 0.4], [5., -3.]]).view(3, 2, 1, 1)
    expected = torch.tensor([[1., -1.], [-0.1, 0.1], [1., -1.]]).view(3, 2, 1, 1)
    torch.testing.assert_close(centre_and_clamp(w), expected)
    # Depth-wise (one input channel per filter): clamped, not centred to 0.
    dw = torch.tensor([0.5, -2.0]).view(2, 1, 1, 1)
    assert torch.equal(centre_and_clamp(dw), torch.tensor([0.5, -1.0]).view(2, 1, 1, 1))


def test_real_weights_written_once_per_update():
    """Centring is not idempotent after a clamp: a second forward before the
    next update (activation checkpointing's recomputation) must not centre
    again; an optimizer step makes the next training forward project anew."""
    torch.manual_seed(0)
    conv = BinaryConv(4, 6, 3, padding=1, mode='bwn')
    with torch.no_grad():
        conv.weight.mul_(40)
    x = torch.randn(2, 4, 7, 7)
    conv(x)
    once = conv.weight.detach().clone()
    assert not torch.equal(centre_and_clamp(once), once)  # projecting again would change it
    conv(x).sum().backward()
    assert torch.equal(conv.weight, once)
    opt = torch.optim.SGD(conv.parameters(), lr=5.0)
    opt.step()
    stepped = conv.weight.detach().clone()
    conv(x)
    assert torch.equal(conv.weight, centre_and_clamp(stepped))
    # Frozen weights are not written (frozen_stages).
    conv.weight.requires_grad_(False)
    with torch.no_grad():
        conv.weight.mul_(3)
    frozen = conv.weight.clone()
    conv(x)
    assert torch.equal(conv.weight, frozen)


def test_weight_gradient_is_the_official_two_terms():
    """dL/dW = alpha * g + sign(W) * mean(sign(W) * g) per output filter
    (updateBinaryGradWeight without its constant factors); every projected
    weight lies in [-1, 1], so the STE mask is 1."""
    torch.manual_seed(0)
    conv = BinaryConv(4, 3, 3, padding=1, bias=False, mode='bwn')
    x = torch.randn(2, 4, 6, 6)
    g_out = torch.randn(2, 3, 6, 6)
    conv(x).backward(g_out)
    w = conv.weight.detach()
    w_b = (torch.sign(w) * w.abs().mean(dim=(1, 2, 3), keepdim=True)).requires_grad_()
    F.conv2d(x, w_b, None, 1, 1).backward(g_out)
    g = w_b.grad
    alpha = w.abs().mean(dim=(1, 2, 3), keepdim=True)
    expected = alpha * g + torch.sign(w) * (torch.sign(w) * g).mean(dim=(1, 2, 3), keepdim=True)
    torch.testing.assert_close(conv.weight.grad, expected)


def test_xnor_input_sign_and_straight_through_gradient():
    """Forward: conv(sign(x), W_b) with sign(0) = +1; backward to x: the
    gradient of that conv with respect to its input, where |x| <= 1, and 0
    outside the clip range."""
    torch.manual_seed(0)
    conv = BinaryConv(4, 5, 3, padding=1, bias=False, mode='xnor', input_norm_cfg=None)
    x = (torch.randn(2, 4, 7, 9) * 1.5).requires_grad_()
    with torch.no_grad():
        x[0, 0, 0, 0] = 0.0
        x[0, 0, 0, 1] = 1.0
        x[0, 0, 0, 2] = -1.0
    g_out = torch.randn(2, 5, 7, 9)
    out = conv(x)
    out.backward(g_out)
    w_b = conv.binary_weight().detach()
    x_b = torch.where(x.detach() >= 0, 1.0, -1.0).requires_grad_()
    ref = F.conv2d(x_b, w_b, None, 1, 1)
    torch.testing.assert_close(out, ref)
    ref.backward(g_out)
    inside = x.detach().abs() <= 1
    assert inside.any() and (~inside).any()
    assert torch.equal(x.grad, x_b.grad * inside)
    assert torch.equal(x.grad[~inside], torch.zeros_like(x.grad[~inside]))
    assert conv.weight_bits == 1 and conv.activation_bits == 1


@pytest.mark.parametrize('stride', [1, 2])
def test_input_scale_is_box_filtered_channel_mean(stride):
    """The paper's K = A * k: the channel mean of |I| averaged over each
    k x k window (zero padding counted), times the binary convolution."""
    torch.manual_seed(0)
    conv = BinaryConv(6, 4, 3, stride=stride, padding=1, mode='xnor', input_scale=True,
                      input_norm_cfg=None)
    x = torch.randn(2, 6, 9, 10)
    k = F.avg_pool2d(x.abs().mean(1, keepdim=True), 3, stride, 1, count_include_pad=True)
    ref = F.conv2d(torch.where(x >= 0, 1.0, -1.0), conv.binary_weight(), None, stride, 1) * k
    torch.testing.assert_close(conv(x), ref + conv.bias.view(1, -1, 1, 1))
    with pytest.raises(ValueError, match='needs mode'):
        BinaryConv(6, 4, 3, mode='bwn', input_scale=True)
    with pytest.raises(ValueError, match='mode must be one of'):
        BinaryConv(6, 4, 3, mode='xor')


def test_activation_checkpointing_gives_the_same_gradients():
    """with_cp recomputes the block forward during backward: the weights are
    not centred a second time, so the gradients equal those without it."""
    torch.manual_seed(0)
    cfg = dict(type='mmext.ResNet', depth=18, base_channels=4, out_indices=(3, ), norm_eval=False,
               block_conv_cfg=dict(type='mmext.BinaryConv', mode='xnor'))
    plain = MODELS.build(cfg)
    with torch.no_grad():
        for m in plain.modules():
            if isinstance(m, BinaryConv):
                m.weight.mul_(30)
    ckpt = copy.deepcopy(plain)
    for layer in (ckpt.layer1, ckpt.layer2, ckpt.layer3, ckpt.layer4):
        for block in layer:
            block.with_cp = True
    x = torch.randn(2, 3, 24, 24, requires_grad=True)
    for model in (plain, ckpt):
        model(x)[0].square().mean().backward()
    for (name, p), q in zip(plain.named_parameters(), ckpt.parameters()):
        assert torch.equal(p, q), name
        torch.testing.assert_close(p.grad, q.grad, msg=name)


@pytest.mark.parametrize('type_,depth', [('mmext.ResNet', 18), ('mmext.ResNet', 50),
                                         ('mmext.ResNetV1c', 18), ('mmext.ResNetV1c', 50),
                                         ('mmext.ResNeXt', 50)])
def test_hosts_binarise_only_block_convs(type_, depth):
    """In every host the block convolutions are BinaryConv (their input BN
    takes the host's norm type with XNOR's settings); the stem and the
    downsample shortcut stay nn.Conv2d; one image per device trains with a
    gradient to every binary weight; bf16 autocast gives no NaN."""
    torch.manual_seed(0)
    model = tiny_resnet_host(type_, depth, norm_cfg=dict(type='BN', requires_grad=True),
                       block_conv_cfg=dict(type='mmext.BinaryConv', mode='xnor'))
    binary = check_block_convs(model, BinaryConv)
    for m in binary:
        norm = m.input_norm
        assert isinstance(norm, nn.BatchNorm2d) and not norm.affine and norm.eps == 1e-4
    check_one_image_trains(model, binary)


def test_host_input_is_non_negative_and_the_input_norm_centres_it():
    """What mmext does with the paper's BN -> BinActive -> conv order inside
    a ResNet host: the block conv reads a ReLU output (all >= 0, every bit
    would be +1); the input norm gives both signs. SyncBN reaches it."""
    torch.manual_seed(0)
    model = tiny_resnet_host('mmext.ResNet', 18,
                       block_conv_cfg=dict(type='mmext.BinaryConv', mode='xnor'))
    conv = model.layer2[0].conv2
    seen = {}
    conv.register_forward_pre_hook(lambda m, args: seen.update(x=args[0]))
    conv.input_norm.register_forward_hook(lambda m, args, out: seen.update(y=out))
    model.train()
    model(torch.randn(2, 3, 32, 32))
    assert (seen['x'] >= 0).all()
    assert (seen['y'] > 0).any() and (seen['y'] < 0).any()
    sync = tiny_resnet_host('mmext.ResNetV1c', 18, norm_cfg=dict(type='SyncBN', requires_grad=True),
                      block_conv_cfg=dict(type='mmext.BinaryConv', mode='xnor'))
    norm = sync.layer1[0].conv1.input_norm
    assert isinstance(norm, nn.SyncBatchNorm) and not norm.affine and norm.eps == 1e-4


def test_odd_large_input_once():
    model = tiny_resnet_host('mmext.ResNetV1c', 18,
                       block_conv_cfg=dict(type='mmext.BinaryConv', mode='xnor'))
    model.train()
    outs = model(torch.randn(1, 3, 511, 673))
    assert [o.shape[-2:] for o in outs] == [(128, 169), (64, 85), (32, 43), (16, 22)]
    assert all(torch.isfinite(o).all() for o in outs)


def test_norm_eval_host_stops_with_one_line_error():
    """mmdet's ResNet defaults to norm_eval=True, which would hold the new
    input BN at mean 0 / variance 1 (the identity on a non-negative input):
    a training forward names the fix instead of training all-(+1) inputs."""
    from mmext.utils.errors import MMExtError
    model = MODELS.build(dict(type='mmext.ResNet', depth=18, base_channels=4, norm_eval=True,
                              block_conv_cfg=dict(type='mmext.BinaryConv', mode='xnor')))
    model.train()
    with pytest.raises(MMExtError, match='norm_eval=False'):
        model(torch.randn(2, 3, 16, 16))
    model.eval()
    assert model(torch.randn(1, 3, 16, 16))[-1].shape == (1, 32, 1, 1)
