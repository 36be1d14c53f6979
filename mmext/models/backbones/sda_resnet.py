"""SDA-ResNet: ResNet with selective depth attention across the blocks of a stage.

Guo et al., "Selective Depth Attention Networks for Adaptive Multi-scale
Feature Representation", IEEE TAI 2024 (arXiv 2022). Official code:
https://github.com/QingbeiGuo/SDA-xNet (``SDA-ResNet/models/resnet/resnet_at.py``
for ImageNet, ``mmdetection/mmdet/models/backbones/sdanet.py`` for detection).

Within one stage every block sees the same resolution but a larger receptive
field than the one before it. SDA keeps the residual sum ``Z_i`` of every block
(before its final ReLU), squeezes ``F = sum_i Z_i`` to ``v = ReLU(BN(W u))``
with ``u = GAP(F)``, predicts one channel vector per block from ``v`` and
softmaxes them over the blocks, and returns ``ReLU(sum_i a_i * Z_i)`` as the
stage output instead of the last block's output.

The BN of the squeeze sees the pooled ``(N, d, 1, 1)`` descriptor, one value
per channel at one image per device: SyncBN across several devices pools the
batch; otherwise a training forward at batch 1 raises an
:class:`~mmext.utils.errors.MMExtError` naming the fixes (>= 2 images per
device, SyncBN, ``attn_norm_cfg`` GN or None, ``norm_eval``).
"""
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmdet.models.layers import ResLayer
from mmengine.model import BaseModule

from mmext.models.layers.unit_norm import (SAME_AS_NORM_CFG, build_unit_norm, check_norm_input,
                                           resolve_norm_cfg)
from mmext.registry import MODELS
from .resnet import BasicBlock, ResNet, XBottleneck


