"""G-Ghost RegNet: RegNetX whose middle stages are G-Ghost stages.

Han et al., "GhostNets on Heterogeneous Devices via Cheap Operations", IJCV
2022 (arXiv 2201.03297). Official code: huawei-noah/Efficient-AI-Backbones,
``g_ghost_pytorch/g_ghost_regnet.py`` (HEAD f90e129, which builds a stage's
downsample from the stage's own input width).

The features of the deep blocks of a stage are largely redundant with the
output of its first block, so a G-Ghost stage runs its inner blocks on part
of the channels only and produces the rest ("ghost" features) from the first
block's output by a 1x1 convolution, mixed with a channel descriptor of the
intrinsic features. Module names follow the official file (mmdet's blocks
name a BatchNorm ``bn1`` / ``bn2`` / ``bn3`` as it does), so official
checkpoints load without renaming.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import build_conv_layer, build_norm_layer
from mmdet.models.backbones.resnext import Bottleneck as _ResNeXtBottleneck
from mmdet.models.layers import ResLayer

from mmext.models.layers.unit_norm import (SAME_AS_NORM_CFG, build_unit_norm, check_norm_input,
                                           resolve_norm_cfg)
from mmext.registry import MODELS
from .base_backbone import DenseBackbone, checkpoint_call, compute_memory_format


class XBlock(_ResNeXtBottleneck):
    """RegNetX's X block: mmdet's ResNeXt bottleneck with expansion 1 and
    bottleneck ratio 1.

    ``conv1`` 1x1 (in -> w) -> ``bn1`` -> ReLU -> ``conv2`` 3x3 stride s with
    ``w // gw`` groups -> ``bn2`` -> ReLU -> ``conv3`` 1x1 -> ``bn3``, plus
    the shortcut (``downsample``: 1x1 stride s conv + norm), then ReLU.
    mmdet's RegNet uses the same class but switches the class attribute
    ``expansion`` to 1 while it builds; a subclass keeps it fixed.
    """

    expansion = 1


def x_block_kwargs(width, group_width):
    """Keyword arguments of :class:`XBlock` for ``width`` channels and
    ``group_width`` channels per group: ``width // min(width, group_width)``
    groups, as the official ``Bottleneck``.

    Raises:
        ValueError: ``group_width`` does not divide ``width`` (a grouped
            convolution needs it).
    """
    gw = min(width, group_width)
    if width % gw:
        raise ValueError(f'GGhostRegNet: group width {group_width} does not divide the '
                         f'{width} channels of a block')
    groups = width // gw
    # mmdet's ResNeXt block takes floor(planes * base_width / base_channels)
    # * groups channels (planes itself when groups is 1): gw / width per group
    # gives width; _x_block checks that float rounding did not floor it.
    return dict(groups=groups, base_width=gw, base_channels=width)


def _x_block(inplanes, planes, group_width, stride=1, downsample=None, norm_cfg=None):
    block = XBlock(inplanes, planes, stride=stride, downsample=downsample, norm_cfg=norm_cfg,
                   **x_block_kwargs(planes, group_width))
    if block.conv2.in_channels != planes:  # float rounding in mmdet's width formula
        raise ValueError(f'GGhostRegNet: an X block of {planes} channels got a '
                         f'{block.conv2.in_channels}-channel 3x3')
    return block


class GGhostStage(nn.Module):
    """One G-Ghost stage of ``num_blocks`` X blocks (official ``Stage``).

    With ``gw' = int(0.75 * group_width)``, ``raw = int(planes * (1 -
    cheap_ratio) / gw') * gw'`` and ``cheap = planes - raw``:

    * ``base``: X block ``inplanes -> planes``, stride ``stride``: ``x0``;
    * ``layers``: ``num_blocks - 2`` X blocks ``raw -> raw`` of group width
      ``gw'`` on ``x0[:, :raw]``; their outputs ``e_1 .. e_{n-2}``;
    * ``merge``: ``GAP -> 1x1 (planes + raw * (n - 2) -> cheap) -> norm ->
      ReLU -> 1x1 (cheap -> cheap) -> norm`` on ``cat[x0, e_1, ..,
      e_{n-2}]``: a ``(N, cheap, 1, 1)`` vector ``m``;
    * ``cheap``: ``1x1 (cheap -> cheap) -> norm`` on ``x0[:, raw:]``; the
      ghost features are ``c = ReLU(cheap(x0[:, raw:]) + m)``;
    * ``end``: X block ``planes -> planes`` on ``cat[e_{n-2}, c]``.

    Input ``(N, inplanes, H, W)``, output ``(N, planes, ceil(H / stride),
    ceil(W / stride))``.

    Args:
        inplanes (int): Input channels.
        planes (int): Output channels (the full width of ``base`` / ``end``).
        group_width (int): Channels per group of the full-width blocks.
        num_blocks (int): Blocks of the stage, ``>= 3``.
        stride (int): Stride of ``base``. Defaults to 2.
        cheap_ratio (float): Share of ``planes`` produced by the cheap
            operation (before rounding ``raw`` down to a multiple of
            ``gw'``). Defaults to 0.5.
        norm_cfg (dict): Norm of the blocks and of ``cheap``.
        merge_norm_cfg (dict | None | str): Norm of the two ``merge`` norms,
            which see the pooled descriptor; ``'norm_cfg'`` for ``norm_cfg``.
        with_cp (bool): Activation checkpointing per block.

    Raises:
        ValueError: ``num_blocks < 3``, or the widths leave no raw or no
            cheap channels.
        MMExtError: In training, when a BatchNorm of ``merge`` sees one value
            per channel (one image per device without SyncBN across ranks).
    """

    def __init__(self, inplanes, planes, group_width, num_blocks, stride=2, cheap_ratio=0.5,
                 norm_cfg=dict(type='BN'), merge_norm_cfg=SAME_AS_NORM_CFG, with_cp=False):
        super().__init__()
        if num_blocks < 3:
            # The merge descriptor counts num_blocks - 2 inner blocks and the
            # official stage always builds at least one.
            raise ValueError(f'GGhostRegNet: a G-Ghost stage needs >= 3 blocks, got {num_blocks}')
        raw_gw = int(group_width * 0.75)
        raw = int(planes * (1 - cheap_ratio) / raw_gw) * raw_gw if raw_gw else 0
        cheap = planes - raw
        if raw <= 0 or cheap <= 0:
            raise ValueError(
                f'GGhostRegNet: a G-Ghost stage of {planes} channels, group width {group_width} '
                f'and cheap_ratio {cheap_ratio} leaves {raw} raw and {cheap} cheap channels; '
                'both must be positive')
        self.raw_planes, self.cheap_planes = raw, cheap
        self.with_cp = with_cp
        downsample = None
        if stride != 1 or inplanes != planes:
            downsample = nn.Sequential(
                build_conv_layer(None, inplanes, planes, 1, stride=stride, bias=False),
                build_norm_layer(norm_cfg, planes)[1])
        self.base = _x_block(inplanes, planes, group_width, stride, downsample, norm_cfg)
        self.end = _x_block(planes, planes, group_width, norm_cfg=norm_cfg)
        # The official first inner block has a channel-slicing shortcut
        # x[:, :raw] on a raw-channel input: the identity, so none here.
        self.layers = nn.Sequential(*(_x_block(raw, raw, raw_gw, norm_cfg=norm_cfg)
                                      for _ in range(num_blocks - 2)))
        merge_norm = resolve_norm_cfg(merge_norm_cfg, norm_cfg)
        # Indices as the official nn.Sequential (keys merge.1/2/4/5); index 0
        # (the pooling) is applied per part in forward.
        self.merge = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(planes + raw * (num_blocks - 2), cheap, 1, bias=False),
            build_unit_norm(merge_norm, cheap, 'GGhostRegNet', 'merge_norm_cfg'),
            nn.ReLU(inplace=True),
            nn.Conv2d(cheap, cheap, 1, bias=False),
            build_unit_norm(merge_norm, cheap, 'GGhostRegNet', 'merge_norm_cfg'))
        self.cheap = nn.Sequential(nn.Conv2d(cheap, cheap, 1, bias=False),
                                   build_norm_layer(norm_cfg, cheap)[1])

    def mix(self, intrinsic):
        """The merge vector ``(N, cheap, 1, 1)`` of the intrinsic features
        (``[x0, e_1, ..]``, each ``(N, C_i, H, W)``)."""
        # GAP of the concatenation = concatenation of the GAPs, without
        # materialising the (planes + raw * (n - 2))-channel map.
        z = self.merge[1](torch.cat([F.adaptive_avg_pool2d(t, 1) for t in intrinsic], dim=1))
        check_norm_input(self.merge[2], z, self, 'merge_norm_cfg', unit='GGhostRegNet stage')
        z = self.merge[4](self.merge[3](self.merge[2](z)))
        return self.merge[5](z)

    def forward(self, x):
        x0 = checkpoint_call(self.base, x, with_cp=self.with_cp)
        e = x0[:, :self.raw_planes]
        intrinsic = [x0]
        for layer in self.layers:
            e = checkpoint_call(layer, e, with_cp=self.with_cp)
            intrinsic.append(e)
        c = F.relu(self.cheap(x0[:, self.raw_planes:]) + self.mix(intrinsic))
        return checkpoint_call(self.end, torch.cat((e, c), dim=1), with_cp=self.with_cp)


@MODELS.register_module()
class GGhostRegNet(DenseBackbone):
    """G-Ghost RegNetX as a multi-scale backbone.

    Stem ``conv1`` 3x3 stride 2 (3 -> 32) + ``bn1`` + ReLU, then four
    stride-2 stages (outputs at strides 4 / 8 / 16 / 32): ``layer1`` a plain
    RegNetX stage of X blocks; ``layer2`` and ``layer4`` G-Ghost stages
    (:class:`GGhostStage`) when they have more than two blocks, else plain;
    ``layer3`` always a G-Ghost stage. As the official ``GGhostRegNet``
    without the classifier (``avgpool``, ``dropout``, ``fc``).

    Args:
        arch (str | dict): A RegNetX variant, ``'200mf'`` .. ``'32gf'``
            (aliases: the official constructor names,
            ``'g_ghost_regnetx_032'`` for ``'3.2gf'``, ...), or a dict with
            ``depths``, ``widths`` (one per stage) and ``group_width``.
            Defaults to ``'3.2gf'``.
        in_channels (int): Input channels. Defaults to 3.
        stem_channels (int): Stem width. Defaults to 32.
        cheap_ratio (float): See :class:`GGhostStage`. Defaults to 0.5.
        norm_cfg (dict): Norm of every block, stem and ``cheap`` (BN in the
            official code; SyncBN in the UperNet config).
        merge_norm_cfg (dict | None | str): Norm of the merge branch, which
            normalises a pooled ``(N, C, 1, 1)`` descriptor: ``'norm_cfg'``
            (default) for ``norm_cfg``, another norm config (``dict(type='GN',
            num_groups=1)`` trains at one image per device but departs from
            the official network) or None.
        out_indices, frozen_stages, norm_eval, with_cp, init_cfg: see
            :class:`DenseBackbone`.

    Raises:
        ValueError: A custom arch whose ``layer3`` has fewer than three
            blocks, or whose widths and group width do not fit (see
            :class:`GGhostStage`).
        MMExtError: In training at one image per device with a BatchNorm
            merge (see :class:`GGhostStage`).

    Example:
        >>> import torch
        >>> from mmext.models.backbones.g_ghost_regnet import GGhostRegNet
        >>> self = GGhostRegNet(arch='3.2gf').eval()
        >>> [tuple(o.shape) for o in self(torch.rand(1, 3, 64, 64))]
        [(1, 96, 16, 16), (1, 192, 8, 8), (1, 432, 4, 4), (1, 1008, 2, 2)]
    """

    # depths, widths, group width of the official constructors
    # g_ghost_regnetx_002 .. g_ghost_regnetx_320 (RegNetX-200MF .. 32GF).
    arch_settings = {
        key: dict(depths=d, widths=w, group_width=g) for key, d, w, g in (
            ('200mf', [1, 1, 4, 7], [24, 56, 152, 368], 8),
            ('400mf', [1, 2, 7, 12], [32, 64, 160, 384], 16),
            ('600mf', [1, 3, 5, 7], [48, 96, 240, 528], 24),
            ('800mf', [1, 3, 7, 5], [64, 128, 288, 672], 16),
            ('1.6gf', [2, 4, 10, 2], [72, 168, 408, 912], 24),
            ('3.2gf', [2, 6, 15, 2], [96, 192, 432, 1008], 48),
            ('4.0gf', [2, 5, 14, 2], [80, 240, 560, 1360], 40),
            ('6.4gf', [2, 4, 10, 1], [168, 392, 784, 1624], 56),
            ('8.0gf', [2, 5, 15, 1], [80, 240, 720, 1920], 120),
            ('12gf', [2, 5, 11, 1], [224, 448, 896, 2240], 112),
            ('16gf', [2, 6, 13, 1], [256, 512, 896, 2048], 128),
            ('32gf', [2, 7, 13, 1], [336, 672, 1344, 2520], 168))
    }
    arch_aliases = {f'g_ghost_regnetx_{code}': key for code, key in (
        ('002', '200mf'), ('004', '400mf'), ('006', '600mf'), ('008', '800mf'),
        ('016', '1.6gf'), ('032', '3.2gf'), ('040', '4.0gf'), ('064', '6.4gf'),
        ('080', '8.0gf'), ('120', '12gf'), ('160', '16gf'), ('320', '32gf'))}
    # Plain layer1 / layer2, G-Ghost layer3 (one inner block) and layer4 (two):
    # both kinds of stage at a few channels, for the shared checks.
    backbone_examples = (dict(arch=dict(depths=[1, 2, 3, 4], widths=[8, 16, 24, 32],
                                        group_width=8), stem_channels=8), )
    # The official initialisation: Kaiming normal (fan out) for every conv,
    # norms 1 / 0 (its zero_init_residual argument is never used).
    default_init_cfg = [
        dict(type='Kaiming', layer='Conv2d', mode='fan_out', nonlinearity='relu'),
        dict(type='Constant', layer=['_BatchNorm', 'GroupNorm'], val=1., bias=0.),
    ]
    official_drop_prefixes = ('fc.', )

    def __init__(self, arch='3.2gf', in_channels=3, stem_channels=32, cheap_ratio=0.5,
                 norm_cfg=dict(type='BN', requires_grad=True), merge_norm_cfg=SAME_AS_NORM_CFG,
                 out_indices=(0, 1, 2, 3), frozen_stages=-1, norm_eval=False, with_cp=False,
                 init_cfg=None):
        super().__init__(out_indices=out_indices, frozen_stages=frozen_stages,
                         norm_eval=norm_eval, with_cp=with_cp, init_cfg=init_cfg)
        arch = self.resolve_arch(arch, required=('depths', 'widths', 'group_width'),
                                 per_stage=('depths', 'widths'))
        self.depths, widths = list(arch['depths']), list(arch['widths'])
        group_width = arch['group_width']
        if self.depths[2] < 3:
            raise ValueError(f'GGhostRegNet: layer3 is always a G-Ghost stage and needs >= 3 '
                             f'blocks, got depths {self.depths}')
        self.out_channels = tuple(widths)
        self.out_strides = (4, 8, 16, 32)

        self.conv1 = build_conv_layer(None, in_channels, stem_channels, 3, stride=2, padding=1,
                                      bias=False)
        self.norm1_name, norm1 = build_norm_layer(norm_cfg, stem_channels, postfix=1)
        self.add_module(self.norm1_name, norm1)
        self.relu = nn.ReLU(inplace=True)
        inplanes = stem_channels
        for i, (depth, width) in enumerate(zip(self.depths, widths)):
            if i == 2 or (i in (1, 3) and depth > 2):
                stage = GGhostStage(inplanes, width, group_width, depth, 2, cheap_ratio,
                                    norm_cfg, merge_norm_cfg, with_cp)
            else:
                stage = ResLayer(XBlock, inplanes, width, depth, stride=2, norm_cfg=norm_cfg,
                                 **x_block_kwargs(width, group_width))
            self.add_module(f'layer{i + 1}', stage)
            inplanes = width

    @property
    def norm1(self):
        """The stem norm (``bn1`` with BN, as the official stem)."""
        return getattr(self, self.norm1_name)

    def stage_modules(self, index):
        stage = getattr(self, f'layer{index + 1}')
        return [self.conv1, self.norm1, stage] if index == 0 else [stage]

    def _run_stage(self, stage, x):
        if isinstance(stage, GGhostStage):  # checkpoints its blocks itself
            return stage(x)
        for block in stage:
            x = checkpoint_call(block, x, with_cp=self.with_cp)
        return x

    def forward(self, x):
        # On CPU the network runs in channels-last memory: oneDNN's grouped 3x3
        # and 1x1 convolutions are faster on it (3.2GF, 224x224, batch 1, two
        # threads: 20 ms against 26 ms in NCHW). Other devices keep NCHW (not
        # measured there).
        layout = compute_memory_format(x)
        x = self.relu(self.norm1(self.conv1(x.contiguous(memory_format=layout))))
        outs = []
        for i in range(max(self.out_indices) + 1):
            x = self._run_stage(getattr(self, f'layer{i + 1}'), x)
            if i in self.out_indices:
                # Stage outputs are NCHW-contiguous whatever the stages ran in.
                outs.append(x.contiguous())
        return tuple(outs)
