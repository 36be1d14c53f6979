"""HAT-Net: vision transformer with hierarchical multi-head self-attention.

Liu et al., "Vision Transformers with Hierarchical Attention", Machine
Intelligence Research 2024 (first titled "Transformer in Convolutional Neural
Networks", arXiv 2106.03180). H-MHSA computes attention in two steps: first
among the tokens of each ``G x G`` grid window (local relations at full
resolution), then between every token and the average-pooled ("merged")
tokens of the local result (global relations at a reduced cost); the two
results are summed and projected by a 1x1 convolution. Blocks are
``x + H-MHSA(x)`` followed by ``x + InvertedResidual(x)``, all in NCHW with
``GroupNorm(1, C)`` as the layer norm.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import DropPath

from mmext.registry import MODELS
from .base_backbone import DenseBackbone, checkpoint_call, crop_to, pad_to_multiple


def _layer_norm(channels):
    """The official network's only norm: one group over (C, H, W), eps 1e-6."""
    return nn.GroupNorm(1, channels, eps=1e-6)


def _attend(q, k, v, key_mask=None):
    """Softmax attention ``softmax(q k^T / sqrt(d)) v`` over the last two dims.

    ``key_mask`` (bool, broadcastable to the logits, True = may be attended)
    hides padded keys. The fused kernel saves the memory of the logits on
    large detection inputs; mmext's FLOP counter has a handle for it
    (``mmext.analysis.flops``).
    """
    return F.scaled_dot_product_attention(q, k, v, attn_mask=key_mask)


class HMHSA(nn.Module):
    """Hierarchical multi-head self-attention on an ``(N, C, H, W)`` map.

    With ``grid_size > 1``: attention inside each ``grid_size x grid_size``
    window (``qkv``), added to the input and normalised (``grid_norm``); the
    result is queried (``q``) against keys / values of its ``ds_ratio x
    ds_ratio`` average pooling (``ds_norm``, ``kv``); local and global
    outputs are summed. With ``grid_size == 1`` it is plain global MHSA.
    Any ``H x W`` works: the windows are laid over a zero-padded map whose
    padded keys are masked out, and the pooling averages the real tokens of
    partial border cells, so at multiples of the grid (and of the pooling
    ratio) the result equals the official classification model's.

    Args:
        dim (int): Channels.
        head_dim (int): Channels per head (``dim`` must be a multiple).
        grid_size (int): Local window side ``G``.
        ds_ratio (int): Pooling ratio of the merged tokens.
    """

    def __init__(self, dim, head_dim, grid_size=1, ds_ratio=1):
        super().__init__()
        if dim % head_dim:
            raise ValueError(f'HATNet: dim {dim} is not a multiple of head_dim {head_dim}')
        self.num_heads = dim // head_dim
        self.head_dim = head_dim
        self.grid_size = grid_size
        self.ds_ratio = ds_ratio
        self.norm = _layer_norm(dim)
        self.qkv = nn.Conv2d(dim, dim * 3, 1)
        self.proj = nn.Conv2d(dim, dim, 1)
        if grid_size > 1:
            self.grid_norm = _layer_norm(dim)
            self.ds_norm = _layer_norm(dim)
            self.q = nn.Conv2d(dim, dim, 1)
            self.kv = nn.Conv2d(dim, dim * 2, 1)

    def _heads(self, x, parts):
        """``(N, parts*C, H, W)`` -> ``parts`` tensors ``(N, heads, H*W, d)``."""
        n = x.shape[0]
        x = x.reshape(n, parts, self.num_heads, self.head_dim, -1).permute(1, 0, 2, 4, 3)
        return x.unbind(0)

    def _local(self, qkv):
        """Window attention of a ``(N, 3C, H, W)`` qkv map -> ``(N, C, H, W)``."""
        n, _, h, w = qkv.shape
        g, nh, d = self.grid_size, self.num_heads, self.head_dim
        qkv, _ = pad_to_multiple(qkv, g)
        hp, wp = qkv.shape[-2:]
        gh, gw = hp // g, wp // g
        # (3, N, heads, gh, gw, g, g, d): g*g tokens per window
        qkv = qkv.reshape(n, 3, nh, d, gh, g, gw, g).permute(1, 0, 2, 4, 6, 5, 7, 3)
        # 4-D (batch*heads, windows, tokens, d) so that the fused kernels apply
        q, k, v = qkv.reshape(3, n * nh, gh * gw, g * g, d).unbind(0)
        key_mask = None
        if (hp, wp) != (h, w):
            # A window's top-left token is always real, so no row is all -inf.
            valid = qkv.new_zeros(hp, wp, dtype=torch.bool)
            valid[:h, :w] = True
            key_mask = valid.reshape(gh, g, gw, g).permute(0, 2, 1, 3).reshape(
                1, gh * gw, 1, g * g)
        out = _attend(q, k, v, key_mask)
        out = out.reshape(n, nh, gh, gw, g, g, d).permute(0, 1, 6, 2, 4, 3, 5)
        return crop_to(out.reshape(n, nh * d, hp, wp), (h, w))

    def forward(self, x):
        n, c, h, w = x.shape
        qkv = self.qkv(self.norm(x))
        if self.grid_size > 1:
            local = self.grid_norm(x + self._local(qkv))
            # ceil_mode keeps the border tokens of sizes that are not
            # multiples of ds_ratio; PyTorch divides a partial cell by its
            # real token count.
            merged = F.avg_pool2d(local, self.ds_ratio, self.ds_ratio, ceil_mode=True)
            q, = self._heads(self.q(local), 1)
            k, v = self._heads(self.kv(self.ds_norm(merged)), 2)
        else:
            q, k, v = self._heads(qkv, 3)
        out = _attend(q, k, v).transpose(-2, -1).reshape(n, c, h, w)
        if self.grid_size > 1:
            out = out + local
        return self.proj(out)


