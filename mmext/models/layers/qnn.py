"""QNN: k-bit weights and activations with straight-through gradients (Hubara,
Courbariaux, Soudry, El-Yaniv, Bengio, "Quantized Neural Networks: Training
Neural Networks with Low Precision Weights and Activations", JMLR 2018,
arXiv 1609.07061; the 1-bit case is BNN, arXiv 1602.02830).

Author code read: itayhubara/BinaryNet.pytorch ``models/binarized_modules.py``
(``Binarize``, ``Quantize``, ``BinarizeConv2d``; commit 80f6d46). What mmext
takes from it and where it departs is listed in :func:`quantize` and
:class:`QuantConv`, and on ``docs/designs/qnn.md``.

:func:`quantize` (and :func:`binarize`, its 1-bit case) is also the sign
function of :mod:`.xnor_net` (BWN / XNOR-Net): one definition of the sign rule
and its straight-through gradient for both low-bit convolutions.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import build_norm_layer
from mmengine.model import BaseModule
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.utils import _pair

from mmext.registry import MODELS
from mmext.utils.errors import MMExtError
from .conv_args import set_conv_args
from .protocols import ComponentExample
from .unit_norm import check_norm_input

#: The bit widths a quantised tensor may have; 32 means full precision.
QUANT_BITS = tuple(range(1, 9))
FULL_PRECISION = 32
QUANTIZERS = ('uniform', 'log')


def _uniform_levels(x, bits):
    # 2^bits levels evenly spaced on [-1, 1], both ends included (mid-rise:
    # no zero level), index i = floor((x + 1) / step + 1/2): ties round up,
    # as x = 0 goes to +1 under BNN's sign rule.
    step = 2.0 / (2**bits - 1)
    index = torch.floor((x + 1) / step + 0.5)
    return index * step - 1


def _log_levels(x, bits):
    # Sign times a power of two, AP2(x) = sign(x) 2^round(log2|x|), with
    # 2^(bits-1) magnitudes 2^0 ... 2^-(2^(bits-1) - 1): one sign bit and
    # bits-1 exponent bits. |x| below the smallest magnitude (0 included)
    # takes the smallest; x >= 0 is positive, as BNN's sign.
    smallest = -(2**(bits - 1) - 1)
    exponent = torch.floor(torch.log2(x.abs()) + 0.5).clamp(smallest, 0)
    return torch.where(x >= 0, 1.0, -1.0) * torch.exp2(exponent)


class _QuantizeSTE(torch.autograd.Function):
    """Forward: the k-bit quantiser on ``[-1, 1]``; backward: the gradient
    of Htanh, ``g * 1_{|x| <= 1}`` (the straight-through estimator of BNN /
    QNN). Only the boolean mask is kept for the backward pass."""

    @staticmethod
    def forward(ctx, x, bits, quantizer):
        ctx.save_for_backward(x.abs() <= 1)
        # In float32: a bfloat16 input (autocast) cannot hold the level
        # arithmetic of 8 bits; the levels are cast back to its dtype.
        if bits == 1:
            # Both grids' one-bit case, written as the rule itself: the
            # uniform formula would round -1e-30 up to +1.
            return torch.where(x >= 0, 1.0, -1.0).to(x.dtype)
        clipped = x.float().clamp(-1, 1)
        levels = _log_levels if quantizer == 'log' else _uniform_levels
        return levels(clipped, bits).to(x.dtype)

    @staticmethod
    def backward(ctx, grad):
        inside, = ctx.saved_tensors
        return grad * inside, None, None


def quantize(x, bits, quantizer='uniform'):
    """Quantise ``x`` to ``bits`` bits on the fixed range ``[-1, 1]`` with a
    straight-through gradient.

    * ``'uniform'``: the ``2**bits`` levels ``-1 + i * 2 / (2**bits - 1)``,
      ``i = 0 .. 2**bits - 1`` (symmetric about 0, both ends included, no
      zero level); ``x`` is clipped to ``[-1, 1]`` and rounded to the nearest
      level, a tie going to the upper one.
    * ``'log'``: QNN's LogQuant, ``sign(x) * 2**round(log2|x|)`` with the
      exponent clipped to ``[-(2**(bits-1) - 1), 0]`` (one sign bit, bits - 1
      exponent bits: again ``2**bits`` values, no zero).

    At one bit both are BNN's deterministic sign: ``+1`` if ``x >= 0`` else
    ``-1``. The backward pass is the Htanh gradient, the incoming gradient
    where ``|x| <= 1`` and 0 outside (BNN's STE, used by QNN for every bit
    width).

    Choices where the sources leave it open (the QNN paper's LinearQuant /
    LogQuant name the clip bounds minV / maxV without fixing them; the
    author code's ``Quantize`` is not used by any of its models):

    * the range is fixed at ``[-1, 1]``, BNN's clip range of the shadow
      weights and of Htanh, so the STE's pass-through range and the
      quantiser's range are the same; the author code's ``Quantize`` instead
      rescales every tensor by ``(2**k - 1) / (max - min)`` of the current
      batch, which makes a layer's output depend on the other images of the
      batch and is not used here;
    * the uniform levels are symmetric (the author code's integer grid
      ``-2**(k-1) + 1 .. 2**(k-1)`` has one more positive level) and include
      ``+-1``, so 1 bit is the sign rule rather than a special case.

    Args:
        x (Tensor): Any shape and floating dtype.
        bits (int): 1 .. 8.
        quantizer (str): ``'uniform'`` or ``'log'``. Defaults to
            ``'uniform'``.

    Returns:
        Tensor: Same shape and dtype as ``x``, at most ``2**bits`` distinct
        values, all in ``[-1, 1]``.

    Raises:
        ValueError: ``bits`` outside 1 .. 8 or an unknown ``quantizer``.
    """
    if bits not in QUANT_BITS:
        raise ValueError(f'quantize: bits must be one of {QUANT_BITS}, got {bits!r}')
    if quantizer not in QUANTIZERS:
        raise ValueError(f'quantize: quantizer must be one of {QUANTIZERS}, got {quantizer!r}')
    return _QuantizeSTE.apply(x, bits, quantizer)


def binarize(x):
    """BNN's deterministic binarisation, ``+1`` if ``x >= 0`` else ``-1``,
    with the Htanh straight-through gradient ``g * 1_{|x| <= 1}``
    (:func:`quantize` at one bit).

    Args:
        x (Tensor): Any shape.

    Returns:
        Tensor: ``+-1`` in the shape and dtype of ``x``.
    """
    return quantize(x, 1)


def conv_parameters(in_channels, out_channels, kernel_size, groups, bias):
    """``weight`` ``(out, in / groups, kh, kw)`` and ``bias`` ``(out, )`` (or
    None) of a low-bit convolution, initialised as the ResNet hosts
    initialise their convolutions (Kaiming normal, fan-out, ReLU gain; the
    bias as ``nn.Conv2d``'s). Shared with :mod:`.xnor_net`."""
    kh, kw = _pair(kernel_size)
    weight = nn.Parameter(torch.empty(out_channels, in_channels // groups, kh, kw))
    nn.init.kaiming_normal_(weight, mode='fan_out', nonlinearity='relu')
    if not bias:
        return weight, None
    bound = 1 / math.sqrt(weight[0].numel())
    return weight, nn.Parameter(torch.empty(out_channels).uniform_(-bound, bound))


def normalize_input(module, x, arg='input_norm_cfg'):
    """``module.input_norm(x)``, the norm in front of a quantised input
    (BN -> quantise -> conv), or ``x`` when there is none. Shared with
    :mod:`.xnor_net`.

    Raises:
        MMExtError: In training, when the norm is a BatchNorm that sees one
            value per channel (:func:`~.unit_norm.check_norm_input`), or when
            the module trains but its input BatchNorm is held in eval mode
            with statistics that never saw a batch: a host's
            ``norm_eval=True`` (mmdet's ResNet default) freezes it at mean 0,
            variance 1, which leaves a ReLU output non-negative, so its sign
            would be +1 everywhere.
    """
    norm = module.input_norm
    if norm is None:
        return x
    check_norm_input(norm, x, module, arg)
    if (module.training and isinstance(norm, _BatchNorm) and not norm.training
            and norm.num_batches_tracked is not None and norm.num_batches_tracked == 0):
        raise MMExtError(
            f'{type(module).__name__}: its input BatchNorm ({arg}) is in eval mode with '
            'untrained statistics (mean 0, variance 1) while the convolution trains, so the '
            "host's non-negative ReLU output would be quantised as is (every sign +1); "
            "set the backbone's norm_eval=False (mmdet's ResNet defaults to True), load "
            'trained input-norm statistics, or set input_norm_cfg=None')
    return norm(x)


def _check_bits(name, bits):
    if bits not in QUANT_BITS + (FULL_PRECISION, ):
        raise ValueError(f'QuantConv: {name} must be 1 .. 8 or {FULL_PRECISION} (full precision), '
                         f'got {bits!r}')
    return bits


@MODELS.register_module()
class QuantConv(BaseModule):
    """A drop-in for ``nn.Conv2d`` with k-bit weights and k-bit input
    activations (QNN; BNN at 1 bit / 1 bit).

    Forward, in this order:

    1. in training, the full-precision shadow weights ``weight`` are clipped
       in place to ``[-1, 1]`` (BNN clips them after every update; doing it
       before every training forward clips each update before it is used,
       and a recomputation by activation checkpointing clips nothing twice,
       the clip being idempotent). Frozen weights (``requires_grad=False``)
       and eval mode are not written to; eval clips a copy;
    2. the weights are quantised with :func:`quantize` (``weight_bits``);
    3. when ``activation_bits < 32``, the input passes ``input_norm`` (see
       below) and is quantised with :func:`quantize` (``activation_bits``);
    4. ``F.conv2d`` with the quantised tensors and the full-precision bias.

    Gradients are straight-through (:func:`quantize`): identity where the
    shadow weight / activation lies in ``[-1, 1]``, 0 outside. The quantised
    values are unscaled (``+-1`` at one bit, as BNN); the BatchNorm after the
    convolution in the host absorbs the scale.

    **The input norm.** QNN and BNN quantise activations that come out of
    BatchNorm (and Htanh), i.e. centred around the threshold 0. In an mmext
    ResNet host every block convolution reads a ReLU output, which is never
    negative: a sign would make every input ``+1`` and a symmetric k-bit
    grid would use only its upper half. So with quantised activations the
    convolution first normalises its input with ``input_norm`` (the BN of
    the paper's BN -> quantise -> conv order; BN as BinaryNet.pytorch's
    ``nn.BatchNorm2d`` when built alone, the host's ``norm_cfg`` inside an
    mmext ResNet host, ``None`` for none). It normalises an ``(N, C, H, W)``
    map, so one image per device trains. With ``activation_bits=32`` no
    input norm is built and ``input_norm_cfg`` is ignored. A host with
    ``norm_eval=True`` (mmdet's ResNet default) would hold this new BN at
    its initial statistics (the identity): training then stops with a
    one-line error (:func:`normalize_input`); the mmext configs set
    ``norm_eval=False``.

    On CPU and GPU this is simulated (fake-quant) arithmetic in floating
    point: it models the numbers a k-bit kernel would compute, not its
    speed.

    Args:
        in_channels (int): Input channels.
        out_channels (int): Output channels.
        kernel_size (int | tuple[int]): Kernel size.
        stride (int | tuple[int]): Stride. Defaults to 1.
        padding (int | tuple[int]): Zero padding (of the quantised input).
            Defaults to 0.
        dilation (int | tuple[int]): Dilation. Defaults to 1.
        groups (int): Groups. Defaults to 1.
        bias (bool): A full-precision bias, as ``nn.Conv2d``. Defaults to
            True.
        weight_bits (int): 1 .. 8, or 32 to keep full-precision weights.
            Defaults to 1 (the paper's AlexNet 1-bit W / 2-bit A setting).
        activation_bits (int): 1 .. 8, or 32 to keep full-precision inputs.
            Defaults to 2.
        quantizer (str): ``'uniform'`` or ``'log'`` (LogQuant), for weights
            and activations (see :func:`quantize`). Defaults to
            ``'uniform'``.
        input_norm_cfg (dict | None): Norm of the input before its
            quantisation (only with ``activation_bits < 32``). Defaults to
            ``dict(type='BN')``.
        init_cfg (dict, optional): Initialization config. Defaults to None.

    Shape:
        ``(N, in_channels, H, W)`` to ``(N, out_channels, H_out, W_out)`` as
        ``nn.Conv2d``.

    Raises:
        ValueError: Bit widths outside 1 .. 8 / 32, an unknown ``quantizer``,
            channels not divisible by ``groups``.
        MMExtError: In training, from a BatchNorm ``input_norm`` that sees
            one value per channel (batch 1 on a 1x1 map), or that a host's
            ``norm_eval=True`` holds at its untrained statistics (see
            :func:`normalize_input`).
    """

    host_norm_args = ('input_norm_cfg', )
    component_examples = (
        ComponentExample('conv', dict(weight_bits=1, activation_bits=1)),
        ComponentExample('conv', dict(weight_bits=2, activation_bits=4, quantizer='log')),
        ComponentExample('conv', dict(weight_bits=4, activation_bits=32, groups=4)),
        ComponentExample('conv', dict(weight_bits=8, activation_bits=8), kernel_size=1),
    )

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
                 groups=1, bias=True, weight_bits=1, activation_bits=2, quantizer='uniform',
                 input_norm_cfg=dict(type='BN'), init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        set_conv_args(self, in_channels, out_channels, kernel_size, stride, padding, dilation,
                      groups)
        self.weight_bits = _check_bits('weight_bits', weight_bits)
        self.activation_bits = _check_bits('activation_bits', activation_bits)
        if quantizer not in QUANTIZERS:
            raise ValueError(f'QuantConv: quantizer must be one of {QUANTIZERS}, '
                             f'got {quantizer!r}')
        self.quantizer = quantizer
        # nn.Conv2d's parameter names and shapes: a full-precision checkpoint
        # (e.g. the ImageNet ResNet) loads as the shadow weights.
        self.weight, self.bias = conv_parameters(in_channels, out_channels, kernel_size, groups,
                                                 bias)
        self.input_norm = None
        if self.activation_bits < FULL_PRECISION and input_norm_cfg is not None:
            self.input_norm = build_norm_layer(input_norm_cfg, in_channels)[1]

    def shadow_weight(self):
        """The full-precision weights clipped to ``[-1, 1]``: in training the
        parameter itself, clipped in place; otherwise a clipped copy."""
        w = self.weight
        if self.weight_bits == FULL_PRECISION:
            return w
        if self.training and w.requires_grad:
            with torch.no_grad():
                w.clamp_(-1, 1)
            return w
        # Eval / frozen: the clipped value exactly, with the identity gradient.
        return w.detach().clamp(-1, 1) + (w - w.detach())

    def quantized_weight(self):
        """The weights the convolution uses: ``(out, in / groups, kh, kw)``,
        at most ``2**weight_bits`` distinct values."""
        w = self.shadow_weight()
        if self.weight_bits == FULL_PRECISION:
            return w
        return quantize(w, self.weight_bits, self.quantizer)

    def quantized_input(self, x):
        """``x`` normalised by ``input_norm`` and quantised to
        ``activation_bits`` (unchanged at 32 bits)."""
        if self.activation_bits == FULL_PRECISION:
            return x
        return quantize(normalize_input(self, x), self.activation_bits, self.quantizer)

    def forward(self, x):
        return F.conv2d(self.quantized_input(x), self.quantized_weight(), self.bias, self.stride,
                        self.padding, self.dilation, self.groups)

    def extra_repr(self):
        return (f'{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, '
                f'stride={self.stride}, padding={self.padding}, weight_bits={self.weight_bits}, '
                f'activation_bits={self.activation_bits}, quantizer={self.quantizer!r}')
