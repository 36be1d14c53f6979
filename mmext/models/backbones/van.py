"""VAN, the Visual Attention Network, and its Large Kernel Attention (LKA).

Guo et al., "Visual Attention Network", CVMJ 2023 (arXiv 2202.09741). LKA
decomposes a 21x21 convolution into a depth-wise 5x5, a depth-wise 7x7 with
dilation 3 and a 1x1; its output multiplies the input (no sigmoid), so the
"attention" is a content-dependent, channel-adaptive large-kernel weighting at
convolution cost. Module names follow the official classification code, so
its checkpoints load without renaming.
"""
import torch
import torch.nn as nn
from mmcv.cnn import build_norm_layer
from timm.layers import DropPath

from mmext.models.layers.protocols import AttentionMap, AttentionMaps, ComponentExample
from mmext.registry import MODELS
from .base_backbone import DenseBackbone, checkpoint_call, compute_memory_format


@MODELS.register_module()
class LKA(nn.Module):
    """Large Kernel Attention: ``x * conv1(dw7x7_d3(dw5x5(x)))``.

    The receptive field is 5 + 6 * 3 = 23 pixels (the paper's 21x21 kernel
    decomposed); every convolution keeps ``H x W`` at any size.

    Args:
        in_channels (int): Channels in and out. First, so the module works as
            a ResNet plugin (``plugins=[dict(cfg=dict(type='mmext.LKA'),
            position='after_conv2')]``).
        kernel_size (int): Depth-wise kernel. Defaults to 5.
        dilated_kernel_size (int): Dilated depth-wise kernel. Defaults to 7.
        dilation (int): Its dilation. Defaults to 3.
    """

    # No norm inside (mmext.models.layers.unit_norm); conv1's output is the
    # attention LKA multiplies x with (mmext.models.layers.protocols).
    host_norm_args = ()
    attention_maps = AttentionMaps('LKA', 'spatial attention per channel', (
        AttentionMap('conv1', 'spatial', 'attention'), ))
    component_examples = (ComponentExample('unit'), )

    def __init__(self, in_channels, kernel_size=5, dilated_kernel_size=7, dilation=3):
        super().__init__()
        self.conv0 = nn.Conv2d(in_channels, in_channels, kernel_size,
                               padding=kernel_size // 2, groups=in_channels)
        self.conv_spatial = nn.Conv2d(in_channels, in_channels, dilated_kernel_size,
                                      padding=dilation * (dilated_kernel_size // 2),
                                      groups=in_channels, dilation=dilation)
        self.conv1 = nn.Conv2d(in_channels, in_channels, 1)

    def forward(self, x):
        return x * self.conv1(self.conv_spatial(self.conv0(x)))


class SpatialAttention(nn.Module):
    """1x1 -> GELU -> LKA -> 1x1 with an inner shortcut (the official block's
    "attention" branch)."""

    def __init__(self, dim):
        super().__init__()
        self.proj_1 = nn.Conv2d(dim, dim, 1)
        self.activation = nn.GELU()
        self.spatial_gating_unit = LKA(dim)
        self.proj_2 = nn.Conv2d(dim, dim, 1)

    def forward(self, x):
        return x + self.proj_2(self.spatial_gating_unit(self.activation(self.proj_1(x))))


class DWConv(nn.Module):

    def __init__(self, dim):
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)

    def forward(self, x):
        return self.dwconv(x)


class ConvMlp(nn.Module):
    """1x1 -> DW 3x3 -> GELU -> 1x1 (dropout as the official code)."""

    def __init__(self, dim, hidden, drop=0.):
        super().__init__()
        self.fc1 = nn.Conv2d(dim, hidden, 1)
        self.dwconv = DWConv(hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Conv2d(hidden, dim, 1)
        self.drop = nn.Dropout(drop)

    def forward(self, x):
        x = self.drop(self.act(self.dwconv(self.fc1(x))))
        return self.drop(self.fc2(x))


class VANBlock(nn.Module):
    """``x + ls1 * Attn(BN(x))``, then ``x + ls2 * MLP(BN(x))``."""

    def __init__(self, dim, mlp_ratio, drop=0., drop_path=0., layer_scale_init=1e-2,
                 norm_cfg=dict(type='BN')):
        super().__init__()
        self.norm1 = build_norm_layer(norm_cfg, dim)[1]
        self.attn = SpatialAttention(dim)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = build_norm_layer(norm_cfg, dim)[1]
        self.mlp = ConvMlp(dim, int(dim * mlp_ratio), drop)
        self.layer_scale_1 = nn.Parameter(torch.full((dim, ), layer_scale_init))
        self.layer_scale_2 = nn.Parameter(torch.full((dim, ), layer_scale_init))

    def forward(self, x):
        x = x + self.drop_path(self.layer_scale_1[:, None, None] * self.attn(self.norm1(x)))
        return x + self.drop_path(self.layer_scale_2[:, None, None] * self.mlp(self.norm2(x)))


class OverlapPatchEmbed(nn.Module):
    """Strided convolution (padding ``k // 2``, so ``ceil(H / stride)``) + BN."""

    def __init__(self, in_channels, embed_dim, kernel_size, stride, norm_cfg=dict(type='BN')):
        super().__init__()
        self.proj = nn.Conv2d(in_channels, embed_dim, kernel_size, stride, kernel_size // 2)
        self.norm = build_norm_layer(norm_cfg, embed_dim)[1]

    def forward(self, x):
        return self.norm(self.proj(x))


@MODELS.register_module()
class VAN(DenseBackbone):
    """Visual Attention Network as a multi-scale backbone.

    Stage ``i`` is ``patch_embed{i}`` (7x7 stride 4, then 3x3 stride 2, each
    + BN), ``block{i}`` (VAN blocks) and ``norm{i}`` (LayerNorm, eps 1e-6, on
    the stage output, which the next stage reads, as in the official code).

    Args:
        arch (str | dict): ``'b0'`` .. ``'b6'`` (aliases ``tiny``, ``small``,
            ``base``, ``large`` for B0-B3), or a dict with ``embed_dims``, ``depths``,
            ``mlp_ratios``.
        in_channels (int): Input channels. Defaults to 3.
        drop_rate (float): Dropout in the MLPs. Defaults to 0.
        drop_path_rate (float): Stochastic depth, rising linearly over the
            blocks. Defaults to 0.
        layer_scale_init (float): Initial layer scale. Defaults to 1e-2.
        norm_cfg (dict): Norm of the blocks and patch embeddings (BN in the
            paper; SyncBN for multi-GPU dense training).
        out_indices, frozen_stages, norm_eval, with_cp, init_cfg: see
            :class:`DenseBackbone`.
    """

    arch_settings = {
        'b0': dict(embed_dims=[32, 64, 160, 256], depths=[3, 3, 5, 2], mlp_ratios=[8, 8, 4, 4]),
        'b1': dict(embed_dims=[64, 128, 320, 512], depths=[2, 2, 4, 2], mlp_ratios=[8, 8, 4, 4]),
        'b2': dict(embed_dims=[64, 128, 320, 512], depths=[3, 3, 12, 3], mlp_ratios=[8, 8, 4, 4]),
        'b3': dict(embed_dims=[64, 128, 320, 512], depths=[3, 5, 27, 3], mlp_ratios=[8, 8, 4, 4]),
        # The larger variants of the official classification code (B5 / B6 were
        # released as ImageNet-22k models).
        'b4': dict(embed_dims=[64, 128, 320, 512], depths=[3, 6, 40, 3], mlp_ratios=[8, 8, 4, 4]),
        'b5': dict(embed_dims=[96, 192, 480, 768], depths=[3, 3, 24, 3], mlp_ratios=[8, 8, 4, 4]),
        'b6': dict(embed_dims=[96, 192, 384, 768], depths=[6, 6, 90, 6], mlp_ratios=[8, 8, 4, 4]),
    }
    arch_aliases = {'tiny': 'b0', 'small': 'b1', 'base': 'b2', 'large': 'b3'}
    # One block per stage at a quarter of B0's widths: the shared checks'
    # instance (tests/test_backbone_contract.py).
    backbone_examples = (dict(arch=dict(embed_dims=[8, 16, 40, 64], depths=[1, 1, 1, 1],
                                        mlp_ratios=[8, 8, 4, 4])), )
    default_init_cfg = [
        dict(type='TruncNormal', layer='Linear', std=0.02, bias=0.),
        dict(type='Constant', layer=['LayerNorm', 'BatchNorm2d', 'SyncBatchNorm'], val=1.,
             bias=0.),
    ]
    official_drop_prefixes = ('head.', )
    # benchmark.py --compare reference: mmpretrain's VAN has the official
    # classification code's structure (same stage outputs).
    reference_implementations = {f'b{i}': (f'mmpretrain:VAN:{a}', ) for i, a in
                                 enumerate(('tiny', 'small', 'base', 'large'))}

    def __init__(self, arch='b0', in_channels=3, drop_rate=0., drop_path_rate=0.,
                 layer_scale_init=1e-2, norm_cfg=dict(type='BN', requires_grad=True),
                 out_indices=(0, 1, 2, 3), frozen_stages=-1, norm_eval=False, with_cp=False,
                 init_cfg=None):
        super().__init__(out_indices=out_indices, frozen_stages=frozen_stages,
                         norm_eval=norm_eval, with_cp=with_cp, init_cfg=init_cfg)
        arch = self.resolve_arch(arch, required=('embed_dims', 'depths', 'mlp_ratios'),
                                 per_stage=('embed_dims', 'depths', 'mlp_ratios'))
        self.depths = list(arch['depths'])
        self.out_channels = tuple(arch['embed_dims'])
        self.out_strides = (4, 8, 16, 32)
        dpr = torch.linspace(0, drop_path_rate, sum(self.depths)).tolist()
        cur = 0
        for i, (dim, depth, ratio) in enumerate(
                zip(self.out_channels, self.depths, arch['mlp_ratios'])):
            self.add_module(f'patch_embed{i + 1}', OverlapPatchEmbed(
                in_channels if i == 0 else self.out_channels[i - 1], dim,
                7 if i == 0 else 3, 4 if i == 0 else 2, norm_cfg))
            self.add_module(f'block{i + 1}', nn.ModuleList(
                VANBlock(dim, ratio, drop_rate, dpr[cur + j], layer_scale_init, norm_cfg)
                for j in range(depth)))
            self.add_module(f'norm{i + 1}', nn.LayerNorm(dim, eps=1e-6))
            cur += depth
        self._init_convs()

    def _init_convs(self):
        # The official N(0, 2 / fan_out) with fan_out divided by groups: for
        # the depth-wise convs that is k*k, which mmengine's Kaiming (no groups)
        # would make C times smaller. Done once at construction; a Pretrained
        # init_cfg overwrites it.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
                nn.init.normal_(m.weight, 0, (2.0 / fan_out)**0.5)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def stage_modules(self, index):
        return [getattr(self, f'{name}{index + 1}') for name in ('patch_embed', 'block', 'norm')]

    def forward(self, x):
        # On CPU the stages run in channels-last memory: oneDNN's depth-wise
        # kernels (LKA's 5x5 and dilated 7x7, the MLP's 3x3) are several times
        # faster on it than on NCHW at dense-prediction sizes (the 3x3 on 512
        # channels at 112x112 about 10x), every op of a block keeps the format,
        # and the stage norm reads the (N, H, W, C) view without a copy. Other
        # devices keep NCHW (not measured there).
        layout = compute_memory_format(x)
        x = x.contiguous(memory_format=layout)
        outs = []
        for i in range(max(self.out_indices) + 1):
            x = getattr(self, f'patch_embed{i + 1}')(x)
            for block in getattr(self, f'block{i + 1}'):
                x = checkpoint_call(block, x, with_cp=self.with_cp)
            # LayerNorm over channels on the (N, H, W, C) view.
            x = getattr(self, f'norm{i + 1}')(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
            x = x.contiguous(memory_format=layout)
            if i in self.out_indices:
                # Stage outputs are NCHW-contiguous whatever the stages ran in.
                outs.append(x.contiguous())
        return tuple(outs)
