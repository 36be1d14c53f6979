"""Harmonic Networks: HarmonicConv and the HNet backbone (Worrall et al., CVPR 2017).

What the shared contract tests do not check: the 90-degree rotation
equivariance of the magnitudes, the MNIST-rot parameter count of the official
layer shapes (../shared/catalog_remaining.md, C7), the cross-order rule
against a complex-arithmetic reference, and the ResNet host slots.
"""
import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from backbone_checks import count_params

from mmext.models.backbones.hnet import HNet
from mmext.models.layers.harmonic import (HarmonicBatchNorm, HarmonicConv, HarmonicNonlinearity,
                                          harmonic_basis)
from mmext.registry import MODELS

UNIT_ROUNDOFF = 2.0**-24  # float32


def steerability_defect(kernel_size, n_rings, max_order):
    """How far the sampled basis is from exact 90-degree steerability:
    ``max_m max|rot90(B_m) - e^{i m pi / 2} B_m| / max|B_m|``, in float64.
    An exactly sampled circular harmonic of order m picks up the factor
    ``e^{i m pi/2}`` (either sign convention; the smaller residual is taken)."""
    worst = 0.0
    for m in range(max_order + 1):
        basis = harmonic_basis(kernel_size, m, n_rings).T.reshape(-1, kernel_size, kernel_size)
        rotated = np.rot90(basis, 1, axes=(1, 2))
        worst = max(worst, min(np.abs(rotated - (1j**q) * basis).max() for q in (m, -m))
                    / np.abs(basis).max())
    return worst


def rotation_tolerance(kernel_size, n_rings, max_order, layers, terms):
    """Relative tolerance (to the largest output) of a 90-degree test.

    Two sources of error, bounded per layer and added over ``layers`` H-conv
    layers: the basis' steerability defect (:func:`steerability_defect`,
    amplified at most by the ``k^2`` taps a filter sums) and float32
    rounding of a sum of ``terms`` products (worst case ``terms * u``).
    The 101-sample ring sums are a trapezoidal rule on a smooth periodic
    integrand, so the defect is ~1e-15..1e-9 and the rounding term decides;
    a plain convolution misses by O(1) (checked below)."""
    defect = steerability_defect(kernel_size, n_rings, max_order)
    return layers * (kernel_size**2 * defect + terms * UNIT_ROUNDOFF)


def rotation_error(model, x):
    """Largest ``|rot90(f(x)) - f(rot90(x))|`` over the outputs, relative to
    each output's largest value."""
    with torch.no_grad():
        outs, outs_rot = model(x), model(torch.rot90(x, 1, (2, 3)))
    outs = outs if isinstance(outs, tuple) else (outs, )
    outs_rot = outs_rot if isinstance(outs_rot, tuple) else (outs_rot, )
    return max(((torch.rot90(a, 1, (2, 3)) - b).abs().max() / a.abs().max()).item()
               for a, b in zip(outs, outs_rot))


def test_rotating_the_input_rotates_the_magnitudes():
    # 65 = 2 * 32 + 1: odd at every level down to stride 32, so every
    # sampling grid is symmetric about the centre pixel.
    torch.manual_seed(0)
    x = torch.randn(2, 3, 65, 65)
    conv = HarmonicConv(3, 8, 5, n_rings=4).eval()
    tol = rotation_tolerance(5, 4, 1, layers=1, terms=3 * 25)
    err = rotation_error(conv, x)
    assert err < tol, (err, tol)
    assert rotation_error(HarmonicConv(3, 8, 5, n_rings=4, stride=2), x) < tol

    widths = dict(channels=[4, 4, 8, 8], depths=[1, 1, 1, 1])
    net = HNet(arch=widths, kernel_size=3).eval()
    # Stem + 2 convs per stage; the widest sum: 3x3 taps, 2 orders x 2
    # parts x 8 channels.
    tol = rotation_tolerance(3, None, 1, layers=9, terms=9 * 2 * 2 * 8)
    err = rotation_error(net, x)
    assert err < tol, (err, tol)
    # The order-1 magnitudes carry signal (not just the eps floor).
    assert net(x)[0][:, 4:].std() > 1e-3
    # A plain convolution with the same shape is far from equivariant:
    # the tolerance is tight enough to tell.
    plain = nn.Conv2d(3, 8, 5, padding=2)
    assert rotation_error(plain, x) > 100 * tol


def mnist_rot_model(negative_order_variables):
    """The official MNIST-rot model's parametrised layers
    (MNIST-rot/mnist_model.py): 7 H-convs 5x5, n_rings 4, max_order 1,
    channels 8/8, 16/16, 32/32, final 10 without phases; a magnitude ReLU
    after the odd convs, a magnitude BN after the even ones, a class bias."""
    conv = dict(kernel_size=5, n_rings=4, max_order=1, output='stream',
                negative_order_variables=negative_order_variables)
    layers, previous = [], None
    for width in (8, 16, 32):
        layers += [HarmonicConv(previous or 1, width, in_max_order=previous and 1, **conv),
                   HarmonicNonlinearity(width, 1),
                   HarmonicConv(width, width, in_max_order=1, **conv),
                   HarmonicBatchNorm(width, 1)]
        previous = width
    layers.append(HarmonicConv(32, 10, in_max_order=1, phase=False, **conv))
    model = nn.ModuleList(layers)
    model.register_parameter('bias', nn.Parameter(torch.full((10, ), 1e-2)))
    return model


