"""MPViT: Multi-Path Vision Transformer for dense prediction.

Lee et al., "MPViT: Multi-Path Vision Transformer for Dense Prediction",
CVPR 2022. Each stage embeds its input at several scales at once (a chain of
depthwise-separable 3x3 convolutions whose successive outputs see 3x3, 5x5,
7x7, ... windows), runs one factorized-attention encoder per scale plus a
local convolutional path, concatenates everything and mixes it with a 1x1
convolution.
"""
import re
from functools import partial

import torch
import torch.nn as nn
from mmcv.cnn import build_norm_layer
from timm.layers import DropPath

from mmext.registry import MODELS
from .base_backbone import DenseBackbone, checkpoint_call


class ConvBN(nn.Sequential):
    """``conv -> norm -> act`` with a bias-free convolution (official
    ``Conv2d_BN``: sub-modules ``conv``, ``bn``)."""

    def __init__(self, in_channels, out_channels, kernel_size=1, stride=1, act=False,
                 norm_cfg=dict(type='BN')):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride,
                              kernel_size // 2, bias=False)
        self.bn = build_norm_layer(norm_cfg, out_channels)[1]
        self.act = nn.Hardswish() if act else nn.Identity()


class SeparableConvBN(nn.Module):
    """Depthwise kxk (carrying the stride) -> pointwise 1x1 -> norm ->
    Hardswish: one step of the multi-scale patch embedding."""

    def __init__(self, channels, kernel_size=3, stride=1, norm_cfg=dict(type='BN')):
        super().__init__()
        self.dwconv = nn.Conv2d(channels, channels, kernel_size, stride, kernel_size // 2,
                                groups=channels, bias=False)
        self.pwconv = nn.Conv2d(channels, channels, 1, bias=False)
        self.bn = build_norm_layer(norm_cfg, channels)[1]
        self.act = nn.Hardswish()

    def forward(self, x):
        return self.act(self.bn(self.pwconv(self.dwconv(x))))


class MultiScalePatchEmbed(nn.Module):
    """``num_path`` separable 3x3 convolutions in sequence; every
    intermediate output is one path's tokens, so path ``p`` has a receptive
    field of ``3 + 2p`` at the same token count (the first step downsamples
    for all of them)."""

    def __init__(self, channels, num_path, stride, norm_cfg=dict(type='BN')):
        super().__init__()
        self.steps = nn.ModuleList(
            SeparableConvBN(channels, 3, stride if p == 0 else 1, norm_cfg)
            for p in range(num_path))

    def forward(self, x):
        outs = []
        for step in self.steps:
            x = step(x)
            outs.append(x)
        return outs


class ConvRelPosEnc(nn.Module):
    """CoaT's convolutional relative position encoding: ``q * DWConv(v)``,
    with different depthwise windows for groups of heads (``windows`` maps
    window size -> number of heads)."""

    def __init__(self, head_dim, windows):
        super().__init__()
        self.splits = [head_dim * n for n in windows.values()]
        self.convs = nn.ModuleList(
            nn.Conv2d(c, c, k, padding=k // 2, groups=c) for k, c in zip(windows, self.splits))

    def forward(self, q, v, size):
        b, h, n, ch = v.shape
        v = v.transpose(-2, -1).reshape(b, h * ch, *size)
        v = torch.cat([conv(part) for conv, part in zip(self.convs, v.split(self.splits, 1))], 1)
        return q * v.reshape(b, h, ch, n).transpose(-2, -1)


class FactorizedAttention(nn.Module):
    """Linear-cost attention of CoaT: ``scale * q (softmax_N(k)^T v)`` plus
    the convolutional relative position term, then a projection."""

    def __init__(self, dim, num_heads):
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads)**-0.5
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x, size, crpe):
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        context = k.softmax(dim=2).transpose(-2, -1) @ v  # (B, h, Ch, Ch): cost linear in N
        x = self.scale * (q @ context) + crpe(q, v, size)
        return self.proj(x.transpose(1, 2).reshape(b, n, c))


