"""Efficient Channel Attention (Wang et al., CVPR 2020, https://arxiv.org/abs/1910.03151)."""
import math

import torch.nn as nn
from mmengine.model import BaseModule

from mmext.models.layers.protocols import AttentionMap, AttentionMaps, ComponentExample
from mmext.models.official_layouts import OfficialLayout, rename_resnet_keys
from mmext.registry import MODELS


def eca_kernel_size(channels, gamma=2, b=1):
    """ECA's adaptive kernel size: ``|(log2(C) + b) / gamma|`` truncated, then
    bumped to the next odd number (the official code's rule)."""
    t = int(abs((math.log2(channels) + b) / gamma))
    return t if t % 2 else t + 1


def convert_eca_resnet(state_dict):
    """ECA-Net ResNet (Wang et al., CVPR 2020; BangguWu/ECANet) to mmdet's
    ResNet with :func:`eca_plugins`: the official
    ``layer{s}.{b}.eca.conv.weight`` ``(1, 1, k)`` is mmext's ECA as it is;
    only the classifier ``fc.*`` is dropped.

    Args:
        state_dict (dict[str, Tensor]): Official weights (``module.``
            already removed).

    Returns:
        dict[str, Tensor]: mmext keys.
    """
    return rename_resnet_keys(state_dict)


@MODELS.register_module()
class ECA(BaseModule):
    """Efficient Channel Attention as a ResNet plugin.

    ``GAP -> Conv1d(1, 1, k, no bias)`` sliding over the channel axis ``->
    sigmoid`` gives one weight per channel that scales the input: local
    cross-channel interaction without SE's dimensionality reduction, ``k``
    parameters in all. In a bottleneck it goes at ``position='after_conv3'``
    (after bn3, before the identity add), as in the official ECA-ResNet.

    Args:
        in_channels (int): Channels of the input (and output).
        kernel_size (int, optional): Odd 1D kernel size. None picks it from
            ``in_channels`` with :func:`eca_kernel_size` (``gamma``, ``b``).
            Defaults to None.
        gamma (float): Slope of the adaptive rule. Defaults to 2.
        b (float): Offset of the adaptive rule. Defaults to 1.
        init_cfg (dict | list[dict], optional): Initialization config.
            Defaults to None.

    Note:
        The adaptive rule gives k = 5, 5, 5, 7 on ResNet-50's four stages
        (256 ... 2048 channels); the released ECA-Net50 was trained with
        k = 3, 5, 5, 7 per stage, which :func:`eca_plugins` builds.
    """

    _abbr_ = 'eca'
    # No norm inside (trains at one image per device): nothing for a host to
    # pass (unit_norm.with_host_norm).
    host_norm_args = ()
    # activate's output is (N, 1, C): channels are ECA's 1D sequence.
    attention_maps = AttentionMaps('ECA', 'channel weights', (
        AttentionMap('activate', 'channel', 'channel'), ))
    component_examples = (ComponentExample('plugin'), )
    # Released as torchvision-style ResNets: `python -m mmext convert ECA-ResNet`.
    official_layouts = (OfficialLayout('ECA-ResNet', convert_eca_resnet,
                                       config='eca/retinanet_r50-eca_fpn_1x_coco.py'), )

    def __init__(self, in_channels, kernel_size=None, gamma=2, b=1, init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        if kernel_size is None:
            kernel_size = eca_kernel_size(in_channels, gamma, b)
        # An even kernel with 'same'-style padding would shorten the channel axis.
        assert kernel_size % 2 == 1, f'ECA kernel_size must be odd, got {kernel_size}'
        self.in_channels = in_channels
        self.kernel_size = kernel_size
        self.conv = nn.Conv1d(1, 1, kernel_size, padding=kernel_size // 2, bias=False)
        self.activate = nn.Sigmoid()

    def forward(self, x):
        n, c = x.shape[:2]
        # (N, 1, C): channels become the 1D sequence the kernel slides over.
        y = self.conv(x.mean(dim=(2, 3)).unsqueeze(1))
        return x * self.activate(y).view(n, c, 1, 1)


def eca_plugins(kernel_sizes=(3, 5, 5, 7), position='after_conv3'):
    """ResNet ``plugins=`` entries putting ECA in every block, with a fixed
    kernel size per stage.

    mmdet's ResNet gives a plugin to the stages its ``stages`` mask selects,
    so one entry per stage (each selecting only that stage) sets a per-stage
    ``kernel_size``. The default is the released ECA-Net50 (``k3557``).

    Args:
        kernel_sizes (Sequence[int | None]): Kernel size per stage; None
            means adaptive for that stage. Its length is the number of stages.
            Defaults to (3, 5, 5, 7).
        position (str): Where in the block. Defaults to 'after_conv3'.

    Returns:
        list[dict]: Plugin entries for ``ResNet(plugins=...)``.

    Example:
        >>> from mmdet.models.backbones import ResNet
        >>> r50 = ResNet(depth=50, plugins=eca_plugins())
        >>> r50.layer4[0].eca.kernel_size
        7
    """
    num_stages = len(kernel_sizes)
    return [
        dict(cfg=dict(type='mmext.ECA', kernel_size=k), position=position,
             stages=tuple(i == j for j in range(num_stages)))
        for i, k in enumerate(kernel_sizes)
    ]
