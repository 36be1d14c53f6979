"""SKConv: the Selective Kernel unit (Li et al., "Selective Kernel Networks", CVPR 2019)."""
import torch
import torch.nn as nn
from mmcv.cnn import ConvModule
from mmengine.model import BaseModule
from torch.nn.modules.utils import _pair

from mmext.registry import MODELS
from .protocols import AttentionMap, AttentionMaps, ComponentExample
from .unit_norm import (SAME_AS_NORM_CFG, check_norm_input, check_pooled_norm_cfg,
                        resolve_norm_cfg)


@MODELS.register_module()
class SKConv(BaseModule):
    """Selective Kernel convolution (split → fuse → select).

    * Split: ``num_branches`` grouped k×k convolutions of the same input, branch
      ``i`` with dilation ``dilation * (i + 1)`` (3x3 and 3x3 dilation 2 stand
      for the paper's 3x3 and 5x5 kernels), each followed by BN + ReLU. The
      padding of branch ``i`` grows with its dilation so that every branch has
      the output size of ``nn.Conv2d(in, out, k, stride, padding, dilation)``.
    * Fuse: sum of the branches → global average pool → 1x1 ``fc`` to
      ``d = max(out_channels // reduction, min_channels)`` (no bias) → norm
      (``attn_norm_cfg``) → ReLU.
    * Select: one 1x1 ``select_fc`` (no bias) to ``num_branches * out_channels``
      logits, softmax across the branches per channel, weighted sum of the
      branches.

    This follows the official SKNet-50 (``implus/SKNet`` Caffe prototxt):
    bias-free branch convolutions with BN + ReLU, a bias-free ``fc`` with BN,
    and a single bias-free FC producing all branches' logits (equivalent to the
    paper's per-branch matrices A, B stacked). timm's ``SelectiveKernel``
    splits the input channels across the branches by default, which the paper
    does not, so it is not reused here.

    Used in ResNeXt's bottleneck 3x3 slot (mmdet's ``dcn=``), the host's
    ``groups`` is the paper's G (32 for SKNet-50). The host's bottleneck then
    applies its own ``norm2`` BN to the SK output, which the official network
    does not have (the SK output feeds the 1x1 expansion directly).

    The fuse norm sees the pooled ``(N, d, 1, 1)`` descriptor, one value per
    channel at one image per device. The mmext ResNet hosts pass their
    ``norm_cfg`` (SyncBN in mmseg configs) to ``norm_cfg``, which the fuse
    norm follows unless ``attn_norm_cfg`` is set; SyncBN across several
    devices pools the batch. Otherwise a training forward at batch 1 raises an
    :class:`~mmext.utils.errors.MMExtError` naming the fixes.

    Args:
        in_channels (int): Input channels.
        out_channels (int): Output channels.
        kernel_size (int | tuple[int]): Kernel size of every branch. Defaults to 3.
        stride (int | tuple[int]): Stride of every branch. Defaults to 1.
        padding (int | tuple[int]): Padding of the first branch. Defaults to 0.
        dilation (int | tuple[int]): Dilation of the first branch. Defaults to 1.
        groups (int): Groups of every branch convolution (the paper's G).
            Defaults to 1.
        bias (bool): Bias in the branch convolutions (redundant before BN).
            Defaults to False.
        num_branches (int): Number of branches M. Defaults to 2.
        reduction (int): Reduction ratio r of the fuse FC. Defaults to 16.
        min_channels (int): Lower bound L of the fuse width. Defaults to 32.
        norm_cfg (dict): Norm after every branch conv (and the fuse FC, see
            ``attn_norm_cfg``). Defaults to ``dict(type='BN')``.
        attn_norm_cfg (dict | None | str): Norm after the fuse FC, on the
            pooled descriptor: a norm config (e.g. ``dict(type='GN',
            num_groups=1)``), None for none, or ``'norm_cfg'`` for the same
            as ``norm_cfg``. Defaults to ``'norm_cfg'``.
        act_cfg (dict): Activation after every branch conv and the fuse FC.
            Defaults to ``dict(type='ReLU')``.
        init_cfg (dict, optional): Initialization config. Defaults to None.

    Raises:
        MMExtError: In training, when the fuse norm is a BatchNorm that sees
            one value per channel (one image on this device).
    """

    # The argument a host fills with its own norm_cfg (unit_norm.with_host_norm).
    host_norm_args = ('norm_cfg',)
    attention_maps = AttentionMaps('SK', 'branch selection weights per channel', (
        AttentionMap('select_fc', 'channel', transform='selection_weights'), ))
    component_examples = (ComponentExample('conv', one_image_raises=True), )

    def __init__(self, in_channels, out_channels, kernel_size=3, stride=1, padding=0, dilation=1,
                 groups=1, bias=False, num_branches=2, reduction=16, min_channels=32,
                 norm_cfg=dict(type='BN'), attn_norm_cfg=SAME_AS_NORM_CFG,
                 act_cfg=dict(type='ReLU'), init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        if num_branches < 1:
            raise ValueError(f'num_branches must be >= 1, got {num_branches}')
        kernel_size, padding, dilation = _pair(kernel_size), _pair(padding), _pair(dilation)
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.num_branches = num_branches
        self.branches = nn.ModuleList()
        for i in range(num_branches):
            dil = tuple(d * (i + 1) for d in dilation)
            # Keep the output size of the first branch: each extra dilation step
            # widens the receptive field by (k - 1) // 2 pixels per side.
            pad = tuple(p + (k - 1) // 2 * (di - d)
                        for p, k, di, d in zip(padding, kernel_size, dil, dilation))
            self.branches.append(
                ConvModule(in_channels, out_channels, kernel_size, stride=stride, padding=pad,
                           dilation=dil, groups=groups, bias=bias, norm_cfg=norm_cfg,
                           act_cfg=act_cfg))
        self.fuse_channels = max(out_channels // reduction, min_channels)
        attn_norm_cfg = resolve_norm_cfg(attn_norm_cfg, norm_cfg)
        check_pooled_norm_cfg(attn_norm_cfg, self.fuse_channels, 'SKConv', 'attn_norm_cfg')
        self.fc = ConvModule(out_channels, self.fuse_channels, 1, bias=False,
                             norm_cfg=attn_norm_cfg, act_cfg=act_cfg)
        self.select_fc = nn.Conv2d(self.fuse_channels, num_branches * out_channels, 1, bias=False)

    def branch_attention(self, fused):
        """Softmax weights (N, M, C_out, 1, 1) of the branches from the fused
        feature map (N, C_out, H, W)."""
        pooled = fused.mean((2, 3), keepdim=True)
        if self.fc.with_norm:
            check_norm_input(self.fc.norm, pooled, self, 'attn_norm_cfg')
        z = self.fc(pooled)
        logits = self.select_fc(z).view(z.size(0), self.num_branches, self.out_channels, 1, 1)
        return logits.softmax(dim=1)

    def selection_weights(self, logits):
        """``[('branch i', (N, C_out))]``: the softmax over the branches of
        the ``select_fc`` logits (N, M * C_out, 1, 1), as
        :meth:`branch_attention` computes it (the ``attention_maps``
        transform)."""
        attn = logits.view(logits.size(0), self.num_branches, self.out_channels).softmax(dim=1)
        return [(f'branch {i}', attn[:, i]) for i in range(self.num_branches)]

    def forward(self, x):
        feats = torch.stack([branch(x) for branch in self.branches], dim=1)
        attn = self.branch_attention(feats.sum(dim=1))
        return (feats * attn).sum(dim=1)
