"""Squeeze-and-Excitation (Hu et al., CVPR 2018, https://arxiv.org/abs/1709.01507)."""
import re

from mmdet.models.layers import SELayer

from mmext.models.layers.protocols import AttentionMap, AttentionMaps, ComponentExample
from mmext.models.official_layouts import OfficialLayout, linear_to_conv1x1, rename_resnet_keys
from mmext.registry import MODELS


def convert_se_resnet(state_dict):
    """SE-ResNet (Hu et al., CVPR 2018) to mmdet's ResNet with
    ``plugins=[dict(cfg=dict(type='mmext.SE'), position='after_conv3')]``.

    Official layout: torchvision ResNet names plus ``layer{s}.{b}.se.fc.{0,2}``
    (``nn.Linear``, as in senet.pytorch) or the 1x1-conv equivalents
    ``se.fc1`` / ``se.fc2`` (timm's ``seresnet``). mmext's SE (mmdet's
    ``SELayer``) holds them as ``se.conv1.conv`` / ``se.conv2.conv`` of shape
    ``(out, in, 1, 1)``. A release without FC biases (senet.pytorch) gets
    zero biases, which computes the same function.

    Args:
        state_dict (dict[str, Tensor]): Official weights (``module.``
            already removed).

    Returns:
        dict[str, Tensor]: mmext keys; ``fc.*`` (classifier) dropped.
    """
    out = rename_resnet_keys(state_dict,
                             [(r'\.se\.(?:fc\.0|fc1)\.', '.se.conv1.conv.'),
                              (r'\.se\.(?:fc\.2|fc2)\.', '.se.conv2.conv.')],
                             reshape=linear_to_conv1x1)
    for key in [k for k in out if re.search(r'\.se\.conv[12]\.conv\.weight$', k)]:
        bias = key[:-len('weight')] + 'bias'
        if bias not in out:
            out[bias] = out[key].new_zeros(out[key].shape[0])
    return out


@MODELS.register_module()
class SE(SELayer):
    """Squeeze-and-Excitation as a ResNet plugin.

    ``GAP -> 1x1 conv C->C/ratio (bias) -> ReLU -> 1x1 conv C/ratio->C (bias)
    -> sigmoid`` gives one weight per channel that scales the input. In a
    bottleneck it goes at ``position='after_conv3'``: after bn3, on the
    residual branch, before the identity add (as in SE-ResNet).

    mmdet's ``SELayer`` already computes exactly this (hidden width
    ``int(C / ratio)``, i.e. SENet's ``C // ratio``, biases on both FCs,
    sigmoid gate); this subclass only renames its argument to the
    ``in_channels=`` that mmcv's ``build_plugin_layer`` passes. The 1x1 convs
    on a 1x1 map have the parameters of SENet's linear layers.

    Args:
        in_channels (int): Channels of the input (and output).
        ratio (int): Squeeze ratio; the hidden width is
            ``int(in_channels / ratio)``. Defaults to 16.
        conv_cfg (dict, optional): Config of the two 1x1 convs.
            Defaults to None (``nn.Conv2d``).
        act_cfg (dict | Sequence[dict]): Activations after the first and the
            second conv; one dict is used for both.
            Defaults to ``(dict(type='ReLU'), dict(type='Sigmoid'))``.
        init_cfg (dict | list[dict], optional): Initialization config.
            Defaults to None.

    Example:
        >>> from mmcv.cnn import build_plugin_layer
        >>> name, se = build_plugin_layer(dict(type='mmext.SE'), in_channels=256)
        >>> name
        'se'
    """

    _abbr_ = 'se'
    # No norm inside (trains at one image per device): nothing for a host to
    # pass (unit_norm.with_host_norm).
    host_norm_args = ()
    # conv2's output is the sigmoid weight per channel (mmdet's ConvModule
    # with the Sigmoid act) that scales the input.
    attention_maps = AttentionMaps('SE', 'channel weights', (
        AttentionMap('conv2', 'channel', 'channel'), ))
    component_examples = (ComponentExample('plugin', dict(ratio=4)), )
    # Released as torchvision-style SE-ResNets: `python -m mmext convert SE-ResNet`.
    official_layouts = (OfficialLayout('SE-ResNet', convert_se_resnet,
                                       config='se/retinanet_r50-se_fpn_1x_coco.py'), )

    def __init__(self,
                 in_channels,
                 ratio=16,
                 conv_cfg=None,
                 act_cfg=(dict(type='ReLU'), dict(type='Sigmoid')),
                 init_cfg=None):
        # A zero-width bottleneck would silently make the gate a constant.
        assert int(in_channels / ratio) >= 1, (
            f'SE needs in_channels >= ratio, got {in_channels} and {ratio}')
        super().__init__(
            channels=in_channels, ratio=ratio, conv_cfg=conv_cfg, act_cfg=act_cfg,
            init_cfg=init_cfg)
        self.in_channels = in_channels
        self.ratio = ratio
