"""HorNet and its spatial mixer GnConv (recursive gated convolution).

Rao et al., "HorNet: Efficient High-Order Spatial Interactions with Recursive
Gated Convolutions", NeurIPS 2022 (arXiv:2207.14284). A ConvNeXt-like
four-stage hierarchy (patchify stem 4x4 / 4, LayerNorm + 2x2 / 2 downsampling)
whose blocks are

    x = x + gamma1 * GnConv(LN(x))
    x = x + gamma2 * MLP(LN(x))          (MLP: Linear 4x, GELU, Linear)

:class:`GnConv` of order ``n`` projects ``C -> 2C``, keeps ``p0`` (``C / 2^(n-1)``
channels) and filters the rest with one depth-wise 7x7 conv (scaled by 1/3) or,
in the GF variants, with :class:`GlobalLocalFilter` (DW 3x3 on half the
channels, a learnable global filter in the Fourier domain on the other half),
then recurses ``p_{k+1} = pw_k(p_k) * q_k``. Stage ``i`` uses order ``i + 2``.

Module names follow the official implementation (``downsample_layers``,
``stages.{i}.{j}.gnconv.{proj_in, dwconv, pws, proj_out}``, ...), so official
classification checkpoints load with only the classifier dropped; the per-output
norms ``norm0..3`` of the official dense code are not in them.
"""
import re

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.logging import MMLogger, print_log
from timm.layers import DropPath, LayerNorm2d, trunc_normal_

from mmext.models.layers.protocols import AttentionMap, AttentionMaps, ComponentExample
from mmext.registry import MODELS
from .base_backbone import DenseBackbone, checkpoint_call, pad_to_multiple


def resize_global_filter(weight, size):
    """Resample a stored ``(C, h, w, 2)`` spectral filter to ``size = (h', w')``.

    Bilinear with aligned corners on the real and imaginary planes, as the
    official code does both at run time and when loading a checkpoint trained
    at another resolution.
    """
    size = tuple(int(s) for s in size)
    if tuple(weight.shape[1:3]) == size:
        return weight
    weight = F.interpolate(weight.permute(3, 0, 1, 2), size=size, mode='bilinear',
                           align_corners=True)
    return weight.permute(1, 2, 3, 0)


class GlobalLocalFilter(nn.Module):
    """The GF variants' replacement of GnConv's depth-wise 7x7 conv.

    ``pre_norm`` (LayerNorm over channels), then the first half of the
    channels goes through a depth-wise 3x3 conv (no bias) and the second half
    through a global filter: ``irfft2(rfft2(x) * W)`` with a learnable complex
    ``W``; the halves are interleaved channel by channel (``local_0, global_0,
    local_1, ...``, the official order, which the checkpoint's following layers
    depend on) and ``post_norm``-ed.

    ``complex_weight`` has shape ``(C / 2, h, w, 2)`` for the spectrum of the
    training resolution (``w = W_train // 2 + 1``; 14x8 is a 14x14 map, stage 3
    at 224). At any other size it is resampled to the runtime spectrum, so every
    map size works without padding: the global filter stays global over exactly
    the map it sees.

    Args:
        channels (int): Input = output channels (even).
        filter_size (tuple[int]): ``(h, w)`` of the stored spectral filter.
            Defaults to ``(14, 8)``.
    """

    def __init__(self, channels, filter_size=(14, 8)):
        super().__init__()
        if channels % 2:
            raise ValueError(f'GlobalLocalFilter: needs an even number of channels, got '
                             f'{channels}')
        half = channels // 2
        h, w = filter_size
        self.dw = nn.Conv2d(half, half, 3, padding=1, groups=half, bias=False)
        self.complex_weight = nn.Parameter(torch.empty(half, h, w, 2))
        trunc_normal_(self.complex_weight, std=.02)
        self.pre_norm = LayerNorm2d(channels, eps=1e-6)
        self.post_norm = LayerNorm2d(channels, eps=1e-6)

    def forward(self, x):
        x = self.pre_norm(x)
        local, glob = x.chunk(2, dim=1)
        local = self.dw(local)
        size = glob.shape[-2:]
        # cuFFT / pocketfft have no bf16 / fp16 kernels for odd sizes, and the
        # filter is learnt in fp32: the spectral path always runs in fp32.
        with torch.autocast(device_type=x.device.type, enabled=False):
            spec = torch.fft.rfft2(glob.float(), dim=(2, 3), norm='ortho')
            weight = resize_global_filter(self.complex_weight.float(), spec.shape[-2:])
            spec = spec * torch.view_as_complex(weight.contiguous())
            glob = torch.fft.irfft2(spec, s=size, dim=(2, 3), norm='ortho')
        x = torch.stack([local, glob.to(local.dtype)], dim=2).flatten(1, 2)
        return self.post_norm(x)