class Mlp(nn.Module):

    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class FactorizedAttentionBlock(nn.Module):
    """Pre-norm transformer block; the position encodings are owned by the
    encoder (shared by its blocks) and passed in."""

    def __init__(self, dim, num_heads, mlp_ratio, drop_path):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = FactorizedAttention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, dim * mlp_ratio)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x, size, cpe, crpe):
        b, n, c = x.shape
        feat = x.transpose(1, 2).reshape(b, c, *size)
        x = (feat + cpe(feat)).flatten(2).transpose(1, 2)
        x = x + self.drop_path(self.attn(self.norm1(x), size, crpe))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class FactorizedAttentionEncoder(nn.Module):
    """The transformer of one path: a depthwise 3x3 conditional position
    encoding (``cpe``) and a relative one (``crpe``), each shared by all the
    path's blocks, as in the official code."""

    def __init__(self, dim, depth, num_heads, mlp_ratio, drop_paths, crpe_windows,
                 with_cp=False):
        super().__init__()
        self.with_cp = with_cp
        self.cpe = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        self.crpe = ConvRelPosEnc(dim // num_heads, crpe_windows)
        self.blocks = nn.ModuleList(
            FactorizedAttentionBlock(dim, num_heads, mlp_ratio, drop_paths[j])
            for j in range(depth))

    def forward(self, x):
        b, c, h, w = x.shape
        x = x.flatten(2).transpose(1, 2)
        for block in self.blocks:
            x = checkpoint_call(partial(block, size=(h, w), cpe=self.cpe, crpe=self.crpe), x,
                                with_cp=self.with_cp)
        return x.transpose(1, 2).reshape(b, c, h, w)


class LocalConvPath(nn.Module):
    """The convolutional path next to the encoders (official ``ResBlock``):
    ``x + ConvBN(DW3x3(Hardswish(ConvBN(x))))`` with 1x1 ConvBNs, no
    expansion."""

    def __init__(self, dim, norm_cfg=dict(type='BN')):
        super().__init__()
        self.conv1 = ConvBN(dim, dim, act=True, norm_cfg=norm_cfg)
        self.dwconv = nn.Conv2d(dim, dim, 3, padding=1, groups=dim, bias=False)
        self.norm = build_norm_layer(norm_cfg, dim)[1]
        self.act = nn.Hardswish()
        self.conv2 = ConvBN(dim, dim, norm_cfg=norm_cfg)

    def forward(self, x):
        return x + self.conv2(self.act(self.norm(self.dwconv(self.conv1(x)))))


class MultiPathStage(nn.Module):
    """One encoder per embedded scale plus the local path (on the first
    scale), concatenated and aggregated by a 1x1 ConvBN + Hardswish to
    ``out_dim``, the input width of the next stage."""

    def __init__(self, dim, out_dim, num_path, depth, num_heads, mlp_ratio, drop_paths,
                 crpe_windows, norm_cfg=dict(type='BN'), with_cp=False):
        super().__init__()
        self.paths = nn.ModuleList(
            FactorizedAttentionEncoder(dim, depth, num_heads, mlp_ratio, drop_paths,
                                       crpe_windows, with_cp) for _ in range(num_path))
        self.local_conv = LocalConvPath(dim, norm_cfg)
        self.aggregate = ConvBN(dim * (num_path + 1), out_dim, act=True, norm_cfg=norm_cfg)

    def forward(self, inputs):
        outs = [self.local_conv(inputs[0])] + [path(x) for path, x in zip(self.paths, inputs)]
        return self.aggregate(torch.cat(outs, dim=1))


# Official classification layout (youngwanLEE/MPViT mpvit.py) -> mmext names.
# The official blocks also register their encoder's shared ``cpe`` / ``crpe``
# modules, so its state dict repeats those tensors under every block
# (``MHCA_layers.{j}.cpe``, ``.crpe``, ``.factoratt_crpe.crpe``); the copies
# are dropped, the encoder-level ones kept.
_OFFICIAL_RENAMES = (
    (r'^patch_embed_stages\.(\d+)\.patch_embeds\.(\d+)\.patch_conv\.',
     r'patch_embeds.\1.steps.\2.'),
    (r'^mhca_stages\.(\d+)\.mhca_blks\.(\d+)\.cpe\.proj\.', r'stages.\1.paths.\2.cpe.'),
    (r'^mhca_stages\.(\d+)\.mhca_blks\.(\d+)\.crpe\.conv_list\.',
     r'stages.\1.paths.\2.crpe.convs.'),
    (r'^mhca_stages\.(\d+)\.mhca_blks\.(\d+)\.MHCA_layers\.(\d+)\.factoratt_crpe\.',
     r'stages.\1.paths.\2.blocks.\3.attn.'),
    (r'^mhca_stages\.(\d+)\.mhca_blks\.(\d+)\.MHCA_layers\.',
     r'stages.\1.paths.\2.blocks.'),
    (r'^mhca_stages\.(\d+)\.InvRes\.', r'stages.\1.local_conv.'),
    (r'^mhca_stages\.(\d+)\.aggregate\.', r'stages.\1.aggregate.'),
)
_OFFICIAL_SHARED_COPY = re.compile(
    r'\.MHCA_layers\.\d+\.(cpe|crpe|factoratt_crpe\.crpe)\.')
# The mmseg (``*_mm.pth``) and Detectron2 (``*_d2.pth``) releases hold the same
# names under a wrapper prefix (``backbone.``, ``backbone.bottom_up.backbone.``).
_OFFICIAL_ROOT = re.compile(r'^(?:\w+\.)*?(?=(?:stem|patch_embed_stages|mhca_stages)\.)')


@MODELS.register_module()
class MPViT(DenseBackbone):
    """MPViT backbone.

    A stride-4 stem (two 3x3 stride-2 ConvBN + Hardswish) followed by four
    stages. Stage ``i`` embeds its input into ``num_path[i]`` token maps of
    one resolution (stride 2 except in stage 0) and growing receptive field,
    runs a factorized-attention encoder of ``num_layers[i]`` blocks on each
    and a local convolutional path on the first, and aggregates the
    ``num_path[i] + 1`` maps by a 1x1 ConvBN. As in the official detection
    and segmentation code, the aggregation already widens to the next
    stage's width, so the stage outputs have ``embed_dims[1:] +
    embed_dims[-1:]`` channels, and there are no extra output norms.

    Args:
        arch (str | dict): ``'tiny'`` (``'t'``), ``'xsmall'`` (``'xs'``),
            ``'small'`` (``'s'``), ``'base'`` (``'b'``), or a dict with
            ``num_path``, ``num_layers``, ``embed_dims``, ``mlp_ratios``,
            ``num_heads`` (4 entries each) and optionally ``crpe_windows``
            (window size -> number of heads, summing to the heads).
        in_channels (int): Input channels.
        drop_path_rate (float): Stochastic depth, linear over all blocks of a
            path (the paths of one stage share the rates).
        norm_cfg (dict): Norm of the convolutional layers (official: BN for
            classification, SyncBN for detection and segmentation).
        out_indices, frozen_stages, norm_eval, with_cp, init_cfg: see
            :class:`DenseBackbone`; stage 0 includes the stem.
    """
    arch_settings = {
        'tiny': dict(num_path=[2, 3, 3, 3], num_layers=[1, 2, 4, 1],
                     embed_dims=[64, 96, 176, 216], mlp_ratios=[2, 2, 2, 2],
                     num_heads=[8, 8, 8, 8]),
        'xsmall': dict(num_path=[2, 3, 3, 3], num_layers=[1, 2, 4, 1],
                       embed_dims=[64, 128, 192, 256], mlp_ratios=[4, 4, 4, 4],
                       num_heads=[8, 8, 8, 8]),
        'small': dict(num_path=[2, 3, 3, 3], num_layers=[1, 3, 6, 3],
                      embed_dims=[64, 128, 216, 288], mlp_ratios=[4, 4, 4, 4],
                      num_heads=[8, 8, 8, 8]),
        'base': dict(num_path=[2, 3, 3, 3], num_layers=[1, 3, 8, 3],
                     embed_dims=[128, 224, 368, 480], mlp_ratios=[4, 4, 4, 4],
                     num_heads=[8, 8, 8, 8]),
    }
    arch_aliases = {'t': 'tiny', 'xs': 'xsmall', 's': 'small', 'b': 'base'}
    # Two paths and one block per stage, 8 heads of 2-5 channels, for
    # tests/test_backbone_contract.py.
    backbone_examples = (dict(arch=dict(num_path=[2, 2, 2, 2], num_layers=[1, 1, 1, 1],
                                        embed_dims=[16, 24, 32, 40], mlp_ratios=[2, 2, 2, 2],
                                        num_heads=[8, 8, 8, 8])), )
    _arch_keys = ('num_path', 'num_layers', 'embed_dims', 'mlp_ratios', 'num_heads')
    #: CoaT's head split for 8 heads: 2 heads see 3x3, 3 see 5x5, 3 see 7x7.
    default_crpe_windows = {3: 2, 5: 3, 7: 3}

    default_init_cfg = [
        dict(type='TruncNormal', layer='Linear', std=0.02, bias=0.),
        dict(type='Constant', layer=['LayerNorm', '_BatchNorm'], val=1., bias=0.),
        # std = sqrt(2 / (k * k * out)), the official Conv2d_BN initialisation.
        dict(type='Kaiming', layer='Conv2d', mode='fan_out', nonlinearity='relu',
             distribution='normal', bias=0.),
    ]
    official_drop_prefixes = ('cls_head.', 'head.')
    expected_missing = ()

    def __init__(self, arch='small', in_channels=3, drop_path_rate=0.,
                 norm_cfg=dict(type='BN'), out_indices=(0, 1, 2, 3), frozen_stages=-1,
                 norm_eval=False, with_cp=False, init_cfg=None):
        super().__init__(out_indices=out_indices, frozen_stages=frozen_stages,
                         norm_eval=norm_eval, with_cp=with_cp, init_cfg=init_cfg)
        settings = self.resolve_arch(arch, self._arch_keys, self._arch_keys)
        num_path, depths = settings['num_path'], settings['num_layers']
        dims, mlp_ratios = settings['embed_dims'], settings['mlp_ratios']
        heads = settings['num_heads']
        windows = dict(settings.get('crpe_windows', self.default_crpe_windows))
        for d, h in zip(dims, heads):
            if d % h or sum(windows.values()) != h:
                raise ValueError(f'MPViT: embed dim {d} must split into {h} heads, and the '
                                 f'crpe windows {windows} must cover exactly {h} heads')
        self.arch = settings
        self.out_channels = tuple(dims[1:]) + (dims[-1], )
        self.out_strides = (4, 8, 16, 32)

        dpr = torch.linspace(0, drop_path_rate, sum(depths)).tolist()
        starts = [sum(depths[:i]) for i in range(4)]
        self.stem = nn.Sequential(
            ConvBN(in_channels, dims[0] // 2, 3, 2, act=True, norm_cfg=norm_cfg),
            ConvBN(dims[0] // 2, dims[0], 3, 2, act=True, norm_cfg=norm_cfg))
        self.patch_embeds = nn.ModuleList(
            MultiScalePatchEmbed(dims[i], num_path[i], 1 if i == 0 else 2, norm_cfg)
            for i in range(4))
        self.stages = nn.ModuleList(
            MultiPathStage(dims[i], self.out_channels[i], num_path[i], depths[i], heads[i],
                           mlp_ratios[i], dpr[starts[i]:starts[i] + depths[i]], windows,
                           norm_cfg, with_cp) for i in range(4))

    def stage_modules(self, index):
        mods = [self.patch_embeds[index], self.stages[index]]
        return ([self.stem] + mods) if index == 0 else mods

    @classmethod
    def convert_official(cls, state_dict):
        out = {}
        for key, value in state_dict.items():
            key = _OFFICIAL_ROOT.sub('', key)
            if _OFFICIAL_SHARED_COPY.search(key):
                continue
            for pattern, repl in _OFFICIAL_RENAMES:
                key, n = re.subn(pattern, repl, key)
                if n:
                    break
            out[key] = value
        return out

    def forward(self, x):
        x = self.stem(x)
        outs = []
        for i in range(4):
            x = self.stages[i](self.patch_embeds[i](x))
            if i in self.out_indices:
                outs.append(x)
        return tuple(outs)
