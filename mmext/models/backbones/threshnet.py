"""ThreshNet: dense connections in the shallow blocks, harmonic ones in the deep.

Ju et al., "ThreshNet: An Efficient DenseNet Using Threshold Mechanism to
Reduce Connections", IEEE Access 10, 2022 (arXiv 2201.03013); official code
RuiyangJu/ThreshNet, ``C10-demo/models/ThreshNet79.py`` / ``ThreshNet95.py``
(CIFAR-10 classifiers). It is the published successor of ThresholdNet (arXiv
2108.12604), which has no public code.

The "threshold" is the depth at which the connection pattern changes: the
first three blocks are DenseNet-B blocks (every layer reads the concatenation
of all earlier maps of the block), the last two are HarDNet harmonic blocks
(layer ``l`` reads layer ``l - 2^i`` for every power of two dividing ``l``),
which keep far fewer connections where the maps are wide. Every block ends
with a 1x1 conv-BN-ReLU transition.
"""
from collections import OrderedDict

import torch
import torch.nn as nn
from mmcv.cnn import ConvModule

from mmext.registry import MODELS
from .base_backbone import DenseBackbone, checkpoint_call

# DenseNet-B pre-activation order: BN-ReLU before each convolution.
_PRE_ACT = ('norm', 'act', 'conv')


def harmonic_links(layer):
    """Layers that layer ``layer`` (1-based; 0 is the block input) of a
    harmonic block reads, in the order they are concatenated.

    HarDNet's rule (Chao et al., ICCV 2019; ``get_link`` of the official
    code): ``layer - 2^i`` for every ``2^i`` dividing ``layer``, nearest first.

    Args:
        layer (int): 1-based layer index, ``>= 1``.

    Returns:
        list[int]: Indices into ``[input, layer 1, layer 2, ...]``.

    Raises:
        ValueError: ``layer < 1``.
    """
    if layer < 1:
        raise ValueError(f'harmonic_links: layer={layer} must be >= 1 (0 is the block input)')
    return [layer - 2**i for i in range(layer.bit_length()) if layer % 2**i == 0]


def harmonic_width(layer, growth_rate, grmul):
    """Output channels of layer ``layer`` (1-based) of a harmonic block:
    ``growth_rate * grmul ** (links - 1)`` rounded to an even number as the
    official ``get_link`` does (``int(int(w + 1) / 2) * 2``), so layers with
    more inputs (the even ones) are wider."""
    width = growth_rate * grmul**(len(harmonic_links(layer)) - 1)
    return int(width + 1) // 2 * 2


class _ConcatConvModule(ConvModule):
    """A ConvModule reading the channel concatenation of its inputs, so that
    activation checkpointing (``with_cp``) also drops the concatenated map."""

    def forward(self, *inputs):
        return super().forward(torch.cat(inputs, 1) if len(inputs) > 1 else inputs[0])


class DenseLayer(nn.Module):
    """DenseNet-B layer: BN-ReLU-1x1 conv (``bottleneck_channels``), then
    BN-ReLU-3x3 conv (``growth_rate``), on the concatenated inputs
    ``(N, sum C_j, H, W)`` -> ``(N, growth_rate, H, W)``."""

    def __init__(self, in_channels, growth_rate, bottleneck_channels, norm_cfg):
        super().__init__()
        self.conv1 = _ConcatConvModule(in_channels, bottleneck_channels, 1, bias=False,
                                       norm_cfg=norm_cfg, order=_PRE_ACT)
        self.conv2 = ConvModule(bottleneck_channels, growth_rate, 3, padding=1, bias=False,
                                norm_cfg=norm_cfg, order=_PRE_ACT)

    def forward(self, *features):
        return self.conv2(self.conv1(*features))


class DenseBlock(nn.Module):
    """``num_layers`` DenseNet-B layers; returns the input and every layer's
    output concatenated, ``(N, in_channels + num_layers * growth_rate, H, W)``
    (the official ThreshLayers' running concatenation)."""

    def __init__(self, in_channels, num_layers, growth_rate, bottleneck_channels, norm_cfg,
                 with_cp=False):
        super().__init__()
        self.with_cp = with_cp
        self.layers = nn.ModuleList(
            DenseLayer(in_channels + i * growth_rate, growth_rate, bottleneck_channels, norm_cfg)
            for i in range(num_layers))
        self.out_channels = in_channels + num_layers * growth_rate

    def forward(self, x):
        features = [x]
        for layer in self.layers:
            features.append(checkpoint_call(layer, *features, with_cp=self.with_cp))
        return torch.cat(features, 1)


