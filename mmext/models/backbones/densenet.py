"""DenseNet-BC as a stride-4..32 backbone.

Huang et al., "Densely Connected Convolutional Networks", CVPR 2017
(arXiv 1608.06993); the ImageNet models of torchvision
(``torchvision/models/densenet.py``), which timm's ``densenet121`` etc. port.

Every dense layer reads the concatenation of the block input and of all
earlier layers' outputs, ``BN -> ReLU -> 1x1 (bn_size * k) -> BN -> ReLU ->
3x3 (k)``, and adds ``k`` (the growth rate) channels; a transition ``BN ->
ReLU -> 1x1 (C -> C // 2) -> AvgPool 2x2`` joins two blocks. The dense
outputs are the four dense blocks *before* their transitions (strides 4, 8,
16) and the last block after the final BN + ReLU (stride 32), the taps of
timm's ``features_only`` (not mmpretrain's pooled, post-transition ones).

The modules keep torchvision's names (``features.conv0``, ``features.norm0``,
``features.denseblock{b}.denselayer{l}.{norm1,conv1,norm2,conv2}``,
``features.transition{t}.{norm,conv}``, ``features.norm5``), so torchvision's
and timm's checkpoints load key for key (the classifier dropped); the old
``norm.1`` / ``conv.2`` keys of torchvision's released files are renamed as
torchvision renames them.
"""
import re

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import build_norm_layer

from mmext.registry import MODELS
from .base_backbone import DenseBackbone, checkpoint_call

#: torchvision's released files (and timm's copies of them) were saved when a
#: dense layer's modules were called ``norm.1``, ``relu.1``, ``conv.1``, ...;
#: torchvision's ``_load_state_dict`` removes the dot before the digit with
#: this pattern.
OLD_LAYER_KEY = re.compile(
    r'^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var'
    r'|num_batches_tracked))$')


class DenseLayer(nn.Module):
    """``BN -> ReLU -> 1x1 (bn_size * growth) -> BN -> ReLU -> 3x3 (growth)``
    on the concatenation of its inputs.

    Args:
        in_channels (int): Channels of all inputs together.
        growth_rate (int): Output channels ``k``.
        bn_size (int): Bottleneck width in units of ``k``.
        norm_cfg (dict): Norm of both BNs.
        drop_rate (float): Dropout on the output (training only).
        with_cp (bool): Recompute the concatenation, ``norm1`` and ``conv1``
            in the backward pass instead of storing them (torchvision's
            ``memory_efficient``): the concatenated input and the bottleneck's
            BN output are the memory that grows quadratically with depth.
    """

    def __init__(self, in_channels, growth_rate, bn_size, norm_cfg, drop_rate=0.,
                 with_cp=False):
        super().__init__()
        mid = bn_size * growth_rate
        self.norm1 = build_norm_layer(norm_cfg, in_channels)[1]
        self.conv1 = nn.Conv2d(in_channels, mid, 1, bias=False)
        self.norm2 = build_norm_layer(norm_cfg, mid)[1]
        self.conv2 = nn.Conv2d(mid, growth_rate, 3, padding=1, bias=False)
        self.drop_rate = float(drop_rate)
        self.with_cp = with_cp

    def bottleneck(self, *inputs):
        x = torch.cat(inputs, 1) if len(inputs) > 1 else inputs[0]
        return self.conv1(F.relu(self.norm1(x), inplace=True))

    def forward(self, inputs):
        """``inputs``: list of ``(N, C_j, H, W)`` maps with ``sum C_j =
        in_channels`` -> ``(N, growth_rate, H, W)``."""
        x = checkpoint_call(self.bottleneck, *inputs, with_cp=self.with_cp)
        x = self.conv2(F.relu(self.norm2(x), inplace=True))
        if self.drop_rate > 0:
            x = F.dropout(x, p=self.drop_rate, training=self.training)
        return x


class DenseBlock(nn.ModuleDict):
    """``num_layers`` dense layers (``denselayer1`` ..); the output is the
    input concatenated with every layer's output, ``in_channels + num_layers
    * growth_rate`` channels."""

    def __init__(self, num_layers, in_channels, growth_rate, bn_size, norm_cfg, drop_rate=0.,
                 with_cp=False):
        super().__init__()
        for i in range(num_layers):
            self.add_module(f'denselayer{i + 1}', DenseLayer(
                in_channels + i * growth_rate, growth_rate, bn_size, norm_cfg, drop_rate,
                with_cp))

    def forward(self, x):
        features = [x]
        for layer in self.values():
            features.append(layer(features))
        return torch.cat(features, 1)