@MODELS.register_module()
class GnConv(nn.Module):
    """Recursive gated convolution, ``g^n Conv``, HorNet's spatial mixer.

    With ``d_k = C / 2^(n-1-k)`` (``d_{n-1} = C``)::

        p_0, q = split(proj_in(x), (d_0, d_0 + ... + d_{n-1}))   # 1x1, C -> 2C
        q_0, ..., q_{n-1} = split(scale * f(q), (d_0, ..., d_{n-1}))
        p_{k+1} = pw_k(p_k) * q_k          (pw_{-1} = identity; pw_k: 1x1, d_k -> d_{k+1})
        out = proj_out(p_n)                 # 1x1, C -> C

    where ``f`` is a depth-wise ``kernel_size`` conv with bias or, with
    ``global_filter=True``, a :class:`GlobalLocalFilter`. No residual: HorNet
    adds it (with layer scale) around the mixer. As an mmdet ResNet plugin it
    therefore replaces the features at its position.

    Args:
        in_channels (int): Input = output channels, a multiple of
            ``2^(order-1)``.
        order (int): Interaction order ``n``. Defaults to 5.
        kernel_size (int): Depth-wise kernel. Defaults to 7.
        scale (float): Scale of the filtered features; every published HorNet
            uses 1/3. Defaults to 1/3.
        global_filter (bool): Use :class:`GlobalLocalFilter` instead of the
            depth-wise conv (the GF variants). Defaults to False.
        filter_size (tuple[int]): Stored spectral filter size (GF only).
            Defaults to ``(14, 8)``.
    """

    # No norm for a host to pass (the GF filter's LayerNorms need no batch;
    # mmext.models.layers.unit_norm). The gates are dwconv(q) * scale split
    # per order (mmext.models.layers.protocols).
    host_norm_args = ()
    attention_maps = AttentionMaps('GnConv', 'spatial gates per order', (
        AttentionMap('dwconv', 'spatial', transform='order_gates'), ))
    # Orders 1 to 5; the global filter needs an even width.
    component_examples = (ComponentExample('unit', dict(order=3)),
                          ComponentExample('unit', dict(order=5), in_channels=64),
                          ComponentExample('unit', dict(order=1), in_channels=7),
                          ComponentExample('unit', dict(order=3, global_filter=True)),
                          ComponentExample('unit', dict(order=5, global_filter=True),
                                           in_channels=64))

    def __init__(self, in_channels, order=5, kernel_size=7, scale=1 / 3, global_filter=False,
                 filter_size=(14, 8)):
        super().__init__()
        if order < 1 or in_channels % 2**(order - 1):
            raise ValueError(f'GnConv: in_channels ({in_channels}) must be a multiple of '
                             f'2^(order - 1) = {2**max(order - 1, 0)} for order={order} >= 1')
        self.order = order
        self.dims = [in_channels // 2**k for k in range(order)][::-1]
        self.scale = scale
        ctx = sum(self.dims)
        self.proj_in = nn.Conv2d(in_channels, 2 * in_channels, 1)
        if global_filter:
            self.dwconv = GlobalLocalFilter(ctx, filter_size)
        else:
            self.dwconv = nn.Conv2d(ctx, ctx, kernel_size, padding=kernel_size // 2, groups=ctx)
        self.pws = nn.ModuleList(
            nn.Conv2d(self.dims[k], self.dims[k + 1], 1) for k in range(order - 1))
        self.proj_out = nn.Conv2d(in_channels, in_channels, 1)

    def order_gates(self, filtered):
        """``[('gate k', (N, d_k, H, W))]``: the gates ``q_k`` from the
        filtered features ``f(q)`` (the ``attention_maps`` transform)."""
        gates = torch.split(filtered * self.scale, self.dims, dim=1)
        return [(f'gate {k}', g) for k, g in enumerate(gates)]

    def forward(self, x):
        p, q = torch.split(self.proj_in(x), (self.dims[0], sum(self.dims)), dim=1)
        gates = torch.split(self.dwconv(q) * self.scale, self.dims, dim=1)
        p = p * gates[0]
        for pw, gate in zip(self.pws, gates[1:]):
            p = pw(p) * gate
        return self.proj_out(p)


class HorNetBlock(nn.Module):
    """``x + gamma1 * GnConv(LN(x))``, then ``x + gamma2 * MLP(LN(x))``.

    The MLP runs channels-last with ``nn.Linear`` layers (``pwconv1`` /
    ``pwconv2``), as in the official code, so checkpoint shapes match.
    """

    def __init__(self, dim, order, drop_path=0., layer_scale_init_value=1e-6, mlp_ratio=4,
                 gnconv_cfg=None):
        super().__init__()
        self.norm1 = LayerNorm2d(dim, eps=1e-6)
        self.gnconv = GnConv(dim, order=order, **(gnconv_cfg or {}))
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, mlp_ratio * dim)
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(mlp_ratio * dim, dim)
        if layer_scale_init_value > 0:
            self.gamma1 = nn.Parameter(torch.full((dim, ), float(layer_scale_init_value)))
            self.gamma2 = nn.Parameter(torch.full((dim, ), float(layer_scale_init_value)))
        else:
            self.gamma1 = self.gamma2 = None
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x):
        y = self.gnconv(self.norm1(x))
        if self.gamma1 is not None:
            y = y * self.gamma1.view(-1, 1, 1)
        x = x + self.drop_path(y)
        y = self.pwconv2(self.act(self.pwconv1(self.norm2(x.permute(0, 2, 3, 1)))))
        if self.gamma2 is not None:
            y = y * self.gamma2
        return x + self.drop_path(y.permute(0, 3, 1, 2))


