"""Nonlocal integral operators for CNNs, after Bohn, Griebel and Kannan,
"Deep Neural Networks and PIDE discretizations" (arXiv 2108.02430).

The paper adds integral-based, spatially nonlocal operators (a global weighted
Laplacian, the fractional Laplacian and the inverse fractional Laplacian) to
the forward propagation of a residual network read as the discretisation of a
partial integro-differential equation. No code was released with it; what is
implemented here is the standard definition of each operator, computed
spectrally per channel, with every choice the paper leaves open stated in the
docstrings below and on ``docs/designs/nonlocal_pide.md``.

Two registered components share one operator:

* :class:`NonlocalOperator`, a ResNet plugin: ``Y + h * act(alpha * A(Y) + b)``;
* :class:`NonlocalConv`, an ``nn.Conv2d`` drop-in (``block_conv_cfg`` /
  ``conv_cfg``): ``K x + alpha * A(K x)``.
"""
import math

import torch
import torch.nn as nn
from mmcv.cnn import build_activation_layer

from mmext.registry import MODELS
from .protocols import ComponentExample

OPERATORS = ('fractional', 'inverse_fractional', 'gaussian')
SYMBOLS = ('discrete', 'continuous')
BOUNDARIES = ('zero', 'periodic')


def fast_fft_length(n):
    """The smallest integer ``>= n`` (and ``>= 1``) with no prime factor
    above 5, the lengths pocketfft and cuFFT transform fastest."""
    n = max(int(n), 1)
    while True:
        m = n
        for p in (2, 3, 5):
            while m % p == 0:
                m //= p
        if m == 1:
            return n
        n += 1


def padded_size(height, width, boundary):
    """The torus ``(M, M')`` the operator is computed on for an ``H x W`` map.

    ``'periodic'``: the map itself, ``(H, W)``. ``'zero'``: the smallest
    5-smooth lengths ``>= 2H - 1`` and ``>= 2W - 1``; on such a torus the
    offset between any two points of the map is its own shortest
    representative, so no point of the map couples to another through the
    wrap-around.
    """
    if boundary == 'periodic':
        return height, width
    return fast_fft_length(2 * height - 1), fast_fft_length(2 * width - 1)


def laplacian_symbol(rows, cols, symbol='discrete', device=None):
    """The symbol of ``-Laplacian`` on the ``rows x cols`` torus (unit grid
    spacing), on the half-spectrum ``torch.fft.rfft2`` returns.

    ``'discrete'``: ``4 sin^2(xi_1 / 2) + 4 sin^2(xi_2 / 2)``, the eigenvalues
    of the 5-point stencil ``[[0, -1, 0], [-1, 4, -1], [0, -1, 0]]``.
    ``'continuous'``: ``xi_1^2 + xi_2^2`` with ``xi`` in ``[-pi, pi)``.
    ``xi_j = 2 pi k_j / n_j`` for the DFT index ``k_j``.

    Returns:
        Tensor: ``(rows, cols // 2 + 1)``, float32, 0 only at ``xi = 0``.
    """
    xi1 = 2 * math.pi * torch.fft.fftfreq(rows, device=device)
    xi2 = 2 * math.pi * torch.fft.rfftfreq(cols, device=device)
    if symbol == 'discrete':
        return 4 * torch.sin(xi1 / 2)[:, None]**2 + 4 * torch.sin(xi2 / 2)[None]**2
    return xi1[:, None]**2 + xi2[None]**2


def gaussian_weights(rows, cols, width):
    """The Gaussian weights ``w(d) = exp(-|d|^2 / (2 width^2)) / (2 pi width^2)``
    on the ``rows x cols`` torus, ``d`` the shortest integer offset
    (``fftfreq(n) * n``), as the two 1-D factors of the separable kernel.

    Args:
        width (Tensor): ``(C, )`` standard deviations in pixels.

    Returns:
        tuple[Tensor, Tensor]: ``(C, rows)`` and ``(C, cols)``; their outer
        product is ``w``.
    """
    d1 = torch.fft.fftfreq(rows, device=width.device) * rows
    d2 = torch.fft.fftfreq(cols, device=width.device) * cols
    var = width[:, None]**2
    norm = 1 / (2 * math.pi * var)
    return norm * torch.exp(-d1**2 / (2 * var)), torch.exp(-d2**2 / (2 * var))


