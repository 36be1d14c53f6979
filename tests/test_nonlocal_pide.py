"""Nonlocal integral operators (Bohn, Griebel, Kannan, arXiv 2108.02430; no
public code): the spectral operators against their dense definitions, order 1
against the 5-point Laplacian, the inverse's zero-frequency rule, identity at
init, the FFT count, and the ResNet hosts. Shapes, gradients to every
parameter (``s``, ``alpha``, ``b``, the Gaussian width) and bf16 autocast of
the plugin and the conv run in tests/test_component_contract.py."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from design_checks import ODD_SIZE, assert_all_grads, randomize

from mmext.analysis.flops import count_flops
from mmext.models.backbones import ResNet, ResNetV1c, ResNeXt
from mmext.models.layers import NonlocalConv, NonlocalOperator
from mmext.models.layers.nonlocal_pide import fast_fft_length, padded_size

STENCIL = torch.tensor([[0., -1., 0.], [-1., 4., -1.], [0., -1., 0.]])


def _with_orders(module, orders):
    """Set ``s`` per channel to ``orders`` (inside the module's range)."""
    lo, hi = module.order_range
    t = (torch.tensor(orders, dtype=torch.float64) - lo) / (hi - lo)
    with torch.no_grad():
        module.order_logit.copy_(torch.log(t / (1 - t)))
    return module


def _shortest_offsets(n):
    k = np.arange(n)
    return np.where(k < n - k, k, k - n)  # -n/2 for even n, as fftfreq(n) * n


def _dense_fractional(u, orders, rows, cols, sign, symbol):
    """``(A u)(x) = sum_y k(x - y) u(y)`` over the points of the map, ``u`` zero
    elsewhere on the ``rows x cols`` torus; the kernel ``k`` is the inverse DFT
    of the symbol, written as explicit DFT matrices (float64, no FFT)."""
    c, h, w = u.shape
    k1, k2 = np.arange(rows), np.arange(cols)
    if symbol == 'discrete':
        lam = 4 * np.sin(np.pi * k1 / rows)[:, None]**2 + 4 * np.sin(np.pi * k2 / cols)[None]**2
    else:
        xi1 = 2 * np.pi * _shortest_offsets(rows) / rows
        xi2 = 2 * np.pi * _shortest_offsets(cols) / cols
        lam = xi1[:, None]**2 + xi2[None]**2
    e1 = np.exp(2j * np.pi * np.outer(k1, k1) / rows)  # e1[d, k] = exp(i xi_k d)
    e2 = np.exp(2j * np.pi * np.outer(k2, k2) / cols)
    out = np.zeros((c, h, w))
    for ch in range(c):
        a = np.zeros_like(lam)
        a[lam > 0] = lam[lam > 0]**(sign * orders[ch])
        kernel = (e1 @ a @ e2.T).real / (rows * cols)  # kernel[d1, d2]
        for x1 in range(h):
            for x2 in range(w):
                out[ch, x1, x2] = sum(kernel[(x1 - y1) % rows, (x2 - y2) % cols] * u[ch, y1, y2]
                                      for y1 in range(h) for y2 in range(w))
    return out


def _dense_gaussian(u, widths, rows, cols):
    """``(L_w u)(x) = sum_y w(x - y) (u(x) - u(y))`` over every point ``y`` of
    the ``rows x cols`` torus, ``u`` zero outside the map, ``w`` the Gaussian
    density of the shortest offset."""
    c, h, w = u.shape
    ext = np.zeros((c, rows, cols))
    ext[:, :h, :w] = u
    d1, d2 = _shortest_offsets(rows), _shortest_offsets(cols)
    out = np.zeros((c, h, w))
    for ch in range(c):
        var = widths[ch]**2
        for x1 in range(h):
            for x2 in range(w):
                off1, off2 = d1[(x1 - np.arange(rows)) % rows], d2[(x2 - np.arange(cols)) % cols]
                wgt = np.exp(-(off1[:, None]**2 + off2[None]**2) / (2 * var)) / (2 * np.pi * var)
                out[ch, x1, x2] = (wgt * (ext[ch, x1, x2] - ext[ch])).sum()
    return out


def test_padded_size_rule():
    # Periodic: the map; zero: 5-smooth lengths >= 2n - 1 (673 -> 1345 -> 1350 = 2 3^3 5^2).
    assert padded_size(5, 6, 'periodic') == (5, 6)
    assert padded_size(5, 6, 'zero') == (9, 12)
    assert padded_size(511, 673, 'zero') == (1024, 1350)
    assert padded_size(1, 1, 'zero') == (1, 1)
    assert [fast_fft_length(n) for n in (0, 7, 11, 13, 49, 97)] == [1, 8, 12, 15, 50, 100]


@pytest.mark.parametrize('boundary', ['zero', 'periodic'])
@pytest.mark.parametrize('operator,symbol', [('fractional', 'discrete'),
                                             ('inverse_fractional', 'discrete'),
                                             ('fractional', 'continuous')])
def test_fractional_operators_equal_their_dense_definition(operator, symbol, boundary):
    """On a 5x6 map, per channel with its own order s: the kernel sum over the
    grid with the kernel from explicit DFT matrices, in float64."""
    torch.manual_seed(0)
    orders = [0.2, 0.55, 0.9]
    op = _with_orders(NonlocalOperator(3, operator=operator, symbol=symbol, boundary=boundary),
                      orders)
    u = torch.randn(1, 3, 5, 6)
    rows, cols = padded_size(5, 6, boundary)
    sign = 1 if operator == 'fractional' else -1
    ref = _dense_fractional(u[0].double().numpy(), orders, rows, cols, sign, symbol)
    out = op.nonlocal_operator(u)[0].detach().double().numpy()
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())