def test_mnist_rot_model_parameter_count():
    # 34,066: the catalog's hand count of the TensorFlow variables, which
    # include the order -1 radial profiles and phases the conjugation rule
    # never reads. Without them: 22,826.
    assert count_params(mnist_rot_model(True)) == 34066
    assert count_params(mnist_rot_model(False)) == 22826


def complex_reference(conv, x):
    """Cross-order convolution in complex arithmetic: output order o is the
    sum over input orders i of conv(x_i, W_{o-i}), W_{-m} = conj(W_m), and
    the real part of W_0 on a complex input (h_conv's sign(0) = 0)."""
    filters = {m: torch.complex(re, im).detach() for m, (re, im) in conv.complex_filters().items()}
    n, _, h, w = x.shape
    stream = x.view(n, conv.in_max_order + 1, 2, -1, h, w)
    z = torch.complex(stream[:, :, 0], stream[:, :, 1])
    outs = []
    for o in range(conv.max_order + 1):
        total = 0
        for i in range(conv.in_max_order + 1):
            m = o - i
            weight = filters[m] if m > 0 else filters[-m].conj() if m < 0 else filters[0].real + 0j
            total = total + F.conv2d(z[:, i], weight, padding=conv.padding)
        outs.append(total)
    y = torch.stack(outs, 1)                                     # (N, O, C, H, W)
    return torch.stack([y.real, y.imag], 2).flatten(1, 3)


def test_cross_order_rule_and_conjugation():
    torch.manual_seed(0)
    conv = HarmonicConv(3, 4, 5, max_order=2, in_max_order=2, output='stream')
    x = torch.randn(2, 3 * 2 * 3, 11, 13)
    with torch.no_grad():
        assert torch.allclose(conv(x), complex_reference(conv, x), atol=1e-4, rtol=1e-4)
    # The blocks of the real weight: output order 0 from input order 1 is
    # conj(W_1), i.e. real part W_1.re, imaginary part -W_1.im.
    weight = conv.real_weight().detach().view(3, 2, 4, 3, 2, 3, 5, 5)
    re1, im1 = (t.detach() for t in conv.complex_filters()[1])
    assert torch.allclose(weight[0, 0, :, 1, 0], re1) and torch.allclose(weight[0, 1, :, 1, 0],
                                                                         -im1)
    assert torch.allclose(weight[1, 1, :, 0, 0], im1)        # order 1 from order 0: +W_1
    # A filter of order m is R(r) e^{i m phi}: a 90-degree rotation of the
    # kernel multiplies it by e^{+-i m pi / 2}.
    for m, (re, im) in conv.complex_filters().items():
        z = torch.complex(re.double(), im.double()).detach()
        rot = torch.rot90(z, 1, (2, 3))
        assert min((rot - (1j**q) * z).abs().max() for q in (m, -m)) < 1e-5 * z.abs().max()


def test_drop_in_in_the_resnet_hosts():
    torch.manual_seed(0)
    x = torch.randn(1, 3, 33, 41)
    r18 = MODELS.build(dict(type='mmext.ResNet', depth=18, base_channels=8,
                            dcn=dict(type='mmext.HarmonicConv'),
                            stage_with_dcn=(True, True, True, True))).eval()
    assert isinstance(r18.layer1[0].conv1, HarmonicConv)
    assert [o.shape[1:] for o in r18(x)] == [(8, 9, 11), (16, 5, 6), (32, 3, 3), (64, 2, 2)]
    # ResNeXt: the grouped 3x3 through the dcn slot.
    rx = MODELS.build(dict(type='mmext.ResNeXt', depth=50, groups=4, base_width=4,
                           base_channels=8, dcn=dict(type='mmext.HarmonicConv'),
                           stage_with_dcn=(True, True, True, True))).eval()
    assert rx.layer1[0].conv2.groups == 4
    assert [o.shape[1] for o in rx(x)] == [32, 64, 128, 256]
    # block_conv_cfg would also put it on the 1x1 convs: refused with the fix.
    with pytest.raises(ValueError, match='dcn slot'):
        MODELS.build(dict(type='mmext.ResNet', depth=50, base_channels=8,
                          block_conv_cfg=dict(type='mmext.HarmonicConv')))


def test_large_odd_input():
    net = HNet(arch=dict(channels=[2, 2, 2, 2], depths=[1, 1, 1, 1]), kernel_size=3).eval()
    with torch.no_grad():
        outs = net(torch.randn(1, 3, 511, 673))
    assert [o.shape[2:] for o in outs] == [(128, 169), (64, 85), (32, 43), (16, 22)]
    assert all(torch.isfinite(o).all() for o in outs)
