"""GhostNet (C-Ghost) and its Ghost module.

Han et al., "GhostNet: More Features from Cheap Operations", CVPR 2020
(arXiv 1911.11907). A Ghost module computes ``ceil(C_out / s)`` "intrinsic"
maps with an ordinary convolution and derives the rest from them with a cheap
depth-wise ``d x d`` convolution, so a layer costs about ``1 / s`` of the
convolution it replaces. GhostNet stacks Ghost bottlenecks in the
MobileNetV3 layout.

Module names follow the official classification code
(huawei-noah/Efficient-AI-Backbones ``ghostnet_pytorch/ghostnet.py``) and
timm's ``ghostnet_100`` (the same 512 keys), so their checkpoints load after
dropping the classifier (``conv_head``, ``classifier``).
"""
import math

import torch
import torch.nn as nn
from mmcv.cnn import build_norm_layer
from mmdet.models.utils import make_divisible

from mmext.models.layers.protocols import ComponentExample
from mmext.registry import MODELS
from .base_backbone import DenseBackbone, checkpoint_call, compute_memory_format


def _norm(norm_cfg, channels):
    return nn.Identity() if norm_cfg is None else build_norm_layer(norm_cfg, channels)[1]


@MODELS.register_module()
class GhostModule(nn.Module):
    """Ghost module: ``concat(primary(x), cheap(primary(x)))[:, :out_channels]``.

    ``primary_conv`` = Conv(in -> ``init = ceil(out_channels / ratio)``,
    ``kernel_size``, ``stride``) -> norm -> ReLU; ``cheap_operation`` =
    depth-wise Conv(init -> ``init * (ratio - 1)``, ``dw_size``, stride 1,
    ``init`` groups) -> norm -> ReLU (both ReLUs only when ``relu``). The two
    are concatenated and the first ``out_channels`` kept (``init * ratio`` may
    exceed it when ``ratio`` does not divide ``out_channels``). With
    ``ratio=1`` there is no cheap operation (a plain conv -> norm -> ReLU).

    A drop-in for ``nn.Conv2d`` (``GhostModule(in, out, k, stride, padding,
    dilation, groups, bias)``, the primary convolution carrying them), so a
    host's ``block_conv_cfg=dict(type='mmext.GhostModule', ratio=2,
    dw_size=3)`` turns every residual-block convolution of
    :class:`~mmext.models.backbones.ResNet` into a Ghost module: the paper's
    Ghost-ResNet-50 (s=2, d=3).

    Shapes: ``(N, in_channels, H, W)`` -> ``(N, out_channels, H', W')`` with
    ``H'`` as ``nn.Conv2d`` with the same ``kernel_size`` / ``stride`` /
    ``padding`` / ``dilation`` gives it (``ceil(H / stride)`` with the
    default padding).

    Args:
        in_channels (int): Input channels.
        out_channels (int): Output channels.
        kernel_size (int): Kernel of the primary convolution. Defaults to 1
            (the official default; GhostNet uses only 1x1 primaries).
        stride (int): Stride of the primary convolution. Defaults to 1.
        padding (int, optional): Its padding; None gives the official
            ``dilation * (kernel_size // 2)``. Defaults to None.
        dilation (int): Its dilation. Defaults to 1.
        groups (int): Its groups (ResNeXt's 3x3); must divide
            ``in_channels`` and ``ceil(out_channels / ratio)``. Defaults to 1.
        bias (bool): Bias of the primary convolution (redundant before its
            norm; the official module has none). Defaults to False.
        ratio (int): ``s``, output channels per intrinsic channel (>= 1).
            Defaults to 2.
        dw_size (int): ``d``, kernel of the cheap depth-wise convolution.
            Defaults to 3.
        relu (bool): ReLU after both norms (the official flag; the second
            module of a Ghost bottleneck is linear). Defaults to True.
        norm_cfg (dict | None): Norm after each convolution, None for none. A
            host fills it with its own ``norm_cfg`` (SyncBN in multi-GPU
            configs). Defaults to BN.

    Raises:
        ValueError: ``ratio < 1``, or ``groups`` not dividing the channels.

    Source: huawei-noah/Efficient-AI-Backbones ``ghostnet_pytorch/ghostnet.py``
    (``GhostModule``); paper Sec. 3.1.
    """

    # Its two norms run per position: batch 1 trains on any map larger than
    # 1x1 (mmext.models.layers.unit_norm).
    host_norm_args = ('norm_cfg', )
    component_examples = (
        ComponentExample('conv'),
        # ratio 3 with 24 outputs: 8 intrinsic + 16 ghost maps; 5x5 cheap op.
        ComponentExample('conv', dict(ratio=3, dw_size=5, relu=False)),
    )

    def __init__(self, in_channels, out_channels, kernel_size=1, stride=1, padding=None,
                 dilation=1, groups=1, bias=False, ratio=2, dw_size=3, relu=True,
                 norm_cfg=dict(type='BN')):
        super().__init__()
        if ratio < 1:
            raise ValueError(f'GhostModule: ratio={ratio} must be >= 1')
        init_channels = math.ceil(out_channels / ratio)
        if in_channels % groups or init_channels % groups:
            raise ValueError(f'GhostModule: groups={groups} must divide in_channels '
                             f'({in_channels}) and the {init_channels} intrinsic channels '
                             f'(ceil({out_channels} / ratio {ratio}))')
        if padding is None:
            padding = dilation * (kernel_size // 2)
        new_channels = init_channels * (ratio - 1)
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.ratio = ratio
        # Channels of the cheap branch that survive the final slice.
        self.ghost_channels = out_channels - init_channels
        act = (lambda: nn.ReLU(inplace=True)) if relu else nn.Identity
        self.primary_conv = nn.Sequential(
            nn.Conv2d(in_channels, init_channels, kernel_size, stride, padding, dilation,
                      groups, bias=bias), _norm(norm_cfg, init_channels), act())
        self.cheap_operation = nn.Sequential(
            nn.Conv2d(init_channels, new_channels, dw_size, 1, dw_size // 2,
                      groups=init_channels, bias=False),
            _norm(norm_cfg, new_channels), act()) if new_channels else None

    def forward(self, x):
        x1 = self.primary_conv(x)
        if self.cheap_operation is None:
            return x1
        x2 = self.cheap_operation(x1)
        if x2.size(1) != self.ghost_channels:
            x2 = x2[:, :self.ghost_channels]
        return torch.cat([x1, x2], dim=1)


class SqueezeExcite(nn.Module):
    """``x * hard_sigmoid(conv_expand(relu(conv_reduce(mean_HW(x)))))``,
    ``hard_sigmoid(z) = relu6(z + 3) / 6``; no norm on the pooled
    descriptor (one image per device trains). Official names."""

    def __init__(self, channels, reduced):
        super().__init__()
        self.conv_reduce = nn.Conv2d(channels, reduced, 1, bias=True)
        self.act1 = nn.ReLU(inplace=True)
        self.conv_expand = nn.Conv2d(reduced, channels, 1, bias=True)
        self.gate = nn.Hardsigmoid()

    def forward(self, x):
        se = self.conv_expand(self.act1(self.conv_reduce(x.mean((2, 3), keepdim=True))))
        return x * self.gate(se)


class GhostBottleneck(nn.Module):
    """Ghost bottleneck: GhostModule(in -> mid, ReLU) -> [DW k x k stride s +
    norm, if s > 1] -> [SE] -> GhostModule(mid -> out, linear), plus the
    shortcut (identity if ``in == out`` and ``s == 1``, else DW k x k stride
    s + norm -> 1x1 + norm); no activation after the sum."""

    def __init__(self, in_channels, mid_channels, out_channels, dw_kernel_size=3, stride=1,
                 se_ratio=0., norm_cfg=dict(type='BN')):
        super().__init__()
        pad = (dw_kernel_size - 1) // 2
        self.ghost1 = GhostModule(in_channels, mid_channels, relu=True, norm_cfg=norm_cfg)
        if stride > 1:
            self.conv_dw = nn.Conv2d(mid_channels, mid_channels, dw_kernel_size, stride, pad,
                                     groups=mid_channels, bias=False)
            self.bn_dw = _norm(norm_cfg, mid_channels)
        else:
            self.conv_dw = self.bn_dw = None
        self.se = SqueezeExcite(mid_channels, make_divisible(mid_channels * se_ratio, 4)) \
            if se_ratio > 0 else None
        self.ghost2 = GhostModule(mid_channels, out_channels, relu=False, norm_cfg=norm_cfg)
        if in_channels == out_channels and stride == 1:
            self.shortcut = nn.Sequential()
        else:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, in_channels, dw_kernel_size, stride, pad,
                          groups=in_channels, bias=False),
                _norm(norm_cfg, in_channels),
                nn.Conv2d(in_channels, out_channels, 1, bias=False),
                _norm(norm_cfg, out_channels))

    def forward(self, x):
        out = self.ghost1(x)
        if self.conv_dw is not None:
            out = self.bn_dw(self.conv_dw(out))
        if self.se is not None:
            out = self.se(out)
        return self.ghost2(out) + self.shortcut(x)