class HarmonicBlock(nn.Module):
    """HarDNet harmonic dense block (3x3 conv-BN-ReLU layers).

    Layer ``l`` (1-based) reads the concatenation of the maps listed by
    :func:`harmonic_links` and has :func:`harmonic_width` channels. The block
    returns the concatenation of the odd layers and the last one (the input
    is not kept), ``(N, out_channels, H, W)``.
    """

    def __init__(self, in_channels, num_layers, growth_rate, grmul, norm_cfg, with_cp=False):
        super().__init__()
        self.with_cp = with_cp
        widths = [in_channels] + [harmonic_width(l, growth_rate, grmul)
                                  for l in range(1, num_layers + 1)]
        self.links = [harmonic_links(l) for l in range(1, num_layers + 1)]
        self.layers = nn.ModuleList(
            _ConcatConvModule(sum(widths[k] for k in links), widths[l], 3, padding=1,
                              bias=False, norm_cfg=norm_cfg)
            for l, links in enumerate(self.links, 1))
        self.kept = [l for l in range(1, num_layers + 1) if l % 2 == 1 or l == num_layers]
        self.out_channels = sum(widths[l] for l in self.kept)

    def forward(self, x):
        maps = [x]
        for layer, links in zip(self.layers, self.links):
            maps.append(checkpoint_call(layer, *(maps[k] for k in links),
                                        with_cp=self.with_cp))
        return torch.cat([maps[l] for l in self.kept], 1)