@pytest.mark.parametrize('boundary', ['zero', 'periodic'])
def test_gaussian_laplacian_equals_its_dense_definition(boundary):
    torch.manual_seed(0)
    widths = [0.7, 1.5, 3.0]
    op = NonlocalOperator(3, operator='gaussian', boundary=boundary)
    with torch.no_grad():
        op.log_width.copy_(torch.tensor(widths).log())
    u = torch.randn(1, 3, 5, 6)
    rows, cols = padded_size(5, 6, boundary)
    ref = _dense_gaussian(u[0].double().numpy(), widths, rows, cols)
    out = op.nonlocal_operator(u)[0].detach().double().numpy()
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-5 * np.abs(ref).max())


def _order_one(**kwargs):
    # s = 0.5 + 1.0 * sigmoid(0) = 1 exactly.
    op = NonlocalOperator(4, order=1.0, order_range=(0.5, 1.5), **kwargs)
    assert torch.equal(op.order, torch.ones(4))
    return op


@pytest.mark.parametrize('boundary', ['zero', 'periodic'])
def test_order_one_is_the_five_point_laplacian(boundary):
    """s = 1 with the discrete symbol is the 5-point stencil: zero boundary
    reads zeros outside the map (conv2d with padding 1), periodic wraps. The
    continuous symbol |xi|^2 at s = 1 is not that stencil: the same check
    fails for it."""
    torch.manual_seed(0)
    x = torch.randn(2, 4, 7, 10)
    kernel = STENCIL.expand(4, 1, 3, 3)
    if boundary == 'zero':
        ref = F.conv2d(x, kernel, padding=1, groups=4)
    else:
        ref = F.conv2d(F.pad(x, (1, 1, 1, 1), mode='circular'), kernel, groups=4)
    out = _order_one(boundary=boundary).nonlocal_operator(x)
    torch.testing.assert_close(out, ref, atol=1e-4, rtol=1e-4)
    spectral = _order_one(boundary=boundary, symbol='continuous').nonlocal_operator(x)
    assert (spectral - ref).abs().max() > 0.1

    # The spectrum: the multiplier at s = 1 is the DFT of the stencil on the torus.
    rows, cols = padded_size(7, 10, boundary)
    torus = torch.zeros(rows, cols)
    for (i, j), v in np.ndenumerate(STENCIL.numpy()):
        torus[(i - 1) % rows, (j - 1) % cols] += float(v)
    multiplier = _order_one(boundary=boundary).spectral_multiplier(rows, cols)
    for m in multiplier:
        torch.testing.assert_close(m, torch.fft.rfft2(torus).real, atol=1e-5, rtol=1e-5)