class Transition(nn.Module):
    """``BN -> ReLU -> 1x1 (in -> out) -> AvgPool 2x2 stride 2``; the pool
    rounds up (``ceil_mode``), so an odd side keeps its last row / column
    (averaged over the pixels inside the map) and the map is ``ceil(H / 2)``.
    """

    def __init__(self, in_channels, out_channels, norm_cfg):
        super().__init__()
        self.norm = build_norm_layer(norm_cfg, in_channels)[1]
        self.conv = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.pool = nn.AvgPool2d(2, stride=2, ceil_mode=True)

    def forward(self, x):
        return self.pool(self.conv(F.relu(self.norm(x), inplace=True)))


@MODELS.register_module()
class DenseNet(DenseBackbone):
    """DenseNet-BC (121 / 169 / 201 / 161) with outputs at strides 4..32.

    ``features.conv0`` (7x7 stride 2, 64 or 96 channels) + ``norm0`` + ReLU +
    3x3 stride-2 max pool, then four dense blocks with transitions between
    them, and ``norm5`` + ReLU after the last block.

    Outputs: stage ``i`` is ``features.denseblock{i+1}``'s output for ``i <
    3`` (before the transition) and ``ReLU(norm5(denseblock4))`` for ``i =
    3``: DenseNet-121 gives ``(N, 256, ceil(H/4), ceil(W/4))``, ``(N, 512,
    ceil(H/8), ..)``, ``(N, 1024, ceil(H/16), ..)``, ``(N, 1024,
    ceil(H/32), ..)``. Any ``H x W``: every pool rounds up (see
    :class:`Transition`); at multiples of 32 the maps equal torchvision's.

    Args:
        arch (str | int | dict): ``'121'``, ``'169'``, ``'201'``, ``'161'``
            (an int is read as its name), or a dict with ``growth_rate``,
            ``depths`` (four layer counts) and ``init_channels``.
        in_channels (int): Input channels. Defaults to 3.
        bn_size (int): Bottleneck width in units of the growth rate.
            Defaults to 4 (DenseNet-BC).
        compression (float): Channel factor of the transitions. Defaults to
            0.5.
        drop_rate (float): Dropout after every dense layer (torchvision's
            ``drop_rate``). Defaults to 0.
        norm_cfg (dict): Norm of every BN (SyncBN for multi-GPU training).
        with_cp (bool): torchvision's memory-efficient mode: each dense
            layer's concatenation + ``norm1`` + ReLU + ``conv1`` is recomputed
            in the backward pass (see :class:`DenseLayer`). Gradients are the
            same; the BN running statistics of ``norm1`` are updated again
            by the recomputation, as with torchvision's and mmdet's
            checkpointing.
        out_indices, frozen_stages, norm_eval, init_cfg: see
            :class:`DenseBackbone`. Stage 0 is the stem with dense block 1,
            stage ``i > 0`` transition ``i`` with dense block ``i + 1`` (and
            ``norm5`` for stage 3).

    Raises:
        ValueError: an unknown arch (listing the known ones) or a dict
            without its keys.
    """

    arch_settings = {
        '121': dict(growth_rate=32, depths=[6, 12, 24, 16], init_channels=64),
        '169': dict(growth_rate=32, depths=[6, 12, 32, 32], init_channels=64),
        '201': dict(growth_rate=32, depths=[6, 12, 48, 32], init_channels=64),
        '161': dict(growth_rate=48, depths=[6, 12, 36, 24], init_channels=96),
    }
    # The shared checks' instances: one or two layers per block at a quarter of
    # DenseNet-121's growth; 161's proportions (stem = 2 x growth) with a
    # narrower bottleneck and an odd transition width.
    backbone_examples = (dict(arch=dict(growth_rate=8, depths=[1, 2, 1, 1], init_channels=16)),
                         dict(arch=dict(growth_rate=6, depths=[2, 1, 1, 1], init_channels=12),
                              bn_size=2))
    # torchvision's initialisation: Kaiming normal (fan in) for the convs, BN 1 / 0.
    default_init_cfg = [
        dict(type='Kaiming', layer='Conv2d', mode='fan_in', nonlinearity='relu',
             distribution='normal'),
        dict(type='Constant', layer=['_BatchNorm', 'GroupNorm'], val=1., bias=0.),
    ]
    official_drop_prefixes = ('classifier.', )
    # Files saved before PyTorch's BN had its counter lack it.
    expected_missing = (r'\.num_batches_tracked$', )
    # benchmark.py --compare reference: timm's features_only DenseNet has the
    # same four taps; mmpretrain's runs the same network but returns its
    # post-transition maps (other shapes, same layers computed).
    reference_implementations = {
        arch: (f'timm:densenet{arch}', f'mmpretrain:DenseNet:{arch}')
        for arch in ('121', '169', '201', '161')}

    @staticmethod
    def reference_arch_key(backbone_cfg):
        """The :attr:`reference_implementations` key of a config's backbone:
        its ``arch`` as a string (``arch=121`` is DenseNet-121 too); None for a
        custom dict."""
        arch = backbone_cfg.get('arch', '121')
        return str(arch) if isinstance(arch, (int, str)) and not isinstance(arch, bool) else None

    def __init__(self, arch='121', in_channels=3, bn_size=4, compression=0.5, drop_rate=0.,
                 norm_cfg=dict(type='BN', requires_grad=True), out_indices=(0, 1, 2, 3),
                 frozen_stages=-1, norm_eval=False, with_cp=False, init_cfg=None):
        super().__init__(out_indices=out_indices, frozen_stages=frozen_stages,
                         norm_eval=norm_eval, with_cp=with_cp, init_cfg=init_cfg)
        if isinstance(arch, int) and not isinstance(arch, bool):
            arch = str(arch)
        settings = self.resolve_arch(arch, required=('growth_rate', 'depths', 'init_channels'),
                                     per_stage=('depths', ))
        growth, depths = settings['growth_rate'], list(settings['depths'])
        self.depths = depths
        channels = settings['init_channels']
        features = nn.ModuleDict()
        features['conv0'] = nn.Conv2d(in_channels, channels, 7, stride=2, padding=3, bias=False)
        features['norm0'] = build_norm_layer(norm_cfg, channels)[1]
        features['pool0'] = nn.MaxPool2d(3, stride=2, padding=1)
        out_channels = []
        for i, depth in enumerate(depths):
            features[f'denseblock{i + 1}'] = DenseBlock(depth, channels, growth, bn_size,
                                                        norm_cfg, drop_rate, with_cp)
            channels += depth * growth
            out_channels.append(channels)
            if i < len(depths) - 1:
                reduced = int(channels * compression)
                features[f'transition{i + 1}'] = Transition(channels, reduced, norm_cfg)
                channels = reduced
        features['norm5'] = build_norm_layer(norm_cfg, channels)[1]
        self.features = features
        self.out_channels = tuple(out_channels)
        self.out_strides = (4, 8, 16, 32)

    @classmethod
    def convert_official(cls, state_dict):
        """torchvision's / timm's keys are this class's; the ``norm.1`` /
        ``conv.2`` keys of the older torchvision files become ``norm1`` /
        ``conv2`` (:data:`OLD_LAYER_KEY`). ``classifier.*`` is left for
        :meth:`to_model_state_dict` to drop."""
        out = {}
        for key, value in state_dict.items():
            match = OLD_LAYER_KEY.match(key)
            out[match.group(1) + match.group(2) if match else key] = value
        return out

    def stage_modules(self, index):
        f = self.features
        if index == 0:
            return [f['conv0'], f['norm0'], f['denseblock1']]
        modules = [f[f'transition{index}'], f[f'denseblock{index + 1}']]
        return modules + [f['norm5']] if index == self.num_stages - 1 else modules

    def forward(self, x):
        f = self.features
        x = f['pool0'](F.relu(f['norm0'](f['conv0'](x)), inplace=True))
        outs = []
        for i in range(max(self.out_indices) + 1):
            if i > 0:
                x = f[f'transition{i}'](x)
            x = f[f'denseblock{i + 1}'](x)
            if i == self.num_stages - 1:
                x = F.relu(f['norm5'](x), inplace=True)
            if i in self.out_indices:
                outs.append(x)
        return tuple(outs)