class ConvBnAct(nn.Module):
    """1x1 conv -> norm -> ReLU (the last block group; official names)."""

    def __init__(self, in_channels, out_channels, norm_cfg=dict(type='BN')):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.bn1 = _norm(norm_cfg, out_channels)
        self.act1 = nn.ReLU(inplace=True)

    def forward(self, x):
        return self.act1(self.bn1(self.conv(x)))


# The official block table: one list per block group ``blocks[i]`` (i = 0..8),
# each entry (dw kernel k, mid channels, out channels, SE ratio, stride).
# Group 9 is the 1x1 ConvBnAct to the last mid width (960 at width 1).
GHOSTNET_BLOCKS = (
    ((3, 16, 16, 0, 1), ),
    ((3, 48, 24, 0, 2), ),
    ((3, 72, 24, 0, 1), ),
    ((5, 72, 40, 0.25, 2), ),
    ((5, 120, 40, 0.25, 1), ),
    ((3, 240, 80, 0, 2), ),
    ((3, 200, 80, 0, 1), (3, 184, 80, 0, 1), (3, 184, 80, 0, 1), (3, 480, 112, 0.25, 1),
     (3, 672, 112, 0.25, 1)),
    ((5, 672, 160, 0.25, 2), ),
    ((5, 960, 160, 0, 1), (5, 960, 160, 0.25, 1), (5, 960, 160, 0, 1), (5, 960, 160, 0.25, 1)),
)