def test_inverse_order_one_undoes_the_laplacian_up_to_the_mean():
    """Periodic, s = 1: (-Laplacian)^(-1) (-Laplacian) u = u - mean(u) (the
    zero frequency is set to 0), and the inverse's output has zero mean."""
    torch.manual_seed(0)
    x = torch.randn(2, 4, 9, 11)
    lap = F.conv2d(F.pad(x, (1, 1, 1, 1), mode='circular'), STENCIL.expand(4, 1, 3, 3), groups=4)
    inv = _order_one(operator='inverse_fractional', boundary='periodic')
    torch.testing.assert_close(inv.nonlocal_operator(lap), x - x.mean((2, 3), keepdim=True),
                               atol=1e-4, rtol=1e-4)
    assert inv.nonlocal_operator(x).mean((2, 3)).abs().max() < 1e-5


def test_order_stays_in_range_and_gets_gradients():
    op = NonlocalOperator(3, order_range=(0.1, 0.9))
    with torch.no_grad():
        op.order_logit.copy_(torch.tensor([-30., 0., 30.]))
    # Saturated at the ends (up to float32 rounding of lo + (hi - lo) * 1).
    torch.testing.assert_close(op.order, torch.tensor([0.1, 0.5, 0.9]))
    # Alpha = 0 at init: the order learns once alpha moves; the zero frequency
    # (lambda = 0, where d lambda^s / ds is infinite) does not poison it.
    with torch.no_grad():
        op.alpha.fill_(0.5)
    x = torch.randn(1, 3, 6, 5) + 3.  # a mean: the zero frequency is populated
    assert_all_grads(op, op(x))


def test_identity_at_init_and_plain_conv_checkpoint():
    """The plugin is the identity and NonlocalConv is its plain conv at init
    (alpha = b = 0, tanh(0) = 0), and a plain conv's state dict loads into it."""
    torch.manual_seed(0)
    x = torch.randn(2, 8, 9, 13)
    for operator in ('fractional', 'inverse_fractional', 'gaussian'):
        assert torch.equal(NonlocalOperator(8, operator=operator)(x), x)
    plain = torch.nn.Conv2d(8, 6, 3, stride=2, padding=1)
    conv = NonlocalConv(8, 6, 3, stride=2, padding=1)
    result = conv.load_state_dict(plain.state_dict(), strict=False)
    assert not result.unexpected_keys
    assert sorted(result.missing_keys) == ['nonlocal_op.alpha', 'nonlocal_op.order_logit']
    torch.testing.assert_close(conv(x), plain(x))
    # Away from init: the convolution's output plus alpha * A of it.
    randomize(conv)
    y = F.conv2d(x, conv.weight, conv.bias, 2, 1)
    ref = y + conv.nonlocal_op.alpha[:, None, None] * conv.nonlocal_op.nonlocal_operator(y)
    torch.testing.assert_close(conv(x), ref)


def test_errors():
    with pytest.raises(ValueError, match='operator must be one of'):
        NonlocalOperator(4, operator='laplace')
    with pytest.raises(ValueError, match='boundary must be one of'):
        NonlocalOperator(4, boundary='reflect')
    with pytest.raises(ValueError, match='open interval'):
        NonlocalOperator(4, order=1.0)
    with pytest.raises(ValueError, match='0 <= lo < hi'):
        NonlocalOperator(4, order_range=(0.6, 0.4))
    with pytest.raises(ValueError, match='width must be > 0'):
        NonlocalOperator(4, operator='gaussian', width=0.)


