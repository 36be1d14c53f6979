"""MogaNet: Efficient Multi-order Gated Aggregation Network.

Li et al., "MogaNet: Multi-order Gated Aggregation Network", ICLR 2024
(arXiv:2211.03295). A pure-convolution hierarchy of four stages; every block is

    x = x + layer_scale_1 * MOGA(BN(x))
    x = x + layer_scale_2 * CA-FFN(BN(x))

with the spatial mixer :class:`MultiOrderGatedAggregation` (multi-order dilated
depth-wise convolutions gated by a SiLU branch) and the channel mixer
:class:`ChannelAggregationFFN`. Module names follow the official
implementation (``patch_embed{i}``, ``blocks{i}``, ``norm{i}``), so official
classification checkpoints load with only the classifier dropped.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import build_norm_layer
from timm.layers import DropPath

from mmext.models.layers.protocols import AttentionMap, AttentionMaps, ComponentExample
from mmext.registry import MODELS
from .base_backbone import DenseBackbone, checkpoint_call


class ElementScale(nn.Module):
    """A learnable per-channel scale of an ``(N, C, H, W)`` map (the ``sigma``
    of MogaNet's feature decomposition)."""

    def __init__(self, channels, init_value=0.):
        super().__init__()
        self.scale = nn.Parameter(torch.full((1, channels, 1, 1), float(init_value)))

    def forward(self, x):
        return x * self.scale


class MogaDWConv2d(nn.Conv2d):
    """A depth-wise ``nn.Conv2d`` with 'same' padding.

    Its own class only so that :attr:`MogaNet.default_init_cfg` can give the
    depth-wise filters the official initialisation: the official code draws
    every conv from ``N(0, 2 / fan_out)`` with ``fan_out = k * k * out / groups``,
    which for a depth-wise conv is ``k * k`` (PyTorch's fan_in), not PyTorch's
    ``k * k * C`` fan_out.
    """

    def __init__(self, channels, kernel_size, dilation=1):
        super().__init__(channels, channels, kernel_size, padding=dilation * (kernel_size - 1) // 2,
                         dilation=dilation, groups=channels)


class MultiOrderDWConv(nn.Module):
    """The value branch of MOGA: multi-order context by dilated DW convs.

    A DW ``5x5`` (dilation ``d0``) on all channels; its output is split by
    ``channel_split`` (default ``[1, 3, 4]`` / 8): the first part is kept, the
    second goes through a DW ``5x5`` with dilation ``d1``, the third through
    a DW ``7x7`` with dilation ``d2``; the parts are concatenated and mixed by
    a ``1x1`` conv.

    Args:
        channels (int): Input = output channels.
        dilations (Sequence[int]): ``(d0, d1, d2)``. Defaults to ``(1, 2, 3)``.
        channel_split (Sequence[int]): Relative sizes of the three parts.
            Defaults to ``(1, 3, 4)``.
    """

    def __init__(self, channels, dilations=(1, 2, 3), channel_split=(1, 3, 4)):
        super().__init__()
        if len(dilations) != 3 or len(channel_split) != 3:
            raise ValueError('MultiOrderDWConv: dilations and channel_split need 3 entries, got '
                             f'{dilations} and {channel_split}')
        total = sum(channel_split)
        # Floors as the official code computes them; the first part takes the rest.
        self.channels_1 = int(channel_split[1] / total * channels)
        self.channels_2 = int(channel_split[2] / total * channels)
        self.channels_0 = channels - self.channels_1 - self.channels_2
        if min(self.channels_0, self.channels_1, self.channels_2) < 1:
            raise ValueError(f'MultiOrderDWConv: {channels} channels cannot be split '
                             f'{tuple(channel_split)}')
        self.channels = channels
        self.DW_conv0 = MogaDWConv2d(channels, 5, dilations[0])
        self.DW_conv1 = MogaDWConv2d(self.channels_1, 5, dilations[1])
        self.DW_conv2 = MogaDWConv2d(self.channels_2, 7, dilations[2])
        self.PW_conv = nn.Conv2d(channels, channels, 1)

    def forward(self, x):
        x = self.DW_conv0(x)
        x0, x1, x2 = torch.split(x, [self.channels_0, self.channels_1, self.channels_2], dim=1)
        return self.PW_conv(torch.cat([x0, self.DW_conv1(x1), self.DW_conv2(x2)], dim=1))


@MODELS.register_module()
class MultiOrderGatedAggregation(nn.Module):
    """Multi-order gated aggregation (MOGA), MogaNet's spatial mixer.

    ``y = proj_1(x)``; feature decomposition ``y = SiLU(y + sigma * (y - GAP(y)))``
    (``sigma`` per channel, init ``1e-5``); gate ``g = gate(y)`` (``1x1``), value
    ``v`` = :class:`MultiOrderDWConv` ``(y)``; ``out = proj_2(SiLU(g) * SiLU(v))``
    plus the input (the official module carries its own shortcut, which the
    block's layer scale then scales together with the branch).

    Keeps ``(N, C, H, W)`` for any ``H x W``, so it also serves as a ResNet
    plugin: ``plugins=[dict(cfg=dict(type='mmext.MultiOrderGatedAggregation'),
    position='after_conv2')]``.

    Args:
        in_channels (int): Input = output channels.
        dilations (Sequence[int]): Dilations of the three DW convs.
            Defaults to ``(1, 2, 3)``.
        channel_split (Sequence[int]): Relative channel split of the value
            branch. Defaults to ``(1, 3, 4)``.
        init_sigma (float): Initial decomposition scale. Defaults to 1e-5.
        with_shortcut (bool): Add the input to the output (official).
            Defaults to True.
        force_fp32 (bool): Run the gating product and ``proj_2`` in float32
            under autocast (the official ``attn_force_fp32``). Defaults to False.
    """

    # No norm inside (mmext.models.layers.unit_norm). The gate is act(gate(y)):
    # ``act`` also runs in feat_decompose, so the gate conv's output, unique
    # to the gate branch, is the source (mmext.models.layers.protocols).
    host_norm_args = ()
    attention_maps = AttentionMaps('MogaNet', 'spatial gate per channel', (
        AttentionMap('gate', 'spatial', 'gate', transform='act'), ))
    # 13 channels: the uneven split (1:3:4 of 13) still covers every channel.
    component_examples = (ComponentExample('unit'), ComponentExample('unit', in_channels=40),
                          ComponentExample('unit', in_channels=13))

    def __init__(self, in_channels, dilations=(1, 2, 3), channel_split=(1, 3, 4),
                 init_sigma=1e-5, with_shortcut=True, force_fp32=False):
        super().__init__()
        self.in_channels = in_channels
        self.with_shortcut = with_shortcut
        self.force_fp32 = force_fp32
        self.proj_1 = nn.Conv2d(in_channels, in_channels, 1)
        self.gate = nn.Conv2d(in_channels, in_channels, 1)
        self.value = MultiOrderDWConv(in_channels, dilations, channel_split)
        self.proj_2 = nn.Conv2d(in_channels, in_channels, 1)
        self.act = nn.SiLU()
        self.sigma = ElementScale(in_channels, init_sigma)

    def feat_decompose(self, x):
        x = self.proj_1(x)
        # Re-weights the part of each channel that differs from its global
        # mean (the 'interaction' component the paper wants to emphasise).
        x = x + self.sigma(x - F.adaptive_avg_pool2d(x, 1))
        return self.act(x)

    def forward(self, x):
        y = self.feat_decompose(x)
        g, v = self.act(self.gate(y)), self.act(self.value(y))
        if self.force_fp32 and torch.is_autocast_enabled(x.device.type):
            with torch.autocast(x.device.type, enabled=False):
                y = self.proj_2(g.float() * v.float())
        else:
            y = self.proj_2(g * v)
        return y + x if self.with_shortcut else y


class ChannelAggregationFFN(nn.Module):
    """MogaNet's channel mixer (CA-FFN).

    ``fc1`` (``1x1``, ``C -> hidden``) -> DW ``3x3`` -> GELU -> channel
    aggregation ``x + sigma * (x - GELU(decompose(x)))`` with ``decompose`` a
    ``1x1`` conv to one channel -> ``fc2`` (``1x1``, ``hidden -> C``).
    """

    def __init__(self, channels, hidden_channels, kernel_size=3, drop=0., init_sigma=1e-5):
        super().__init__()
        self.fc1 = nn.Conv2d(channels, hidden_channels, 1)
        self.dwconv = MogaDWConv2d(hidden_channels, kernel_size)
        self.act = nn.GELU()
        self.fc2 = nn.Conv2d(hidden_channels, channels, 1)
        self.drop = nn.Dropout(drop)
        self.decompose = nn.Conv2d(hidden_channels, 1, 1)
        self.sigma = ElementScale(hidden_channels, init_sigma)
        self.decompose_act = nn.GELU()

    def forward(self, x):
        x = self.drop(self.act(self.dwconv(self.fc1(x))))
        x = x + self.sigma(x - self.decompose_act(self.decompose(x)))
        return self.drop(self.fc2(x))


class MogaBlock(nn.Module):
    """``x + ls1 * MOGA(BN(x))``, then ``x + ls2 * CA-FFN(BN(x))``, with
    stochastic depth on both branches."""

    def __init__(self, channels, ffn_ratio=4., drop_rate=0., drop_path_rate=0.,
                 norm_cfg=dict(type='BN'), init_value=1e-5, dilations=(1, 2, 3),
                 channel_split=(1, 3, 4), attn_force_fp32=False):
        super().__init__()
        self.norm1 = build_norm_layer(norm_cfg, channels)[1]
        self.attn = MultiOrderGatedAggregation(
            channels, dilations=dilations, channel_split=channel_split,
            force_fp32=attn_force_fp32)
        self.drop_path = DropPath(drop_path_rate) if drop_path_rate > 0. else nn.Identity()
        self.norm2 = build_norm_layer(norm_cfg, channels)[1]
        self.mlp = ChannelAggregationFFN(channels, int(channels * ffn_ratio), drop=drop_rate)
        self.layer_scale_1 = nn.Parameter(torch.full((1, channels, 1, 1), float(init_value)))
        self.layer_scale_2 = nn.Parameter(torch.full((1, channels, 1, 1), float(init_value)))

    def forward(self, x):
        x = x + self.drop_path(self.layer_scale_1 * self.attn(self.norm1(x)))
        return x + self.drop_path(self.layer_scale_2 * self.mlp(self.norm2(x)))


class StemPatchEmbed(nn.Module):
    """Stage-1 embedding: ``3x3`` s2 conv to ``C / 2`` -> norm -> GELU ->
    ``3x3`` s2 conv to ``C`` -> norm (``projection.{0,1,3,4}`` officially)."""

    def __init__(self, in_channels, channels, norm_cfg):
        super().__init__()
        self.projection = nn.Sequential(
            nn.Conv2d(in_channels, channels // 2, 3, 2, 1),
            build_norm_layer(norm_cfg, channels // 2)[1],
            nn.GELU(),
            nn.Conv2d(channels // 2, channels, 3, 2, 1),
            build_norm_layer(norm_cfg, channels)[1])

    def forward(self, x):
        return self.projection(x)


class ConvPatchEmbed(nn.Module):
    """Stages 2-4 downsampling: ``3x3`` s2 conv -> norm."""

    def __init__(self, in_channels, channels, norm_cfg):
        super().__init__()
        self.projection = nn.Conv2d(in_channels, channels, 3, 2, 1)
        self.norm = build_norm_layer(norm_cfg, channels)[1]

    def forward(self, x):
        return self.norm(self.projection(x))


@MODELS.register_module()
class MogaNet(DenseBackbone):
    """MogaNet backbone for dense prediction.

    A paper of `MogaNet: Multi-order Gated Aggregation Network
    <https://arxiv.org/abs/2211.03295>`_ (ICLR 2024).

    Four stages at strides 4/8/16/32: a two-conv stem (stride 4), then a
    ``3x3`` s2 conv + BN before stages 2-4; each stage is a stack of
    :class:`MogaBlock` followed by a BatchNorm (``norm{i}``) that stays on the
    main path (the next stage reads the normalised map, as in the official
    code) and is also the stage output. The classification checkpoints hold
    every backbone weight; no dense-only keys.

    Every convolution pads 'same' (3x3 s2 with padding 1), so any input size
    gives ``ceil(H / s) x ceil(W / s)`` maps without padding or cropping.

    Args:
        arch (str | dict): One of ``'xtiny'`` (``'xt'``, ``'x-tiny'``),
            ``'tiny'`` (``'t'``), ``'small'`` (``'s'``), ``'base'`` (``'b'``),
            ``'large'`` (``'l'``), or a dict with ``embed_dims``, ``depths``
            and ``ffn_ratios``. Defaults to ``'tiny'``.
        in_channels (int): Input channels. Defaults to 3.
        drop_rate (float): Dropout in the FFNs. Defaults to 0.
        drop_path_rate (float): Stochastic depth, linearly increasing over all
            blocks. Defaults to 0.
        init_value (float): Initial layer scale. Defaults to 1e-5.
        norm_cfg (dict): Norm of the blocks, embeddings and stage outputs.
            Defaults to ``dict(type='BN')`` (the official dense models use BN
            throughout).
        attn_dilations (Sequence[int]): Dilations of the MOGA DW convs.
            Defaults to ``(1, 2, 3)``.
        attn_channel_split (Sequence[int]): MOGA value split. Defaults to
            ``(1, 3, 4)``.
        attn_final_dilation (bool): When False the last stage uses dilations
            ``(1, 2, 1)`` (an official option). Defaults to True.
        attn_force_fp32 (bool): See :class:`MultiOrderGatedAggregation`.
        out_indices, frozen_stages, norm_eval, with_cp, init_cfg: see
            :class:`DenseBackbone`.
    """

    arch_settings = {
        'xtiny': dict(embed_dims=[32, 64, 96, 192], depths=[3, 3, 10, 2], ffn_ratios=[8, 8, 4, 4]),
        'tiny': dict(embed_dims=[32, 64, 128, 256], depths=[3, 3, 12, 2], ffn_ratios=[8, 8, 4, 4]),
        'small': dict(embed_dims=[64, 128, 320, 512], depths=[2, 3, 12, 2],
                      ffn_ratios=[8, 8, 4, 4]),
        'base': dict(embed_dims=[64, 160, 320, 512], depths=[4, 6, 22, 3],
                     ffn_ratios=[8, 8, 4, 4]),
        'large': dict(embed_dims=[64, 160, 320, 640], depths=[4, 6, 44, 4],
                      ffn_ratios=[8, 8, 4, 4]),
    }
    arch_aliases = {'xt': 'xtiny', 'x-tiny': 'xtiny', 't': 'tiny', 's': 'small', 'b': 'base',
                    'l': 'large'}
    # One block per stage at a quarter of X-Tiny's widths (multiples of 8 for
    # the 1:3:4 value split), for tests/test_backbone_contract.py.
    backbone_examples = (dict(arch=dict(embed_dims=[8, 16, 24, 48], depths=[1, 1, 1, 1],
                                        ffn_ratios=[8, 8, 4, 4])), )

    # Official init: every conv N(0, 2 / fan_out) with zero bias; for the
    # depth-wise ones the official fan_out (divided by groups) is PyTorch's
    # fan_in, hence the second entry. BN stays at weight 1 / bias 0.
    default_init_cfg = [
        dict(type='Kaiming', layer='Conv2d', mode='fan_out', nonlinearity='relu',
             distribution='normal', bias=0.),
        dict(type='Kaiming', layer='MogaDWConv2d', mode='fan_in', nonlinearity='relu',
             distribution='normal', bias=0.),
    ]
    official_drop_prefixes = ('head.', )

    def __init__(self, arch='tiny', in_channels=3, drop_rate=0., drop_path_rate=0.,
                 init_value=1e-5, norm_cfg=dict(type='BN', requires_grad=True),
                 attn_dilations=(1, 2, 3), attn_channel_split=(1, 3, 4),
                 attn_final_dilation=True, attn_force_fp32=False, out_indices=(0, 1, 2, 3),
                 frozen_stages=-1, norm_eval=False, with_cp=False, init_cfg=None):
        super().__init__(out_indices=out_indices, frozen_stages=frozen_stages,
                         norm_eval=norm_eval, with_cp=with_cp, init_cfg=init_cfg)
        keys = ('embed_dims', 'depths', 'ffn_ratios')
        settings = self.resolve_arch(arch, keys, keys)
        self.out_channels = tuple(settings['embed_dims'])
        self.out_strides = (4, 8, 16, 32)
        self.depths = list(settings['depths'])
        self.ffn_ratios = list(settings['ffn_ratios'])

        dpr = torch.linspace(0, drop_path_rate, sum(self.depths)).tolist()
        cur = 0
        for i, (dim, depth, ratio) in enumerate(zip(self.out_channels, self.depths,
                                                    self.ffn_ratios)):
            if i == 0:
                embed = StemPatchEmbed(in_channels, dim, norm_cfg)
            else:
                embed = ConvPatchEmbed(self.out_channels[i - 1], dim, norm_cfg)
            dilations = attn_dilations
            if i == 3 and not attn_final_dilation:
                dilations = (1, 2, 1)
            blocks = nn.ModuleList(
                MogaBlock(dim, ffn_ratio=ratio, drop_rate=drop_rate,
                          drop_path_rate=dpr[cur + j], norm_cfg=norm_cfg,
                          init_value=init_value, dilations=dilations,
                          channel_split=attn_channel_split,
                          attn_force_fp32=attn_force_fp32) for j in range(depth))
            cur += depth
            self.add_module(f'patch_embed{i + 1}', embed)
            self.add_module(f'blocks{i + 1}', blocks)
            self.add_module(f'norm{i + 1}', build_norm_layer(norm_cfg, dim)[1])

    def stage_modules(self, index):
        i = index + 1
        return [getattr(self, f'patch_embed{i}'), getattr(self, f'blocks{i}'),
                getattr(self, f'norm{i}')]

    def forward(self, x):
        outs = []
        for i in range(max(self.out_indices) + 1):
            embed, blocks, norm = self.stage_modules(i)
            x = embed(x)
            for block in blocks:
                x = checkpoint_call(block, x, with_cp=self.with_cp)
            x = norm(x)
            if i in self.out_indices:
                outs.append(x)
        return tuple(outs)
