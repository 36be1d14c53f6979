"""ODConv: omni-dimensional dynamic convolution (Li et al., ICLR 2022)."""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseModule

from mmext.models.official_layouts import OfficialLayout, rename_resnet_keys
from mmext.registry import MODELS
from .conv_args import set_conv_args
from .kernel_bank import expand_static_tensors
from .protocols import AttentionMap, AttentionMaps, ComponentExample
from .unit_norm import build_unit_norm, check_norm_input


class ODConvAttention(nn.Module):
    """The four attentions of ODConv, computed from one squeezed descriptor.

    GAP → 1x1 ``fc`` (no bias) → norm ``bn`` → ReLU, then one 1x1 head per
    dimension of the kernel space: ``channel_fc`` (input channels, sigmoid),
    ``filter_fc`` (output filters, sigmoid), ``spatial_fc`` (k×k positions,
    sigmoid) and ``kernel_fc`` (the ``kernel_num`` candidate kernels,
    softmax). Every head divides its logits by ``temperature`` first.

    The sub-module names are those of the official implementation so its
    checkpoints load 1:1 (``bn`` keeps its name whatever ``norm_cfg`` builds;
    ``None`` makes it the identity).

    Args:
        in_channels (int): Input channels of the convolution.
        out_channels (int): Output channels of the convolution.
        kernel_size (int): Spatial size of the (square) kernel.
        groups (int): Groups of the convolution.
        reduction (float): Hidden width as a fraction of ``in_channels``.
        kernel_num (int): Number of candidate kernels.
        min_channels (int): Lower bound of the hidden width.
        norm_cfg (dict | None): Norm of the pooled descriptor.

    Raises:
        MMExtError: In training, from a BatchNorm at one sample per device
            (see :func:`~mmext.models.layers.unit_norm.check_norm_input`).
    """

    def __init__(self, in_channels, out_channels, kernel_size, groups=1, reduction=0.0625,
                 kernel_num=4, min_channels=16, norm_cfg=dict(type='BN')):
        super().__init__()
        hidden = max(int(in_channels * reduction), min_channels)
        self.kernel_size = kernel_size
        self.kernel_num = kernel_num
        self.temperature = 1.0

        self.fc = nn.Conv2d(in_channels, hidden, 1, bias=False)
        self.bn = build_unit_norm(norm_cfg, hidden, 'ODConv', 'attn_norm_cfg')
        self.relu = nn.ReLU(inplace=True)
        self.channel_fc = nn.Conv2d(hidden, in_channels, 1)
        # A depthwise kernel has one input channel per filter, so the filter
        # attention would duplicate the channel attention.
        self.is_depthwise = in_channels == groups and in_channels == out_channels
        self.filter_fc = None if self.is_depthwise else nn.Conv2d(hidden, out_channels, 1)
        self.spatial_fc = (None if kernel_size == 1 else
                           nn.Conv2d(hidden, kernel_size * kernel_size, 1))
        self.kernel_fc = None if kernel_num == 1 else nn.Conv2d(hidden, kernel_num, 1)
        self._init_weights()

    def _init_weights(self):
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode='fan_out', nonlinearity='relu')
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.modules.batchnorm._BatchNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x):
        """Return ``(channel, filter, spatial, kernel)`` attentions of shapes
        (N, C_in, 1, 1), (N, C_out, 1, 1), (N, k, k) and (N, kernel_num);
        a skipped head returns None."""
        n = x.size(0)
        t = self.temperature
        z = self.fc(F.adaptive_avg_pool2d(x, 1))
        check_norm_input(self.bn, z, self, 'attn_norm_cfg', unit='ODConv')
        z = self.relu(self.bn(z))
        channel = torch.sigmoid(self.channel_fc(z) / t)
        filt = None if self.filter_fc is None else torch.sigmoid(self.filter_fc(z) / t)
        spatial = None
        if self.spatial_fc is not None:
            spatial = torch.sigmoid(self.spatial_fc(z) / t).view(
                n, self.kernel_size, self.kernel_size)
        kernel = None
        if self.kernel_fc is not None:
            kernel = torch.softmax(self.kernel_fc(z).view(n, -1) / t, dim=1)
        return channel, filt, spatial, kernel


