"""Harmonic convolutions (H-Nets): filters restricted to circular harmonics.

Worrall, Garbin, Turmukhambetov, Brostow, "Harmonic Networks: Deep
Translation and Rotation Equivariance", CVPR 2017 (arXiv 1612.04642).
Official code: danielewworrall/harmonicConvolutions (TensorFlow 1.0),
``harmonic_network_ops.py`` (``get_interpolation_weights``, ``get_filters``,
``h_conv``, ``h_nonlin``, ``h_batch_norm``) and ``harmonic_network_lite.py``;
a PyTorch port is debjani-bhowmick/harmonic-net-pytorch. Written here from
the paper and those files, not copied.

A filter of rotation order ``m`` is ``W_m(r, phi) = R_m(r) e^{i(m phi + beta)}``:
a learned radial profile ``R_m`` (one value per ring) times a circular
harmonic, with a learned phase offset ``beta``. Rotating the input by
``theta`` multiplies the response to such a filter by ``e^{i m theta}``, so
its magnitude is rotation invariant and the response is rotation
*equivariant*. A feature map is a "stream" per rotation order ``0..M``;
order ``o`` of the output sums the input orders ``i`` convolved with the
filter of order ``o - i`` (negative orders: the complex conjugate of the
positive one).

Everything is real arithmetic (no complex dtype), so autocast, channels-last,
activation checkpointing and every FLOP counter see ordinary convolutions: the
cross-order convolution is one ``F.conv2d`` with a real weight assembled from
the complex filters, as ``h_conv`` does.

Stream layout (``HarmonicConv(output='stream')`` and the helpers below): a
real ``(N, (M + 1) * 2 * C, H, W)`` tensor, channel index
``(order * 2 + part) * C + c`` with ``part`` 0 = real, 1 = imaginary; the
official 6-D ``[N, H, W, order, complex, C]`` tensor with its axes moved to
PyTorch's NCHW.
"""
import math

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import build_norm_layer

from mmext.models.layers.protocols import ComponentExample
from mmext.models.layers.unit_norm import check_norm_input
from mmext.registry import MODELS

#: Gaussian interpolation bandwidth in pixels (``get_interpolation_weights``).
BANDWIDTH = 0.5


