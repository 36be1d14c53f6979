"""HNet: a small Harmonic Network as a multi-scale backbone.

Worrall et al., "Harmonic Networks: Deep Translation and Rotation
Equivariance", CVPR 2017 (arXiv 1612.04642); official code
danielewworrall/harmonicConvolutions (``MNIST-rot/mnist_model.py``: blocks of
H-conv -> magnitude ReLU -> H-conv -> magnitude BN + ReLU, mean pooling
between blocks, rotation orders 0 and 1). The paper has no detection or
segmentation backbone; this dense form (stem, four stages at strides 4..32,
stacked magnitudes as outputs) is mmext's, every choice listed on
``docs/designs/hnet.md``. The layers are in
:mod:`mmext.models.layers.harmonic`.
"""
import torch.nn as nn

from mmext.models.layers.harmonic import (HarmonicBatchNorm, HarmonicConv, HarmonicMeanPool,
                                          HarmonicNonlinearity, stream_magnitudes)
from mmext.registry import MODELS
from .base_backbone import DenseBackbone, checkpoint_call


class HarmonicBlock(nn.Module):
    """The official block: H-conv -> magnitude ReLU (learned bias) -> H-conv
    -> magnitude norm + ReLU, on streams of orders ``0..max_order`` (no
    residual, as in the paper)."""

    def __init__(self, in_channels, channels, kernel_size, max_order, n_rings, std_mult,
                 norm_cfg):
        super().__init__()
        conv = dict(kernel_size=kernel_size, max_order=max_order, n_rings=n_rings,
                    std_mult=std_mult, in_max_order=max_order, output='stream')
        self.conv1 = HarmonicConv(in_channels, channels, **conv)
        self.act1 = HarmonicNonlinearity(channels, max_order)
        self.conv2 = HarmonicConv(channels, channels, **conv)
        self.norm2 = HarmonicBatchNorm(channels, max_order, norm_cfg)

    def forward(self, x):
        return self.norm2(self.conv2(self.act1(self.conv1(x))))


@MODELS.register_module()
class HNet(DenseBackbone):
    """Harmonic Network backbone: rotation-equivariant streams inside,
    rotation-invariant magnitudes out.

    Structure (mmext's; the paper's MNIST model is the template):
    ``stem`` = H-conv (real input -> orders ``0..M``, stride 2) + magnitude
    ReLU; stage ``i`` = 3x3 stride-2 mean pooling of the real and imaginary
    parts (``layer{i+1}.0``), then ``depths[i]`` :class:`HarmonicBlock`.
    Output ``i``: the magnitudes of every order stacked,
    ``(N, (M + 1) * channels[i], ceil(H / s_i), ceil(W / s_i))``, channel
    index ``order * channels[i] + c``, strides 4, 8, 16, 32.

    Rotating an input of odd size ``H = W = 32 j + 1`` by 90 degrees about
    its centre pixel rotates every output by 90 degrees up to the basis'
    sampling error and float rounding (``tests/test_hnet.py``): 'same'
    padding, strided convs and 3x3 pools then sample grids symmetric about
    the centre. The official 2x2 mean pooling is not: it moves the centre by
    half a pixel at every level.

    Args:
        arch (str | dict): ``'tiny'`` or ``'small'``, or a dict with
            ``channels`` (complex channels per order, 4 stages) and
            ``depths``.
        in_channels (int): Real input channels. Defaults to 3.
        max_order (int): Rotation orders ``0..max_order``. Defaults to 1.
        kernel_size (int): H-conv kernel (odd). Defaults to 5 (the paper's).
        n_rings (int, optional): Radial samples; None: ``max(k // 2, 2)``.
        std_mult (float): Radial init scale (0.4, the official default).
        norm_cfg (dict): Norm of the magnitudes (BN; SyncBN for multi-GPU).
        out_indices, frozen_stages, norm_eval, with_cp, init_cfg: see
            :class:`DenseBackbone`; stage 0 includes the stem.
    """

    arch_settings = {
        # Widths in complex channels per order; outputs carry (M + 1) times
        # as many real channels (32..256 for tiny, as ResNet-18's 64..512 / 2).
        'tiny': dict(channels=[16, 32, 64, 128], depths=[1, 1, 1, 1]),
        'small': dict(channels=[32, 64, 128, 256], depths=[1, 1, 2, 1]),
    }
    backbone_examples = (dict(arch=dict(channels=[4, 4, 8, 8], depths=[1, 1, 1, 1]),
                              kernel_size=3), )
    # No released weights (the official code ships none); its own training
    # checkpoints load.
    convert_official = None

    def __init__(self, arch='tiny', in_channels=3, max_order=1, kernel_size=5, n_rings=None,
                 std_mult=0.4, norm_cfg=dict(type='BN', requires_grad=True),
                 out_indices=(0, 1, 2, 3), frozen_stages=-1, norm_eval=False, with_cp=False,
                 init_cfg=None):
        super().__init__(out_indices=out_indices, frozen_stages=frozen_stages,
                         norm_eval=norm_eval, with_cp=with_cp, init_cfg=init_cfg)
        arch = self.resolve_arch(arch, required=('channels', 'depths'),
                                 per_stage=('channels', 'depths'))
        channels = list(arch['channels'])
        self.max_order = max_order
        self.orders = max_order + 1
        self.out_channels = tuple(self.orders * c for c in channels)
        self.out_strides = (4, 8, 16, 32)
        conv = dict(kernel_size=kernel_size, max_order=max_order, n_rings=n_rings,
                    std_mult=std_mult)
        self.stem = nn.Sequential(
            HarmonicConv(in_channels, channels[0], stride=2, output='stream', **conv),
            HarmonicNonlinearity(channels[0], max_order))
        previous = channels[0]
        for i, (width, depth) in enumerate(zip(channels, arch['depths'])):
            blocks = [HarmonicMeanPool()]
            for _ in range(depth):
                blocks.append(HarmonicBlock(previous, width, norm_cfg=norm_cfg, **conv))
                previous = width
            self.add_module(f'layer{i + 1}', nn.ModuleList(blocks))

    def stage_modules(self, index):
        stage = [getattr(self, f'layer{index + 1}')]
        return ([self.stem] + stage) if index == 0 else stage

    def forward(self, x):
        x = self.stem(x)
        outs = []
        for i in range(max(self.out_indices) + 1):
            pool, *blocks = getattr(self, f'layer{i + 1}')
            x = pool(x)
            for block in blocks:
                x = checkpoint_call(block, x, with_cp=self.with_cp)
            if i in self.out_indices:
                outs.append(stream_magnitudes(x, self.orders).to(x.dtype))
        return tuple(outs)