def convert_odconv_resnet(state_dict):
    """OD-ResNet (Li et al., ICLR 2022; OSVAI/ODConv ``od_resnet.py``) to
    ``mmext.ResNet`` with ``block_conv_cfg=dict(type='mmext.ODConv', ...)``:
    every block conv ``layer{s}.{b}.conv{1,2,3}`` holds ``weight``
    ``(kernel_num, out, in/groups, k, k)`` and ``attention.{fc, bn,
    channel_fc, filter_fc, spatial_fc, kernel_fc}``, the names of
    :class:`ODConv`; only the classifier ``fc.*`` is dropped.

    Args:
        state_dict (dict[str, Tensor]): Official weights (``module.``
            already removed).

    Returns:
        dict[str, Tensor]: mmext keys.
    """
    return rename_resnet_keys(state_dict)


@MODELS.register_module()
class ODConv(BaseModule):
    """Omni-dimensional dynamic convolution.

    A drop-in for ``nn.Conv2d`` that learns ``kernel_num`` kernels and, per
    sample, attends over all four dimensions of the kernel space: the input
    channels (applied to the input), the output filters (applied to the
    output), the k×k positions and the candidate kernels (both folded into one
    aggregated kernel per sample). All samples run in one grouped convolution.
    A 1x1 ODConv with a single kernel has no per-sample kernel at all and runs
    as a plain convolution between the two attentions.

    The layout (``weight`` of shape ``(kernel_num, out, in/groups, k, k)`` and
    ``attention.{fc, bn, channel_fc, filter_fc, spatial_fc, kernel_fc}``)
    matches the official ODConv checkpoints.

    The attention normalises a globally pooled ``(N, hidden, 1, 1)``
    descriptor, which gives a BatchNorm one value per channel at one image per
    device. The mmext ResNet hosts pass their ``norm_cfg`` (SyncBN in mmseg
    configs) to ``attn_norm_cfg``; SyncBN across several devices then pools
    the batch. Otherwise a training forward at batch 1 raises an
    :class:`~mmext.utils.errors.MMExtError` naming the fixes (>= 2 images
    per device, SyncBN, ``attn_norm_cfg`` GN or None, ``norm_eval``).

    Args:
        in_channels (int): Input channels.
        out_channels (int): Output channels.
        kernel_size (int | tuple[int]): Square kernel size.
        stride (int | tuple[int]): Stride. Defaults to 1.
        padding (int | tuple[int]): Zero padding. Defaults to 0.
        dilation (int | tuple[int]): Dilation. Defaults to 1.
        groups (int): Groups. Defaults to 1.
        bias (bool): Add a learned, static per-filter bias after the filter
            attention. The official ODConv has none (it always precedes a
            BN), hence the default False. Defaults to False.
        reduction (float): Attention hidden width as a fraction of
            ``in_channels``. Defaults to 0.0625.
        kernel_num (int): Number of candidate kernels (ODConv "1x" / "4x").
            Defaults to 4.
        min_channels (int): Lower bound of the attention hidden width.
            Defaults to 16.
        attn_norm_cfg (dict | None): Norm of the attention's pooled
            descriptor (``attention.bn``): BN as the official code, the host's
            norm inside an mmext ResNet host, e.g. ``dict(type='GN',
            num_groups=1)``, or None for none. Defaults to ``dict(type='BN')``.
        init_cfg (dict, optional): Initialization config. Defaults to None.

    Raises:
        MMExtError: In training, when ``attention.bn`` is a BatchNorm that
            sees one value per channel (one image on this device).
    """

    # The argument a host fills with its own norm_cfg (unit_norm.with_host_norm).
    host_norm_args = ('attn_norm_cfg',)
    # DynamicConvTemperatureHook anneals ``temperature`` (mmext.models.layers.protocols).
    annealed_temperature = True
    # The kernel-position and kernel-selection attentions weight the kernel,
    # not the image: they are not maps over the input.
    attention_maps = AttentionMaps('ODConv', 'input-channel and filter attention', (
        AttentionMap('attention', 'channel', transform='image_attentions'), ))
    component_examples = (
        ComponentExample('conv', dict(kernel_num=4), one_image_raises=True),
        ComponentExample('conv', dict(kernel_num=1), one_image_raises=True),
        ComponentExample('conv', dict(kernel_num=4), kernel_size=1, one_image_raises=True),
        # The static pointwise fast path.
        ComponentExample('conv', dict(kernel_num=1), kernel_size=1, one_image_raises=True),
        ComponentExample('conv', dict(kernel_num=4, groups=4), one_image_raises=True),
        ComponentExample('conv', dict(kernel_num=4, groups=16), out_channels=16,
                         one_image_raises=True),
    )
    # Released as OD-ResNets: `python -m mmext convert ODConv-ResNet` (1x or 4x).
    official_layouts = (OfficialLayout('ODConv-ResNet', convert_odconv_resnet,
                                       config='odconv/retinanet_r50-odconv1x_fpn_1x_coco.py'), )

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
                 groups=1, bias=False, reduction=0.0625, kernel_num=4, min_channels=16,
                 attn_norm_cfg=dict(type='BN'), init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        kernel_size = _square(kernel_size, 'kernel_size')
        set_conv_args(self, in_channels, out_channels, kernel_size, stride, padding, dilation,
                      groups)
        self.kernel_num = kernel_num
        self.attention = ODConvAttention(in_channels, out_channels, kernel_size, groups=groups,
                                         reduction=reduction, kernel_num=kernel_num,
                                         min_channels=min_channels, norm_cfg=attn_norm_cfg)
        self.weight = nn.Parameter(
            torch.empty(kernel_num, out_channels, in_channels // groups, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        self._init_weights()

    def _init_weights(self):
        for w in self.weight:
            nn.init.kaiming_normal_(w, mode='fan_out', nonlinearity='relu')
        if self.bias is not None:
            bound = 1 / math.sqrt(self.weight[0, 0].numel())
            nn.init.uniform_(self.bias, -bound, bound)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        expand_static_tensors(state_dict, prefix, weight=self.weight)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @property
    def temperature(self):
        """Softmax / sigmoid temperature of the attention (1 at inference)."""
        return self.attention.temperature

    @temperature.setter
    def temperature(self, value):
        self.attention.temperature = float(value)

    def update_temperature(self, temperature):
        """Same as setting :attr:`temperature` (the official method name)."""
        self.temperature = temperature

    @staticmethod
    def image_attentions(heads):
        """The attentions that scale the input channels and the output
        filters, ``[('input channel', (N, C_in, 1, 1)), ('filter', (N, C_out,
        1, 1))]`` (no filter entry for a depth-wise kernel), from the output
        of :class:`ODConvAttention` (the ``attention_maps`` transform)."""
        channel, filt = heads[:2]
        return [('input channel', channel)] + ([] if filt is None else [('filter', filt)])

    def extra_flops(self, inputs, output):
        """FLOPs the trace misses (``mmext.analysis.flops``): the spatial
        attention scales each per-sample kernel (N, out, in/groups, k, k)
        elementwise, one multiply per element; without it (1x1 kernels) the
        mixing is the traced, counted matrix product."""
        if self.attention.spatial_fc is None:
            return 0
        return inputs[0].shape[0] * self.weight[0].numel()

    @property
    def is_static_pointwise(self):
        return self.kernel_size == 1 and self.kernel_num == 1

    def aggregate_weight(self, spatial, kernel):
        """Per-sample kernels (N, out, in/groups, k, k) from the spatial
        (N, k, k) and kernel (N, kernel_num) attentions (None = skipped)."""
        if kernel is None:
            weight = self.weight.sum(0, keepdim=True)
        else:
            # The spatial attention does not depend on the kernel index, so
            # mixing the candidates first avoids an (N, K, out, in, k, k) tensor.
            weight = torch.mm(kernel, self.weight.flatten(1)).view(-1, *self.weight.shape[1:])
        if spatial is not None:
            weight = weight * spatial[:, None, None]
        return weight

    def forward(self, x):
        channel, filt, spatial, kernel = self.attention(x)
        n, _, h, w = x.shape
        # Scaling the input rather than the kernel is equivalent and cheaper.
        x = x * channel
        if self.is_static_pointwise and spatial is None and kernel is None:
            out = F.conv2d(x, self.weight[0], None, self.stride, self.padding, self.dilation,
                           self.groups)
        else:
            weight = self.aggregate_weight(spatial, kernel)
            if weight.size(0) != n:  # no per-sample factor, share one kernel
                weight = weight.expand(n, *weight.shape[1:])
            out = F.conv2d(x.reshape(1, -1, h, w), weight.reshape(-1, *weight.shape[2:]), None,
                           self.stride, self.padding, self.dilation, self.groups * n)
            out = out.view(n, self.out_channels, *out.shape[-2:])
        if filt is not None:
            out = out * filt
        if self.bias is not None:
            out = out + self.bias.view(1, -1, 1, 1)
        return out

    def extra_repr(self):
        return (f'{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, '
                f'stride={self.stride}, padding={self.padding}, dilation={self.dilation}, '
                f'groups={self.groups}, kernel_num={self.kernel_num}, '
                f'bias={self.bias is not None}')


def _square(kernel_size, name):
    if isinstance(kernel_size, (tuple, list)):
        if len(set(kernel_size)) != 1:
            raise ValueError(f'{name} must be square, got {kernel_size}')
        kernel_size = kernel_size[0]
    return int(kernel_size)
