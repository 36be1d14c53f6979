"""Min-Nets: the Min block (Grüning & Barth, "Bio-inspired Min-Nets Improve
the Performance and Robustness of Deep Networks", NeurIPS 2021 SVRHM
workshop, arXiv 2201.02149).

Official code: pgruening/bio_inspired_min_nets_improve_the_performance_and_robustness_of_deep_networks,
``models/conv_blocks.py`` (``MinBlock`` = ``FPBlockJOV`` with its product
replaced by ``Minimum``, wrapped by ``ResidualAdapter``) and
``models/cifar_base_model.py`` (``CifarMinFP-LS``: the first block of each
stack of a PyramidNet-style CIFAR ResNet is a Min block). Written from that
description; no code is copied.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import ConvModule, build_conv_layer
from mmengine.model import BaseModule
from torch.utils import checkpoint as cp

from mmext.registry import MODELS
from .protocols import ComponentExample
from .stochastic_depth import DropPathMixin
from .unit_norm import check_norm_input


class InstanceNormOneSafe(nn.InstanceNorm2d):
    """``nn.InstanceNorm2d`` (no affine, no running statistics) that also
    takes a 1x1 map.

    Normalising a single value per channel and sample gives
    ``(x - mean) / sqrt(var + eps) = 0`` exactly, with a zero derivative.
    torch refuses that case ("Expected more than 1 spatial element"), at any
    batch size and in eval mode too; this returns the zeros the formula
    gives, so a Min block whose depth-wise output is 1x1 (a stride-2 block on
    a map of at most 2x2, e.g. the last stage on a small image) runs.
    """

    def forward(self, x):
        if x.shape[-2:].numel() == 1:
            return torch.zeros_like(x)
        return super().forward(x)


@MODELS.register_module()
class MinBlock(DropPathMixin, BaseModule):
    """The Min block: a residual block whose two depth-wise filter responses
    are combined by an elementwise minimum (a model of end-stopped cells).

    ``upper`` (1x1 conv ``in -> q*out`` + norm + ReLU), two parallel
    branches ``left_dw`` / ``right_dw`` (depth-wise ``k x k`` conv at the
    block's stride + InstanceNorm without affine + ReLU), their elementwise
    ``torch.minimum``, ``lower`` (1x1 conv ``q*out -> out`` + norm + ReLU),
    then the shortcut is added with **no activation after the sum** (as the
    official ``ResidualAdapter`` with ``relu_after_shortcut=False``).

    The shortcut is the block's own: the input, average-pooled (kernel and
    stride ``stride``, ``ceil_mode=True``; the official ``AvgPool2d(2, 2)``
    at the stride 2 every official block uses) when ``stride > 1``, then
    zero-padded to ``out_channels`` when ``in_channels < out_channels``, or a
    1x1 convolution with bias (``use_1x1``, official ``conv_for_res``)
    before the padding. A host builds no downsample path for it. A host's
    ``drop_path_rate`` drops ``lower``'s output (the residual branch) per
    sample before the sum (:class:`DropPathMixin`).

    As a ResNet host's block (``block_cfg=dict(type='mmext.MinBlock', q=2),
    block_cfg_blocks='first'``: the first block of each stage, the
    official ``CifarMinFP-LS`` placement) it is built as
    ``MinBlock(in_channels, planes * expansion, stride=s, dilation=d)``
    and the host passes its ``norm_cfg`` (``host_norm_args``).

    Norms and one image per device: the two BatchNorms (``upper`` and
    ``lower``) follow ``norm_cfg``; they see the block's input / output map,
    so they see one value per channel only at batch 1 on a 1x1 map, where a
    training forward stops with mmext's one-line error
    (:func:`~mmext.models.layers.unit_norm.check_norm_input`). The
    InstanceNorms normalise each sample on its own: they need no batch, and
    on a 1x1 map they give 0 (:class:`InstanceNormOneSafe`), so the minimum
    is 0 and the block reduces to ``lower(0) + shortcut``.

    Args:
        in_channels (int): Input channels.
        out_channels (int): Output channels (``>= in_channels`` unless
            ``use_1x1``).
        stride (int): Stride of the depth-wise branches and the shortcut
            pooling. Defaults to 1.
        dilation (int): Dilation of the depth-wise branches (a host's
            dilated stage); padding ``dilation * (k // 2)`` keeps
            ``ceil(H / stride)``. Defaults to 1.
        q (float): Expansion: the branches have ``int(q * out_channels)``
            channels (official ``feat_dim = int(q * out_dim)``). Defaults to 2
            (the paper's runs).
        kernel_size (int): Odd size ``k`` of the depth-wise kernels.
            Defaults to 3 (the paper's runs).
        use_1x1 (bool): 1x1 convolution (with bias) on the shortcut, as the
            official ``use_1x1``. Defaults to False.
        conv_cfg (dict, optional): Config of the four convolutions (mmcv
            ``build_conv_layer``). Defaults to None (``nn.Conv2d``).
        norm_cfg (dict | None): Norm of ``upper`` and ``lower`` (BN in the
            official code; a host's ``norm_cfg``, e.g. SyncBN, inside an
            mmext ResNet host). None: no norm, the 1x1 convs get a bias.
            Defaults to ``dict(type='BN')``.
        with_cp (bool): Recompute the block in the backward pass (gradient
            checkpointing). Defaults to False.
        init_cfg (dict, optional): Initialization config. Defaults to None.

    Shapes:
        ``(N, in_channels, H, W) -> (N, out_channels, ceil(H / stride),
        ceil(W / stride))``.

    Raises:
        ValueError: ``out_channels < in_channels`` without ``use_1x1`` (the
            zero-padding shortcut cannot drop channels), or an even
            ``kernel_size``.
        MMExtError: In training, when a BatchNorm of ``norm_cfg`` sees one
            value per channel (batch 1 on a 1x1 map on this device).

    Parameters: ``in*q*out + 2*q*out*k^2 + q*out*out`` conv weights, plus
    ``2*q*out + 2*out`` norm affines (plus ``in*out + out`` with
    ``use_1x1``); e.g. 1,696 for 16 -> 16 at ``q = 2, k = 3``.
    """

    host_norm_args = ('norm_cfg',)
    component_examples = (
        ComponentExample('block', dict(q=2), in_channels=16, out_channels=24),
        ComponentExample('block', dict(q=2), in_channels=16, out_channels=16),
        ComponentExample('block', dict(q=1.5, use_1x1=True, kernel_size=5), in_channels=16,
                         out_channels=8),
    )

    def __init__(self, in_channels, out_channels, stride=1, dilation=1, q=2, kernel_size=3,
                 use_1x1=False, conv_cfg=None, norm_cfg=dict(type='BN'), with_cp=False,
                 init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        if out_channels < in_channels and not use_1x1:
            raise ValueError(
                f'MinBlock: out_channels ({out_channels}) < in_channels ({in_channels}): the '
                'zero-padding shortcut cannot drop channels; set use_1x1=True')
        if kernel_size % 2 == 0:
            raise ValueError(f'MinBlock: kernel_size must be odd, got {kernel_size}')
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.stride = stride
        self.dilation = dilation
        self.with_cp = with_cp
        width = int(q * out_channels)
        self.upper = ConvModule(in_channels, width, 1, conv_cfg=conv_cfg, norm_cfg=norm_cfg,
                                act_cfg=dict(type='ReLU'))
        self.left_dw = self._branch(width, kernel_size, stride, dilation, conv_cfg)
        self.right_dw = self._branch(width, kernel_size, stride, dilation, conv_cfg)
        self.lower = ConvModule(width, out_channels, 1, conv_cfg=conv_cfg, norm_cfg=norm_cfg,
                                act_cfg=dict(type='ReLU'))
        self.shortcut_pool = (nn.AvgPool2d(stride, stride, ceil_mode=True)
                              if stride > 1 else None)
        self.shortcut_conv = (build_conv_layer(conv_cfg, in_channels, out_channels, 1)
                              if use_1x1 else None)

    @staticmethod
    def _branch(width, kernel_size, stride, dilation, conv_cfg):
        return nn.Sequential(
            build_conv_layer(conv_cfg, width, width, kernel_size, stride=stride,
                             padding=dilation * (kernel_size // 2), dilation=dilation,
                             groups=width, bias=False),
            InstanceNormOneSafe(width), nn.ReLU())

    def shortcut(self, x):
        """The identity path: ``(N, in, H, W) -> (N, out, ceil(H / s),
        ceil(W / s))`` (pool, optional 1x1 conv, zero channels appended)."""
        if self.shortcut_pool is not None:
            x = self.shortcut_pool(x)
        if self.shortcut_conv is not None:
            x = self.shortcut_conv(x)
        missing = self.out_channels - x.size(1)
        return F.pad(x, (0, 0, 0, 0, 0, missing)) if missing else x

    def _forward(self, x):
        if self.upper.with_norm:
            check_norm_input(self.upper.norm, x, self, 'norm_cfg')
        y = self.upper(x)
        y = torch.minimum(self.left_dw(y), self.right_dw(y))
        if self.lower.with_norm:
            check_norm_input(self.lower.norm, y, self, 'norm_cfg')
        return self.drop_residual(self.lower(y)) + self.shortcut(x)

    def forward(self, x):
        if self.with_cp and x.requires_grad:
            return cp.checkpoint(self._forward, x, use_reentrant=False)
        return self._forward(x)
