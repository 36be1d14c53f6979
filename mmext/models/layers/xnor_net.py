"""BWN and XNOR-Net: binary-weight and XNOR convolutions (Rastegari, Ordonez,
Redmon, Farhadi, "XNOR-Net: ImageNet Classification Using Binary Convolutional
Neural Networks", ECCV 2016, arXiv 1603.05279).

Official code read: allenai/XNOR-Net (Torch7: ``util.lua``, ``train.lua``,
``newLayers/BinActiveZ.lua``, ``models/alexnetxnor.lua``) and its PyTorch
port jiecaoyu/XNOR-Net-PyTorch (``ImageNet/networks/util.py``, commit
26cca8c). The official code binarises the weights of a model in place around
each step (``BinOp``); here one module does the same for its own weight, so
that it drops into any ``nn.Conv2d`` slot. Every departure is listed in
:class:`BinaryConv` and on ``docs/designs/xnor_net.md``.
"""
import torch
import torch.nn.functional as F
from mmcv.cnn import build_norm_layer
from mmengine.model import BaseModule
from torch.nn.modules.utils import _pair

from mmext.registry import MODELS
from .conv_args import set_conv_args
from .protocols import ComponentExample
from .qnn import FULL_PRECISION, binarize, conv_parameters, normalize_input

MODES = ('bwn', 'xnor')


def centre_and_clamp(weight):
    """The official real-weight update before binarisation: subtract from
    every filter its mean over the input channels (per output filter and
    kernel position, ``meancenterConvParams``), then clamp to ``[-1, 1]``
    (``clampConvParams``).

    A kernel with one input channel per filter (depth-wise) is only clamped:
    centring a single channel would zero it.

    Args:
        weight (Tensor): ``(out, in / groups, kh, kw)``.

    Returns:
        Tensor: Same shape.
    """
    if weight.size(1) > 1:
        weight = weight - weight.mean(1, keepdim=True)
    return weight.clamp(-1, 1)