class PatchConv2d(nn.Conv2d):
    """A non-overlapping (kernel = stride) conv that first zero-pads the map
    bottom/right to a multiple of its stride, so that a stride-``s`` stage of
    an ``H x W`` input is exactly ``ceil(H / s) x ceil(W / s)``."""

    def forward(self, x):
        return super().forward(pad_to_multiple(x, self.stride)[0])


_GF_SIZES_224 = (None, None, (14, 8), (7, 4))
_GF_SIZES_384 = (None, None, (24, 13), (12, 7))


def _arch(base_dim, gf_sizes=None):
    return dict(embed_dims=[base_dim * 2**i for i in range(4)], depths=[2, 3, 18, 2],
                orders=[2, 3, 4, 5], gf_sizes=gf_sizes)


@MODELS.register_module()
class HorNet(DenseBackbone):
    """HorNet backbone (dense form: four normed stride 4/8/16/32 outputs).

    Args:
        arch (str | dict): ``'tiny'``, ``'small'``, ``'base'``, ``'large'`` (the
            7x7 variants), their global-filter forms ``'tiny-gf'``,
            ``'small-gf'``, ``'base-gf'``, ``'large-gf'`` and ``'large-gf384'``
            (filters stored at 384; aliases: ``t``/``s``/``b``/``l``, ``_``
            for ``-``, an optional ``-7x7``), or a dict with ``embed_dims``,
            ``depths``, ``orders`` (four entries each) and optionally
            ``gf_sizes``.
        in_channels (int): Input channels. Defaults to 3.
        drop_path_rate (float): Stochastic depth, linear over all blocks.
            Defaults to 0.
        layer_scale_init_value (float): Initial ``gamma1`` / ``gamma2``; 0
            disables layer scale. Defaults to 1e-6.
        gf_sizes (Sequence, optional): Per stage, ``None`` (depth-wise 7x7)
            or the ``(h, w)`` of the stored global filter; overrides the
            arch's. The official segmentation configs store 24x13 / 12x7
            (the 384 spectra) instead of the checkpoints' 14x8 / 7x4; the
            checkpoint filters are then resampled when loaded
            (:meth:`adapt_state_dict`). Defaults to None (the arch's).
        kernel_size (int): Depth-wise kernel of the 7x7 variants. Defaults to 7.
        gnconv_scale (float): GnConv's ``scale``. Defaults to 1/3.
        out_indices, frozen_stages, norm_eval, with_cp, init_cfg: see
            :class:`DenseBackbone`.
    """
    arch_settings = {
        'tiny': _arch(64),
        'tiny-gf': _arch(64, _GF_SIZES_224),
        'small': _arch(96),
        'small-gf': _arch(96, _GF_SIZES_224),
        'base': _arch(128),
        'base-gf': _arch(128, _GF_SIZES_224),
        'large': _arch(192),
        'large-gf': _arch(192, _GF_SIZES_224),
        'large-gf384': _arch(192, _GF_SIZES_384),
    }
    arch_aliases = {'t': 'tiny', 's': 'small', 'b': 'base', 'l': 'large'}
    # One block per stage at an eighth of Tiny's widths, with the 7x7 and with
    # the global filter, for tests/test_backbone_contract.py.
    backbone_examples = (
        dict(arch=dict(embed_dims=[8, 16, 32, 64], depths=[1, 1, 1, 1], orders=[2, 3, 4, 5])),
        dict(arch=dict(embed_dims=[8, 16, 32, 64], depths=[1, 1, 1, 1], orders=[2, 3, 4, 5],
                       gf_sizes=_GF_SIZES_224)),
    )

    default_init_cfg = [
        dict(type='TruncNormal', layer=['Conv2d', 'Linear'], std=.02, bias=0.),
        dict(type='Constant', layer=['LayerNorm'], val=1., bias=0.),
    ]
    official_drop_prefixes = ('norm.', 'head.')
    # benchmark.py --compare reference (built with gap_before_final_norm=False).
    reference_implementations = {a: (f'mmpretrain:HorNet:{a}', ) for a in
                                 ('tiny', 'small', 'base', 'tiny-gf', 'small-gf', 'base-gf')}
    expected_missing = (r'^norm[0-3]\.', )

    def __init__(self, arch='tiny', in_channels=3, drop_path_rate=0., layer_scale_init_value=1e-6,
                 gf_sizes=None, kernel_size=7, gnconv_scale=1 / 3, out_indices=(0, 1, 2, 3),
                 frozen_stages=-1, norm_eval=False, with_cp=False, init_cfg=None):
        super().__init__(out_indices=out_indices, frozen_stages=frozen_stages,
                         norm_eval=norm_eval, with_cp=with_cp, init_cfg=init_cfg)
        keys = ('embed_dims', 'depths', 'orders')
        settings = self.resolve_arch(arch, keys, keys)
        self.out_channels = tuple(settings['embed_dims'])
        self.out_strides = (4, 8, 16, 32)
        self.depths = list(settings['depths'])
        self.orders = list(settings['orders'])
        gf_sizes = settings.get('gf_sizes') if gf_sizes is None else gf_sizes
        self.gf_sizes = [None if s is None else tuple(s) for s in (gf_sizes or [None] * 4)]
        if len(self.gf_sizes) != 4:
            raise ValueError(f'HorNet: gf_sizes needs 4 entries (None or (h, w)), got {gf_sizes}')

        dims = self.out_channels
        self.downsample_layers = nn.ModuleList()
        self.downsample_layers.append(nn.Sequential(
            PatchConv2d(in_channels, dims[0], 4, stride=4), LayerNorm2d(dims[0], eps=1e-6)))
        for i in range(3):
            self.downsample_layers.append(nn.Sequential(
                LayerNorm2d(dims[i], eps=1e-6), PatchConv2d(dims[i], dims[i + 1], 2, stride=2)))

        dpr = torch.linspace(0, drop_path_rate, sum(self.depths)).tolist()
        self.stages = nn.ModuleList()
        for i in range(4):
            gnconv_cfg = dict(kernel_size=kernel_size, scale=gnconv_scale)
            if self.gf_sizes[i] is not None:
                gnconv_cfg.update(global_filter=True, filter_size=self.gf_sizes[i])
            start = sum(self.depths[:i])
            self.stages.append(nn.Sequential(*[
                HorNetBlock(dims[i], self.orders[i], drop_path=dpr[start + j],
                            layer_scale_init_value=layer_scale_init_value, gnconv_cfg=gnconv_cfg)
                for j in range(self.depths[i])
            ]))
        # Per-output norms of the official dense (mmdet / mmseg) HorNet.
        for i in range(4):
            self.add_module(f'norm{i}', LayerNorm2d(dims[i], eps=1e-6))

    @classmethod
    def arch_key(cls, name):
        # 'T-GF', 'tiny_gf', 'tiny_7x7' and 't' name the same two variants.
        name = name.lower().replace('_', '-')
        if name.endswith('-7x7'):
            name = name[:-4]
        head, sep, tail = name.partition('-')
        return cls.arch_aliases.get(head, head) + sep + tail

    @classmethod
    def convert_official(cls, state_dict):
        """Official keys are this class's keys (only the classifier ``norm.``
        / ``head.`` is dropped). Also recognised: mmpretrain's re-keyed copy
        of the official weights (``backbone.`` prefix, ``gnconv.projs`` for
        ``gnconv.pws``, ``gamma1.weight`` for ``gamma1``, the classifier's
        final norm as ``norm3``, ``head.fc``), which the configs load because
        mmengine cannot cache the official Tsinghua-Cloud links."""
        if not any('.gnconv.projs.' in k or k.endswith(('gamma1.weight', 'gamma2.weight'))
                   for k in state_dict):
            return dict(state_dict)
        out = {}
        for key, value in state_dict.items():
            if key.startswith('backbone.'):
                key = key[len('backbone.'):]
            key = re.sub(r'\.gnconv\.projs\.', '.gnconv.pws.', key)
            key = re.sub(r'\.(gamma[12])\.weight$', r'.\1', key)
            # mmpretrain's norm3 is the classifier's final norm (after GAP),
            # not the dense output norm the official dense code adds.
            key = re.sub(r'^norm3\.', 'norm.', key)
            key = re.sub(r'^head\.fc\.', 'head.', key)
            out[key] = value
        return out

    def stage_modules(self, index):
        return [self.downsample_layers[index], self.stages[index], getattr(self, f'norm{index}')]

    def adapt_state_dict(self, state_dict):
        """Resample global filters stored at another resolution (e.g. the
        224 checkpoints' 14x8 into the 24x13 of the official segmentation
        configs), as the official dense checkpoint loader does."""
        own = self.state_dict()
        resized = []
        for key, value in state_dict.items():
            if (key.endswith('complex_weight') and key in own and value.dim() == 4
                    and value.shape[0] == own[key].shape[0] and value.shape != own[key].shape):
                state_dict[key] = resize_global_filter(value.float(), own[key].shape[1:3])
                resized.append(f'{tuple(value.shape[1:3])} -> {tuple(own[key].shape[1:3])}')
        if resized:
            print_log(f'HorNet: resampled {len(resized)} global filters '
                      f'({", ".join(sorted(set(resized)))})',
                      logger=MMLogger.get_current_instance())
        return state_dict

    def forward(self, x):
        outs = []
        for i in range(4):
            x = self.downsample_layers[i](x)
            for block in self.stages[i]:
                x = checkpoint_call(block, x, with_cp=self.with_cp)
            if i in self.out_indices:
                outs.append(getattr(self, f'norm{i}')(x))
        return tuple(outs)