@MODELS.register_module()
class NonlocalOperator(nn.Module):
    """A nonlocal integral operator per channel, in residual form:
    ``Y + h * act(alpha * A(Y) + b)`` (a ResNet plugin).

    ``A`` acts on each channel's map ``u`` separately and is computed in the
    Fourier domain: ``A u = irfft2(a(xi) * rfft2(u))`` on the torus of
    :func:`padded_size`, cropped back to ``H x W``. With ``lambda(xi)`` the
    symbol of ``-Laplacian`` (:func:`laplacian_symbol`):

    * ``'fractional'``: ``(-Laplacian)^s``, ``a = lambda^s``;
    * ``'inverse_fractional'``: ``(-Laplacian)^(-s)``, ``a = lambda^(-s)`` for
      ``xi != 0`` and ``a(0) = 0`` (the mean, on which ``-Laplacian`` is not
      invertible, is mapped to 0);
    * ``'gaussian'``: the weighted Laplacian
      ``(L_w u)(x) = sum_y w(x - y) (u(x) - u(y))`` over every point ``y`` of the
      torus, ``w`` the Gaussian of :func:`gaussian_weights` with a learnable
      width per channel: ``a = w_hat(0) - w_hat(xi)``.

    In the dense form each is ``(A u)(x) = sum_y k(x - y) u(y)`` with
    ``k = ifft2(a)``, a sum over all points of the torus (tested against that
    sum in ``tests/test_nonlocal_pide.py``).

    Choices made here (the paper's code is not public):

    * ``symbol='discrete'`` (default) takes the 5-point stencil's eigenvalues,
      so ``s = 1`` is exactly the 5-point Laplacian (with zero boundary: the
      stencil reading zeros outside the map); ``'continuous'`` takes
      ``|xi|^2``, the spectral Laplacian (not the 5-point one at ``s = 1``).
    * ``boundary='zero'`` (default): the map is zero-extended to a torus of at
      least ``(2H - 1) x (2W - 1)`` (:func:`padded_size`), so the image does
      not wrap around onto itself; ``u = 0`` outside the map is the nonlocal
      homogeneous Dirichlet (volume) condition, and the kernel's tail is cut
      at the padded torus. ``'periodic'`` computes on the ``H x W`` torus
      itself (cheaper; opposite borders interact).
    * order ``s = lo + (hi - lo) * sigmoid(theta)`` per channel stays inside
      ``order_range`` (the paper's ``(0, 1)`` by default) whatever the update;
      ``theta`` starts at the logit of ``order``.
    * ``alpha`` (gain) and ``b`` (bias) per channel start at 0 and ``act`` is
      tanh by default, so the plugin starts as the identity (a pretrained
      ResNet is unchanged at init) while ``alpha`` and ``b`` get gradients
      (``tanh'(0) = 1``; ReLU's gradient at 0 is 0 and would freeze both).
      ``s`` gets gradients once ``alpha != 0``.
    * ``h`` is the fixed step ``step``; with a learnable ``alpha`` it only
      scales the initial learning dynamics.
    * The transforms run in float32 (autocast off: pocketfft / cuFFT have no
      bf16 kernels for arbitrary sizes, and ``lambda^(-s)`` reaches
      ``(M / 2 pi)^(2 s)``); the result is cast back to the input dtype.

    Cost: the 2-D transforms are written as 1-D passes, so that only the
    ``H`` rows of the map are transformed along ``W`` (forward) and only the
    ``H`` rows kept are transformed back: per call and channel, ``rfft``
    along ``W`` (``H`` signals of ``M'`` points), ``fft`` along ``H`` (``M' / 2
    + 1`` signals of ``M`` points), and the same two inverses (plus two 1-D
    transforms of the kernel factors for ``'gaussian'``). They are traced
    ops, counted by mmext's FFT handles (:mod:`mmext.analysis.flops`: ``n
    ceil(log2 n)`` per signal of ``n`` points), so the module declares no
    ``extra_flops``; the multiplication by the symbol is elementwise and, by
    the fvcore convention mmext follows, not counted.

    Args:
        in_channels (int): Channels ``C`` of the input (and output).
        operator (str): ``'fractional'``, ``'inverse_fractional'`` or
            ``'gaussian'``. Defaults to ``'fractional'``.
        order (float): Initial ``s`` (fractional operators). Defaults to 0.5.
        order_range (tuple[float]): Open interval ``(lo, hi)`` for ``s``,
            ``0 <= lo < hi``. Defaults to ``(0., 1.)``.
        width (float): Initial Gaussian standard deviation in pixels of the
            map (``'gaussian'``). Defaults to 2.0.
        symbol (str): ``'discrete'`` or ``'continuous'``. Defaults to
            ``'discrete'``.
        boundary (str): ``'zero'`` or ``'periodic'``. Defaults to ``'zero'``.
        step (float): ``h``. Defaults to 1.0.
        act_cfg (dict, optional): ``act``; None for the identity.
            Defaults to ``dict(type='Tanh')``.
        bias (bool): Whether to learn ``b``. Defaults to True.

    Shapes:
        ``(N, C, H, W)`` to ``(N, C, H, W)``, any ``H, W >= 1``.

    Raises:
        ValueError: an unknown ``operator`` / ``symbol`` / ``boundary``, an
            ``order_range`` not ``0 <= lo < hi``, an ``order`` outside it or a
            ``width <= 0``.

    Example:
        >>> from mmcv.cnn import build_plugin_layer
        >>> name, op = build_plugin_layer(dict(type='mmext.NonlocalOperator'), in_channels=64)
        >>> name, op(torch.randn(1, 64, 13, 17)).shape
        ('nonlocal_op', torch.Size([1, 64, 13, 17]))
    """

    _abbr_ = 'nonlocal_op'
    # No norm inside: nothing for a host to set, batch 1 trains.
    host_norm_args = ()
    component_examples = (
        ComponentExample('plugin'),
        ComponentExample('plugin', dict(operator='inverse_fractional', boundary='periodic')),
        ComponentExample('plugin', dict(operator='gaussian', symbol='continuous')),
    )

    def __init__(self, in_channels, operator='fractional', order=0.5, order_range=(0., 1.),
                 width=2.0, symbol='discrete', boundary='zero', step=1.0,
                 act_cfg=dict(type='Tanh'), bias=True):
        super().__init__()
        for name, value, allowed in (('operator', operator, OPERATORS),
                                     ('symbol', symbol, SYMBOLS),
                                     ('boundary', boundary, BOUNDARIES)):
            if value not in allowed:
                raise ValueError(f'NonlocalOperator: {name} must be one of {allowed}, '
                                 f'got {value!r}')
        self.in_channels = in_channels
        self.operator = operator
        self.symbol = symbol
        self.boundary = boundary
        self.step = step
        if operator == 'gaussian':
            if width <= 0:
                raise ValueError(f'NonlocalOperator: width must be > 0, got {width}')
            self.log_width = nn.Parameter(torch.full((in_channels, ), math.log(width)))
        else:
            lo, hi = order_range
            if not 0 <= lo < hi:
                raise ValueError(f'NonlocalOperator: order_range must satisfy 0 <= lo < hi, '
                                 f'got {order_range}')
            if not lo < order < hi:
                raise ValueError(f'NonlocalOperator: order must lie in the open interval '
                                 f'{tuple(order_range)}, got {order}')
            self.order_range = (float(lo), float(hi))
            t = (order - lo) / (hi - lo)
            self.order_logit = nn.Parameter(torch.full((in_channels, ), math.log(t / (1 - t))))
        self.alpha = nn.Parameter(torch.zeros(in_channels))
        self.bias = nn.Parameter(torch.zeros(in_channels)) if bias else None
        self.act = build_activation_layer(act_cfg) if act_cfg is not None else None

    @property
    def order(self):
        """``s`` per channel, ``(C, )`` (fractional operators only)."""
        lo, hi = self.order_range
        return lo + (hi - lo) * torch.sigmoid(self.order_logit)

    @property
    def width(self):
        """Gaussian standard deviation per channel in pixels, ``(C, )``."""
        return self.log_width.exp()

    def spectral_multiplier(self, rows, cols):
        """``a(xi)`` per channel on the ``rows x cols`` torus: ``(C, rows,
        cols // 2 + 1)``, float32, real."""
        if self.operator == 'gaussian':
            g1, g2 = gaussian_weights(rows, cols, self.width.float())
            # Separable kernel: its DFT is the product of the 1-D DFTs, real
            # because w is even on the torus.
            w1 = torch.fft.fft(g1, dim=-1).real
            w2 = torch.fft.rfft(g2, dim=-1).real
            w_hat = w1[:, :, None] * w2[:, None, :]
            return w_hat[:, :1, :1] - w_hat
        lam = laplacian_symbol(rows, cols, self.symbol, device=self.order_logit.device)
        positive = lam > 0
        # lam^(+-s) through exp(+-s log lam) on the non-zero frequencies only:
        # 0^s has an infinite derivative in s at lam = 0.
        log_lam = torch.where(positive, lam, torch.ones_like(lam)).log()
        sign = 1. if self.operator == 'fractional' else -1.
        s = self.order.float()[:, None, None]
        return torch.exp(sign * s * log_lam) * positive

    def nonlocal_operator(self, x):
        """``A(x)`` per channel, without ``alpha``: ``(N, C, H, W)`` in,
        ``(N, C, H, W)`` float32 out."""
        h, w = x.shape[-2:]
        rows, cols = padded_size(h, w, self.boundary)
        with torch.autocast(device_type=x.device.type, enabled=False):
            # rfft2 / irfft2 as two 1-D passes each: the zero rows of the
            # padding are not transformed along W, and the rows the crop
            # drops are not transformed back (2.4x faster than rfft2 /
            # irfft2 on a 56x56 map padded to 120x120, one CPU thread).
            spec = torch.fft.rfft(x.float(), n=cols, dim=-1)
            spec = torch.fft.fft(spec, n=rows, dim=-2)
            # A real multiplier on the (re, im) pairs: no complex copy of it.
            spec = torch.view_as_complex(
                torch.view_as_real(spec) * self.spectral_multiplier(rows, cols)[..., None])
            out = torch.fft.ifft(spec, dim=-2)[..., :h, :]
            out = torch.fft.irfft(out, n=cols, dim=-1)
        return out[..., :w]

    def forward(self, x):
        alpha = self.alpha.float()[:, None, None]
        if self.bias is not None:
            z = torch.addcmul(self.bias.float()[:, None, None], alpha, self.nonlocal_operator(x))
        else:
            z = alpha * self.nonlocal_operator(x)
        if self.act is not None:
            z = self.act(z)
        if self.step != 1:
            z = self.step * z
        return x + z.to(x.dtype)

    def extra_repr(self):
        return (f'{self.in_channels}, operator={self.operator!r}, symbol={self.symbol!r}, '
                f'boundary={self.boundary!r}, step={self.step}')


