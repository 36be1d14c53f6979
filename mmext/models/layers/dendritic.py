"""Dendritic units: the dendrite-activated connection (DAC) convolution
(Metta, Fantozzi, Papini, Amato, ..., Parton, Morandin, arXiv 2301.00924;
CLADAG 2023 proceedings "Improving Performance in Neural Networks by
Dendrite-Activated Connection").

The official code (CuriosAI/dac-dev, Keras) could not be read here; this
file implements the definition the paper's abstract gives (the nonlinearity
moves from the unit's output onto each incoming connection, each connection
with its own bias) and states every choice the definition leaves open in
:class:`DendriticConv`'s docstring and ``docs/designs/dendritic.md``.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import build_activation_layer
from mmengine.model import BaseModule
from torch.nn.modules.utils import _pair
from torch.utils import checkpoint as cp

from mmext.registry import MODELS
from .conv_args import set_conv_args
from .protocols import ComponentExample

BIAS_GRANULARITIES = ('pair', 'input')


@MODELS.register_module()
class DendriticConv(BaseModule):
    """Convolution with a ReLU on every incoming connection (DAC).

    A drop-in for ``nn.Conv2d``. Output filter ``j`` at position ``p``:

    ``y_j(p) = sum_i sum_t w_{j,i,t} * ReLU(x_i(p + t) + b_{j,i}) (+ c_j)``

    over the input channels ``i`` of ``j``'s group and the kernel taps
    ``t``, optionally followed by an activation ``act_cfg``. The dendritic
    bias ``b`` has the granularity ``bias_granularity``:

    * ``'pair'`` (default): one bias per (output filter, input channel)
      connection, shared by the kernel taps and the positions, shape
      ``(out_channels, in_channels // groups)``: ``C_in * C_out / groups``
      parameters more than the convolution. The catalog's "most literal
      reading" of the paper; the Keras code that would settle it was not
      available (UNVERIFIED).
    * ``'input'``: one bias per input channel, shape ``(in_channels, )``,
      the same for every filter: exactly ``conv(ReLU(x + b))`` (the
      multi-bias-free special case; ``C_in`` parameters more).

    Choices where the paper is silent (docs/designs/dendritic.md):
    the padded border contributes 0 (padding is applied after the
    connection's nonlinearity, so a connection to a position outside the
    image carries no signal; with ``'input'`` this is what
    ``conv(ReLU(x + b))`` with zero padding gives); the dendritic biases
    start at 0, so on a non-negative input (every block conv of a ResNet
    reads a ReLU output) a fresh layer computes the plain convolution and
    ImageNet weights keep their function; the weight is initialised as
    mmdet's ResNet initialises its convs (Kaiming normal, fan-out).

    Cost. No exact cheaper form exists for ``'pair'``: ``ReLU(x_i + b_ji)``
    differs per output filter, so every connection is evaluated. The layer
    forms the connection inputs ``ReLU(x_i + b_ji)`` for a chunk of output
    filters, ``(N, chunk * C_in / groups, H, W)``, and convolves them with
    ``groups = chunk`` (each group: ``C_in / groups`` channels to one
    filter): the multiply-adds are those of the plain convolution, plus one
    bias add (and one ReLU) per connection and input position,
    ``N * C_out * C_in / groups * H * W``, declared in :meth:`extra_flops`.
    The chunk is as large as ``max_expanded_elements`` allows (peak extra
    memory ``max_expanded_elements`` values); the full ``(N, C_out, C_in,
    H, W)`` tensor exists only if it fits. In training with ``recompute``
    each chunk's connection inputs are not stored for the backward pass but
    formed again there (activation memory as the plain convolution's, one
    more forward of the chunk in time). ``'input'`` costs one bias add per
    input element.

    Args:
        in_channels (int): Input channels.
        out_channels (int): Output channels.
        kernel_size (int | tuple[int]): Kernel size.
        stride (int | tuple[int]): Stride. Defaults to 1.
        padding (int | tuple[int]): Zero padding (of the connection
            inputs, see above). Defaults to 0.
        dilation (int | tuple[int]): Dilation. Defaults to 1.
        groups (int): Groups. Defaults to 1.
        bias (bool): The output bias ``c_j`` (``nn.Conv2d``'s ``bias``).
            Defaults to True.
        bias_granularity (str): ``'pair'`` or ``'input'``, see above.
            Defaults to ``'pair'``.
        act_cfg (dict, optional): The unit's optional output activation
            (mmcv config). Defaults to None (none: in a ResNet block a norm
            and ReLU follow).
        max_expanded_elements (int): Largest number of connection-input
            values held at once (chunking over output filters; at least one
            filter per chunk). Defaults to ``2**20`` (4 MiB in fp32): chunks
            of cache size ran fastest on CPU (docs/designs/dendritic.md); on a
            GPU a larger value means fewer, larger kernels.
        recompute (bool): Form the connection inputs again in the backward
            pass instead of storing them (``'pair'``). Defaults to True.
        init_cfg (dict, optional): Initialization config. Defaults to None.

    Shapes:
        As ``nn.Conv2d``: ``(N, in_channels, H, W) -> (N, out_channels,
        H_out, W_out)``.

    Raises:
        ValueError: Unknown ``bias_granularity``; channels not divisible
            by ``groups``.
    """

    host_norm_args = ()
    component_examples = (
        ComponentExample('conv'),
        ComponentExample('conv', dict(bias_granularity='input'), kernel_size=1),
        ComponentExample('conv', dict(groups=4, act_cfg=dict(type='ReLU'), bias=False)),
    )

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
                 groups=1, bias=True, bias_granularity='pair', act_cfg=None,
                 max_expanded_elements=2**20, recompute=True, init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        if bias_granularity not in BIAS_GRANULARITIES:
            raise ValueError(f'DendriticConv: bias_granularity={bias_granularity!r}; expected '
                             f"one of {', '.join(map(repr, BIAS_GRANULARITIES))}")
        set_conv_args(self, in_channels, out_channels, _pair(kernel_size), _pair(stride),
                      _pair(padding), _pair(dilation), groups)
        self.bias_granularity = bias_granularity
        self.max_expanded_elements = int(max_expanded_elements)
        self.recompute = recompute
        self.weight = nn.Parameter(
            torch.empty(out_channels, in_channels // groups, *self.kernel_size))
        shape = ((out_channels, in_channels // groups) if bias_granularity == 'pair'
                 else (in_channels, ))
        self.dendritic_bias = nn.Parameter(torch.zeros(shape))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.activate = build_activation_layer(act_cfg) if act_cfg is not None else None
        nn.init.kaiming_normal_(self.weight, mode='fan_out', nonlinearity='relu')

    def _filters(self, x, first, last):
        """Filters ``first:last`` (one group) on the connection inputs they
        read: ``(N, last - first, H_out, W_out)``."""
        per_group = self.in_channels // self.groups
        g = first // (self.out_channels // self.groups)
        x = x[:, g * per_group:(g + 1) * per_group]
        b = self.dendritic_bias[first:last]
        # (N, 1, C_in/g, H, W) + (1, chunk, C_in/g, 1, 1): the connection
        # inputs, filter-major, as the grouped conv reads them.
        # In place: the sum is a fresh tensor that the add's backward does
        # not need.
        z = (x.unsqueeze(1) + b[None, :, :, None, None]).relu_().flatten(1, 2)
        return F.conv2d(z, self.weight[first:last], None, self.stride, self.padding,
                        self.dilation, last - first)

    def _forward_pairs(self, x):
        n, _, h, w = x.shape
        per_group_out = self.out_channels // self.groups
        per_filter = n * (self.in_channels // self.groups) * h * w
        chunk = max(1, min(per_group_out, self.max_expanded_elements // max(per_filter, 1)))
        store = not (self.recompute and torch.is_grad_enabled())
        outs = []
        for start in range(0, self.out_channels, per_group_out):
            for first in range(start, start + per_group_out, chunk):
                last = min(first + chunk, start + per_group_out)
                if store:
                    outs.append(self._filters(x, first, last))
                else:
                    outs.append(cp.checkpoint(self._filters, x, first, last,
                                              use_reentrant=False))
        return outs[0] if len(outs) == 1 else torch.cat(outs, 1)

    def forward(self, x):
        if self.bias_granularity == 'input':
            out = F.conv2d(F.relu(x + self.dendritic_bias.view(1, -1, 1, 1)), self.weight, None,
                           self.stride, self.padding, self.dilation, self.groups)
        else:
            out = self._forward_pairs(x)
        if self.bias is not None:
            out = out + self.bias.view(1, -1, 1, 1)
        if self.activate is not None:
            out = self.activate(out)
        return out

    def extra_flops(self, inputs, output):
        """FLOPs the trace does not count (``mmext.analysis.flops``): one
        bias add per evaluated connection input ``x_i + b`` (the ReLU on it
        is an activation, uncounted by the convention): ``N * C_out *
        C_in / groups * H * W`` for ``'pair'``, ``N * C_in * H * W`` for
        ``'input'`` (``H x W``: the input size). The convolution itself is
        traced and counted (the plain convolution's multiply-adds)."""
        x = inputs[0]
        if self.bias_granularity == 'input':
            return x.numel()
        return x.numel() * self.out_channels // self.groups

    def extra_repr(self):
        return (f'{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, '
                f'stride={self.stride}, padding={self.padding}, dilation={self.dilation}, '
                f'groups={self.groups}, bias={self.bias is not None}, '
                f'bias_granularity={self.bias_granularity!r}')
