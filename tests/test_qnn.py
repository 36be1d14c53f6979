"""QNN (quantize, QuantConv): the level sets (at most 2^k values, the uniform
and logarithmic grids by hand, 1 bit = BNN's sign rule), the straight-through
gradient, the clipped shadow weights, and QuantConv in the ResNet hosts."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from backbone_checks import check_block_convs, check_one_image_trains, tiny_resnet_host

from mmext.models.layers import QuantConv
from mmext.models.layers.qnn import binarize, quantize


def dense_samples():
    # Uniform samples of [-1.5, 1.5] and +- powers of two down to 2^-140
    # (every log level is hit), zero included.
    powers = torch.exp2(-torch.linspace(0, 140, 1401))
    return torch.cat([torch.linspace(-1.5, 1.5, 200001), powers, -powers, torch.zeros(1)])


@pytest.mark.parametrize('quantizer', ['uniform', 'log'])
def test_at_most_two_to_the_k_values(quantizer):
    x = dense_samples()
    for bits in range(1, 9):
        q = quantize(x, bits, quantizer)
        assert q.unique().numel() == 2**bits, (bits, q.unique().numel())
        assert q.abs().max() == 1
    # Random tensors never exceed the count either.
    torch.manual_seed(0)
    assert quantize(torch.randn(64, 64) * 3, 3, quantizer).unique().numel() <= 8


def test_levels_by_hand():
    two_bit = quantize(torch.tensor([-5., -0.7, -0.6, -0.1, 0., 0.3, 0.66, 0.67, 2.]), 2)
    third = 1 / 3
    torch.testing.assert_close(
        two_bit, torch.tensor([-1., -1., -third, -third, third, third, third, 1., 1.]))
    log3 = quantize(torch.tensor([0.3, -0.3, 0.7, 0.001, -4., 0.1]), 3, 'log')
    # log2 0.3 = -1.74 -> 2^-2; log2 0.7 = -0.51 -> 2^-1; 0.001 -> 2^-3
    # (the smallest of 3 bits: 2^0 .. 2^-3); log2 0.1 = -3.32 -> 2^-3.
    torch.testing.assert_close(log3, torch.tensor([0.25, -0.25, 0.5, 0.125, -1., 0.125]))


@pytest.mark.parametrize('quantizer', ['uniform', 'log'])
def test_one_bit_is_the_bnn_sign_rule(quantizer):
    x = torch.tensor([-2., -1e-30, -0.0, 0.0, 1e-30, 0.4, 3.])
    expected = torch.tensor([-1., -1., 1., 1., 1., 1., 1.])
    assert torch.equal(quantize(x, 1, quantizer), expected)
    assert torch.equal(binarize(x), expected)
    # The whole 1-bit / 1-bit convolution is BNN's: sign(BN(x)) conv sign(W).
    torch.manual_seed(0)
    conv = QuantConv(4, 6, 3, padding=1, weight_bits=1, activation_bits=1, quantizer=quantizer)
    inp = torch.randn(2, 4, 7, 9)
    out = conv(inp)
    bn = F.batch_norm(inp, None, None, conv.input_norm.weight, conv.input_norm.bias,
                      training=True)
    sign = lambda t: torch.where(t >= 0, 1.0, -1.0)  # noqa: E731
    ref = F.conv2d(sign(bn), sign(conv.weight.clamp(-1, 1)), conv.bias, 1, 1)
    torch.testing.assert_close(out, ref)
    assert conv.weight_bits == 1 and conv.activation_bits == 1


@pytest.mark.parametrize('bits,quantizer', [(1, 'uniform'), (2, 'uniform'), (8, 'uniform'),
                                            (3, 'log')])
def test_straight_through_gradient(bits, quantizer):
    """Identity inside the clip range [-1, 1] (ends included), 0 outside."""
    x = torch.tensor([-3., -1.0, -0.999, -0.2, 0., 0.5, 1.0, 1.001, 7.], requires_grad=True)
    g = torch.arange(1., 10.)
    quantize(x, bits, quantizer).backward(g)
    inside = torch.tensor([0., 1., 1., 1., 1., 1., 1., 0., 0.])
    assert torch.equal(x.grad, g * inside)


def test_shadow_weights_clipped_and_forward_reference():
    torch.manual_seed(0)
    conv = QuantConv(4, 6, 3, stride=2, padding=1, weight_bits=3, activation_bits=4)
    x = torch.randn(2, 4, 9, 11)
    opt = torch.optim.SGD(conv.parameters(), lr=50.0)
    conv(x).square().mean().backward()
    opt.step()
    assert conv.weight.abs().max() > 1  # the update left the range ...
    stepped = conv.weight.detach().clone()
    conv.eval()
    out_eval = conv(x)
    assert torch.equal(conv.weight, stepped)  # eval writes nothing
    # Eval: running statistics, the same clipped weights (a copy).
    w_q = quantize(stepped.clamp(-1, 1), 3)
    assert w_q.unique().numel() <= 8
    torch.testing.assert_close(
        out_eval, F.conv2d(quantize(conv.input_norm(x), 4), w_q, conv.bias, 2, 1))
    conv.train()
    out = conv(x)
    assert conv.weight.abs().max() <= 1  # ... the next training forward clips it
    assert torch.equal(conv.weight, stepped.clamp(-1, 1))
    # Forward reference: quantised BN output and quantised clipped weights.
    bn = F.batch_norm(x, None, None, conv.input_norm.weight, conv.input_norm.bias, training=True)
    torch.testing.assert_close(out, F.conv2d(quantize(bn, 4), w_q, conv.bias, 2, 1))


def test_full_precision_and_errors():
    torch.manual_seed(0)
    conv = QuantConv(4, 6, 3, padding=1, weight_bits=32, activation_bits=32)
    assert conv.input_norm is None
    x = torch.randn(2, 4, 5, 5)
    assert torch.equal(conv(x), F.conv2d(x, conv.weight, conv.bias, 1, 1))
    # Weights only (activations full precision): no input norm either.
    assert QuantConv(4, 6, 3, weight_bits=2, activation_bits=32).input_norm is None
    for bad in (0, 9, 16):
        with pytest.raises(ValueError, match='weight_bits must be 1 .. 8 or 32'):
            QuantConv(4, 6, 3, weight_bits=bad)
        with pytest.raises(ValueError, match='bits must be one of'):
            quantize(x, bad)
    with pytest.raises(ValueError, match='quantizer must be one of'):
        QuantConv(4, 6, 3, quantizer='pow2')


@pytest.mark.parametrize('type_,depth', [('mmext.ResNet', 18), ('mmext.ResNet', 50),
                                         ('mmext.ResNetV1c', 18), ('mmext.ResNetV1c', 50),
                                         ('mmext.ResNeXt', 50)])
def test_hosts_quantise_only_block_convs(type_, depth):
    """Block convolutions are QuantConv with the host's norm as input norm;
    stem and downsample stay nn.Conv2d; one image per device trains with a
    gradient to every quantised weight; bf16 autocast gives no NaN."""
    torch.manual_seed(0)
    model = tiny_resnet_host(type_, depth, norm_cfg=dict(type='BN', requires_grad=True),
                       block_conv_cfg=dict(type='mmext.QuantConv', weight_bits=2,
                                           activation_bits=2))
    quant = check_block_convs(model, QuantConv)
    assert all(isinstance(m.input_norm, nn.BatchNorm2d) and m.input_norm.affine for m in quant)
    check_one_image_trains(model, quant)


def test_odd_large_input_once():
    model = tiny_resnet_host('mmext.ResNet', 18, block_conv_cfg=dict(
        type='mmext.QuantConv', weight_bits=1, activation_bits=2, quantizer='log'))
    model.train()
    outs = model(torch.randn(1, 3, 511, 673))
    assert [o.shape[-2:] for o in outs] == [(128, 169), (64, 85), (32, 43), (16, 22)]
    assert all(torch.isfinite(o).all() for o in outs)