@MODELS.register_module()
class GhostNet(DenseBackbone):
    """GhostNet as a multi-scale backbone.

    The network is the official classification network without its head:
    ``conv_stem`` (3x3 stride 2, 16 channels) -> ``bn1`` -> ReLU, then ten
    block groups ``blocks.0`` .. ``blocks.9`` (Ghost bottlenecks, the last
    group a 1x1 ConvBnAct to 960 channels). Every block group is a "stage"
    of the contract: ``out_indices`` picks block groups, ``out_channels`` /
    ``out_strides`` have ten entries. At width 1.0 the groups give

    ========  ==  ==  ==  ==  ==  ==  ===  ===  ===  ===
    group      0   1   2   3   4   5    6    7    8    9
    channels  16  24  24  40  40  80  112  160  160  960
    stride     2   4   4   8   8  16   16   32   32   32
    ========  ==  ==  ==  ==  ==  ==  ===  ===  ===  ===

    and the default ``out_indices=(2, 4, 6, 9)`` is the last group of each
    stride 4, 8, 16, 32: ``(24, 40, 112, 960)`` channels. Channels at width
    ``w`` are ``make_divisible(c * w, 4)``.

    Shapes: ``(N, 3, H, W)`` -> one ``(N, out_channels[i], ceil(H /
    out_strides[i]), ceil(W / out_strides[i]))`` map per ``i`` in
    ``out_indices`` (every strided convolution is 'same'-padded).

    Args:
        arch (str | dict): ``'0.5x'``, ``'1.0x'``, ``'1.1x'``, ``'1.3x'``
            (aliases ``'0.5'`` .. ``'1.3'``), or ``dict(width=w)``.
        in_channels (int): Input channels. Defaults to 3.
        norm_cfg (dict): Norm of every layer (BN in the official code; SyncBN
            for multi-GPU dense training).
        out_indices (Sequence[int]): Block groups 0..9 whose outputs are
            returned. Defaults to (2, 4, 6, 9).
        frozen_stages (int): The first ``frozen_stages`` block groups are
            frozen; group 0 includes the stem (``conv_stem``, ``bn1``), so
            ``frozen_stages=1`` freezes stem + ``blocks.0`` and 0 or -1
            nothing (as every mmext design; mmdet's ResNet freezes its stem at
            0).
        norm_eval, with_cp, init_cfg: see :class:`DenseBackbone`
            (``with_cp`` checkpoints each Ghost bottleneck).

    Raises:
        ValueError: an unknown ``arch``, a dict without ``width``, or bad
            ``out_indices`` / ``frozen_stages``.

    Source: huawei-noah/Efficient-AI-Backbones ``ghostnet_pytorch/ghostnet.py``;
    timm ``timm/models/ghostnet.py`` (same layout).
    """

    num_stages = 10
    arch_settings = {
        '0.5x': dict(width=0.5),
        '1.0x': dict(width=1.0),
        '1.1x': dict(width=1.1),
        '1.3x': dict(width=1.3),
    }
    arch_aliases = {'0.5': '0.5x', '1.0': '1.0x', '1.1': '1.1x', '1.3': '1.3x', '1x': '1.0x'}
    # Width 0.1: every channel count at its floor of 4 to 16, the full block
    # table (SE, strided and identity shortcuts) at a fraction of the cost.
    backbone_examples = (dict(arch=dict(width=0.1)), )
    # The official init: mmengine's defaults are PyTorch's (Kaiming-uniform
    # convs, unit BN), as the official and timm code leave them.
    default_init_cfg = None
    official_drop_prefixes = ('conv_head.', 'classifier.')
    reference_implementations = {
        '0.5x': ('timm:ghostnet_050', ),
        '1.0x': ('timm:ghostnet_100', ),
        '1.3x': ('timm:ghostnet_130', ),
    }

    def __init__(self, arch='1.0x', in_channels=3, norm_cfg=dict(type='BN', requires_grad=True),
                 out_indices=(2, 4, 6, 9), frozen_stages=-1, norm_eval=False, with_cp=False,
                 init_cfg=None):
        super().__init__(out_indices=out_indices, frozen_stages=frozen_stages,
                         norm_eval=norm_eval, with_cp=with_cp, init_cfg=init_cfg)
        width = self.resolve_arch(arch, required=('width', ))['width']
        self.width = width
        stem = make_divisible(16 * width, 4)
        self.conv_stem = nn.Conv2d(in_channels, stem, 3, 2, 1, bias=False)
        self.bn1 = _norm(norm_cfg, stem)
        self.act1 = nn.ReLU(inplace=True)
        groups, channels, strides = [], [], []
        prev, stride = stem, 2
        for group in GHOSTNET_BLOCKS:
            blocks = []
            for k, mid, out, se_ratio, s in group:
                out = make_divisible(out * width, 4)
                blocks.append(GhostBottleneck(prev, make_divisible(mid * width, 4), out, k, s,
                                              se_ratio, norm_cfg))
                prev, stride = out, stride * s
            groups.append(nn.Sequential(*blocks))
            channels.append(prev)
            strides.append(stride)
        last = make_divisible(GHOSTNET_BLOCKS[-1][-1][1] * width, 4)
        groups.append(nn.Sequential(ConvBnAct(prev, last, norm_cfg)))
        channels.append(last)
        strides.append(stride)
        self.blocks = nn.Sequential(*groups)
        self.out_channels = tuple(channels)
        self.out_strides = tuple(strides)

    @classmethod
    def convert_official(cls, state_dict):
        """Official / timm keys are this class's keys; the classifier
        (``conv_head.*``, ``classifier.*``) is dropped by the loader and a
        ``module.`` prefix by the checkpoint reader."""
        return dict(state_dict)

    def stage_modules(self, index):
        if index == 0:
            return [self.conv_stem, self.bn1, self.blocks[0]]
        return [self.blocks[index]]

    def forward(self, x):
        # On CPU the network runs in channels-last memory: oneDNN's depth-wise
        # kernels (the cheap operations, the strided and shortcut depth-wise
        # convs: most of GhostNet's layers) are several times faster on it than
        # on NCHW, and every op keeps the format. Other devices keep NCHW (not
        # measured there). Outputs are NCHW-contiguous either way.
        x = x.contiguous(memory_format=compute_memory_format(x))
        x = self.act1(self.bn1(self.conv_stem(x)))
        outs = []
        for i in range(max(self.out_indices) + 1):
            for block in self.blocks[i]:
                x = checkpoint_call(block, x, with_cp=self.with_cp)
            if i in self.out_indices:
                outs.append(x.contiguous())
        return tuple(outs)