class InvertedResidual(nn.Module):
    """``GN -> 1x1 (C -> eC) -> SiLU -> DW kxk -> SiLU -> 1x1 (eC -> C) -> GN``,
    bias-free convolutions (official ``conv1.{0,1}``, ``conv2.0``,
    ``conv3.{0,1}``)."""

    def __init__(self, dim, hidden_dim, kernel_size=3):
        super().__init__()
        self.conv1 = nn.Sequential(
            _layer_norm(dim), nn.Conv2d(dim, hidden_dim, 1, bias=False), nn.SiLU(inplace=True))
        self.conv2 = nn.Sequential(
            nn.Conv2d(hidden_dim, hidden_dim, kernel_size, padding=kernel_size // 2,
                      groups=hidden_dim, bias=False), nn.SiLU(inplace=True))
        self.conv3 = nn.Sequential(
            nn.Conv2d(hidden_dim, dim, 1, bias=False), _layer_norm(dim))

    def forward(self, x):
        return self.conv3(self.conv2(self.conv1(x)))


class HATBlock(nn.Module):
    """``x + H-MHSA(x)``, then ``x + InvertedResidual(x)``, one drop-path rate."""

    def __init__(self, dim, head_dim, grid_size, ds_ratio, expansion, kernel_size,
                 drop_path=0.):
        super().__init__()
        self.attn = HMHSA(dim, head_dim, grid_size, ds_ratio)
        self.conv = InvertedResidual(dim, dim * expansion, kernel_size)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x):
        x = x + self.drop_path(self.attn(x))
        return x + self.drop_path(self.conv(x))


class Downsample(nn.Module):
    """3x3 stride-2 convolution -> GN (official ``ds{2,3,4}.{conv,norm}``)."""

    def __init__(self, in_dim, out_dim):
        super().__init__()
        self.conv = nn.Conv2d(in_dim, out_dim, 3, stride=2, padding=1)
        self.norm = _layer_norm(out_dim)

    def forward(self, x):
        return self.norm(self.conv(x))


