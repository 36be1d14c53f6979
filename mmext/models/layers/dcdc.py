"""DCDC: dual complementary dynamic convolution (Yan et al., "Dual Complementary Dynamic
Convolution for Image Recognition", arXiv 2211.06163, 2022)."""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import ConvModule
from mmengine.model import BaseModule
from torch.nn.modules.utils import _pair

from mmext.registry import MODELS
from .conv_args import set_conv_args
from .protocols import ComponentExample
from .unit_norm import check_norm_input


@MODELS.register_module()
class DCDC(BaseModule):
    """Dual complementary dynamic convolution.

    The sum of two branches that see the same input:

    * **Global shift-invariant (GSI)**: one kernel per sample, shared by all
      positions. A static kernel ``weight`` (``nn.Conv2d`` shape) is modulated
      by an attention computed from the global average of the input:
      GAP → 1x1 ``gsi_reduce`` → ReLU → two heads, ``gsi_filter`` (one factor
      per output filter) and ``gsi_spatial`` (one factor per k×k tap, absent
      for 1x1), each ``2 * sigmoid`` so that zero logits leave the static
      kernel unchanged:
      ``W_n[o, i, u] = weight[o, i, u] * f_n[o] * s_n[u]``.
      All samples run as one grouped convolution (N * groups groups).
    * **Local spatial-adaptive (LSA)**: one kernel per output position,
      involution-style. A kernel generator (1x1 ``lsa_reduce`` + BN + ReLU →
      1x1 ``lsa_span``) predicts, from the input at the centre of each output
      window, k×k weights for each of ``G`` groups of output channels. They
      aggregate the k×k neighbourhood of ``v = lsa_value(x)``, a 1x1 projection
      to the output channels (grouped like the convolution):
      ``y[n, o, p] = sum_u K[n, g(o), u, p] * v[n, o, p*stride + u*dilation]``.
      Computed with unfold + einsum; the effective per-position kernel is
      ``K[n, g(o), u, p] * lsa_value.weight[o, i]``.

    Design notes (the paper's exact layer configuration could not be read
    here; these are the choices made to realise its definition, local
    spatial-adaptive + global shift-invariant kernels summed):

    * the LSA branch follows involution (kernel shared by a group of
      channels, generator reduction ``reduction`` with BN + ReLU, no
      normalisation of the predicted kernel); the value projection
      ``lsa_value`` is added so that ``in_channels != out_channels`` works in
      every ``conv_cfg`` slot;
    * for stride > 1 the generator reads the input at the window centres
      (exact for odd sizes, where involution's stride-sized average pool can
      be one position short);
    * the GSI branch keeps the full (grouped) static kernel of the convolution
      it replaces and modulates it per sample over output filters and
      kernel taps (ODConv-like heads without BN in the attention so that
      batch-1 training works);
    * the output bias (``bias=True``) is static and added once.

    One image per device: the GSI attention has no norm; the LSA generator's
    norm runs per output position, ``N * H_out * W_out`` values per channel,
    so a BatchNorm fails only at batch 1 on a 1x1 output map. That case raises
    an :class:`~mmext.utils.errors.MMExtError` naming the fixes instead of
    torch's ``ValueError``. The mmext ResNet hosts pass their ``norm_cfg``
    (SyncBN in mmseg configs) to ``norm_cfg``.

    Args:
        in_channels (int): Input channels.
        out_channels (int): Output channels.
        kernel_size (int | tuple[int]): Kernel size. Defaults to 3.
        stride (int | tuple[int]): Stride. Defaults to 1.
        padding (int | tuple[int]): Zero padding. Defaults to 0.
        dilation (int | tuple[int]): Dilation. Defaults to 1.
        groups (int): Groups of the static kernel and of the value
            projection. Defaults to 1.
        bias (bool): Static per-filter output bias. Defaults to False.
        reduction (int): Reduction ratio of the LSA kernel generator and the
            GSI attention. Defaults to 4.
        group_channels (int): Output channels sharing one LSA kernel (16 as
            in involution); when it does not divide ``out_channels`` their
            greatest common divisor is used. Defaults to 16.
        min_channels (int): Lower bound of the hidden widths. Defaults to 16.
        norm_cfg (dict | None): Norm of the LSA kernel generator, e.g.
            ``dict(type='GN', num_groups=1)``, or None for none.
            Defaults to ``dict(type='BN')``.
        act_cfg (dict): Activation of the LSA kernel generator.
            Defaults to ``dict(type='ReLU')``.
        init_cfg (dict, optional): Initialization config. Defaults to None.

    Raises:
        MMExtError: In training, when the generator's BatchNorm sees one
            value per channel (batch 1 and a 1x1 output map on this device).
    """

    # The argument a host fills with its own norm_cfg (unit_norm.with_host_norm).
    host_norm_args = ('norm_cfg',)
    # The generator's norm runs per output position: batch 1 on a 9x9 map
    # runs (only a 1x1 output map is one value per channel).
    component_examples = (ComponentExample('conv'), )

    def __init__(self, in_channels, out_channels, kernel_size=3, stride=1, padding=0, dilation=1,
                 groups=1, bias=False, reduction=4, group_channels=16, min_channels=16,
                 norm_cfg=dict(type='BN'), act_cfg=dict(type='ReLU'), init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        set_conv_args(self, in_channels, out_channels, _pair(kernel_size), _pair(stride),
                      _pair(padding), _pair(dilation), groups)
        self.num_taps = self.kernel_size[0] * self.kernel_size[1]
        hidden = max(in_channels // reduction, min_channels)

        # GSI branch.
        self.weight = nn.Parameter(
            torch.empty(out_channels, in_channels // groups, *self.kernel_size))
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        self.gsi_reduce = nn.Conv2d(in_channels, hidden, 1)
        self.gsi_filter = nn.Conv2d(hidden, out_channels, 1)
        self.gsi_spatial = nn.Conv2d(hidden, self.num_taps, 1) if self.num_taps > 1 else None

        # LSA branch.
        self.lsa_groups = out_channels // math.gcd(out_channels, group_channels)
        self.lsa_value = nn.Conv2d(in_channels, out_channels, 1, groups=groups, bias=False)
        self.lsa_reduce = ConvModule(in_channels, hidden, 1, norm_cfg=norm_cfg, act_cfg=act_cfg)
        self.lsa_span = nn.Conv2d(hidden, self.lsa_groups * self.num_taps, 1)
        self._init_static()

    def _init_static(self):
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1 / math.sqrt(self.weight[0].numel())
            nn.init.uniform_(self.bias, -bound, bound)

    def output_size(self, h, w):
        return tuple((s + 2 * p - d * (k - 1) - 1) // st + 1 for s, p, d, k, st in zip(
            (h, w), self.padding, self.dilation, self.kernel_size, self.stride))

    # ------------------------------------------------------------------ GSI
    def global_kernel(self, x):
        """Per-sample kernels (N, C_out, C_in/groups, kh, kw)."""
        z = F.relu(self.gsi_reduce(x.mean((2, 3), keepdim=True)))
        n = x.size(0)
        mod = 2 * torch.sigmoid(self.gsi_filter(z)).view(n, -1, 1, 1, 1)
        if self.gsi_spatial is not None:
            spatial = 2 * torch.sigmoid(self.gsi_spatial(z))
            mod = mod * spatial.view(n, 1, 1, *self.kernel_size)
        return self.weight.unsqueeze(0) * mod

    def global_branch(self, x):
        n, _, h, w = x.shape
        weight = self.global_kernel(x)
        out = F.conv2d(x.reshape(1, -1, h, w), weight.reshape(-1, *weight.shape[2:]), None,
                       self.stride, self.padding, self.dilation, self.groups * n)
        return out.view(n, self.out_channels, *out.shape[-2:])

    # ------------------------------------------------------------------ LSA
    def local_kernel(self, x):
        """Per-position kernels (N, G, kh*kw, H_out, W_out)."""
        h_out, w_out = self.output_size(*x.shape[-2:])
        ph, pw = self.padding
        # Window centres in padded coordinates.
        oh, ow = (d * ((k - 1) // 2) for d, k in zip(self.dilation, self.kernel_size))
        sh, sw = self.stride
        centre = F.pad(x, (pw, pw, ph, ph))[:, :, oh::sh, ow::sw][:, :, :h_out, :w_out]
        if self.lsa_reduce.with_norm:
            check_norm_input(self.lsa_reduce.norm, centre, self, 'norm_cfg')
        kernel = self.lsa_span(self.lsa_reduce(centre))
        return kernel.view(x.size(0), self.lsa_groups, self.num_taps, h_out, w_out)

    def local_branch(self, x):
        n = x.size(0)
        kernel = self.local_kernel(x)
        h_out, w_out = kernel.shape[-2:]
        patches = F.unfold(self.lsa_value(x), self.kernel_size, self.dilation, self.padding,
                           self.stride)
        patches = patches.view(n, self.lsa_groups, -1, self.num_taps, h_out * w_out)
        out = torch.einsum('ngcul,ngul->ngcl', patches, kernel.flatten(3).to(patches.dtype))
        return out.reshape(n, self.out_channels, h_out, w_out)

    def forward(self, x):
        out = self.global_branch(x) + self.local_branch(x)
        if self.bias is not None:
            out = out + self.bias.view(1, -1, 1, 1)
        return out