def default_n_rings(kernel_size):
    """``max(k / 2, 2)`` of the official code, where ``k / 2`` is Python 2's
    integer division: 2 rings for k = 3, 5; 3 for k = 7."""
    return max(kernel_size // 2, 2)


def n_angular_samples(kernel_size):
    """Equiangular samples per ring: ``max(ceil(pi * k), 101)``."""
    return max(math.ceil(math.pi * kernel_size), 101)


def harmonic_basis(kernel_size, order, n_rings=None):
    """The sampled circular harmonic of one order on a ``k x k`` grid.

    Ring ``r`` (radius ``linspace(m != 0, n_rings - 0.5, n_rings)[r]`` pixels
    from the kernel centre; the order-0 rings start at the centre, the others
    at 1) is sampled at ``N = max(ceil(pi k), 101)`` equiangular points; each
    point is spread onto the pixels by a Gaussian of bandwidth 0.5 pixel
    (weights normalised to sum to 1 per point), and the points of a ring are
    summed with the single-frequency DFT row ``e^{-2 pi i m n / N}``. Pixel
    centres sit at ``index + 0.5 - k / 2``; the point at angle ``phi`` is at
    row offset ``-r sin(phi)``, column offset ``r cos(phi)``
    (``get_interpolation_weights`` / ``get_filters``).

    Args:
        kernel_size (int): ``k``.
        order (int): Rotation order ``m`` (any sign).
        n_rings (int, optional): Rings; defaults to :func:`default_n_rings`.

    Returns:
        np.ndarray: complex128 ``(k * k, n_rings)``; row ``p`` is pixel
        ``(p // k, p % k)``.
    """
    k = kernel_size
    n_rings = default_n_rings(k) if n_rings is None else int(n_rings)
    radii = np.linspace(float(order != 0), n_rings - 0.5, n_rings)
    n = n_angular_samples(k)
    angles = 2 * np.pi * np.arange(n) / n
    points = radii[:, None, None] * np.stack([-np.sin(angles), np.cos(angles)])[None]
    grid = np.arange(k) + 0.5 - k / 2
    rows, cols = np.meshgrid(grid, grid, indexing='ij')
    pixels = np.stack([rows.ravel(), cols.ravel()])                    # (2, P)
    dist2 = ((points[..., None] - pixels[None, :, None, :])**2).sum(1)  # (R, N, P)
    weights = np.exp(-0.5 * dist2 / BANDWIDTH**2)
    weights /= weights.sum(-1, keepdims=True)
    dft = np.exp(-2j * np.pi * order * np.arange(n) / n)
    return np.einsum('n,rnp->pr', dft, weights)


def _pair_int(value, name):
    if isinstance(value, (tuple, list)):
        if len(value) != 2 or value[0] != value[1]:
            raise ValueError(f'HarmonicConv: {name} must be square, got {value}')
        value = value[0]
    return int(value)


def stream_magnitudes(x, orders, eps=1e-12):
    """``|Z|`` of every complex channel of a stream, in float32.

    Args:
        x (Tensor): Stream ``(N, orders * 2 * C, H, W)``.
        orders (int): Rotation orders in it (``max_order + 1``).
        eps (float): ``|Z| = sqrt(max(re^2 + im^2, eps))``: the gradient of
            ``|Z|`` is unbounded at 0 (``stack_magnitudes``).

    Returns:
        Tensor: float32 ``(N, orders * C, H, W)``, index ``order * C + c``.
    """
    n, ch, h, w = x.shape
    parts = x.float().view(n, orders, 2, ch // (2 * orders), h, w)
    return parts.pow(2).sum(2).clamp_min(eps).sqrt().view(n, -1, h, w)


def _rescale(x, orders, scale):
    """Multiply each complex channel of stream ``x`` by a real
    ``(N, orders * C, H, W)`` factor, in float32, back in ``x``'s dtype."""
    n, ch, h, w = x.shape
    out = x.float().view(n, orders, 2, -1, h, w) * scale.view(n, orders, 1, -1, h, w)
    return out.view(n, ch, h, w).to(x.dtype)


def stream_mean_pool(x, kernel_size=3, stride=2):
    """Mean pooling of the real and imaginary parts (``mean_pooling``),
    ``padding = kernel_size // 2`` without counting the padding, so an odd
    ``H`` gives ``ceil(H / stride)`` rows and a 3x3 window keeps the 90-degree
    symmetry about a pixel centre (see :class:`mmext.HNet`)."""
    return F.avg_pool2d(x, kernel_size, stride, kernel_size // 2, count_include_pad=False)


class HarmonicMeanPool(nn.Module):
    """:func:`stream_mean_pool` as a module (a stage's downsampling)."""

    def __init__(self, kernel_size=3, stride=2):
        super().__init__()
        self.kernel_size, self.stride = kernel_size, stride

    def forward(self, x):
        return stream_mean_pool(x, self.kernel_size, self.stride)


class HarmonicNonlinearity(nn.Module):
    """``Z -> ReLU(|Z| + b) Z / |Z|`` on a stream (``h_nonlin``): the phase
    is kept, the magnitude rectified, one learned bias per (order, channel).

    The bias starts as TensorFlow's default (Glorot-uniform) initialiser
    gives it for the official ``[1, 1, 1, orders, 1, C]`` variable:
    ``U(-a, a)``, ``a = sqrt(6 / (orders * (1 + C)))``. Magnitudes use
    ``eps=1e-4`` as ``harmonic_network_lite.non_linearity``; the arithmetic
    runs in float32 under autocast (a float32 island: the division by
    ``|Z|`` would lose the phase's precision in bf16).

    Args:
        channels (int): Complex channels per order ``C``.
        max_order (int): Orders ``0..max_order`` in the stream.
    """

    def __init__(self, channels, max_order=1, eps=1e-4):
        super().__init__()
        self.orders = max_order + 1
        self.eps = eps
        bound = math.sqrt(6.0 / (self.orders * (1 + channels)))
        self.bias = nn.Parameter(torch.empty(self.orders * channels).uniform_(-bound, bound))

    def forward(self, x):
        mag = stream_magnitudes(x, self.orders, self.eps)
        return _rescale(x, self.orders, F.relu(mag + self.bias.float()[:, None, None]) / mag)


class HarmonicBatchNorm(nn.Module):
    """Norm of the magnitudes, then ReLU, phase kept (``h_batch_norm``):
    ``Z -> ReLU(norm(|Z|)) Z / |Z|``; one norm channel per (order,
    channel). ``norm_cfg`` is the backbone's (BN, SyncBN, GN); the official
    BN uses eps 1e-3 and decay 0.99 (PyTorch momentum 0.01), mmext takes the
    norm config as given. Magnitude eps 1e-4 (``harmonic_network_lite``).
    Float32 island as in :class:`HarmonicNonlinearity`.

    Raises:
        MMExtError: a BatchNorm in training that sees one value per channel
            (one image with a 1x1 map), from ``check_norm_input``.
    """

    def __init__(self, channels, max_order=1, norm_cfg=dict(type='BN'), eps=1e-4):
        super().__init__()
        self.orders = max_order + 1
        self.eps = eps
        self.norm = build_norm_layer(norm_cfg, self.orders * channels)[1]

    def forward(self, x):
        mag = stream_magnitudes(x, self.orders, self.eps)
        check_norm_input(self.norm, mag, self, 'norm_cfg', unit='HNet')
        with torch.autocast(x.device.type, enabled=False):
            normed = self.norm(mag)
        return _rescale(x, self.orders, F.relu(normed.float()) / mag)


@MODELS.register_module()
class HarmonicConv(nn.Module):
    """Cross-order harmonic convolution (the H-Net layer ``conv2d`` of
    ``harmonic_network_lite.py``), also an ``nn.Conv2d`` drop-in.

    Filters: for each filter order ``m`` in ``0..max(max_order,
    in_max_order)``, ``W_m = sum_r basis_m[:, r] R_m[r] e^{-i beta_m}`` with
    ``basis_m`` from :func:`harmonic_basis` (fixed buffer), radial profile
    ``R_m`` (learned, one value per ring, input and output channel) and phase
    ``beta_m`` (learned per input and output channel; ``get_filters``
    rotates the basis by ``-beta``, the paper writes ``+beta``: the same
    family). Output order ``o`` from input order ``i`` uses ``W_{o - i}``,
    the complex conjugate ``conj(W_{i - o})`` when ``o < i``; on a complex
    input the order-0 filter enters through its real part (``h_conv``'s
    ``sign(0) = 0``), on a real input through the complex filter.

    Two interfaces:

    * ``in_max_order=None, output='magnitude'`` (default): the drop-in. The
      input ``(N, in_channels, H, W)`` is real (rotation order 0); the output
      ``(N, out_channels, H', W')`` stacks the magnitudes ``|Z_0| ..
      |Z_M|`` (``stack_magnitudes``, eps 1e-12): ``out_channels / (M + 1)``
      complex channels per order, channel index ``(group, order, c)``. Each
      output map is rotation invariant as a scalar field (rotating the input
      rotates it, up to the basis' sampling error) and non-negative. Usable
      as ``block_conv_cfg`` / ``dcn`` of the mmext ResNet hosts; use the
      ``dcn`` slot (3x3 convs only): a 1x1 kernel has no angular extent and
      is refused for ``max_order > 0``. ``groups`` (ResNeXt) split the input
      channels and the complex output channels.
    * ``output='stream'`` (inside :class:`mmext.HNet`): the output is the
      stream ``(N, (M + 1) * 2 * out_channels, H', W')`` (module docstring),
      ``out_channels`` complex channels per order; ``in_max_order=m`` takes a
      stream of orders ``0..m`` with ``in_channels`` complex channels per
      order, ``None`` a real input.

    Under autocast the filters are synthesised in float32 (a float32
    island: the basis sums ~101 samples and a phase rotation), then cast
    with the input by the convolution; magnitudes are taken in float32.

    Args:
        in_channels (int): Real input channels (or complex per order).
        out_channels (int): See the two interfaces above.
        kernel_size (int): Odd (the rotation centre is a pixel).
        stride, dilation, groups: As ``nn.Conv2d``.
        padding (int, optional): Defaults to ``dilation * (k // 2)``.
        bias (bool): A learned bias on the output magnitudes (drop-in only;
            the official layer has none). Defaults to False.
        max_order (int): Output orders ``0..max_order``. Defaults to 1.
        n_rings (int, optional): Radial samples; defaults to
            ``max(k // 2, 2)``.
        phase (bool): Learn the phase offsets (the MNIST model's last layer
            has none). Defaults to True.
        std_mult (float): Radial init ``N(0, std_mult * sqrt(2 / (n_rings *
            in_channels / groups)))`` (``get_weights``). Defaults to 0.4.
        in_max_order (int, optional): Orders of a stream input; None: real.
        output (str): ``'magnitude'`` or ``'stream'``.
        negative_order_variables (bool): Also create radial profiles and
            phases for the orders ``-M..-1`` as the TensorFlow code does
            (``get_weights_dict`` / ``get_phase_dict``); the conjugation rule
            never reads them (zero gradient). Only for the official variable
            count (34,066 in the MNIST-rot model); defaults to False.

    Raises:
        ValueError: an even or non-square kernel, ``max_order > 0`` with a
            1x1 kernel, channels that do not divide by ``groups`` (and, in
            magnitude output, by ``groups * (max_order + 1)``), ``groups`` or
            ``bias`` with a stream output or input, an unknown ``output``.
    """

    host_norm_args = ()
    component_examples = (
        ComponentExample('conv'),
        ComponentExample('conv', dict(max_order=2, n_rings=3, bias=True), out_channels=24),
        ComponentExample('conv', dict(groups=4), in_channels=16, out_channels=16),
    )

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=None,
                 dilation=1, groups=1, bias=False, *, max_order=1, n_rings=None, phase=True,
                 std_mult=0.4, in_max_order=None, output='magnitude',
                 negative_order_variables=False):
        super().__init__()
        k = _pair_int(kernel_size, 'kernel_size')
        if k % 2 == 0:
            raise ValueError(f'HarmonicConv: kernel_size must be odd (the rotation centre is '
                             f'a pixel), got {k}')
        if k == 1 and max_order > 0:
            raise ValueError('HarmonicConv: a 1x1 kernel has no angular extent (orders >= 1 '
                             'vanish); use max_order=0, or the ResNet hosts\' dcn slot, which '
                             'replaces only the 3x3 convs')
        if output not in ('magnitude', 'stream'):
            raise ValueError(f"HarmonicConv: output must be 'magnitude' or 'stream', "
                             f'got {output!r}')
        if (output == 'stream' or in_max_order is not None) and (groups != 1 or bias):
            raise ValueError('HarmonicConv: groups and bias are for the real drop-in '
                             "(in_max_order=None, output='magnitude') only")
        orders = max_order + 1
        if in_channels % groups:
            raise ValueError(f'HarmonicConv: in_channels={in_channels} is not divisible by '
                             f'groups={groups}')
        if output == 'magnitude':
            if out_channels % (groups * orders):
                raise ValueError(
                    f'HarmonicConv: out_channels={out_channels} must be divisible by '
                    f'groups * (max_order + 1) = {groups * orders} (magnitudes of orders '
                    f'0..{max_order} are stacked)')
            complex_channels = out_channels // orders
        else:
            complex_channels = out_channels
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size = (k, k)
        self.stride = stride
        self.dilation = dilation
        self.padding = dilation * (k // 2) if padding is None else padding
        self.groups = groups
        self.max_order = max_order
        self.in_max_order = in_max_order
        self.output = output
        self.complex_channels = complex_channels
        self.n_rings = default_n_rings(k) if n_rings is None else int(n_rings)
        # Filter orders |o - i| the cross-order rule reads.
        self.filter_max_order = max(max_order, in_max_order or 0)
        low = -self.filter_max_order if negative_order_variables else 0
        self.variable_orders = tuple(range(low, self.filter_max_order + 1))
        cin = in_channels // groups
        shape = (len(self.variable_orders), self.n_rings, complex_channels, cin)
        std = std_mult * math.sqrt(2.0 / (self.n_rings * cin))
        self.radial = nn.Parameter(torch.randn(shape) * std)
        self.phase = nn.Parameter(torch.rand(shape[:1] + shape[2:]) * 2 * math.pi) \
            if phase else None
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        basis = np.stack([harmonic_basis(k, m, self.n_rings)
                          for m in range(self.filter_max_order + 1)])   # (M + 1, k*k, R)
        self.register_buffer('basis', torch.from_numpy(
            np.stack([basis.real, basis.imag], 1)).float(), persistent=False)

    def complex_filters(self):
        """``{m: (real, imag)}`` for ``m = 0..filter_max_order``, each float32
        ``(complex_channels, in_channels / groups, k, k)``."""
        k = self.kernel_size[0]
        filters = {}
        with torch.autocast(self.basis.device.type, enabled=False):
            for m in range(self.filter_max_order + 1):
                index = self.variable_orders.index(m)
                radial = self.radial[index].float()
                real = torch.einsum('pr,rco->cop', self.basis[m, 0], radial)
                imag = torch.einsum('pr,rco->cop', self.basis[m, 1], radial)
                if self.phase is not None:
                    cos = torch.cos(self.phase[index].float())[..., None]
                    sin = torch.sin(self.phase[index].float())[..., None]
                    real, imag = cos * real + sin * imag, cos * imag - sin * real
                filters[m] = (real.unflatten(-1, (k, k)), imag.unflatten(-1, (k, k)))
        return filters

    def real_weight(self):
        """The real ``F.conv2d`` weight of the whole cross-order convolution:
        ``(groups * (M + 1) * 2 * C_g, in_orders * parts * in_channels /
        groups, k, k)``, output channels ``(group, order, part, c)``, input
        channels ``(order, part, c)`` (``h_conv``)."""
        filters = self.complex_filters()
        complex_in = self.in_max_order is not None
        in_orders = self.in_max_order + 1 if complex_in else 1
        rows = []
        for o in range(self.max_order + 1):
            real_row, imag_row = [], []
            for i in range(in_orders):
                m = o - i
                real, imag = filters[abs(m)]
                if complex_in:
                    # (a + ib)(x + iy) with b -> sign(m) b: the conjugate filter for m < 0.
                    s = float(np.sign(m))
                    real_row += [real, -s * imag]
                    imag_row += [s * imag, real]
                else:
                    real_row.append(real)
                    imag_row.append(imag)
            rows.append(torch.stack([torch.stack(real_row, 1), torch.stack(imag_row, 1)], 1))
        weight = torch.stack(rows, 1)       # (C, O, 2, in_orders * parts, C_in / g, k, k)
        c, orders, _, parts, cin, k, _ = weight.shape
        g = self.groups
        weight = weight.view(g, c // g, orders, 2, parts, cin, k, k).transpose(1, 3)
        weight = weight.transpose(1, 2)     # (g, O, 2, C / g, parts, C_in / g, k, k)
        return weight.reshape(g * orders * 2 * (c // g), parts * cin, k, k)

    def forward(self, x):
        """``(N, C_in, H, W)`` (real) or a stream -> magnitudes ``(N,
        out_channels, H', W')`` or a stream; ``H' = floor((H + 2 padding -
        dilation (k - 1) - 1) / stride) + 1`` as ``nn.Conv2d``."""
        y = F.conv2d(x, self.real_weight().to(x.dtype), None, self.stride, self.padding,
                     self.dilation, self.groups)
        if self.output == 'stream':
            return y
        n, _, h, w = y.shape
        # Group-major channels: the magnitudes of (group, order) blocks are
        # the magnitudes of a stream of groups * orders "orders".
        mag = stream_magnitudes(y, self.groups * (self.max_order + 1)).to(y.dtype)
        if self.bias is not None:
            mag = mag + self.bias.to(mag.dtype)[:, None, None]
        return mag