@MODELS.register_module()
class HATNet(DenseBackbone):
    """HAT-Net backbone.

    A stride-4 stem (3x3 s2 conv to 16 channels, GN, SiLU, 3x3 s2 conv) and
    four stages of :class:`HATBlock`; stages 2-4 start with a 3x3 stride-2
    convolution + GN. Local windows are ``grid_sizes`` = 8/7/7/1 (the last
    stage attends globally), merged tokens are pooled by ``ds_ratios`` =
    8/4/2/1. Module names follow the official code (``patch_embed``,
    ``blocks.{i}.{j}``, ``ds{2,3,4}``), so official checkpoints load as they
    are (the classifier and the unused ``attn.proj_norm`` are dropped). Like
    the official code, stage outputs carry no extra norm.

    Args:
        arch (str | dict): ``'tiny'`` (``'t'``), ``'small'`` (``'s'``),
            ``'medium'`` (``'m'``), ``'large'`` (``'l'``), or a dict with
            ``dims``, ``depths``, ``expansions``, ``kernel_sizes``,
            ``grid_sizes``, ``ds_ratios`` (4 entries each) and ``head_dim``.
        in_channels (int): Input channels.
        drop_path_rate (float): Stochastic depth, linear over all blocks.
        out_indices, frozen_stages, norm_eval, with_cp, init_cfg: see
            :class:`DenseBackbone`; stage 0 includes the stem, stage ``i > 0``
            its downsampling ``ds{i+1}``.
    """
    _common = dict(expansions=[8, 8, 4, 4], grid_sizes=[8, 7, 7, 1], ds_ratios=[8, 4, 2, 1])
    arch_settings = {
        'tiny': dict(dims=[48, 96, 240, 384], depths=[2, 2, 6, 3], head_dim=48,
                     kernel_sizes=[3, 3, 3, 3], **_common),
        'small': dict(dims=[64, 128, 320, 512], depths=[2, 3, 8, 3], head_dim=64,
                      kernel_sizes=[3, 3, 3, 3], **_common),
        'medium': dict(dims=[64, 128, 320, 512], depths=[3, 6, 18, 3], head_dim=64,
                       kernel_sizes=[5, 3, 5, 3], **_common),
        'large': dict(dims=[64, 128, 320, 640], depths=[3, 8, 27, 3], head_dim=64,
                      kernel_sizes=[3, 3, 3, 3], **_common),
    }
    del _common
    arch_aliases = {'t': 'tiny', 's': 'small', 'm': 'medium', 'l': 'large'}
    # One block per stage, heads of 8 channels, Tiny's windows and pooling,
    # for tests/test_backbone_contract.py.
    backbone_examples = (dict(arch=dict(dims=[8, 16, 24, 32], depths=[1, 1, 1, 1], head_dim=8,
                                        expansions=[2, 2, 2, 2], kernel_sizes=[3, 3, 3, 3],
                                        grid_sizes=[8, 7, 7, 1], ds_ratios=[8, 4, 2, 1])), )
    _arch_keys = ('dims', 'depths', 'expansions', 'kernel_sizes', 'grid_sizes', 'ds_ratios')

    # The official initialisation: every conv / linear weight ~ TruncNormal(0.02).
    default_init_cfg = [
        dict(type='TruncNormal', layer=['Conv2d', 'Linear'], std=0.02, bias=0.),
        dict(type='Constant', layer='GroupNorm', val=1., bias=0.),
    ]
    official_drop_prefixes = ('classifier.', )
    expected_missing = ()

    def __init__(self, arch='tiny', in_channels=3, drop_path_rate=0., out_indices=(0, 1, 2, 3),
                 frozen_stages=-1, norm_eval=False, with_cp=False, init_cfg=None):
        super().__init__(out_indices=out_indices, frozen_stages=frozen_stages,
                         norm_eval=norm_eval, with_cp=with_cp, init_cfg=init_cfg)
        s = self.resolve_arch(arch, self._arch_keys + ('head_dim', ),
                              self._arch_keys)
        self.arch = s
        dims, depths = s['dims'], s['depths']
        self.out_channels = tuple(dims)
        self.out_strides = (4, 8, 16, 32)
        self.patch_embed = nn.Sequential(
            nn.Conv2d(in_channels, 16, 3, stride=2, padding=1), _layer_norm(16),
            nn.SiLU(inplace=True), nn.Conv2d(16, dims[0], 3, stride=2, padding=1))
        dpr = torch.linspace(0, drop_path_rate, sum(depths)).tolist()
        self.blocks = nn.ModuleList()
        for i in range(4):
            start = sum(depths[:i])
            self.blocks.append(nn.ModuleList(
                HATBlock(dims[i], s['head_dim'], s['grid_sizes'][i], s['ds_ratios'][i],
                         s['expansions'][i], s['kernel_sizes'][i], dpr[start + j])
                for j in range(depths[i])))
        for i in range(1, 4):
            self.add_module(f'ds{i + 1}', Downsample(dims[i - 1], dims[i]))

    def stage_modules(self, index):
        first = self.patch_embed if index == 0 else getattr(self, f'ds{index + 1}')
        return [first, self.blocks[index]]

    @staticmethod
    def _drop_unused(state_dict):
        # The official Attention builds proj_norm but never calls it.
        return {k: v for k, v in state_dict.items() if '.attn.proj_norm.' not in k}

    @classmethod
    def convert_official(cls, state_dict):
        return cls._drop_unused(state_dict)

    def adapt_state_dict(self, state_dict):
        # The official names are this class's names, so the loader may take
        # the file as is, bypassing convert_official.
        return self._drop_unused(state_dict)

    def forward(self, x):
        outs = []
        for i in range(4):
            x = self.patch_embed(x) if i == 0 else getattr(self, f'ds{i + 1}')(x)
            for block in self.blocks[i]:
                x = checkpoint_call(block, x, with_cp=self.with_cp)
            if i in self.out_indices:
                outs.append(x)
        return tuple(outs)