class SDAResLayer(BaseModule):
    """One ResNet stage whose output is the selective-depth-attention mix of
    its blocks' outputs.

    The blocks are built by mmdet's ``ResLayer`` (downsample, ``avg_down``,
    ``downsample_first``) and registered here under ``'0'``, ``'1'``, ... so
    that block weights keep mmdet/torchvision ResNet names
    (``layer1.0.conv1.weight``). The attention adds ``fc`` (1x1 conv C->d
    without bias, norm, ReLU) and ``fcs`` (one 1x1 conv d->C with bias per
    block), named as ``stage{s}.fc`` / ``stage{s}.fcs`` in the official code.

    Args:
        block (type): A host block with ``forward_preact`` (``BasicBlock`` or
            ``XBottleneck`` of :mod:`mmext.models.backbones.resnet`).
        inplanes (int): Input channels of the stage.
        planes (int): Planes of the blocks; the stage outputs
            ``planes * block.expansion`` channels.
        num_blocks (int): Number of blocks.
        reduction (int): ``d = max(C // reduction, min_channels)``.
            Defaults to 16.
        min_channels (int): Lower bound of ``d``. Defaults to 64.
        norm_cfg (dict): Norm layer of the blocks (and of the attention
            squeeze, see ``attn_norm_cfg``). Defaults to ``dict(type='BN')``.
        attn_norm_cfg (dict | None | str): Norm of the attention squeeze
            (``fc.1``): a norm config (e.g. ``dict(type='GN',
            num_groups=1)``), None for none, or ``'norm_cfg'`` for the same
            as ``norm_cfg``. Defaults to ``'norm_cfg'``.
        init_cfg (dict, optional): Passed to every block (as mmdet's
            ``ResLayer`` does, which is how ``zero_init_residual`` reaches the
            blocks' last norm). Defaults to None.
        **kwargs: Everything else mmdet's ``ResLayer`` and the block accept
            (``stride``, ``dilation``, ``style``, ``avg_down``, ``with_cp``,
            ``conv_cfg``, ``dcn``, ``plugins``, ``groups``, ...).

    Raises:
        MMExtError: In training, when the squeeze's BatchNorm sees one value
            per channel (one image on this device).
    """

    # Takes the host's norm directly (SDAResNet builds it with its norm_cfg).
    host_norm_args = ('norm_cfg',)

    def __init__(self,
                 block,
                 inplanes,
                 planes,
                 num_blocks,
                 reduction=16,
                 min_channels=64,
                 norm_cfg=dict(type='BN'),
                 attn_norm_cfg=SAME_AS_NORM_CFG,
                 init_cfg=None,
                 **kwargs):
        super().__init__()
        assert hasattr(block, 'forward_preact'), \
            f'{block.__name__} cannot return its pre-activation output'
        blocks = ResLayer(block=block, inplanes=inplanes, planes=planes,
                          num_blocks=num_blocks, norm_cfg=norm_cfg,
                          init_cfg=init_cfg, **kwargs)
        for name, module in blocks.named_children():
            self.add_module(name, module)
        self.num_blocks = num_blocks

        channels = planes * block.expansion
        squeezed = max(channels // reduction, min_channels)
        self.fc = nn.Sequential(
            nn.Conv2d(channels, squeezed, 1, bias=False),
            build_unit_norm(resolve_norm_cfg(attn_norm_cfg, norm_cfg), squeezed, 'SDAResNet',
                            'attn_norm_cfg'),
            nn.ReLU(inplace=True))
        self.fcs = nn.ModuleList(
            nn.Conv2d(squeezed, channels, 1) for _ in range(num_blocks))

    @property
    def blocks(self):
        """list[nn.Module]: the residual blocks in order."""
        return [getattr(self, str(i)) for i in range(self.num_blocks)]

    # Indexing/len over the blocks, as on mmdet's ResLayer (``layer1[0]``).
    def __getitem__(self, idx):
        return self.blocks[idx]

    def __len__(self):
        return self.num_blocks

    def depth_attention(self, feats):
        """Softmax-over-blocks weights ``(N, num_blocks, C, 1, 1)`` for the
        block outputs ``feats`` (list of ``(N, C, H, W)``)."""
        u = self.fc[0](F.adaptive_avg_pool2d(sum(feats), 1))
        check_norm_input(self.fc[1], u, self, 'attn_norm_cfg', unit='SDAResNet stage')
        v = self.fc[2](self.fc[1](u))
        logits = torch.stack([fc(v) for fc in self.fcs], dim=1)
        return logits.softmax(dim=1)

    def forward(self, x):
        feats = []
        for block in self.blocks:
            z = block.forward_preact(x)
            feats.append(z)
            # Not in place: z is kept for the final mix.
            x = F.relu(z)
        attn = self.depth_attention(feats)
        out = sum(attn[:, i] * z for i, z in enumerate(feats))
        return F.relu(out)


@MODELS.register_module()
class SDAResNet(ResNet):
    """SDA-ResNet backbone (selective depth attention in every stage).

    The mmext ResNet host whose stages are :class:`SDAResLayer`; every host
    argument (``block_conv_cfg``, ``out_indices``, ``frozen_stages`` (freezes the stage's
    attention too), ``norm_eval``, ``dcn``/``stage_with_dcn``, ``plugins``,
    ``with_cp``, ``style``, ``deep_stem``, ``avg_down``, ``zero_init_residual``,
    ``init_cfg``, ``drop_path_rate``: each block's residual branch, before the
    sum SDA mixes) keeps its meaning. State-dict names follow mmdet's ResNet
    (``layer{s}.{b}.conv1``, ...) plus ``layer{s}.fc.{0,1}`` and
    ``layer{s}.fcs.{b}``; :meth:`convert_official` maps an official
    ImageNet checkpoint onto them.

    Depths: 18/34 (basic blocks), 50/101/152 (bottleneck, groups 1) as in
    ResNet, and 86 = SDA-ResNet-86 of the paper: bottleneck depths
    (5, 6, 12, 5) with an 8-group 3x3 of width ``planes`` (64, 128, 256, 512),
    i.e. ``groups=8, base_width=8``; 27.22M parameters with the ImageNet
    classifier.

    Takes :class:`mmext.models.backbones.ResNet`'s signature, i.e. mmdet
    ResNet's positional arguments in their order and with their defaults
    (``SDAResNet(50, 3)``: ``in_channels=3``; ``norm_eval=True``); the SDA
    arguments below and ``block_conv_cfg`` are keyword-only.

    Args:
        depth (int): One of 18, 34, 50, 86, 101, 152.
        *args: mmdet ResNet's positional arguments after ``depth``.
        groups (int, optional): Groups of the bottleneck 3x3 conv. Defaults to
            the depth's setting (8 for depth 86, else 1).
        base_width (int, optional): ResNeXt base width per group, used when
            ``groups > 1``. Defaults to the depth's setting (8 for depth 86,
            else 4).
        reduction (int): Channel reduction of the attention squeeze,
            ``d = max(C // reduction, min_channels)``. Defaults to 16.
        min_channels (int): Lower bound of ``d``. Defaults to 64.
        attn_norm_cfg (dict | None | str): Norm of the attention squeeze of
            every stage: a norm config (e.g. ``dict(type='GN',
            num_groups=1)``), None for none, or ``'norm_cfg'`` for the
            backbone's ``norm_cfg`` (SyncBN in the UperNet configs).
            Defaults to ``'norm_cfg'``.
        **kwargs: Keyword arguments of :class:`mmext.models.backbones.ResNet`.

    Raises:
        MMExtError: In training, at one image per device with a BatchNorm
            squeeze (see :class:`SDAResLayer`).

    Example:
        >>> import torch
        >>> from mmext.models.backbones.sda_resnet import SDAResNet
        >>> self = SDAResNet(depth=50).eval()
        >>> outs = self(torch.rand(1, 3, 64, 64))
        >>> [tuple(o.shape) for o in outs]
        [(1, 256, 16, 16), (1, 512, 8, 8), (1, 1024, 4, 4), (1, 2048, 2, 2)]
    """

    arch_settings = {
        18: (BasicBlock, (2, 2, 2, 2)),
        34: (BasicBlock, (3, 4, 6, 3)),
        50: (XBottleneck, (3, 4, 6, 3)),
        86: (XBottleneck, (5, 6, 12, 5)),
        101: (XBottleneck, (3, 4, 23, 3)),
        152: (XBottleneck, (3, 8, 36, 3)),
    }
    # (groups, base_width) of the bottleneck 3x3 per depth; others: (1, 4).
    arch_groups = {86: (8, 8)}
    # Small instances for tests/test_backbone_contract.py: basic blocks, and
    # grouped bottlenecks as in SDA-ResNet-86.
    backbone_examples = (
        dict(depth=18, base_channels=16, min_channels=8),
        dict(depth=50, base_channels=8, stem_channels=16, groups=2, base_width=8,
             min_channels=8),
    )

    # Unlike mmdet's identity rule on mmext.ResNeXt, zero_init_residual
    # zeroes the last norm of SDA's grouped bottleneck too (depths 50-152 are
    # groups=1 ResNet bottlenecks; 86 is the paper's grouped one).
    zero_init_norms = {BasicBlock: 'norm2', XBottleneck: 'norm3'}

    def __init__(self, depth, *args, groups=None, base_width=None, reduction=16,
                 min_channels=64, attn_norm_cfg=SAME_AS_NORM_CFG, **kwargs):
        default_groups, default_width = self.arch_groups.get(depth, (1, 4))
        # Read by make_res_layer, which runs inside the parent's __init__.
        self.groups = default_groups if groups is None else groups
        self.base_width = default_width if base_width is None else base_width
        self.reduction = reduction
        self.min_channels = min_channels
        self.attn_norm_cfg = attn_norm_cfg
        if depth in self.arch_settings:
            block = self.arch_settings[depth][0]
            assert self.groups == 1 or issubclass(block, XBottleneck), \
                f'depth {depth} uses basic blocks, which have no groups'
        super().__init__(depth, *args, **kwargs)

    def make_res_layer(self, **kwargs):
        """Pack all blocks of a stage into an :class:`SDAResLayer`."""
        if issubclass(kwargs['block'], XBottleneck):
            kwargs.update(groups=self.groups, base_width=self.base_width,
                          base_channels=self.base_channels)
        return SDAResLayer(
            reduction=self.reduction, min_channels=self.min_channels,
            attn_norm_cfg=self.attn_norm_cfg, **self.block_kwargs(kwargs))

    @classmethod
    def convert_official(cls, state_dict):
        """Map an official SDA-xNet ImageNet checkpoint to this backbone (the
        converter protocol of mmext's designs, see
        ``python -m mmext convert SDAResNet``).

        The official names are ``conv1``, ``bn1`` (stem),
        ``stage{s}.layers.{b}.{conv,bn}{1,2,3}``,
        ``stage{s}.layers.{b}.downsample.{0,1}``, ``stage{s}.fc.{0,1}`` and
        ``stage{s}.fcs.{b}``; the classifier head (``bn2``, the BN after
        global pooling, and ``fc``) is dropped. A ``module.`` prefix from
        DataParallel is stripped.

        Args:
            state_dict (dict[str, Tensor]): Official state dict.

        Returns:
            dict[str, Tensor]: State dict with this backbone's names.
        """
        converted = {}
        for key, value in state_dict.items():
            if key.startswith('module.'):
                key = key[len('module.'):]
            if key.startswith(('bn2.', 'fc.')):
                continue
            if key.startswith('stage'):
                stage, rest = key.split('.', 1)
                if rest.startswith('layers.'):
                    rest = rest[len('layers.'):]
                key = f'layer{stage[len("stage"):]}.{rest}'
            converted[key] = value
        return converted
