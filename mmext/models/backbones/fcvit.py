"""FCViT: the fully convolutional vision transformer.

Ma et al., "A Close Look at Spatial Modeling: From Attention to Convolution",
arXiv 2212.12552 (official code: github.com/ma-xu/FCViT). A MetaFormer
(PoolFormer-style) hierarchy whose token mixer replaces self-attention by its
query-independent part: each token is compared with the global average token
(per head), and the normalised similarity map spreads a bottleneck-projected
global context back over the image; depth-wise 11x11 convolutions and small
pointwise MLPs mix locally. Two such (context + local) steps form one token
mixer.

Module names follow the official checkpoints (``patch_embed``,
``network.{0,2,4,6}`` stages, ``network.{1,3,5}`` downsamplers), so an official
classification file loads as it is, minus its classifier (``norm.*``,
``head.*``); the per-output norms ``norm0/2/4/6`` of the official dense form
are the only keys it lacks.
"""
import math

import torch
import torch.nn as nn
from mmcv.cnn import build_activation_layer, build_norm_layer
from timm.layers import DropPath

from mmext.registry import MODELS
from .base_backbone import DenseBackbone, checkpoint_call


def _official_conv_init(module):
    """The official initialisation of every convolution: N(0, 2 / fan_out)
    with a *per-group* fan-out ``k * k * out / groups``. mmengine's Kaiming
    (PyTorch's fan-out) does not divide by the groups, which for the 11x11
    depth-wise filters would shrink the std by sqrt(C); hence this is applied
    when the layers are built rather than through ``default_init_cfg``."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
            nn.init.normal_(m.weight, 0., math.sqrt(2. / fan_out))
            if m.bias is not None:
                nn.init.zeros_(m.bias)


class PatchEmbed(nn.Module):
    """Overlapping patch embedding: a strided ``k x k`` convolution with
    ``k // 2`` padding (so ``ceil(H / stride)`` outputs for any ``H``) and a
    BatchNorm, as in the official stem (7x7 / 4) and downsamplers (3x3 / 2)."""

    def __init__(self, in_channels, out_channels, kernel_size, stride,
                 norm_cfg=dict(type='BN')):
        super().__init__()
        self.proj = nn.Conv2d(in_channels, out_channels, kernel_size, stride,
                              padding=kernel_size // 2)
        self.norm = build_norm_layer(norm_cfg, out_channels)[1]

    def forward(self, x):
        return self.norm(self.proj(x))


class GlobalContext(nn.Module):
    """FCViT's global context: the query-independent part of attention.

    With tokens split into ``num_heads`` groups of ``C / num_heads``
    channels, the similarity of every token to the global average token is
    ``s[h, p] = <x_h[:, p], mean_p x_h> / sqrt(C / num_heads)``; ``s`` is
    standardised jointly over heads and positions (per sample) and rescaled
    by a learnt per-head affine. The average token also passes a
    competition-driven bottleneck (``fc1`` to two candidate codes of
    ``C / reduction`` channels, elementwise maximum, ``fc2`` back to ``C``);
    head ``h`` of that context vector, weighted by ``s[h, p]``, is the output
    at position ``p``.

    Args:
        dim (int): Channels.
        num_heads (int): Groups of channels with their own similarity map.
        reduction (int): Bottleneck ratio of the context projection.
        eps (float): Added to the standard deviation of the similarities.
    """

    def __init__(self, dim, num_heads=8, reduction=8, eps=1e-5):
        super().__init__()
        if dim % num_heads or dim % reduction:
            raise ValueError(f'GlobalContext: dim {dim} must be divisible by num_heads '
                             f'({num_heads}) and reduction ({reduction})')
        self.num_heads = num_heads
        self.scale = (dim // num_heads)**-0.5
        self.eps = eps
        hidden = dim // reduction
        self.fc1 = nn.Linear(dim, 2 * hidden)
        self.fc2 = nn.Linear(hidden, dim)
        self.rescale_weight = nn.Parameter(torch.ones(num_heads))
        self.rescale_bias = nn.Parameter(torch.zeros(num_heads))

    def context(self, gap):
        """The bottleneck of the ``(B, C)`` average token (maxout of two codes)."""
        codes = self.fc1(gap)
        return self.fc2(codes.view(codes.shape[0], 2, -1).amax(dim=1))

    def forward(self, x):
        b, c, h, w = x.shape
        tokens = x.reshape(b, self.num_heads, c // self.num_heads, h * w)
        gap = tokens.mean(dim=-1)
        sim = torch.einsum('bgdn,bgd->bgn', tokens, gap) * self.scale
        # Unbiased std, jointly over heads and positions, as the official code.
        std, mean = torch.std_mean(sim, dim=(1, 2), keepdim=True)
        sim = (sim - mean) / (std + self.eps)
        sim = sim * self.rescale_weight[:, None] + self.rescale_bias[:, None]
        ctx = self.context(gap.reshape(b, c)).view(b, self.num_heads, -1, 1)
        return (sim.unsqueeze(2) * ctx).reshape(b, c, h, w)


class TokenMixer(nn.Module):
    """FCViT's token mixer: twice ``x = act(fc(dw(x + gc(x))))``, a global
    context added, a depth-wise ``k x k`` convolution and a pointwise
    bottleneck MLP (``C -> max(C / mlp_reduction, min_hidden) -> C``).

    Args:
        in_channels (int): Channels (kept).
        kernel_size (int): Depth-wise kernel (11 in every published variant).
        num_heads (int): Heads of the global contexts.
        gc_reduction (int): Bottleneck ratio of the global contexts.
        mlp_reduction (int): Bottleneck ratio of the pointwise MLPs.
        min_hidden (int): Lower bound of the MLPs' hidden width.
        act_cfg (dict): Activation.
    """

    def __init__(self, in_channels, kernel_size=11, num_heads=8, gc_reduction=8,
                 mlp_reduction=8, min_hidden=16, act_cfg=dict(type='GELU')):
        super().__init__()
        dim = in_channels
        hidden = max(dim // mlp_reduction, min_hidden)
        self.act = build_activation_layer(act_cfg)
        for i in (1, 2):
            self.add_module(f'gc{i}', GlobalContext(dim, num_heads, gc_reduction))
            self.add_module(f'dw{i}', nn.Conv2d(dim, dim, kernel_size, padding=kernel_size // 2,
                                                groups=dim))
            # The official MLP shares the mixer's activation module; it has no
            # state, so a fresh one keeps the key layout (fc{i}.0 / fc{i}.2).
            self.add_module(f'fc{i}', nn.Sequential(
                nn.Conv2d(dim, hidden, 1), build_activation_layer(act_cfg),
                nn.Conv2d(hidden, dim, 1)))

    def forward(self, x):
        x = x + self.gc1(x)
        x = self.act(self.fc1(self.dw1(x)))
        x = x + self.gc2(x)
        return self.act(self.fc2(self.dw2(x)))


class ChannelMixer(nn.Module):
    """Pointwise MLP with a depth-wise 3x3 convolution on the hidden layer
    (before the activation, as in the official code)."""

    def __init__(self, dim, hidden, act_cfg=dict(type='GELU')):
        super().__init__()
        self.fc1 = nn.Conv2d(dim, hidden, 1)
        self.dwconv = nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden)
        self.act = build_activation_layer(act_cfg)
        self.fc2 = nn.Conv2d(hidden, dim, 1)

    def forward(self, x):
        return self.fc2(self.act(self.dwconv(self.fc1(x))))


class FCViTBlock(nn.Module):
    """MetaFormer block: ``x + ls1 * TokenMixer(GN(x))``, then
    ``x + ls2 * ChannelMixer(GN(x))``, with GroupNorm(1) as the norm."""

    def __init__(self, dim, mlp_ratio, drop_path=0., layer_scale_init_value=1e-6,
                 mixer_cfg=None, norm_cfg=dict(type='GN', num_groups=1),
                 act_cfg=dict(type='GELU')):
        super().__init__()
        self.norm1 = build_norm_layer(norm_cfg, dim)[1]
        self.token_mixer = TokenMixer(dim, act_cfg=act_cfg, **(mixer_cfg or {}))
        self.norm2 = build_norm_layer(norm_cfg, dim)[1]
        self.channel_mixer = ChannelMixer(dim, int(dim * mlp_ratio), act_cfg)
        self.layer_scale_1 = nn.Parameter(torch.full((dim, ), float(layer_scale_init_value)))
        self.layer_scale_2 = nn.Parameter(torch.full((dim, ), float(layer_scale_init_value)))
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x):
        x = x + self.drop_path(self.layer_scale_1[:, None, None] *
                               self.token_mixer(self.norm1(x)))
        return x + self.drop_path(self.layer_scale_2[:, None, None] *
                                  self.channel_mixer(self.norm2(x)))


@MODELS.register_module()
class FCViT(DenseBackbone):
    """FCViT backbone (dense-prediction form).

    A 7x7 / 4 convolutional stem, then four stages of :class:`FCViTBlock`
    separated by 3x3 / 2 convolutional downsamplers (each convolution
    followed by a BatchNorm, as in the official code). As in the official
    detection / segmentation code, every returned stage output passes its own
    GroupNorm(1) (``norm0``, ``norm2``, ``norm4``, ``norm6``, named after the
    index in ``network``); only the norms of ``out_indices`` are built, so a
    detector that reads stages 1-3 carries no unused parameters (the official
    code's ``FORK_LAST3`` switch).

    Args:
        arch (str | dict): ``'tiny'``, ``'b12'``, ``'b24'``, ``'b48'`` (also
            ``'t'``, ``'s12'``, ``'s24'``, ``'s48'``, the paper's names), or a
            dict with ``depths``, ``embed_dims`` and ``mlp_ratios`` (4 entries
            each) and optionally ``mixer_cfg`` (see :class:`TokenMixer`).
        in_channels (int): Input channels.
        drop_path_rate (float): Stochastic depth, linear over all blocks.
        layer_scale_init_value (float): Initial layer scale (1e-6 in the
            official dense configs, 1e-5 in its classification training).
        norm_cfg (dict): Norm of the blocks and of the outputs.
        embed_norm_cfg (dict): Norm after the stem / downsampling convolutions.
        act_cfg (dict): Activation.
        out_indices, frozen_stages, norm_eval, with_cp, init_cfg: see
            :class:`DenseBackbone`; stage ``i`` includes the stem (``i = 0``)
            or the downsampler before it, and its output norm.
    """
    arch_settings = {
        'tiny': dict(depths=[3, 3, 5, 2], embed_dims=[32, 64, 160, 320],
                     mlp_ratios=[8, 8, 4, 4]),
        'b12': dict(depths=[2, 2, 6, 2], embed_dims=[64, 128, 320, 512],
                    mlp_ratios=[8, 8, 4, 4]),
        'b24': dict(depths=[4, 4, 12, 4], embed_dims=[64, 128, 320, 512],
                    mlp_ratios=[8, 8, 4, 4]),
        'b48': dict(depths=[8, 8, 24, 8], embed_dims=[64, 128, 320, 512],
                    mlp_ratios=[8, 8, 4, 4]),
    }
    arch_aliases = {'t': 'tiny', 's12': 'b12', 's24': 'b24', 's48': 'b48'}
    # One block per stage at half of Tiny's widths, and the detectors' stages
    # 1-3 (output norms built per out_index), for tests/test_backbone_contract.py.
    backbone_examples = (
        dict(arch=dict(depths=[1, 1, 1, 1], embed_dims=[16, 32, 80, 160], mlp_ratios=[2, 2, 2, 2])),
        dict(arch=dict(depths=[1, 1, 1, 1], embed_dims=[16, 32, 80, 160], mlp_ratios=[2, 2, 2, 2]),
             out_indices=(1, 2, 3)),
    )
    _arch_keys = ('depths', 'embed_dims', 'mlp_ratios')

    default_init_cfg = [
        dict(type='TruncNormal', layer='Linear', std=.02, bias=0.),
        dict(type='Constant', layer=['GroupNorm', '_BatchNorm'], val=1., bias=0.),
    ]
    # The classifier's final norm and head.
    official_drop_prefixes = ('norm.', 'head.')
    expected_missing = (r'^norm[0246]\.', )

    def __init__(self, arch='b12', in_channels=3, drop_path_rate=0.,
                 layer_scale_init_value=1e-6, norm_cfg=dict(type='GN', num_groups=1),
                 embed_norm_cfg=dict(type='BN'), act_cfg=dict(type='GELU'),
                 out_indices=(0, 1, 2, 3), frozen_stages=-1, norm_eval=False,
                 with_cp=False, init_cfg=None):
        super().__init__(out_indices=out_indices, frozen_stages=frozen_stages,
                         norm_eval=norm_eval, with_cp=with_cp, init_cfg=init_cfg)
        settings = self.resolve_arch(arch, self._arch_keys, self._arch_keys)
        depths, dims = settings['depths'], settings['embed_dims']
        self.arch = settings
        self.out_channels = tuple(dims)
        self.out_strides = (4, 8, 16, 32)

        dpr = torch.linspace(0, drop_path_rate, sum(depths)).tolist()
        self.patch_embed = PatchEmbed(in_channels, dims[0], 7, 4, embed_norm_cfg)
        network = []
        for i in range(4):
            start = sum(depths[:i])
            network.append(nn.Sequential(*[
                FCViTBlock(dims[i], settings['mlp_ratios'][i], dpr[start + j],
                           layer_scale_init_value, settings.get('mixer_cfg'), norm_cfg,
                           act_cfg) for j in range(depths[i])
            ]))
            if i < 3:
                network.append(PatchEmbed(dims[i], dims[i + 1], 3, 2, embed_norm_cfg))
        self.network = nn.ModuleList(network)
        for i in self.out_indices:
            self.add_module(f'norm{2 * i}', build_norm_layer(norm_cfg, dims[i])[1])
        _official_conv_init(self)

    def stage_modules(self, index):
        mods = [self.patch_embed if index == 0 else self.network[2 * index - 1],
                self.network[2 * index]]
        norm = getattr(self, f'norm{2 * index}', None)
        return mods + ([norm] if norm is not None else [])

    def forward(self, x):
        x = self.patch_embed(x)
        outs = []
        for i in range(4):
            if i > 0:
                x = self.network[2 * i - 1](x)
            for block in self.network[2 * i]:
                x = checkpoint_call(block, x, with_cp=self.with_cp)
            if i in self.out_indices:
                outs.append(getattr(self, f'norm{2 * i}')(x))
        return tuple(outs)