@MODELS.register_module()
class BinaryConv(BaseModule):
    """A drop-in for ``nn.Conv2d`` with binary weights (BWN) or binary
    weights and inputs (XNOR-Net).

    **Weights (both modes).** The real (shadow) weights are mean-centred
    across the input channels and clamped to ``[-1, 1]``
    (:func:`centre_and_clamp`), then binarised to ``W_b = sign(W) * alpha``
    with ``alpha = mean |W|`` per output filter (over ``in / groups * kh *
    kw``), ``sign(0) = +1``. The official loop writes the centred and
    clamped values into the stored weights before every step and lets the
    optimizer update those; so does this module, in its training forward,
    once per change of the weight: it writes into ``weight`` when the
    parameter's version counter shows that it changed since the last write
    (an optimizer step, a checkpoint load), so a second forward before the
    next update (activation checkpointing's recomputation, weight sharing)
    binarises the same values instead of centring twice. In eval mode, or
    with ``requires_grad=False`` (``frozen_stages``), nothing is written:
    the projection applies to a copy, giving the same output. Code that
    writes ``weight.data`` directly bypasses the version counter; such
    weights are projected at the next optimizer step's forward.

    **Weight gradient.** Autograd differentiates ``sign(W) * alpha(W)``
    with the straight-through sign of :func:`~.qnn.binarize`:
    ``dL/dW = alpha * g * 1_{|W| <= 1} + sign(W) * mean(sign(W) * g)``
    (mean per output filter, ``g = dL/dW_b``). These are the two terms of
    the official ``updateBinaryGradWeight``. The official code further
    multiplies by ``(1 - 1 / C_in) * n`` (``n = in * kh * kw``; a diagonal
    stand-in for the centring and a learning-rate scale for its SGD
    settings; the port adds ``1e9``); mmext leaves those constant factors to
    the optimizer's learning rate. The centring and clamping themselves pass
    no gradient, as in the official code (they act on the stored values).

    **Inputs (xnor mode).** The paper's block is BN -> BinActive -> conv:
    the input passes ``input_norm`` (BatchNorm without affine parameters,
    eps 1e-4, as the official ``alexnetxnor.lua``) and then the sign with
    BinActive's straight-through gradient ``g * 1_{|x| <= 1}`` (the official
    BinActive passes ``|x| < 1``; the two differ only at ``|x| = 1``). Inside
    an mmext ResNet host (``block_conv_cfg``) the convolution reads the
    previous BN's output after its ReLU, which is never negative: without
    ``input_norm`` every input bit would be ``+1``. The input norm
    re-centres it, so the sign thresholds each channel at its batch mean;
    inside a host it takes the host's norm type (SyncBN in mmseg configs)
    with XNOR's non-affine, eps 1e-4 settings (:meth:`adapt_host_norm`).
    ``input_norm_cfg=None`` binarises the raw input. A host with
    ``norm_eval=True`` (mmdet's ResNet default) would hold the new input BN
    at its initial statistics (the identity, every input bit +1): training
    then stops with a one-line error; the mmext configs set
    ``norm_eval=False``. Padding adds zeros to
    the binarised input, as ``nn.Conv2d`` after BinActive in the official
    port.

    **Input scale K (xnor mode, ``input_scale=True``).** The paper's
    ``K = A * k``: ``A`` the mean of ``|I|`` over the input channels, ``k``
    a ``kh x kw`` box filter ``1 / (kh * kw)`` applied with the convolution's
    stride, padding and dilation; the output is ``conv(sign(I), W_b) * K``
    plus the bias. Gradients flow through ``K``. Off by default: the
    released models (official Torch code and the port) do not use it.

    On CPU and GPU this is simulated binary arithmetic in floating point
    (fake quantisation): it models the values an XNOR / popcount kernel
    would compute, not its speed.

    Args:
        in_channels (int): Input channels.
        out_channels (int): Output channels.
        kernel_size (int | tuple[int]): Kernel size.
        stride (int | tuple[int]): Stride. Defaults to 1.
        padding (int | tuple[int]): Zero padding. Defaults to 0.
        dilation (int | tuple[int]): Dilation. Defaults to 1.
        groups (int): Groups. Defaults to 1.
        bias (bool): A full-precision bias, as ``nn.Conv2d``. Defaults to
            True.
        mode (str): ``'bwn'`` (binary weights, full-precision inputs) or
            ``'xnor'`` (binary weights and inputs). Defaults to ``'xnor'``.
        input_scale (bool): Multiply by the paper's K (xnor mode only).
            Defaults to False.
        input_norm_cfg (dict | None): The norm before the input sign (xnor
            mode only; ignored in bwn mode). Defaults to ``dict(type='BN',
            affine=False, eps=1e-4)``.
        init_cfg (dict, optional): Initialization config. Defaults to None.

    Attributes:
        weight_bits (int): 1.
        activation_bits (int): 1 in xnor mode, 32 (full precision) in bwn
            mode.

    Shape:
        ``(N, in_channels, H, W)`` to ``(N, out_channels, H_out, W_out)`` as
        ``nn.Conv2d``.

    Raises:
        ValueError: An unknown ``mode``, ``input_scale`` in bwn mode,
            channels not divisible by ``groups``.
        MMExtError: In training, from a BatchNorm ``input_norm`` that sees
            one value per channel (batch 1 on a 1x1 map), or that a host's
            ``norm_eval=True`` holds at its untrained statistics
            (:func:`~.qnn.normalize_input`).
    """

    host_norm_args = ('input_norm_cfg', )
    component_examples = (
        ComponentExample('conv', dict(mode='xnor')),
        ComponentExample('conv', dict(mode='bwn')),
        ComponentExample('conv', dict(mode='xnor', input_scale=True, groups=4)),
        ComponentExample('conv', dict(mode='xnor'), kernel_size=1),
    )

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
                 groups=1, bias=True, mode='xnor', input_scale=False,
                 input_norm_cfg=dict(type='BN', affine=False, eps=1e-4), init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        if mode not in MODES:
            raise ValueError(f'BinaryConv: mode must be one of {MODES}, got {mode!r}')
        if input_scale and mode != 'xnor':
            raise ValueError("BinaryConv: input_scale (the paper's K) needs mode='xnor'; "
                             'bwn keeps full-precision inputs')
        set_conv_args(self, in_channels, out_channels, kernel_size, stride, padding, dilation,
                      groups)
        self.mode = mode
        self.input_scale = input_scale
        self.weight_bits = 1
        self.activation_bits = 1 if mode == 'xnor' else FULL_PRECISION
        self.weight, self.bias = conv_parameters(in_channels, out_channels, kernel_size, groups,
                                                 bias)
        self.input_norm = None
        if mode == 'xnor' and input_norm_cfg is not None:
            self.input_norm = build_norm_layer(input_norm_cfg, in_channels)[1]
        # (storage, version) of ``weight`` when this module last wrote the
        # centred and clamped values into it.
        self._projected = None

    @classmethod
    def adapt_host_norm(cls, arg, norm_cfg):
        """The host's norm type with XNOR-Net's input-BN settings (no affine
        parameters, eps 1e-4): what :func:`~.unit_norm.with_host_norm` puts
        in ``input_norm_cfg`` inside an mmext ResNet host."""
        return dict(norm_cfg, affine=False, eps=1e-4)

    def real_weight(self):
        """The centred and clamped real weights ``(out, in / groups, kh, kw)``
        (see the class docstring for when they are written into
        ``weight``)."""
        w = self.weight
        if self._projected == (w.data_ptr(), w._version):
            return w
        if self.training and w.requires_grad:
            with torch.no_grad():
                w.copy_(centre_and_clamp(w))
            self._projected = (w.data_ptr(), w._version)
            return w
        # The projected values exactly, with the identity gradient.
        return centre_and_clamp(w.detach()) + (w - w.detach())

    def binary_weight(self):
        """``sign(W) * alpha``, ``alpha = mean |W|`` per output filter, from
        :meth:`real_weight`: ``(out, in / groups, kh, kw)``."""
        w = self.real_weight()
        alpha = w.abs().mean(dim=(1, 2, 3), keepdim=True)
        return binarize(w) * alpha

    def _input_scale(self, x):
        # The paper's K: channel mean of |I|, box-filtered over each window.
        kh, kw = _pair(self.kernel_size)
        box = x.new_full((1, 1, kh, kw), 1.0 / (kh * kw))
        return F.conv2d(x.abs().mean(1, keepdim=True), box, None, self.stride, self.padding,
                        self.dilation)

    def forward(self, x):
        weight = self.binary_weight()
        if self.mode == 'bwn':
            return F.conv2d(x, weight, self.bias, self.stride, self.padding, self.dilation,
                            self.groups)
        x = normalize_input(self, x)
        out = F.conv2d(binarize(x), weight, None, self.stride, self.padding, self.dilation,
                       self.groups)
        if self.input_scale:
            out = out * self._input_scale(x)
        if self.bias is not None:
            out = out + self.bias.view(1, -1, 1, 1)
        return out

    def extra_repr(self):
        return (f'{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, '
                f'stride={self.stride}, padding={self.padding}, mode={self.mode!r}, '
                f'input_scale={self.input_scale}')