@MODELS.register_module()
class NonlocalConv(nn.Conv2d):
    """A convolution ``K`` with a nonlocal term beside it:
    ``K x + alpha * A(K x)`` per output channel (an ``nn.Conv2d`` drop-in).

    ``A`` and its options are those of :class:`NonlocalOperator`, which this
    module holds as ``nonlocal_op`` with no bias and no activation
    (``y + alpha * A(y)`` on the convolution's output ``y``). In a ResNet
    block (``block_conv_cfg=dict(type='mmext.NonlocalConv')``) the host's
    norm and ReLU that follow give the layer
    ``act(K Y + alpha A(K Y) + b)`` of the PIDE reading.

    Why on the output of ``K`` (a choice; the paper's code is not public):
    the term of the PIDE layer, ``K Y + alpha A(Y)``, needs ``Y`` and ``K Y`` to
    have the same channels and resolution, which a drop-in (1x1 projections,
    strided convs) does not have. On the output every shape works and
    nothing but ``2 C_out`` numbers (``s`` or the Gaussian width, and
    ``alpha``) is added. With one ``s`` and ``alpha`` for all channels,
    stride 1 and periodic boundary, ``A`` commutes with every
    translation-invariant ``K``, so ``K x + alpha A(K x) = K (x + alpha A(x))``:
    the same operator as the term applied beside ``K`` on its input.

    The convolution's parameters keep ``nn.Conv2d``'s names (``weight``,
    ``bias``), so a plain ResNet checkpoint loads into it; ``alpha = 0`` at
    init makes it that plain convolution until ``alpha`` moves.

    Args:
        in_channels, out_channels, kernel_size, stride, padding, dilation,
        groups, bias: as ``nn.Conv2d``.
        **kwargs: :class:`NonlocalOperator` options (``operator``, ``order``,
            ``order_range``, ``width``, ``symbol``, ``boundary``).

    Shapes:
        as ``nn.Conv2d``: ``(N, C_in, H, W)`` to ``(N, C_out, H', W')``.

    Raises:
        ValueError: as :class:`NonlocalOperator`.
    """

    host_norm_args = ()
    component_examples = (
        ComponentExample('conv'),
        ComponentExample('conv', dict(operator='gaussian', boundary='periodic'), kernel_size=1),
    )

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
                 groups=1, bias=True, **kwargs):
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                         dilation=dilation, groups=groups, bias=bias)
        self.nonlocal_op = NonlocalOperator(out_channels, act_cfg=None, bias=False, **kwargs)

    def forward(self, x):
        return self.nonlocal_op(super().forward(x))