@pytest.mark.parametrize('operator,boundary', [('fractional', 'zero'), ('fractional', 'periodic'),
                                               ('gaussian', 'zero')])
def test_flops_are_the_traced_ffts(operator, boundary):
    """The transforms are traced and counted by mmext's FFT handles (n
    ceil(log2 n) per signal of n points), by hand: rfft along W of the H map
    rows (M' points), fft along H of the M' / 2 + 1 columns (M points), their
    inverses (irfft only for the H rows kept); the Gaussian adds the 1-D
    transforms of its kernel factors (C signals of M and of M' points). The
    symbol product is elementwise (not counted)."""
    op = randomize(NonlocalOperator(8, operator=operator, boundary=boundary)).eval()
    n, c, h, w = 2, 8, 13, 11
    count = count_flops(op, torch.randn(n, c, h, w))
    rows, cols = padded_size(h, w, boundary)
    along_w = n * c * h * cols * math.ceil(math.log2(cols))
    along_h = n * c * rows * (cols // 2 + 1) * math.ceil(math.log2(rows))
    expected = {'fft_rfft': along_w, 'fft_fft': along_h, 'fft_ifft': along_h,
                'fft_irfft': along_w}
    if operator == 'gaussian':
        expected['fft_fft'] += c * rows * math.ceil(math.log2(rows))
        expected['fft_rfft'] += c * cols * math.ceil(math.log2(cols))
    assert count.by_operator == expected
    assert count.total == sum(expected.values())


HOSTS = [
    (ResNet, dict(depth=18)),
    (ResNetV1c, dict(depth=50)),
    (ResNeXt, dict(depth=50, groups=2, base_width=4)),
]


@pytest.mark.parametrize('cls,kwargs', HOSTS, ids=[f'{c.__name__}-{k["depth"]}' for c, k in HOSTS])
@pytest.mark.parametrize('form', ['plugin', 'block_conv'])
def test_hosts_train_at_one_image(cls, kwargs, form):
    """Tiny-width hosts with the plugin after conv2 of every block, or every
    block conv a NonlocalConv: one image per device trains (gradients to the
    operator parameters of every block) at an odd size; strides kept."""
    if form == 'plugin':
        extra = dict(plugins=[dict(cfg=dict(type='mmext.NonlocalOperator'),
                                   position='after_conv2')])
    else:
        extra = dict(block_conv_cfg=dict(type='mmext.NonlocalConv', boundary='periodic'))
    torch.manual_seed(0)
    model = randomize(cls(**kwargs, base_channels=8, stem_channels=16, **extra))
    x = torch.randn(1, 3, *ODD_SIZE)
    outs = model(x)
    assert [o.shape[-2:] for o in outs] == [(-(-ODD_SIZE[0] // s), -(-ODD_SIZE[1] // s))
                                            for s in model.out_strides]
    sum((o**2).mean() for o in outs).backward()
    ops = [m for m in model.modules() if isinstance(m, NonlocalOperator)]
    assert len(ops) == (1 if form == 'plugin' else 2 + (kwargs['depth'] == 50)) * \
        sum(model.stage_blocks)
    assert all(p.grad is not None and p.grad.abs().sum() > 0
               for m in ops for p in m.parameters())


def test_large_odd_input_once():
    """511x673 on the tiny ResNet-18 with the plugin (zero boundary: the stage
    maps are padded to 5-smooth tori), under bf16 autocast without NaN."""
    model = ResNet(depth=18, base_channels=8, stem_channels=16,
                   plugins=[dict(cfg=dict(type='mmext.NonlocalOperator'),
                                 position='after_conv2')]).eval()
    randomize(model)
    with torch.no_grad(), torch.autocast('cpu', dtype=torch.bfloat16):
        outs = model(torch.randn(1, 3, 511, 673))
    assert [tuple(o.shape[-2:]) for o in outs] == [(128, 169), (64, 85), (32, 43), (16, 22)]
    assert all(torch.isfinite(o).all() for o in outs)
