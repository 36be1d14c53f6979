"""MGBlock: the multigrid-in-channels residual block (MGIC).

Eliasof, Ephrath, Ruthotto, Treister, "MGIC: Multigrid-in-Channels Neural
Network Architectures", SIAM J. Sci. Comput. 2023, S307-S328 (arXiv 2011.09128);
the group's earlier paper: Ephrath et al., "Multigrid-in-Channels Architectures
for Wide Convolutional Neural Networks", arXiv 2006.06799. Official code:
BGUCompSci/MultigridInChannelsCNNs, ``resnetMG.py`` (``MgBlockDwGroup``,
``genTensor4CycleDwGroup``, ``netMGParamsDWGroup``) with the defaults of
``classificationDriverArgsMG.py``.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.utils.checkpoint as cp
from mmcv.cnn import ConvModule, build_conv_layer
from mmengine.model import BaseModule

from mmext.registry import MODELS
from .protocols import ComponentExample


def mg_levels(channels, group_size=32, mg_fc_channels=32):
    """Widths of the channel hierarchy of an MG block of ``channels`` channels.

    Going down halves the width; the official generator
    (``genTensor4CycleDwGroup``) always makes one fine level and stops at the
    first half-width below ``mg_fc_channels``, which becomes the coarsest
    level. Example: 512 channels, threshold 32: fine levels 512, 256, 128, 64,
    32 and the coarsest level 16.

    Args:
        channels (int): Width of the finest level (the block's output width).
        group_size (int): Channels per group g of the grouped convolutions.
        mg_fc_channels (int): The threshold (the official ``mgFcChannel``).

    Returns:
        tuple[list[tuple[int, int]], int]: ``(width, groups)`` of every fine
        level, finest first, with ``groups = max(width // g, 1)`` as the
        official code, and the coarsest width.

    Raises:
        ValueError: When a fine level's width is odd, or its groups do not
            divide its width and half of it (then no grouped 1x1 maps it to
            half its width).
    """
    levels = []
    width = channels
    while True:
        groups = max(width // group_size, 1)
        if width % 2 or width % groups or (width // 2) % groups:
            raise ValueError(
                f'MGBlock: the {width}-channel level of a {channels}-channel block cannot be '
                f'halved by a 1x1 conv with {groups} groups (group_size={group_size}): each '
                f'fine level needs an even width divisible by max(width // group_size, 1) '
                f'twice; use a power-of-two width or another group_size')
        levels.append((width, groups))
        width //= 2
        if width < mg_fc_channels:
            return levels, width


class _ResidualStep(nn.Module):
    """One ResNet basic step at fixed width:
    ``ReLU(x + norm(conv(ReLU(norm(conv(x))))))``, both convs 3x3 with
    ``groups`` groups. Shapes: (N, C, H, W) -> (N, C, H, W)."""

    def __init__(self, channels, groups, dilation, conv_cfg, norm_cfg):
        super().__init__()
        common = dict(padding=dilation, dilation=dilation, groups=groups, bias=False,
                      conv_cfg=conv_cfg, norm_cfg=norm_cfg)
        self.conv1 = ConvModule(channels, channels, 3, act_cfg=dict(type='ReLU'), **common)
        self.conv2 = ConvModule(channels, channels, 3, act_cfg=None, **common)

    def forward(self, x):
        return F.relu(x + self.conv2(self.conv1(x)))


@MODELS.register_module()
class MGBlock(BaseModule):
    """Multigrid-in-channels residual block (serial V-cycle in channels).

    The official ``MgBlockDwGroup`` in its serial mode, basic-block variant
    (driver defaults ``bottleneck=False``, ``pwGroup=True``,
    ``twoSided=False``, ``mgParallelMode=False``):

    * Connector, only when ``stride != 1`` or the width changes: 3x3 conv
      ``in_channels -> out_channels`` at ``stride`` with ``groups =
      gcd(in_channels, out_channels)`` (the official ``groups=in_planes``
      whenever ``out_channels`` is a multiple of ``in_channels``, the only
      case the official networks build), norm, ReLU. It is the block's only
      change of width and resolution; the block has no other shortcut.
    * Fine levels ``l = 0 .. L-1`` of widths ``C, C/2, ...`` (see
      :func:`mg_levels`: the first half-width below ``mg_fc_channels`` is the
      coarsest level). Going down: keep ``x_l``, restrict ``r_l =
      R_l(x_l)``, a 1x1 conv ``C_l -> C_l / 2`` with ``G_l = max(C_l / g, 1)``
      groups (each group maps g channels to g / 2), no norm, no smoothing.
    * Coarsest level, fully coupled: ``x_c = ReLU(r + norm(conv(ReLU(norm(
      conv(r))))))`` with two ungrouped 3x3 convs.
    * Going up, finest last: the coarse-grid correction of the full
      approximation scheme ``z_l = x_l + norm(P_l(x_{l+1} - r_l))`` (``P_l``
      a 1x1 conv ``C_l / 2 -> C_l`` with ``G_l`` groups), then a grouped
      basic step ``x_l = ReLU(z_l + norm(conv(ReLU(norm(conv(z_l))))))`` with
      3x3 convs of ``G_l`` groups. The finest ``x_0`` is the output.

    Only the coarsest convs are ungrouped, yet every output channel depends
    on every input channel: each channel reaches the coarsest level through
    the restrictions and comes back through the prolongations.

    Parameters grow linearly in the width: one 512-channel block (stride 1,
    no connector) has 613,760 parameters at g = 32 and 312,192 at g = 16
    (norm affines counted), a plain 512-channel basic block 4,720,640.

    Choices where the official code has none or differs:

    * R and P start at the constant ``1 / g`` (the official block's
      constructor: a group average). The official ``ResNet`` then redraws
      every conv, R and P included, with Kaiming (its name filter
      ``not 'R' in name or not 'P' in name`` excludes nothing); here the
      ``1 / g`` start is kept, also under a host's Kaiming ``init_cfg``
      (:meth:`init_weights` runs after the host's).
    * ``dilation`` dilates every 3x3 conv (connector, coarsest and smoothing
      steps), with padding ``dilation``; the official networks have none.
    * As the block of a bottleneck host (ResNet-50, ResNeXt-50) it replaces
      the whole bottleneck at the host's output width ``planes * 4``: the MG
      hierarchy runs at 256 .. 2048 channels. The official bottleneck
      variant (grouped 1x1-3x3-1x1 steps, ``bottleneck=True``) is not built;
      a ResNeXt host's ``groups`` / ``base_width`` do not enter the block.

    Args:
        in_channels (int): Input channels.
        out_channels (int): Output channels C, the finest level's width.
        stride (int): Stride of the connector. Defaults to 1.
        dilation (int): Dilation of every 3x3 conv. Defaults to 1.
        group_size (int): Channels per group g of the restriction,
            prolongation and smoothing convs (official ``numberOfFixGroup``,
            driver default 32). Defaults to 32.
        mg_fc_channels (int): Coarsening stops at the first half-width below
            this (official ``mgFcChannel``, driver default 32). Defaults to 32.
        conv_cfg (dict, optional): Conv layer of every conv. Defaults to None
            (``nn.Conv2d``).
        norm_cfg (dict): Norm after the connector, the prolongations and every
            3x3 conv; a host fills it with its own ``norm_cfg``. Defaults to
            ``dict(type='BN', requires_grad=True)``.
        with_cp (bool): Gradient checkpointing of the whole block in
            training. Defaults to False.
        init_cfg (dict, optional): Initialization config. Defaults to None.

    Shapes:
        (N, in_channels, H, W) -> (N, out_channels, ceil(H / stride),
        ceil(W / stride)).

    Raises:
        ValueError: A fine level that grouped 1x1 convs cannot halve (see
            :func:`mg_levels`), or ``group_size`` / ``mg_fc_channels`` below 1
            (resp. 2).
    """

    host_norm_args = ('norm_cfg',)
    component_examples = (
        # g = 4, threshold 4 at 16 channels: fine levels 16 (4 groups), 8 (2
        # groups), 4 (1 group), coarsest 2; the connector maps 8 -> 16
        # channels (8 groups) at both strides.
        ComponentExample('block', dict(group_size=4, mg_fc_channels=4), in_channels=8,
                         out_channels=16),
        # Same width: no connector at stride 1.
        ComponentExample('block', dict(group_size=4, mg_fc_channels=4), in_channels=8,
                         out_channels=8),
    )

    def __init__(self,
                 in_channels,
                 out_channels,
                 stride=1,
                 dilation=1,
                 group_size=32,
                 mg_fc_channels=32,
                 conv_cfg=None,
                 norm_cfg=dict(type='BN', requires_grad=True),
                 with_cp=False,
                 init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        if group_size < 1:
            raise ValueError(f'MGBlock: group_size={group_size}; expected >= 1')
        if mg_fc_channels < 2:
            raise ValueError(f'MGBlock: mg_fc_channels={mg_fc_channels}; expected >= 2 '
                             '(the coarsest level needs at least one channel)')
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.stride = stride
        self.dilation = dilation
        self.group_size = group_size
        self.with_cp = with_cp
        levels, coarse_channels = mg_levels(out_channels, group_size, mg_fc_channels)
        self.level_widths = tuple(w for w, _ in levels) + (coarse_channels, )

        self.connector = None
        if stride != 1 or in_channels != out_channels:
            self.connector = ConvModule(
                in_channels, out_channels, 3, stride=stride, padding=dilation,
                dilation=dilation, groups=math.gcd(in_channels, out_channels), bias=False,
                conv_cfg=conv_cfg, norm_cfg=norm_cfg, act_cfg=dict(type='ReLU'))
        self.restrict = nn.ModuleList(
            build_conv_layer(conv_cfg, w, w // 2, 1, groups=g, bias=False) for w, g in levels)
        self.coarse = _ResidualStep(coarse_channels, 1, dilation, conv_cfg, norm_cfg)
        self.prolong = nn.ModuleList(
            ConvModule(w // 2, w, 1, groups=g, bias=False, conv_cfg=conv_cfg, norm_cfg=norm_cfg,
                       act_cfg=None) for w, g in levels)
        self.smooth = nn.ModuleList(
            _ResidualStep(w, g, dilation, conv_cfg, norm_cfg) for w, g in levels)
        self._init_transfer()

    def _init_transfer(self):
        # The official constructor's constant 1/g: R averages each group.
        with torch.no_grad():
            for conv in list(self.restrict) + [p.conv for p in self.prolong]:
                conv.weight.fill_(1.0 / self.group_size)

    def init_weights(self):
        """The init_cfg / children's init, then R and P back to ``1 / g``
        (a host's Kaiming ``init_cfg`` reaches them first)."""
        super().init_weights()
        self._init_transfer()

    def _forward(self, x):
        if self.connector is not None:
            x = self.connector(x)
        fine, restricted = [], []
        for restrict in self.restrict:
            fine.append(x)
            x = restrict(x)
            restricted.append(x)
        x = self.coarse(x)
        for level in reversed(range(len(fine))):
            x = fine[level] + self.prolong[level](x - restricted[level])
            x = self.smooth[level](x)
        return x

    def forward(self, x):
        """(N, in_channels, H, W) -> (N, out_channels, ceil(H / stride),
        ceil(W / stride))."""
        if self.with_cp and x.requires_grad:
            return cp.checkpoint(self._forward, x, use_reentrant=False)
        return self._forward(x)
