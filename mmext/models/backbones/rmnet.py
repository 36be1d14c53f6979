"""RMResNet: a ResNet that removes its residual connections by reserve & merge.

Meng et al., "RMNet: Equivalently Removing Residual Connection from Networks",
arXiv 2111.00687. Official code: https://github.com/fxmeng/RMNet
(``models/easy_resnet2vgg.py`` for the basic block,
``models/easy_resnet50_to_vgg.py`` for the bottleneck; read at commit
4754b8e).

The network trains as a ResNet. :meth:`RMResNet.deploy` then rewrites every
residual block, in eval mode, as a plain stack of biased convolutions and
ReLUs that computes the same function. Each BatchNorm is folded into its
convolution. The first convolution gets ``C_in`` extra output channels with
Dirac (identity) kernels, which *reserve* the block input: the input is
non-negative (it comes after a ReLU), so the ReLU leaves it unchanged. The last
convolution *merges* those reserved channels into its output, through Dirac
kernels for an identity shortcut, or through the folded 1x1 downsample
convolution (zero-padded to 3x3 in a basic block). The residual sum
``ReLU(F(x) + shortcut(x))`` thus becomes ``ReLU(W2 * ReLU(W1 * x + b1) + b2)``.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.utils import fuse_conv_bn_eval, skip_init

from mmext.registry import MODELS
from mmext.utils.errors import MMExtError
from .resnet import Bottleneck, ResNet


class PlainBlock(nn.Sequential):
    """A residual block after reserve & merge: ``conv, ReLU, conv, ReLU`` (a
    basic block) or ``conv, ReLU, conv, ReLU, conv, ReLU`` (a bottleneck),
    every convolution with a bias. It is a ``Sequential`` so that its keys are
    those of the official conversion (``layer1.0.0.weight``,
    ``layer1.0.0.bias``, ``layer1.0.2.weight``, ...)."""

    def __init__(self, *convs):
        layers = []
        for conv in convs:
            layers += [conv, nn.ReLU(inplace=True)]
        super().__init__(*layers)


def _conv_like(conv, in_channels, out_channels, weight, bias):
    """An ``nn.Conv2d`` with ``conv``'s kernel, stride, padding and dilation
    holding ``weight`` / ``bias``."""
    # skip_init: the weights are overwritten at once, and initialising the
    # widened bottleneck convolutions would dominate deploy() on ResNet-50.
    new = skip_init(nn.Conv2d, in_channels, out_channels, conv.kernel_size, stride=conv.stride,
                    padding=conv.padding, dilation=conv.dilation, bias=True,
                    device=weight.device, dtype=weight.dtype)
    with torch.no_grad():
        new.weight.copy_(weight)
        new.bias.copy_(bias)
    return new


def _dirac(out_channels, in_channels, kernel_size, like):
    """Identity kernels ``(out, in, k, k)``: channel ``i`` reads input channel
    ``i`` at the kernel centre (so a stride-s convolution samples the input
    at ``(s*i, s*j)``, the pixels a 1x1 stride-s convolution reads)."""
    weight = like.new_zeros(out_channels, in_channels, *kernel_size)
    nn.init.dirac_(weight)
    return weight


def _shortcut(block, c_in, kernel_size, like):
    """Weight ``(C_out, C_in, k, k)`` and bias of the shortcut, folded: Dirac
    kernels and zero bias for the identity; the folded 1x1 downsample
    convolution, zero-padded to the kernel size, otherwise."""
    c_out = like.shape[0]
    if block.downsample is None:
        return _dirac(c_out, c_in, kernel_size, like), like.new_zeros(c_out)
    down = fuse_conv_bn_eval(block.downsample[0], block.downsample[1])
    pad = (kernel_size[1] // 2, ) * 2 + (kernel_size[0] // 2, ) * 2
    return F.pad(down.weight, pad), down.bias


def reserve_and_merge(block):
    """The :class:`PlainBlock` that computes what ``block`` computes in eval
    mode, for a non-negative input.

    Args:
        block (BasicBlock | Bottleneck): A block of :class:`RMResNet` (plain
            convolutions, BatchNorm, no plugins; downsample a 1x1 conv + BN).

    Returns:
        PlainBlock: For a basic block with ``C_in`` inputs, ``C_m`` mid and
        ``C_out`` output channels: 3x3 ``C_in -> C_in + C_m`` (the block's
        stride, padding, dilation), ReLU, 3x3 ``C_in + C_m -> C_out``, ReLU.
        For a bottleneck: 1x1 ``C_in -> C_in + C_m``, 3x3 ``(C_in + C_m)
        -> (C_in + C_m)`` (Dirac on the reserved channels, zeros across),
        1x1 ``C_in + C_m -> C_out``, each followed by ReLU.

    Source: ``rm_r_BasicBlock`` / ``rm_r_Bottleneck`` of the official
    ``easy_resnet2vgg.py`` / ``easy_resnet50_to_vgg.py``.
    """
    convs = [fuse_conv_bn_eval(block.conv1, block.norm1),
             fuse_conv_bn_eval(block.conv2, block.norm2)]
    if isinstance(block, Bottleneck):
        convs.append(fuse_conv_bn_eval(block.conv3, block.norm3))
    c_in = block.conv1.in_channels
    plain = []
    # Every convolution but the last: reserve the input next to the block's
    # own channels (Dirac on the reserved ones, zeros between the two groups).
    for i, conv in enumerate(convs[:-1]):
        c_mid, c_prev = conv.out_channels, (c_in if i == 0 else c_in + convs[i - 1].out_channels)
        weight = conv.weight.new_zeros(c_in + c_mid, c_prev, *conv.kernel_size)
        weight[:c_in, :c_in] = _dirac(c_in, c_in, conv.kernel_size, conv.weight)
        weight[c_in:, c_prev - conv.in_channels:] = conv.weight
        bias = torch.cat([conv.bias.new_zeros(c_in), conv.bias])
        plain.append(_conv_like(conv, c_prev, c_in + c_mid, weight, bias))
    # The last one: the block's output channels plus the shortcut of the
    # reserved input, merged.
    last = convs[-1]
    c_prev = c_in + last.in_channels
    short_w, short_b = _shortcut(block, c_in, last.kernel_size, last.weight)
    weight = torch.cat([short_w, last.weight], dim=1)
    plain.append(_conv_like(last, c_prev, last.out_channels, weight, last.bias + short_b))
    return PlainBlock(*plain)


@MODELS.register_module()
class RMResNet(ResNet):
    """ResNet that :meth:`deploy` turns into a plain conv-ReLU network (RMNet,
    reserve & merge).

    Before :meth:`deploy` it is :class:`mmext.ResNet` restricted to plain
    blocks: same arguments (``depth`` 18 / 34 with basic blocks, 50 / 101 /
    152 with bottlenecks, ``stem_pool``, ``deep_stem``, ``frozen_stages``,
    ``norm_eval``, ``with_cp``, ...), modules, state dict (torchvision /
    mmdet ResNet checkpoints load through ``init_cfg``) and outputs.
    ``deploy()`` replaces every block, in place, by a :class:`PlainBlock` with
    the same outputs (fp32 differences at rounding level). The stem (its
    convolutions, norms and ``pool_conv``) is kept as it is.

    ``drop_path_rate`` (stochastic depth) trains as on :class:`mmext.ResNet`;
    :meth:`deploy` is unaffected: it converts in eval mode, where ``DropPath``
    is the identity, and the plain blocks carry no ``drop_path``.

    A deployed network is for inference only: ``train()`` (``train(True)``)
    raises :class:`~mmext.utils.errors.MMExtError`; ``eval()`` works.
    To load a checkpoint saved after ``deploy()``, build with
    ``deploy=True``: the network is built already converted (from its random
    initialisation), so that the deployed keys (``layer1.0.0.weight``, ...)
    load through ``init_cfg`` or ``load_from``.

    Args:
        depth (int): 18, 34 (basic blocks; the paper's target), 50, 101 or
            152 (bottlenecks; the conversion is exact but widens every 3x3 to
            ``C_in + C_m`` channels both ways: ResNet-50 grows from 25.6M to
            277M parameters with its classifier).
        *args: mmdet ResNet's positional arguments after ``depth``.
        deploy (bool): Keyword-only. Build the deployed network. Default:
            False.
        **kwargs: Keyword arguments of :class:`mmext.ResNet`.

    Shapes: as :class:`mmext.ResNet`, before and after :meth:`deploy`: an
    input ``(N, in_channels, H, W)`` gives ``(N, out_channels[i], ceil(H /
    out_strides[i]), ceil(W / out_strides[i]))`` per entry ``i`` of
    ``out_indices``.

    Raises:
        ValueError: ``avg_down`` (the average-pool shortcut of ResNet-D reads
            2x2 windows that a reserved channel cannot carry exactly at odd
            sizes), ``plugins``, ``dcn``, ``conv_cfg`` or ``block_conv_cfg``
            (blocks that reserve & merge does not define), or a norm other than
            BatchNorm / SyncBN (nothing to fold into a convolution).
        MMExtError: ``train()`` after :meth:`deploy`.

    Source: Meng et al., arXiv 2111.00687; fxmeng/RMNet
    ``models/easy_resnet2vgg.py``, ``models/easy_resnet50_to_vgg.py``.

    Example:
        >>> import torch
        >>> model = RMResNet(depth=18).eval()
        >>> x = torch.rand(1, 3, 97, 131)
        >>> before = model(x)
        >>> model.deploy()
        >>> after = model(x)   # equal to ``before`` up to fp32 rounding
    """

    backbone_examples = (
        dict(depth=18, base_channels=8, stem_channels=16),
        dict(depth=50, base_channels=4, stem_channels=16, stem_pool='conv', deep_stem=True),
    )

    def __init__(self, depth, *args, deploy=False, **kwargs):
        super().__init__(depth, *args, **kwargs)
        name = type(self).__name__
        unsupported = [k for k in ('plugins', 'dcn', 'conv_cfg', 'block_conv_cfg')
                       if getattr(self, k)]
        if self.avg_down:
            unsupported.append('avg_down')
        if unsupported:
            raise ValueError(f'{name}: {", ".join(unsupported)} not supported: reserve & merge '
                             'is defined for plain conv-BN blocks with a 1x1 conv downsample')
        other = sorted({type(m).__name__ for layer in self.res_layers
                        for block in getattr(self, layer) for m in block.modules()
                        if 'norm' in type(m).__name__.lower() and not isinstance(m, _BatchNorm)})
        if other:
            raise ValueError(f'{name}: norm_cfg builds {", ".join(other)}; reserve & merge folds '
                             'BatchNorm / SyncBN into the convolutions')
        self.deployed = False
        if deploy:
            self.deploy()

    def deploy(self):
        """Replace every residual block by its :class:`PlainBlock`, in place,
        and switch to eval mode (for good: see the class docstring).

        Returns:
            RMResNet: ``self``.
        """
        if self.deployed:
            return self
        self.eval()
        with torch.no_grad():
            for layer_name in self.res_layers:
                layer = getattr(self, layer_name)
                for i, block in enumerate(layer):
                    layer[i] = reserve_and_merge(block)
        self.deployed = True
        return self

    def train(self, mode=True):
        """As :class:`mmext.ResNet`; raises
        :class:`~mmext.utils.errors.MMExtError` for ``mode=True`` after
        :meth:`deploy`."""
        if mode and getattr(self, 'deployed', False):
            raise MMExtError(f'{type(self).__name__} is deployed (plain conv-ReLU blocks, '
                             'BatchNorm folded): it runs in eval mode only; train the network '
                             'built with deploy=False and call deploy() afterwards')
        return super().train(mode)