@MODELS.register_module()
class ThreshNet(DenseBackbone):
    """ThreshNet-79 / -95 as a four-stage dense-prediction backbone.

    Network (official ``ThreshNet`` class, the classifier left out): stem
    3x3 conv s2 (32) and 3x3 conv (64), each conv-BN-ReLU, then max-pool 3
    s2; DenseNet-B blocks 1-3 (growth 32, 1x1 bottleneck 128), harmonic
    blocks 4-5 (growth 40 / 160, ``grmul`` 1.7, 16 / 4 layers), each block
    followed by a 1x1 conv-BN-ReLU transition; 2x2 max-pool after blocks
    1, 2 and 4. The stages are cut at the stride changes:

    ========  ===========================================  ======  =================
    stage     modules                                      stride  channels (79 / 95)
    ========  ===========================================  ======  =================
    0         stem, block1, transition1                    4       128 / 128
    1         pool1, block2, transition2                   8       192 / 256
    2         pool2, block3, transition3, block4, trans.4  16      480 / 480
    3         pool4, block5, transition5                   32      960 / 960
    ========  ===========================================  ======  =================

    Stage 2 holds the last dense block and the first harmonic one (both at
    stride 16, the official code pools only after block 4), so its output is
    the deepest stride-16 map, the one FPN / UperNet want.

    Every convolution pads ``k // 2`` and the 2x2 pools use ``ceil_mode``, so
    an ``H x W`` input gives ``ceil(H / s) x ceil(W / s)`` maps. The official
    CIFAR code floors at the 2x2 pools; the two agree whenever the size
    reaching a pool is even (any multiple of 32, CIFAR's 32x32 included).

    Args:
        arch (str | int | dict): ``'79'`` or ``'95'`` (also ``'threshnet79'``,
            ``'threshnet95'``, or the int), or a dict with the keys of
            :attr:`arch_settings`: ``stem_channels`` (2), ``growth_rate``,
            ``bottleneck_channels``, ``dense_layers`` / ``dense_channels``
            (3 each: blocks 1-3 and their transitions), ``harmonic_growth`` /
            ``harmonic_layers`` / ``harmonic_channels`` (2 each: blocks 4-5),
            ``grmul``.
        in_channels (int): Input channels. Defaults to 3.
        norm_cfg (dict): Norm of every conv (BN as the official code; SyncBN
            for multi-GPU dense training).
        act_cfg (dict): Activation (ReLU as the official code).
        out_indices, frozen_stages, norm_eval, with_cp, init_cfg: see
            :class:`DenseBackbone`. ``with_cp`` checkpoints every dense and
            harmonic layer together with the concatenation it reads.

    Raises:
        ValueError: An unknown arch name, or a custom dict missing a key or
            with a wrong number of entries.
    """

    arch_settings = {
        '79': dict(stem_channels=(32, 64), growth_rate=32, bottleneck_channels=128,
                   dense_layers=(6, 8, 12), dense_channels=(128, 192, 288),
                   harmonic_growth=(40, 160), harmonic_layers=(16, 4),
                   harmonic_channels=(480, 960), grmul=1.7),
        '95': dict(stem_channels=(32, 64), growth_rate=32, bottleneck_channels=128,
                   dense_layers=(6, 12, 16), dense_channels=(128, 256, 384),
                   harmonic_growth=(40, 160), harmonic_layers=(16, 4),
                   harmonic_channels=(480, 960), grmul=1.7),
    }
    arch_aliases = {'threshnet79': '79', 'threshnet95': '95'}
    # No released weights (the official repository publishes none): nothing to convert.
    convert_official = None
    # Entries per key of a custom arch dict.
    _arch_lengths = dict(stem_channels=2, growth_rate=None, bottleneck_channels=None,
                         dense_layers=3, dense_channels=3, harmonic_growth=2,
                         harmonic_layers=2, harmonic_channels=2, grmul=None)
    # Every block type with a few layers at a sixteenth of the widths: the
    # shared checks' instance (tests/test_backbone_contract.py).
    backbone_examples = (dict(arch=dict(
        stem_channels=(4, 8), growth_rate=4, bottleneck_channels=8, dense_layers=(2, 1, 2),
        dense_channels=(8, 12, 16), harmonic_growth=(4, 8), harmonic_layers=(4, 2),
        harmonic_channels=(24, 32), grmul=1.7)), )

    def __init__(self, arch='95', in_channels=3, norm_cfg=dict(type='BN', requires_grad=True),
                 act_cfg=dict(type='ReLU'), out_indices=(0, 1, 2, 3), frozen_stages=-1,
                 norm_eval=False, with_cp=False, init_cfg=None):
        super().__init__(out_indices=out_indices, frozen_stages=frozen_stages,
                         norm_eval=norm_eval, with_cp=with_cp, init_cfg=init_cfg)
        a = self._settings(arch)
        conv = dict(bias=False, norm_cfg=norm_cfg, act_cfg=act_cfg)
        c0, c1 = a['stem_channels']
        self.stem = nn.Sequential(OrderedDict(
            conv1=ConvModule(in_channels, c0, 3, stride=2, padding=1, **conv),
            conv2=ConvModule(c0, c1, 3, padding=1, **conv),
            pool=nn.MaxPool2d(3, stride=2, padding=1)))
        channels = c1
        for i, (layers, width) in enumerate(zip(a['dense_layers'], a['dense_channels']), 1):
            block = DenseBlock(channels, layers, a['growth_rate'], a['bottleneck_channels'],
                               norm_cfg, with_cp)
            self.add_module(f'block{i}', block)
            self.add_module(f'transition{i}', ConvModule(block.out_channels, width, 1, **conv))
            channels = width
        for i, (growth, layers, width) in enumerate(
                zip(a['harmonic_growth'], a['harmonic_layers'], a['harmonic_channels']), 4):
            block = HarmonicBlock(channels, layers, growth, a['grmul'], norm_cfg, with_cp)
            self.add_module(f'block{i}', block)
            self.add_module(f'transition{i}', ConvModule(block.out_channels, width, 1, **conv))
            channels = width
        # The official 2x2 max-pools (after blocks 1, 2 and 4), with ceil_mode
        # for odd sizes (see the class docstring).
        for i in (1, 2, 4):
            self.add_module(f'pool{i}', nn.MaxPool2d(2, stride=2, ceil_mode=True))
        self.out_channels = (a['dense_channels'][0], a['dense_channels'][1],
                             a['harmonic_channels'][0], a['harmonic_channels'][1])
        self.out_strides = (4, 8, 16, 32)

    @classmethod
    def _settings(cls, arch):
        if isinstance(arch, int) and not isinstance(arch, bool):
            arch = str(arch)
        settings = cls.resolve_arch(arch, required=tuple(cls._arch_lengths))
        wrong = [f'{k} ({n} entries)' for k, n in cls._arch_lengths.items()
                 if n is not None and len(settings[k]) != n]
        if wrong:
            raise ValueError(f'{cls.__name__}: a custom arch needs stem_channels with 2 entries, '
                             'dense_layers / dense_channels with 3 (blocks 1-3) and '
                             'harmonic_growth / harmonic_layers / harmonic_channels with 2 '
                             f'(blocks 4-5); wrong: {", ".join(wrong)}')
        return settings

    _STAGES = (('stem', 'block1', 'transition1'), ('pool1', 'block2', 'transition2'),
               ('pool2', 'block3', 'transition3', 'block4', 'transition4'),
               ('pool4', 'block5', 'transition5'))

    def stage_modules(self, index):
        return [getattr(self, name) for name in self._STAGES[index]]

    def forward(self, x):
        """``(N, C_in, H, W)`` -> one ``(N, out_channels[i], ceil(H /
        out_strides[i]), ceil(W / out_strides[i]))`` map per entry of
        ``out_indices``."""
        outs = []
        for i in range(max(self.out_indices) + 1):
            for module in self.stage_modules(i):
                x = module(x)
            if i in self.out_indices:
                outs.append(x)
        return tuple(outs)
