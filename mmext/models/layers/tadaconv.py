"""TAdaConv: temporally adaptive convolution (Huang et al., "TAda! Temporally-Adaptive
Convolutions for Video Understanding", ICLR 2022)."""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseModule
from torch.nn.modules.utils import _pair

from mmext.registry import MODELS
from .conv_args import set_conv_args
from .protocols import ComponentExample
from .unit_norm import build_unit_norm, check_norm_input


class TAdaRoute(nn.Module):
    """The calibration (route) function of TAdaConv (official ``RouteFuncMLP``).

    Per frame: global average pool over space → add the clip-level context
    ``g`` (1x1 of the temporal average) → temporal conv ``a`` (C → C/ratio,
    kernel ``kernels[0]``) → norm ``bn`` → ReLU → temporal conv ``b`` (C/ratio → C,
    kernel ``kernels[1]``, no bias, zero-initialised) → ``+ 1``. The zero init
    makes every calibration factor start at exactly 1, i.e. TAdaConv starts as
    the plain convolution with its base weight.

    The official code runs these as Conv3d on (N, C, T, 1, 1); Conv1d on
    (N, C, T) is the same computation. The norm sees (N, C/ratio, T, 1), so
    2-D norm types (BN, SyncBN, GN) apply with the official BatchNorm3d's
    statistics (over N and T).

    Args:
        channels (int): Channels of the input (the calibrated dimension).
        ratio (int): Reduction ratio of the hidden layer.
        kernels (tuple[int]): Temporal kernel sizes of ``a`` and ``b``.
        norm_cfg (dict | None): Norm between ``a`` and the ReLU (None: none).

    Raises:
        MMExtError: In training, from a BatchNorm that sees one value per
            channel (N * T == 1, see :class:`TAdaConv`).
    """

    def __init__(self, channels, ratio=4, kernels=(3, 3), norm_cfg=dict(type='BN')):
        super().__init__()
        hidden = max(int(channels // ratio), 1)
        self.g = nn.Conv1d(channels, channels, 1)
        self.a = nn.Conv1d(channels, hidden, kernels[0], padding=kernels[0] // 2)
        self.bn = build_unit_norm(norm_cfg, hidden, 'TAdaConv', 'route_norm_cfg')
        self.relu = nn.ReLU(inplace=True)
        self.b = nn.Conv1d(hidden, channels, kernels[1], padding=kernels[1] // 2, bias=False)
        self.reset_calibration()

    def reset_calibration(self):
        """Zero ``b`` so that every calibration factor is 1."""
        nn.init.zeros_(self.b.weight)

    def forward(self, x):
        """(N, C, T, H, W) → calibration factors alpha (N, C, T)."""
        frames = x.mean((3, 4))
        clip = frames.mean(2, keepdim=True)
        z = self.a(frames + self.g(clip)).unsqueeze(-1)
        check_norm_input(self.bn, z, self, 'route_norm_cfg', unit='TAdaConv')
        z = self.relu(self.bn(z)).squeeze(-1)
        return self.b(z) + 1


@MODELS.register_module()
class TAdaConv(BaseModule):
    """Temporally adaptive 2D convolution with its own calibration function.

    Frame ``t`` of clip ``n`` is convolved with ``W_{n,t} = alpha_{n,t} * W``:
    the base weight ``W`` (an ``nn.Conv2d`` weight) with each input channel
    scaled by the factor that :class:`TAdaRoute` predicts from the frame
    descriptor and its temporal neighbourhood plus the clip average (the
    official ``TAdaConv2d`` with ``cal_dim='cin'``, kernel 1 in time). All
    N*T per-frame kernels run as one grouped convolution.

    Input (N, C, T, H, W) gives (N, C_out, T, H', W'). A 4-D input (N, C, H, W)
    is a clip of one frame: the temporal context is the frame itself, so the
    calibration becomes a per-sample (dynamic) input-channel scaling of the
    kernel; this is the form used through the ``conv_cfg`` / ``dcn`` slots of
    image backbones. At initialisation (zero ``route.b``) both forms equal the
    plain convolution with ``W``.

    Differences from the official module: the route function lives inside
    (so the module keeps the ``nn.Conv2d`` call signature), ``weight`` has the
    ``nn.Conv2d`` shape ``(C_out, C_in/groups, k, k)`` instead of
    ``(1, 1, C_out, C_in/groups, k, k)``, and ``groups > 1`` calibrates each
    group's own input channels (the official broadcast supports groups=1 only).

    One image per device: the route normalises per-frame pooled descriptors,
    ``N * T`` values per channel. The documented rule: a video input with
    ``T > 1`` frames trains at batch 1 with a BatchNorm; a 4-D input (T = 1)
    at batch 1 with a BatchNorm in training mode raises an
    :class:`~mmext.utils.errors.MMExtError` naming the fixes (>= 2 images per
    device, SyncBN across devices, ``route_norm_cfg`` GN or None,
    ``norm_eval``). The mmext ResNet hosts pass their ``norm_cfg`` (SyncBN in
    mmseg configs) to ``route_norm_cfg``.

    Args:
        in_channels (int): Input channels.
        out_channels (int): Output channels.
        kernel_size (int | tuple[int]): Spatial kernel size.
        stride (int | tuple[int]): Spatial stride. Defaults to 1.
        padding (int | tuple[int]): Spatial padding. Defaults to 0.
        dilation (int | tuple[int]): Spatial dilation. Defaults to 1.
        groups (int): Groups. Defaults to 1.
        bias (bool): Static per-filter bias (the official TAda2D uses none).
            Defaults to False.
        route_ratio (int): Reduction ratio of the route function. Defaults to 4.
        route_kernels (tuple[int]): Temporal kernel sizes of the route's two
            convolutions. Defaults to (3, 3).
        route_norm_cfg (dict | None): Norm inside the route function (a 2-D
            norm type, it sees ``(N, C/route_ratio, T, 1)``; the official
            BatchNorm3d has the same statistics), e.g. ``dict(type='GN',
            num_groups=1)``, or None for none. Defaults to ``dict(type='BN')``.
        init_cfg (dict, optional): Initialization config. Defaults to None.

    Raises:
        MMExtError: In training, when the route's BatchNorm sees one value
            per channel (``N * T == 1`` on this device).
    """

    # The argument a host fills with its own norm_cfg (unit_norm.with_host_norm).
    host_norm_args = ('route_norm_cfg',)
    # The image form (T = 1): the route's norm sees one pooled value per
    # channel at batch 1.
    component_examples = (ComponentExample('conv', one_image_raises=True), )

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
                 groups=1, bias=False, route_ratio=4, route_kernels=(3, 3),
                 route_norm_cfg=dict(type='BN'), init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        set_conv_args(self, in_channels, out_channels, _pair(kernel_size), _pair(stride),
                      _pair(padding), _pair(dilation), groups)
        self.weight = nn.Parameter(
            torch.empty(out_channels, in_channels // groups, *self.kernel_size))
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        self.route = TAdaRoute(in_channels, route_ratio, route_kernels, route_norm_cfg)
        self._init_base()

    def _init_base(self):
        # nn.Conv2d's default initialisation, as in the official TAdaConv2d.
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1 / math.sqrt(self.weight[0].numel())
            nn.init.uniform_(self.bias, -bound, bound)

    def init_weights(self):
        # A host's init_cfg runs on all its submodules before this method and
        # may hit the route's convs; the calibration must still start at 1.
        # This module's own init_cfg (e.g. Pretrained) is applied after.
        if not self._is_init:
            self.route.reset_calibration()
        super().init_weights()

    def calibrated_weight(self, alpha):
        """Per-frame kernels (N, T, C_out, C_in/groups, k, k) from the
        calibration factors ``alpha`` (N, C_in, T)."""
        n, _, t = alpha.shape
        g = self.groups
        alpha = alpha.permute(0, 2, 1).reshape(n, t, g, 1, self.in_channels // g, 1, 1)
        weight = self.weight.view(1, 1, g, self.out_channels // g, *self.weight.shape[1:])
        return (alpha * weight).reshape(n, t, *self.weight.shape)

    def extra_flops(self, inputs, output):
        """FLOPs the trace misses (``mmext.analysis.flops``): the
        calibration scales the base kernel elementwise once per frame, one
        multiply per element of each per-frame kernel; the grouped
        convolution itself is traced and counted."""
        x = inputs[0]
        frames = x.shape[2] if x.dim() == 5 else 1
        return x.shape[0] * frames * self.weight.numel()

    def forward(self, x):
        image = x.dim() == 4
        if image:
            x = x.unsqueeze(2)
        n, c, t, h, w = x.shape
        weight = self.calibrated_weight(self.route(x))
        frames = x.permute(0, 2, 1, 3, 4).reshape(1, n * t * c, h, w)
        bias = None if self.bias is None else self.bias.repeat(n * t)
        out = F.conv2d(frames, weight.reshape(-1, *self.weight.shape[1:]), bias, self.stride,
                       self.padding, self.dilation, self.groups * n * t)
        out = out.view(n, t, self.out_channels, *out.shape[-2:]).permute(0, 2, 1, 3, 4)
        return out.squeeze(2) if image else out
